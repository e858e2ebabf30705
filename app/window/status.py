"""The status bar: state, step, loss, steps per second, device and model size."""

from __future__ import annotations

import math

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

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
        self.state_label = self._label("state", 90)
        self.model_label = self._label("model", 0)
        self.step_label = self._label("step", 90)
        self.loss_label = self._label("loss", 120)
        self.rate_label = self._label("rate", 110)
        self.device_label = self._label("device", 0)
        self.set_state("starting")
        self.set_progress(0, float("nan"), 0.0)

    def _label(self, name: str, width: int) -> QLabel:
        label = QLabel("")
        label.setObjectName(f"status-{name}")
        if width:
            label.setMinimumWidth(width)
        self.addPermanentWidget(label)
        return label

    def set_state(self, state: str) -> None:
        self.state = state
        color = STATE_COLORS.get(state, OKABE_ITO["grey"])
        self.state_label.setText(f"<b style='color:{color}'>●</b> {state}")

    def set_run(self, run: RunInfo) -> None:
        kind = run.kind
        color = CELL_COLORS.get(kind, OKABE_ITO["grey"])
        e = run.experiment
        name = f"rnn ({e.nonlinearity})" if kind == "rnn" else kind
        self.model_label.setText(f"<b style='color:{color}'>■</b> {name} · {e.num_layers}×{e.hidden_size} · "
                                 f"{run.param_count:,} parameters · {run.task_title}")
        self.device_label.setText(f"device {run.device}")

    def show_divergence(self, record: StepRecord) -> None:
        """Say what a diverged step did and how to go on (kept until another message)."""
        self.showMessage(divergence_message(record))

    def set_progress(self, step: int, loss: float, rate: float) -> None:
        self.step_label.setText(f"step {step:,}")
        self.loss_label.setText("loss –" if not math.isfinite(loss) else f"loss {loss:.4g}")
        self.rate_label.setText(f"{rate:,.0f} steps/s" if rate >= 1 else f"{rate:.2f} steps/s" if rate else "– steps/s")


def divergence_message(record: StepRecord) -> str:
    """What happened at a diverged step (see core.training.rollback) and what the user can do."""
    what = f"{DIVERGED} {record.step:,}: the loss or gradient became infinite or NaN, so the update was not applied"
    if record.restored_step is None:
        return (f"{what}, and even the first weights fail. Change the experiment (e.g. a smaller spectral radius, "
                "learning rate or sequence length) and Apply.")
    return (f"{what} and the weights went back to those of step {record.restored_step:,}, the last with a sane "
            "loss. Lower the learning rate or set a clip norm in the Experiment dock and Apply to continue from "
            "there, or Reset to start over.")
