"""The mouse wheel changes a field only when the field has focus.

Qt's combo and spin boxes take wheel events whenever the pointer is over them, so scrolling
the Experiment form through a combo box switched its value (Initialisation went from
default to spectral) and enabled Apply. Guarded here: such a box takes focus only by a click
or Tab (``Qt.StrongFocus``, not the wheel), and a wheel event over it while unfocused is
passed on to its parent (the form's scroll area scrolls instead).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QWidget

GUARDED = (QComboBox, QAbstractSpinBox)


class WheelGuard(QObject):
    """Event filter: an unfocused field ignores the wheel, so its parent gets it."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        if event.type() == QEvent.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            event.ignore()  # not accepted: Qt offers it to the parent next
            return True  # and the field itself never sees it
        return False


def guard_wheel(root: QWidget) -> WheelGuard:
    """Guard every combo and spin box under ``root`` (call again for boxes added later)."""
    guard = root.findChild(WheelGuard, "wheel-guard")
    if guard is None:
        guard = WheelGuard(root)
        guard.setObjectName("wheel-guard")
    for kind in GUARDED:
        for box in root.findChildren(kind):
            if box.property("wheel-guarded"):
                continue
            box.setFocusPolicy(Qt.StrongFocus)
            box.installEventFilter(guard)
            box.setProperty("wheel-guarded", True)
    return guard
