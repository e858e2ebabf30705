"""Undo for a trained run thrown away: a new preset, Apply, Reset or Open replaces the run.

When the run has trained for more than a few seconds (UNDO_AFTER_SECONDS of training steps
since it was built or opened), it is saved before the new build replaces it, captured in
the training process between two steps, as any session is, histories included, to a file
of its own in the data directory. Once the new run is built the status bar offers "Undo"
for UNDO_SECONDS; Undo opens that file (the run continues exactly where it was, on the
preset it came from). Asking first would interrupt every preset change in a lecture;
undoing costs nothing until it is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject

UNDO_AFTER_SECONDS = 3.0  # training a rebuild may discard without an Undo (tests lower it)
UNDO_SECONDS = 12  # how long the status bar offers Undo


def undo_path() -> Path:
    """``<data dir>/undo/previous-run.rnnx`` (one: only the latest replaced run can come back)."""
    from core.logs import data_dir

    folder = data_dir() / "undo"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "previous-run.rnnx"


class DiscardGuard(QObject):
    """Keeps a trained run that a rebuild replaces, and offers it back (``window.discard_guard``)."""

    def __init__(self, window: Any):
        super().__init__(window)
        self.window = window
        self.kept: tuple[Path, int, str] | None = None  # (file, its step, its preset)
        self._offer = False
        window.run_built.connect(self._built)

    def before_rebuild(self) -> bool:
        """The run is about to be replaced: keep it when it trained for a while. True when kept."""
        w = self.window
        self._offer = False
        if w.controller is None or w.run_info is None or w.last_step is None:
            return False
        if w.trained_seconds < UNDO_AFTER_SECONDS:
            return False
        path = undo_path()
        if not w.sessions.save_to(path, mode="undo"):  # captured before the build, in command order
            return False
        self.kept = (path, w.last_step.step, w.preset_name)
        self._offer = True
        return True

    def _built(self, _info: Any) -> None:
        if not self._offer or self.kept is None:
            return
        self._offer = False
        _, step, _ = self.kept
        self.window.status.showMessage(f"The previous run (step {step:,}) was replaced; it is kept for a moment.",
                                       UNDO_SECONDS * 1000, action=("Undo", self.undo))

    def undo(self) -> bool:
        """Bring the replaced run back (as it was when replaced)."""
        if self.kept is None:
            return False
        path, _, preset = self.kept
        self.kept = None
        w = self.window
        w.sessions.finish_writing()  # the kept run may still be being written
        if not path.is_file():
            w.status.showMessage("The previous run could not be kept; it cannot come back.", 10000)
            return False
        w.preset_name = preset
        w.form.show_preset(preset)
        return w.sessions.open(path, transient=True)
