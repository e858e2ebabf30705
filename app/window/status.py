"""The status bar: messages, state, step, loss, steps per second, device and model size.

Messages go in a word-wrapped label at the left, not Qt's one-line temporary message: a
long one (the advice after a divergence) takes two or three lines instead of being cut off
mid-sentence at 1280x720. A message may carry one action button (Undo) for as long as it
shows. ``showMessage``, ``currentMessage`` and ``clearMessage`` keep QStatusBar's meaning.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QSize, QTimer
from PySide6.QtWidgets import QLabel, QPushButton, QSizePolicy, QStatusBar, QWidget

from app.theme import CELL_COLORS, LIGHT, OKABE_ITO, Theme
from app.training.messages import RunInfo
from core.records import StepRecord

DIVERGED = "Diverged after step"  # how the divergence message starts

STATE_COLORS = {"idle": OKABE_ITO["grey"], "running": OKABE_ITO["green"], "paused": OKABE_ITO["orange"],
                "diverged": OKABE_ITO["vermillion"], "starting": OKABE_ITO["grey"]}


class StatusBar(QStatusBar):
    def __init__(self, theme: Theme = LIGHT, parent: QWidget | None = None):
        super().__init__(parent)
        self.theme = theme
        self.message = QLabel("")
        self.message.setObjectName("status-message")
        self.message.setWordWrap(True)
        policy = QSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        policy.setHeightForWidth(True)
        self.message.setSizePolicy(policy)
        self.addWidget(self.message, 1)
        self.action = QPushButton("")
        self.action.setObjectName("status-action")
        self.action.hide()
        self.action.clicked.connect(self._act)
        self.addWidget(self.action)
        self._on_action: Callable[[], None] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.clearMessage)
        self.state_label = self._label("state", 90)
        self.model_label = self._label("model", 0, FittedLabel(""))
        self.step_label = self._label("step", 90)
        self.loss_label = self._label("loss", 120)
        self.rate_label = self._label("rate", 110)
        self.device_label = self._label("device", 0)
        self.set_state("starting")
        self.set_progress(0, float("nan"), 0.0)

    def _label(self, name: str, width: int, label: QLabel | None = None) -> QLabel:
        label = label if label is not None else QLabel("")
        label.setObjectName(f"status-{name}")
        if width:
            label.setMinimumWidth(width)
        self.addPermanentWidget(label)
        return label

    # -- messages (QStatusBar's, shown whole) ----------------------------------------------------
    def showMessage(self, text: str, timeout: int = 0, action: tuple[str, Callable[[], None]] | None = None) -> None:  # noqa: N802
        """Show ``text`` (for ``timeout`` ms; 0: until the next message), with an ``action``
        button (label, callback) while it shows."""
        self.message.setText(" ".join(str(text).split()))
        self.message.setToolTip(self.message.text())
        self._on_action = action[1] if action else None
        self.action.setText(action[0] if action else "")
        self.action.setVisible(action is not None)
        if timeout > 0:
            self._timer.start(timeout)
        else:
            self._timer.stop()
        self.messageChanged.emit(self.message.text())

    def currentMessage(self) -> str:  # noqa: N802 (Qt naming)
        return self.message.text()

    def clearMessage(self) -> None:  # noqa: N802 (Qt naming)
        self._timer.stop()
        self.message.setText("")
        self.action.hide()
        self._on_action = None
        self.messageChanged.emit("")

    def _act(self) -> None:
        callback = self._on_action
        self.clearMessage()
        if callback is not None:
            callback()

    def set_state(self, state: str) -> None:
        self.state = state
        color = STATE_COLORS.get(state, OKABE_ITO["grey"])
        self.state_label.setText(f"<b style='color:{color}'>●</b> {state}")

    def set_run(self, run: RunInfo) -> None:
        kind = run.kind
        color = CELL_COLORS.get(kind, OKABE_ITO["grey"])
        e = run.experiment
        name = f"rnn ({e.nonlinearity})" if kind == "rnn" else kind
        badge = f"<b style='color:{color}'>■</b> {name} · {e.num_layers}×{e.hidden_size}"
        self.model_label.set_variants([f"{badge} · {run.param_count:,} parameters · {run.task_title}",
                                       f"{badge} · {run.param_count:,} parameters", badge])
        self.device_label.setText(f"device {run.device}")

    def show_divergence(self, record: StepRecord) -> None:
        """Say what a diverged step did and how to go on (kept until another message)."""
        self.showMessage(divergence_message(record))

    def set_progress(self, step: int, loss: float, rate: float) -> None:
        self.step_label.setText(f"step {step:,}")
        self.loss_label.setText("loss –" if not math.isfinite(loss) else f"loss {loss:.4g}")
        self.rate_label.setText(f"{rate:,.0f} steps/s" if rate >= 1 else f"{rate:.2f} steps/s" if rate else "– steps/s")


class FittedLabel(QLabel):
    """A label that shows the longest of its variants that fits its width: it asks for the
    longest one's width, but may be given as little as the shortest's (a long task title
    made the status bar, and so the whole window, 900 pixels wide at the least)."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(text, parent)
        self.variants: list[str] = [text]

    def set_variants(self, variants: list[str]) -> None:
        self.variants = list(variants)
        self.setToolTip(self.variants[0])
        self.updateGeometry()
        self._fit()

    def _width(self, text: str) -> float:
        from PySide6.QtGui import QTextDocument

        doc = QTextDocument()
        doc.setDefaultFont(self.font())
        doc.setDocumentMargin(0)
        doc.setHtml(text)
        return doc.idealWidth() + 2

    def _fit(self) -> None:
        room = self.contentsRect().width()
        chosen = next((v for v in self.variants if self._width(v) <= room), self.variants[-1])
        if chosen != self.text():
            self.setText(chosen)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        return QSize(round(self._width(self.variants[0])), super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        return QSize(round(self._width(self.variants[-1])), super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        self._fit()


def divergence_message(record: StepRecord) -> str:
    """What happened at a diverged step (see core.training.rollback) and what the user can do."""
    what = f"{DIVERGED} {record.step:,}: the loss or gradient became infinite or NaN, so the update was not applied"
    if record.restored_step is None:
        return (f"{what}, and even the first weights fail. Change the experiment (e.g. a smaller spectral radius, "
                "learning rate or sequence length) and Apply.")
    return (f"{what} and the weights went back to those of step {record.restored_step:,}, the last with a sane "
            "loss. Lower the learning rate or set a clip norm in the Experiment dock and Apply to continue from "
            "there, or Reset to start over.")
