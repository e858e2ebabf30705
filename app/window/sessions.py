"""Sessions in the window: File > Open/Save/Save As/Recent, autosave and crash recovery.

The trainer lives in the training process (app.training.loop), so both directions go through it:

* Open: the file's header is checked here at once (a damaged file is refused with a dialog
  before anything stops), then the training process is asked to build from an
  ``messages.SessionFile`` instead of an experiment (``engine.build_trainer`` opens it there,
  after halting the run); if the file turns out damaged, it reports so and keeps the
  current trainer. On success it sends the saved history as plain StepRecords, and the
  panels show it as if they had watched it.
* Save: the trainer's state is captured in the training process between two steps
  (``TrainingController.call`` with ``engine.capture``: CPU copies, milliseconds) and written
  here (explicit saves) or on a writer thread (autosaves, so a big history does not stall
  the window). Writes are atomic.

Autosave runs on a QTimer (``AUTOSAVE_MINUTES``; settings key ``autosave/minutes``; 0 turns
it off) and skips when nothing changed. At start, an autosave newer than the last clean
exit (the previous run crashed) is offered back in a non-modal box; closing the window
marks a clean exit. Recent files live in QSettings (an INI file in the data directory),
pruned of files that no longer exist.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox

from app.settings import folder, remember_folder, settings  # settings: tests import it from here
from app.training.engine import capture
from app.training.messages import JobResult, SessionFile
from core.errors import UserError

log = logging.getLogger("rnn_explorer.app")
AUTOSAVE_MINUTES = 5.0
MAX_RECENT = 8
FILTER = "RNN Explorer sessions (*.rnnx)"


class SessionManager(QObject):
    """Save/Open/Recent/autosave/recovery for one MainWindow (``window.sessions``)."""

    saved = Signal(str)  # path, after a save or autosave was written
    opened = Signal(str)  # path, after the opened session's run was built and shown
    failed = Signal(str)  # a one-line message for the user (also shown in a dialog)
    recovery_offered = Signal(str)  # path of the autosave offered back

    def __init__(self, window: Any, autosave_minutes: float | None = None):
        super().__init__(window)
        self.window = window
        self.path: Path | None = None  # where Save writes (None: Save asks, as Save As)
        self._pending_open: Path | None = None
        self._pending_transient = False
        self._hooked: Any = None  # the controller whose failures and job results we watch
        self._writer: threading.Thread | None = None
        self._autosaved_step: int | None = None
        self._active = False  # a worker was started: this is the interactive app, not shot/export
        self.recovery_box: QMessageBox | None = None
        window.run_built.connect(self._on_built)
        window.installEventFilter(self)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        minutes = autosave_minutes if autosave_minutes is not None else settings().value(
            "autosave/minutes", AUTOSAVE_MINUTES, type=float)
        self.set_autosave_interval(round(float(minutes) * 60_000))
        self._build_menu(window.menus["file"])

    # -- menu -----------------------------------------------------------------------------------
    def _build_menu(self, file_menu: QMenu) -> None:
        first = file_menu.actions()[0] if file_menu.actions() else None
        self.open_action = self._action("Open Session…", QKeySequence.Open, self.open_dialog)
        self.recent_menu = QMenu("Open Recent", file_menu)
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self.save_action = self._action("Save Session", QKeySequence.Save, self.save)
        self.save_as_action = self._action("Save Session As…", QKeySequence.SaveAs, self.save_as)
        file_menu.insertAction(first, self.open_action)
        file_menu.insertMenu(first, self.recent_menu)
        file_menu.insertSeparator(first)
        file_menu.insertActions(first, [self.save_action, self.save_as_action])
        file_menu.insertSeparator(first)
        self._fill_recent()

    def _action(self, text: str, keys: Any, slot: Any) -> QAction:
        action = QAction(text, self.window)
        action.setShortcut(QKeySequence(keys))
        action.triggered.connect(lambda _=False: slot())
        return action

    def recent(self) -> list[str]:
        """Recent session files, newest first, pruned of files that no longer exist."""
        store = settings()
        files = store.value("sessions/recent", [], type=list) or []
        kept = [f for f in dict.fromkeys(str(f) for f in files) if Path(f).is_file()][:MAX_RECENT]
        if kept != files:
            store.setValue("sessions/recent", kept)
        return kept

    def _remember(self, path: Path) -> None:
        store = settings()
        files = [str(path)] + [f for f in self.recent() if f != str(path)]
        store.setValue("sessions/recent", files[:MAX_RECENT])
        store.sync()
        self._fill_recent()  # a disabled menu never shows, so it cannot refill itself on show

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.recent():
            action = self.recent_menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.triggered.connect(lambda _=False, p=path: self.open(p))
        self.recent_menu.setEnabled(bool(self.recent_menu.actions()))

    # -- open -----------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open Session", folder("sessions"), FILTER)
        if path:
            remember_folder("sessions", path)
            self.open(path)

    def open(self, path: str | Path, transient: bool = False) -> bool:
        """Open ``path``: stop the run, build its trainer in the worker, show its history.

        A damaged file is refused with a one-line dialog and the current run is kept. Returns
        False when refused at once; a failure found later (in the tensors) also emits ``failed``.
        A ``transient`` file (a run kept for Undo) is neither remembered nor saved back to."""
        from core.session.format import read_session_info

        path = Path(path)
        try:
            read_session_info(path)  # header, format and schema: quick, no trainer built
        except (UserError, OSError) as err:
            self._fail(str(err), "Cannot open the session")
            return False
        window = self.window
        if window.controller is None:
            window.start()
        controller = self._controller()
        controller.pause()  # the worker halts before building, between two steps
        if not transient:
            window.discard_guard.before_rebuild()  # the run it replaces can come back (Undo)
        self._pending_open = path
        self._pending_transient = transient
        window.status.showMessage(f"Opening {path.name}…", 3000)
        controller.build(SessionFile(path))
        return True

    @Slot(object)
    def _on_built(self, info: Any) -> None:
        window = self.window
        if window.controller is not None and not self._active:
            self._active = True
            self.offer_recovery()  # only in the interactive app, never in shot/export windows
        if self._active and self.autosave_timer.interval() > 0:
            self.autosave_timer.start()
        path, self._pending_open = self._pending_open, None
        if path is None:  # a new or reset experiment: Save must ask where, not overwrite the old file
            self.path = None
            window.setWindowFilePath("")
            return
        window.form.set_experiment(info.experiment)
        self._restore_histories(path)
        window.refresh_all()
        self._autosaved_step = info.step
        if self._pending_transient:  # a run kept for Undo: back, but not a file of the user's
            self.path = None
            window.setWindowFilePath("")
            window.status.showMessage(f"The previous run is back, at step {info.step:,}.", 5000)
        else:
            if path != _autosave_file():
                self.path = path
                self._remember(path)
                window.setWindowFilePath(str(path))
            window.status.showMessage(f"Opened {path.name} at step {info.step}", 5000)
        self._pending_transient = False
        self.opened.emit(str(path))

    def _on_worker_failed(self, failure: Any) -> None:
        if self._pending_open is not None:
            self._pending_open = None
            self._fail(failure.message, "Cannot open the session")

    # -- save -----------------------------------------------------------------------------------
    def save(self) -> None:
        """Save to the current file, or ask where (Save As) when there is none."""
        if self.path is None:
            self.save_as()
        else:
            self.save_to(self.path)

    def save_as(self) -> None:
        suggested = str(Path(folder("sessions")) / (self.path.name if self.path else "session.rnnx"))
        path, _ = QFileDialog.getSaveFileName(self.window, "Save Session", suggested, FILTER)
        if path:
            remember_folder("sessions", path)
            self.save_to(path if path.endswith(".rnnx") else path + ".rnnx")

    def save_to(self, path: str | Path, autosave: bool = False, mode: str = "") -> bool:
        """Capture the trainer between two steps (training process) and write ``path`` atomically.

        ``mode``: "save" (the default: remembered, the Save target, ``saved`` emitted),
        "autosave" (written on a thread) or "undo" (a run a rebuild replaces, written on a
        thread, nothing remembered). Returns False when there is nothing to save yet."""
        mode = mode or ("autosave" if autosave else "save")
        window = self.window
        if window.controller is None or window.run_info is None or not window.controller.is_alive:
            if mode == "save":
                self._fail("Nothing to save yet: the experiment is still being built.", "Cannot save the session")
            return False
        self._controller().call(capture, partial(self._captured, Path(path), mode))
        return True

    def _controller(self) -> Any:
        """The window's training controller, with our handlers connected once."""
        controller = self.window.controller
        if self._hooked is not controller:
            controller.failed.connect(self._on_worker_failed)
            self._hooked = controller
        return controller

    def _captured(self, path: Path, mode: str, result: JobResult) -> None:
        """The trainer's state came back from the training process: write it."""
        if result.failure is not None:
            message = f"{path}: {result.failure.message}"
            if mode == "save":
                self._fail(message, "Cannot save the session")
            else:
                log.error("%s failed: %s", mode, message)
            return
        if mode == "autosave" and self.autosave_timer.interval() == 0:
            return  # autosave was turned off while the training process captured the state
        tensors, meta = result.value
        traces = self.panel_histories()  # the panels still show the captured run (replies come in order)
        if mode != "save":
            self.finish_writing()
            self._writer = threading.Thread(target=self._write_in_background, args=(path, tensors, meta, traces, mode),
                                            name=f"{mode}-writer", daemon=True)
            self._writer.start()
            return
        from core.session.format import write_session

        try:
            write_session(path, tensors, meta, traces)
        except UserError as err:
            self._fail(str(err), "Cannot save the session")
            return
        self.path = path
        self._remember(path)
        self.window.setWindowFilePath(str(path))
        self.window.status.showMessage(f"Saved {path.name} at step {meta['step_count']}", 5000)
        self.saved.emit(str(path))

    def finish_writing(self) -> None:
        """Wait for a background write (autosave, a kept run) to end."""
        if self._writer is not None and self._writer.is_alive():
            self._writer.join()

    def _write_in_background(self, path: Path, tensors: dict, meta: dict, traces: dict, mode: str) -> None:
        """Runs on the writer thread: compress and fsync without stalling the window."""
        from core.session.format import write_session

        try:
            write_session(path, tensors, meta, traces)
        except UserError as err:
            log.error("%s failed: %s", mode, err)
            return
        if mode == "autosave":
            self._autosaved_step = meta["step_count"]
            self.saved.emit(str(path))  # queued to the GUI thread

    # -- the panels' histories ------------------------------------------------------------------
    def panel_histories(self) -> dict[str, np.ndarray]:
        """Every panel's ``histories()``, named "<panel>.<name>" (a session's traces.npz)."""
        return {f"{name}.{key}": np.array(array) for name, panel in self.window.panels.items()
                for key, array in panel.histories().items()}

    def restore_panel_histories(self, traces: dict[str, np.ndarray]) -> list[str]:
        """Give each panel back its part of ``traces``; returns the problems (one line each)."""
        by_panel: dict[str, dict[str, np.ndarray]] = {}
        for full, array in traces.items():
            name, _, key = full.partition(".")
            by_panel.setdefault(name, {})[key] = array
        problems = []
        for name, arrays in by_panel.items():
            panel = self.window.panels.get(name)
            if panel is None:
                continue  # a panel this version does not have: its history is kept in the file only
            try:
                panel.restore_histories(arrays)
            except (ValueError, KeyError, IndexError) as err:
                problems.append(f"{panel.title}: {err}")
        return problems

    def _restore_histories(self, path: Path) -> None:
        from core.session.format import read_traces

        try:
            problems = self.restore_panel_histories(read_traces(path))
        except UserError as err:  # the model opened: only the drawn histories are lost
            problems = [str(err)]
        if problems:
            self.window.status.showMessage(f"Opened {path.name}, but not all of what the panels drew over "
                                           f"training: {'; '.join(problems)}", 15000)

    # -- autosave and recovery --------------------------------------------------------------------
    def set_autosave_interval(self, milliseconds: int) -> None:
        """Autosave every ``milliseconds`` (0 turns autosave off)."""
        self.autosave_timer.setInterval(max(int(milliseconds), 0))
        if milliseconds <= 0:
            self.autosave_timer.stop()
        elif self._active:
            self.autosave_timer.start()

    def autosave(self) -> bool:
        """Save to ``core.session.autosave_path()`` if the run moved since the last autosave."""
        step = self.window.last_step.step if self.window.last_step is not None else None
        busy = self._writer is not None and self._writer.is_alive()
        if step is None or step == self._autosaved_step or busy:
            return False
        return self.save_to(_autosave_file(), autosave=True)

    def offer_recovery(self) -> QMessageBox | None:
        """If the last run crashed after an autosave, offer it back (non-modal: never blocks)."""
        from core.session.autosave import find_recovery

        found = find_recovery()
        if found is None:
            return None
        box = QMessageBox(QMessageBox.Question, "Recover the last session?",
                          f"RNN Explorer did not close normally. Restore the autosaved session ({found})?",
                          QMessageBox.NoButton, self.window)
        restore = box.addButton("Restore", QMessageBox.AcceptRole)
        box.addButton("Discard", QMessageBox.DestructiveRole)
        box.setModal(False)
        box.buttonClicked.connect(lambda button: self._recovery_chosen(button is restore, found))
        box.show()
        self.recovery_box = box
        self.recovery_offered.emit(str(found))
        return box

    def _recovery_chosen(self, restore: bool, path: Path) -> None:
        from core.session.autosave import discard_autosave, mark_clean_exit

        self.recovery_box = None
        if restore:
            self.open(path)
            mark_clean_exit()  # offered once; the next autosave replaces the file
        else:
            self.finish_writing()  # an autosave being written would bring the file back
            discard_autosave()

    def shutdown(self) -> None:
        """Stop autosaving, let a write in progress finish, and record a clean exit."""
        from core.session.autosave import mark_clean_exit

        self.autosave_timer.stop()
        self.finish_writing()
        if self.recovery_box is not None:
            self.recovery_box.close()
        if not self._active:
            return  # an offscreen window (shot, export) says nothing about the app's last exit
        try:
            mark_clean_exit()
        except OSError as err:
            log.error("could not record a clean exit: %s", err)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        if watched is self.window and event.type() == QEvent.Close:
            self.shutdown()
        return False

    # -- helpers ----------------------------------------------------------------------------------
    def _fail(self, message: str, title: str) -> None:
        message = " ".join(str(message).split())
        self.window.status.showMessage(message, 15000)
        self.failed.emit(message)
        QMessageBox.warning(self.window, title, message)



def _autosave_file() -> Path:
    from core.session.autosave import autosave_path

    return autosave_path()
