"""The mouse wheel over the Experiment form scrolls it; it changes a field only when focused."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from app.window.main_window import MainWindow


def wheel(widget, notches: int = -1) -> None:
    """One wheel turn over the middle of ``widget`` (as a mouse sends it)."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * notches), Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_wheel_over_an_unfocused_field_changes_nothing(qtbot):
    """Scrolling the form switched Initialisation from default to spectral and enabled Apply."""
    window = MainWindow(autostart=False)
    qtbot.addWidget(window)
    window.show()
    form = window.form
    init = form.fields["init"].editor
    before = init.currentText()
    wheel(init)
    wheel(init, +1)
    wheel(init, -1)
    assert init.currentText() == before
    assert not form.apply_button.isEnabled()
    assert init.focusPolicy() == Qt.StrongFocus  # a wheel never gives it focus either
    # Every combo and spin box of the window is guarded, panels' options included.
    for box in (window.transport.speed, window.panels["decoding"].beam, window.panels["compare"].steps):
        value = box.currentIndex() if hasattr(box, "currentIndex") else box.value()
        wheel(box)
        assert (box.currentIndex() if hasattr(box, "currentIndex") else box.value()) == value
    # With focus (clicked or tabbed to), the wheel changes the value as usual.
    init.setFocus()
    qtbot.waitUntil(init.hasFocus)
    wheel(init)
    assert init.currentText() != before
    assert form.apply_button.isEnabled()
