"""The main window: assembles the experiment dock, transport bar, panels, menus and status bar.

It holds no numerics and no model. Data flow: the training process (app.training.loop, through
app.training.controller) sends records -> ``_on_records`` hands each to every panel (cheap) -> the
frame timer (~30 Hz) redraws panels that are on screen and asks the training process for
the instruments those panels will show next.

The training process (and with it torch) starts only after the window's first paint, so
the window appears before the engine is loaded.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMessageBox, QWidget

from app.export.dialog import ExportActions
from app.panels import PANELS, Panel
from app.panels.series import RateMeter
from app.theme import Theme, apply_theme, get_theme
from app.training.controller import TrainingController
from app.training.engine import live_changes, probe_records, retune
from app.training.messages import Failure, JobResult, RunInfo
from app.window import prefs
from app.window.experiment_form import ExperimentForm
from app.window.help import HelpDialog
from app.window.interventions import Interventions
from app.window.layouts import PanelLayout
from app.window.menus import build_menus, error_box, export_window_image
from app.window.open_data import OpenActions
from app.window.schedule import CatchUp, InstrumentSchedule
from app.window.sessions import SessionManager
from app.window.status import DIVERGED, StatusBar
from app.window.transport import TransportBar
from app.window.undo import DiscardGuard
from app.window.wheel import guard_wheel
from core.config import Experiment
from core.errors import UserError
from core.presets import DEFAULT_PRESET, list_presets, load_preset
from core.records import ProbeRecord, StepRecord

log = logging.getLogger("rnn_explorer.app")
FRAME_MS = 33  # redraw at most ~30 times a second


class MainWindow(QMainWindow):
    first_painted = Signal()
    frame_drawn = Signal()  # after each redraw tick (tests and benchmarks wait on it)
    run_built = Signal(object)  # RunInfo, after the panels were reset for it

    def __init__(self, preset: str | None = None, theme: str | None = None,
                 make_trainer=None, autostart: bool = True, experiment: Any = None,
                 session: str | None = None, engine: Any = None):
        """``experiment``, when given, replaces the preset's experiment at start; ``session``
        (a .rnnx path) is opened instead of either. ``engine``: a training process started
        before the window (app.training.child.spawn of app.training.loop.training_loop()),
        taken over instead of starting one. With ``autostart`` the training process
        starts and builds the first model at once, while the window is made and painted, and
        the window remembers its size, docks, theme and preset (app.window.prefs): a preset
        or theme not given is the one last used."""
        super().__init__()
        self.remembers = autostart  # the interactive app (not an offscreen window of shot or export)
        preset = preset or (prefs.remembered("preset") if autostart else None) or DEFAULT_PRESET
        theme = theme or (prefs.remembered("theme") if autostart else None) or "light"
        self.preset_name = preset
        self.initial_experiment = experiment
        self.initial_session = session
        self.make_trainer = make_trainer
        self.autostart = autostart
        self._engine = engine
        self.controller: TrainingController | None = None
        self._notice = ""  # a problem met before the status bar existed
        if autostart:  # first: torch loads and the model builds in the other process meanwhile
            self._spawn_engine()
        self.theme: Theme = get_theme(theme)
        apply_theme(self.theme)
        self.setWindowTitle("RNN Explorer")
        self.setObjectName("main-window")
        self.resize(1600, 900)
        self.setDockNestingEnabled(True)
        self.run_info: RunInfo | None = None
        self.last_step: StepRecord | None = None
        self.state = "starting"
        self.rate = RateMeter()
        self.schedule = InstrumentSchedule()
        self.catch_up = CatchUp()  # once stopped, every visible panel's instruments for the last step
        self.engine_busy = False  # steps or a build were asked for and have not ended yet
        self._painted = False
        self.error_box: QMessageBox | None = None  # the last unexpected error shown

        self.transport = TransportBar(self)
        self.transport.set_theme(self.theme)
        self.addToolBar(Qt.TopToolBarArea, self.transport)
        self.addActions(self.transport.time_actions)
        self.form = ExperimentForm(self.theme)
        self.experiment_dock = self._dock("experiment", "Experiment", self.form)
        self.addDockWidget(Qt.LeftDockWidgetArea, self.experiment_dock)
        toggle = self.experiment_dock.toggleViewAction()  # one click gives a laptop screen to the panels
        toggle.setToolTip("Show or hide the Experiment dock (F2)")
        toggle.setShortcut("F2")
        self.transport.insertAction(self.transport.actions()[0], toggle)
        self.transport.insertSeparator(self.transport.actions()[1])
        self.panels: dict[str, Panel] = {cls.name: cls(self.theme) for cls in PANELS}
        self.docks: dict[str, QDockWidget] = {n: self._dock(n, p.title, p) for n, p in self.panels.items()}
        self.status = StatusBar(self.theme)
        self.setStatusBar(self.status)
        self.layout_manager = PanelLayout(self)
        self.arrange_panels()
        self._build_menus()
        self.exports = ExportActions(self)  # File > Export, and every panel's right-click menu
        self.sessions = SessionManager(self)  # File > Open/Save/Recent sessions, autosave, recovery
        self.opened_model: str | None = None  # the model file the run was built from, if any
        self.open_files = OpenActions(self)  # File > Open Data/Open Model/Export Model, dropped files
        self.interventions = Interventions(self)  # the What if dock, and the panels' right-click edits
        self.discard_guard = DiscardGuard(self)  # a replaced trained run can come back (Undo)
        self.trained_seconds = 0.0  # training steps' time since the run was built or opened
        guard_wheel(self)  # scrolling over a field must not change it

        self.transport.run_toggled.connect(self.toggle_run)
        self.transport.step_requested.connect(self.step)
        self.transport.reset_requested.connect(self.reset)
        self.transport.time_changed.connect(self.set_time_cursor)
        self.transport.speed_changed.connect(lambda v: self.controller and self.controller.set_speed(v))
        self.form.applied.connect(self.apply_experiment)
        self.form.retuned.connect(self.retune)
        self.form.preset_chosen.connect(self._preset_chosen)
        self.frame_timer = QTimer(self)
        self.frame_timer.setInterval(FRAME_MS)
        self.frame_timer.timeout.connect(self.draw_frame)
        if self.controller is not None:
            self._connect_engine()
        if self.remembers:
            prefs.restore_window(self)
        self.layout_manager.fit_tabs()  # the docks added since the arrangement (What if) too

    def _preset_chosen(self, preset: Any) -> None:
        self.preset_name = preset.name
        if self.remembers:
            prefs.remember("preset", preset.name)

    # -- assembly ---------------------------------------------------------------------------------
    def _dock(self, name: str, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{name}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                         | QDockWidget.DockWidgetClosable)
        return dock

    def arrange_panels(self) -> None:
        """Put every panel dock in its default place for the window's size (View > Reset Layout)."""
        self.layout_manager.arrange()

    def size_docks(self) -> None:
        """Default proportions of the docks (app.window.layouts)."""
        self.layout_manager.size_docks()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        self.layout_manager.resized()  # a size that stacks more or fewer panels arranges them again

    def _build_menus(self) -> None:
        self._dialogs: dict[str, HelpDialog] = {}
        self.menus, self.theme_actions = build_menus(self)

    def show_help(self, title: str, html: str) -> HelpDialog:
        dialog = self._dialogs.get(title)
        if dialog is None:
            dialog = self._dialogs[title] = HelpDialog(title, html, self)
        dialog.show()
        dialog.raise_()
        return dialog

    # -- start-up and shutdown ------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_painted.emit()

    def start(self) -> None:
        """Start the training process and build the first experiment (a no-op once started)."""
        if self.controller is not None:
            return
        self._spawn_engine()
        self._connect_engine()

    def _spawn_engine(self) -> None:
        """Start the training process and send it the first experiment to build (nothing
        here waits for it: the replies are handled once the event loop runs)."""
        engine, self._engine = self._engine, None  # only the first process is taken over
        self.controller = TrainingController(self.make_trainer, parent=self, spawned=engine)
        if self.initial_session is None:
            self._first_experiment = self._preset_experiment()
            self.controller.build(self._first_experiment)

    def _connect_engine(self) -> None:
        """Hand the training process's replies to the window and the panels."""
        self.load_presets()
        self.controller.built.connect(self._on_built)
        self.controller.records_ready.connect(self._on_records)
        self.controller.state_changed.connect(self._on_state)
        self.controller.failed.connect(self._on_failed)
        self.controller.set_speed(float(self.transport.speed.currentData()))
        for panel in self.panels.values():  # e.g. decoding asks the training process itself
            panel.connect_engine(self.controller)
        if self._notice:
            self.status.showMessage(self._notice, 15000)
        if self.initial_session is not None:
            path, self.initial_session = self.initial_session, None
            QTimer.singleShot(0, lambda: self.sessions.open(path))
        else:
            self.form.set_experiment(self._first_experiment)
            self.status.set_state("building")
            self.status.showMessage("Building the model…", 3000)
        self.frame_timer.start()

    def _preset_experiment(self) -> Any:
        """The experiment to start with: the one given, else the chosen preset's (the
        defaults, reported, if it cannot be read)."""
        if self.initial_experiment is not None:
            return self.initial_experiment
        try:
            return load_preset(self.preset_name).experiment
        except UserError as err:
            self._notice = str(err)
            return Experiment()

    def load_presets(self) -> None:
        try:
            presets = list_presets()
        except UserError as err:  # a broken preset file must not keep the window from starting
            self._notice = str(err)
            return
        self.form.set_presets(presets, current=self.preset_name)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        if self.remembers:
            prefs.save_window(self)  # before hiding: hidden docks would be saved as closed
        self.hide()  # gone at once, even if a long step must finish before the thread ends
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the frame timer and the training process (within 2 s, even mid-step)."""
        self.frame_timer.stop()
        for panel in self.panels.values():  # e.g. compare's process
            panel.shutdown()
        if self.controller is not None:
            for signal in (self.controller.built, self.controller.records_ready,
                           self.controller.state_changed, self.controller.failed):
                signal.disconnect()
            self.controller.shutdown(timeout=2.0)
            self.controller = None
        for dialog in self._dialogs.values():
            dialog.close()
        if self.error_box is not None:
            self.error_box.close()

    # -- commands ---------------------------------------------------------------------------------
    def apply_experiment(self, experiment: Any) -> None:
        """Build ``experiment``, replacing the run (kept for Undo when it trained a while)."""
        if self.controller is None:
            return
        self.discard_guard.before_rebuild()
        self.engine_busy = True
        self.status.set_state("building")
        self.status.showMessage("Building the model…", 3000)
        self.controller.build(experiment)

    def reset(self) -> None:
        self.apply_experiment(self.form.experiment)

    def retune(self, experiment: Any) -> None:
        """Go on training with a new learning rate or clip norm, same weights (e.g. after a
        divergence); if anything else differs from the run, or there is none, build instead."""
        info = self.run_info
        changes = None if info is None else live_changes(info.experiment, experiment)
        if changes is None or self.controller is None:
            self.apply_experiment(experiment)
            return
        self.controller.call(partial(retune, changes=changes), self._retuned)

    def step(self, count: int = 1) -> None:
        if self.controller is not None:
            self.engine_busy = True
            self.controller.step(count, self.needed_instruments())

    def toggle_run(self) -> None:
        if self.controller is not None:
            self.engine_busy = True  # until the state it leads to (running, then paused) comes back
            self.controller.toggle()

    def set_time_cursor(self, t: int) -> None:
        for panel in self.panels.values():
            panel.set_time_cursor(t)

    def set_theme(self, name: str) -> None:
        self.theme = get_theme(name)
        apply_theme(self.theme)
        for panel in self.panels.values():
            panel.apply_theme(self.theme)
            panel.refresh()
        self.form.set_theme(self.theme)
        self.transport.set_theme(self.theme)
        self.interventions.apply_theme(self.theme)
        self.theme_actions[name].setChecked(True)
        if self.remembers:
            prefs.remember("theme", name)

    # -- data from the worker ------------------------------------------------------------------------
    def _on_built(self, info: RunInfo) -> None:
        self.run_info = info
        self.last_step = None
        self.rate.clear()
        self.schedule.reset()
        self.catch_up.reset()
        self.trained_seconds = 0.0
        for panel in self.panels.values():
            panel.reset(info)
        self.form.note_run()
        self.status.set_run(info)
        self.status.set_progress(info.step, float("nan"), 0.0)
        self.setWindowTitle(f"RNN Explorer · {info.task_title} · {info.kind}")
        self.run_built.emit(info)

    def _on_records(self, records: list[Any]) -> None:
        for record in records:
            for panel in self.panels.values():
                panel.update_record(record)
            self.catch_up.note(record)
            self.interventions.take(record)
            probe = record.probe if isinstance(record, StepRecord) else record
            if isinstance(probe, ProbeRecord) and probe.labels != self.transport.labels:
                self.transport.set_labels(probe.labels)
            if isinstance(record, StepRecord):
                if self.run_info is not None and record.step > self.run_info.step:  # not a session's past
                    self.trained_seconds += record.seconds
                self.last_step = record
                self.rate.mark(record.step)
                self.form.note_step(record)
                if record.diverged:  # from the record, not the state change: that may come first
                    self.status.show_divergence(record)

    def _catch_up(self) -> None:
        """Stopped (paused, a step done, a run built): ask for every instrument a visible
        panel shows that is older than the last step, so all panels show the same step.
        Each (instrument, step) is asked for once; a panel shown later (a tab brought to
        the front) is caught up at the next frame."""
        if self.controller is None or self.run_info is None or self.engine_busy or self.state == "running":
            return
        step = self.last_step.step if self.last_step is not None else self.run_info.step
        stale = self.catch_up.stale(self.needed_instruments(), step)
        if stale:
            self.controller.measure(stale)

    def _on_state(self, state: str) -> None:
        self.state = state
        self.engine_busy = state == "running"
        self.status.set_state(state)
        self.transport.set_running(state == "running")
        if state == "running" and self.status.currentMessage().startswith(DIVERGED):
            self.status.clearMessage()

    def _retuned(self, result: JobResult) -> None:
        if self.controller is None:
            return
        if result.failure is not None:
            self._on_failed(result.failure)
            return
        before = self.run_info.experiment.probe if self.run_info is not None else ""
        info = self.run_info = result.value
        if info.experiment.probe != before:  # typed input: the same weights, shown on it
            self.controller.call(probe_records, self._on_probe_records)
            for panel in self.panels.values():
                panel.run = info
            self.status.showMessage("Showing the model on your input" if info.experiment.probe else
                                    "Showing the task's own probe again", 8000)
            return
        for panel in self.panels.values():
            panel.run = info  # the same run with new settings (e.g. the clip line): its data stays
            panel.refresh(force=True)
        self.status.set_run(info)
        e = info.experiment
        self.status.showMessage(f"Learning rate {e.lr:g}, clip norm {e.clip:g}: training goes on from step "
                                f"{info.step:,} with the same weights (Reset starts over).", 10000)

    def _on_probe_records(self, result: JobResult) -> None:
        if result.failure is not None:
            self._on_failed(result.failure)
        elif self.controller is not None:
            self._on_records(result.value)

    def _on_failed(self, failure: Failure) -> None:
        self.form.flag(failure.field, failure.message)
        self.status.showMessage(failure.message, 15000)
        self.status.set_state(self.state)
        if failure.details:  # a bug, not bad input: say so, with what a report of it needs
            self.show_error(failure)

    def show_error(self, failure: Failure) -> QMessageBox:
        """A non-modal box (nothing waits for it) with the message and, under Details, the traceback."""
        if self.error_box is not None:
            self.error_box.close()
            self.error_box.deleteLater()
        self.error_box = error_box(self, failure)
        return self.error_box

    # -- drawing ------------------------------------------------------------------------------------------
    def visible_panels(self) -> list[Panel]:
        return [p for p in self.panels.values() if p.isVisible() and not p.visibleRegion().isEmpty()]

    def needed_instruments(self) -> set[str]:
        return set().union(*(p.instruments for p in self.visible_panels()))

    def draw_frame(self) -> None:
        """Redraw the panels on screen that have new data (Qt paints them when this returns);
        while training runs, ask for the instruments they will show next."""
        if self.controller is not None and self.state == "running":
            due = self.schedule.due(self.needed_instruments())
            if due:
                self.controller.request(due)
        else:
            self._catch_up()
        for panel in self.visible_panels():
            panel.refresh()
        if self.last_step is not None:
            self.status.set_progress(self.last_step.step, self.last_step.loss, self.rate.rate())
        self.frame_drawn.emit()

    def refresh_all(self) -> None:
        """Redraw every panel now, shown or not (screenshots, export)."""
        for panel in self.panels.values():
            panel.refresh(force=True)

    def export_window_image(self) -> None:
        export_window_image(self)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        if event.mimeData().hasUrls() and len(event.mimeData().urls()) == 1:
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        """A data file, a model or a session dropped on the window opens it (app.window.open_data)."""
        urls = event.mimeData().urls()
        if len(urls) == 1 and urls[0].isLocalFile():
            event.acceptProposedAction()
            self.open_files.drop(urls[0].toLocalFile())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        return QSize(1600, 900)
