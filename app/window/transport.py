"""The transport toolbar: Reset, Step, Step x10, Run/Pause, speed, and the time-step scrubber.

Commands go out as signals; the window connects them to the training controller. The
scrubber picks a time step t of the probe sequence; the window moves every panel's cursor.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import QComboBox, QLabel, QSizePolicy, QSlider, QToolBar, QWidget

from app.icons import icon

SPEEDS = (("Full speed", 0.0), ("100 steps/s", 100.0), ("30 steps/s", 30.0), ("10 steps/s", 10.0),
          ("3 steps/s", 3.0), ("1 step/s", 1.0))

SHORTCUTS = (
    ("Space", "Run / Pause"),
    ("S", "Step: one training step"),
    ("Shift+S", "Step x10: ten training steps"),
    ("Ctrl+R", "Reset: rebuild the model at step 0 (same seed)"),
    ("Left / Right", "Previous / next time step t"),
    ("Home / End", "First / last time step t"),
    ("F2", "Show or hide the Experiment dock"),
)


class TransportBar(QToolBar):
    reset_requested = Signal()
    step_requested = Signal(int)
    run_toggled = Signal()
    speed_changed = Signal(float)
    time_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Transport", parent)
        self.setObjectName("transport")
        self.setMovable(False)
        self.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self._icon_color = "#202124"
        self.reset_action = self._action("Reset", "Ctrl+R", QIcon(),
                                         "Rebuild the model at step 0 with the same seed",
                                         self.reset_requested.emit)
        self.addSeparator()
        self.run_action = self._action("Run", "Space", QIcon(),
                                       "Train continuously; press again to pause", self.run_toggled.emit)
        self.step_action = self._action("Step", "S", QIcon(),
                                        "One training step (one optimiser update)",
                                        lambda: self.step_requested.emit(1))
        self.step10_action = self._action("Step ×10", "Shift+S", QIcon(),
                                          "Ten training steps", lambda: self.step_requested.emit(10))
        self.speed = QComboBox()
        self.speed.setObjectName("speed")
        self.speed.setToolTip("Training speed while running")
        for text, value in SPEEDS:
            self.speed.addItem(text, value)
        self.speed.currentIndexChanged.connect(lambda i: self.speed_changed.emit(float(self.speed.itemData(i))))
        self.addWidget(self.speed)
        self.addSeparator()
        self.addWidget(QLabel("  Time step "))
        self.scrubber = QSlider(Qt.Horizontal)
        self.scrubber.setObjectName("scrubber")
        self.scrubber.setToolTip("Time step t of the probe sequence shown by every panel's cursor")
        self.scrubber.setMinimumWidth(220)
        self.scrubber.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.scrubber.setRange(0, 0)
        self.scrubber.valueChanged.connect(self._time_moved)
        self.addWidget(self.scrubber)
        self.time_label = QLabel("")
        self.time_label.setObjectName("time-label")
        self.time_label.setMinimumWidth(150)
        self.addWidget(self.time_label)
        self.labels: tuple[str, ...] = ()
        self.time_actions: list[QAction] = []
        for keys, delta in (("Left", -1), ("Right", 1), ("Home", -10**9), ("End", 10**9)):
            action = QAction(self)
            action.setShortcut(QKeySequence(keys))
            action.triggered.connect(lambda _=False, d=delta: self.move_time(d))
            self.time_actions.append(action)  # the window adds these: a toolbar would show buttons
        self._time_moved(0)

    def _action(self, text: str, keys: str, icon, tip: str, slot) -> QAction:
        action = QAction(icon, text, self)
        action.setShortcut(QKeySequence(keys))
        action.setShortcutContext(Qt.WindowShortcut)
        action.setToolTip(f"{tip} ({keys})")
        action.triggered.connect(lambda _=False: slot())
        self.addAction(action)
        return action

    def set_theme(self, theme) -> None:
        """Icons and scrubber in ``theme``'s colours (the style's own vanish on dark)."""
        self._icon_color = theme.foreground
        for action, name in ((self.reset_action, "reset"), (self.step_action, "step"),
                             (self.step10_action, "step10")):
            action.setIcon(icon(name, theme.foreground))
        self.set_running(self.run_action.text() == "Pause")
        self.scrubber.setStyleSheet(
            f"QSlider::groove:horizontal {{ height: 4px; background: {theme.muted}; border-radius: 2px; }}"
            f"QSlider::sub-page:horizontal {{ background: {theme.accent}; border-radius: 2px; }}"
            f"QSlider::handle:horizontal {{ background: {theme.accent}; width: 14px; margin: -6px 0;"
            f" border-radius: 7px; }}")

    def set_running(self, running: bool) -> None:
        self.run_action.setText("Pause" if running else "Run")
        self.run_action.setIcon(icon("pause" if running else "run", self._icon_color))

    def set_labels(self, labels: tuple[str, ...]) -> None:
        """The probe's time axis (one label per t); keeps t when still in range."""
        self.labels = tuple(labels)
        self.scrubber.setRange(0, max(len(self.labels) - 1, 0))
        self._time_moved(self.scrubber.value())

    def move_time(self, delta: int) -> None:
        self.scrubber.setValue(min(max(self.scrubber.value() + delta, 0), self.scrubber.maximum()))

    @property
    def time_step(self) -> int:
        return self.scrubber.value()

    def _time_moved(self, t: int) -> None:
        label = self.labels[t] if 0 <= t < len(self.labels) else ""
        label = label if len(label) <= 12 else label[:11] + "…"
        self.time_label.setText(f"t = {t}" + (f"   input {label!r}" if label else ""))
        self.time_changed.emit(t)
