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
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow, QMessageBox, QWidget

from app.export.dialog import ExportActions
from app.panels import COLUMN_WIDTHS, LAYOUT, PANELS, Panel
from app.panels.series import RateMeter
from app.theme import Theme, apply_theme, get_theme
from app.training.controller import TrainingController
from app.training.engine import live_changes, probe_records, retune
from app.training.messages import Failure, JobResult, RunInfo
from app.window.experiment_form import ExperimentForm
from app.window.help import HelpDialog
from app.window.interventions import Interventions
from app.window.menus import build_menus
from app.window.open_data import OpenActions
from app.window.schedule import InstrumentSchedule
from app.window.sessions import SessionManager
from app.window.status import DIVERGED, StatusBar
from app.window.transport import TransportBar
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

    def __init__(self, preset: str = DEFAULT_PRESET, theme: str = "light",
                 make_trainer=None, autostart: bool = True, experiment: Any = None):
        """``experiment``, when given, replaces the preset's experiment at start."""
        super().__init__()
        self.theme: Theme = get_theme(theme)
        apply_theme(self.theme)
        self.setWindowTitle("RNN Explorer")
        self.setObjectName("main-window")
        self.resize(1600, 900)
        self.setDockNestingEnabled(True)
        self.preset_name = preset
        self.initial_experiment = experiment
        self.make_trainer = make_trainer
        self.autostart = autostart
        self.controller: TrainingController | None = None
        self.run_info: RunInfo | None = None
        self.last_step: StepRecord | None = None
        self.state = "starting"
        self.rate = RateMeter()
        self.schedule = InstrumentSchedule()
        self._painted = False
        self.error_box: QMessageBox | None = None  # the last unexpected error shown

        self.transport = TransportBar(self)
        self.transport.set_theme(self.theme)
        self.addToolBar(Qt.TopToolBarArea, self.transport)
        self.addActions(self.transport.time_actions)
        self.form = ExperimentForm(self.theme)
        self.experiment_dock = self._dock("experiment", "Experiment", self.form)
        self.addDockWidget(Qt.LeftDockWidgetArea, self.experiment_dock)
        self.panels: dict[str, Panel] = {cls.name: cls(self.theme) for cls in PANELS}
        self.docks: dict[str, QDockWidget] = {n: self._dock(n, p.title, p) for n, p in self.panels.items()}
        self.arrange_panels()
        self.status = StatusBar(self.theme)
        self.setStatusBar(self.status)
        self._build_menus()
        self.exports = ExportActions(self)  # File > Export, and every panel's right-click menu
        self.sessions = SessionManager(self)  # File > Open/Save/Recent sessions, autosave, recovery
        self.opened_model: str | None = None  # the model file the run was built from, if any
        self.open_files = OpenActions(self)  # File > Open Data/Open Model/Export Model, dropped files
        self.interventions = Interventions(self)  # the What if dock, and the panels' right-click edits

        self.transport.run_toggled.connect(self.toggle_run)
        self.transport.step_requested.connect(self.step)
        self.transport.reset_requested.connect(self.reset)
        self.transport.time_changed.connect(self.set_time_cursor)
        self.transport.speed_changed.connect(lambda v: self.controller and self.controller.set_speed(v))
        self.form.applied.connect(self.apply_experiment)
        self.form.retuned.connect(self.retune)
        self.form.preset_chosen.connect(lambda p: setattr(self, "preset_name", p.name))
        self.frame_timer = QTimer(self)
        self.frame_timer.setInterval(FRAME_MS)
        self.frame_timer.timeout.connect(self.draw_frame)

    # -- assembly ---------------------------------------------------------------------------------
    def _dock(self, name: str, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{name}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                         | QDockWidget.DockWidgetClosable)
        return dock

    def arrange_panels(self) -> None:
        """Put every panel dock in its default place (``app.panels.LAYOUT``)."""
        columns = [[n for n, _ in column if n in self.docks] for column in LAYOUT]
        columns = [c for c in columns if c]
        for dock in self.docks.values():
            dock.setFloating(False)
            dock.show()
        tops = [c[0] for c in columns]
        for i, name in enumerate(tops):  # first the columns, side by side ...
            if i == 0:
                self.addDockWidget(Qt.RightDockWidgetArea, self.docks[name])
            else:
                self.splitDockWidget(self.docks[tops[i - 1]], self.docks[name], Qt.Horizontal)
        for column in columns:  # ... then each column's panels, top to bottom
            for above, below in zip(column, column[1:], strict=False):
                self.splitDockWidget(self.docks[above], self.docks[below], Qt.Vertical)
        placed = [n for c in columns for n in c]
        for name, dock in self.docks.items():
            if name not in placed and placed:
                self.tabifyDockWidget(self.docks[placed[-1]], dock)
        if placed:
            self.docks[placed[-1]].raise_()  # the laid-out panel stays in front of panels tabbed onto it
        self.size_docks()

    def size_docks(self) -> None:
        """Default proportions: experiment dock narrow, panel columns and rows per LAYOUT."""
        width = max(self.width(), 800)
        form_width = min(340, width // 5)
        self.resizeDocks([self.experiment_dock], [form_width], Qt.Horizontal)
        tops = [self.docks[col[0][0]] for col in LAYOUT if col and col[0][0] in self.docks]
        total = sum(COLUMN_WIDTHS[: len(tops)])
        rest = width - form_width
        self.resizeDocks(tops, [rest * w // total for w in COLUMN_WIDTHS[: len(tops)]], Qt.Horizontal)
        height = max(self.height() - 120, 400)
        for column in LAYOUT:
            docks = [(self.docks[n], h) for n, h in column if n in self.docks]
            weight = sum(h for _, h in docks) or 1
            self.resizeDocks([d for d, _ in docks], [height * h // weight for _, h in docks], Qt.Vertical)

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
            if self.autostart:
                QTimer.singleShot(0, self.start)

    def start(self) -> None:
        """Load the presets, start the training process and build the first experiment."""
        if self.controller is not None:
            return
        self.load_presets()
        self.controller = TrainingController(self.make_trainer, parent=self)
        self.controller.built.connect(self._on_built)
        self.controller.records_ready.connect(self._on_records)
        self.controller.state_changed.connect(self._on_state)
        self.controller.failed.connect(self._on_failed)
        self.controller.set_speed(float(self.transport.speed.currentData()))
        for panel in self.panels.values():  # e.g. decoding asks the training process itself
            panel.connect_engine(self.controller)
        experiment = self.initial_experiment
        if experiment is None:
            experiment = self._preset_experiment()
        self.form.set_experiment(experiment)
        self.apply_experiment(experiment)
        self.frame_timer.start()

    def _preset_experiment(self) -> Any:
        """The experiment of the chosen preset (the defaults, reported, if it cannot be read)."""
        preset = self.form.presets.get(self.preset_name)
        if preset is None:
            try:
                preset = load_preset(self.preset_name)
            except UserError as err:
                self.status.showMessage(str(err), 15000)
                return Experiment()
        return preset.experiment

    def load_presets(self) -> None:
        try:
            presets = list_presets()
        except UserError as err:  # a broken preset file must not keep the window from starting
            self.status.showMessage(str(err), 15000)
            return
        self.form.set_presets(presets, current=self.preset_name)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
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
        if self.controller is None:
            return
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
            self.controller.step(count, self.needed_instruments())

    def toggle_run(self) -> None:
        if self.controller is not None:
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

    # -- data from the worker ------------------------------------------------------------------------
    def _on_built(self, info: RunInfo) -> None:
        self.run_info = info
        self.last_step = None
        self.rate.clear()
        self.schedule.reset()
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
            self.interventions.take(record)
            probe = record.probe if isinstance(record, StepRecord) else record
            if isinstance(probe, ProbeRecord) and probe.labels != self.transport.labels:
                self.transport.set_labels(probe.labels)
            if isinstance(record, StepRecord):
                self.last_step = record
                self.rate.mark(record.step)
                self.form.note_step(record)
                if record.diverged:  # from the record, not the state change: that may come first
                    self.status.show_divergence(record)

    def _on_state(self, state: str) -> None:
        self.state = state
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
        from core.logs import LOG_FILE, data_dir

        if self.error_box is not None:
            self.error_box.close()
            self.error_box.deleteLater()
        box = QMessageBox(QMessageBox.Warning, "Something went wrong",
                          f"{failure.message}\n\nRNN Explorer keeps the model: you can go on training, "
                          f"change the experiment or save the session. The details are also in the log file, "
                          f"{data_dir() / LOG_FILE}.", QMessageBox.Ok, self)
        box.setObjectName("error-box")
        box.setDetailedText(failure.details or "")
        box.setModal(False)
        box.show()
        self.error_box = box
        return box

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
        path, _ = QFileDialog.getSaveFileName(self, "Export Window Image", "rnn-explorer.png", "PNG (*.png)")
        if path:
            self.grab().save(path)

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
