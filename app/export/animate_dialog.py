"""Export Animation… in the window: the dialog, and a run with a progress bar and Cancel.

Right-click a panel > Export Animation… (or File > Export > Export Animation…): choose the
format (GIF, MP4, APNG), the sweep (time steps t, training steps, beam expansions: those
the panel offers), frame rate, most frames, loop, size, theme and caption, then a file.
Frames are rendered on the GUI thread in slices of about 50 ms between which the window
keeps handling events (``AnimationRun``), so the progress bar moves and Cancel answers at
once; a cancelled or failed animation leaves no file (app.export.animation writes to a
temporary file that replaces the target only when complete).

While the live panel is swept (over t, over expansions) training is paused, so every frame
shows the same step, and resumed after. A replay of training steps draws on a fresh copy
of the panel fed from ``RecordLog``, the window's bounded memory of the run's records
(app.export.replay), so the live panel and training carry on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressDialog,
    QSpinBox,
    QWidget,
)

from app.export.animation import (
    DEFAULT_FPS,
    FPS_RANGE,
    FRAMES_RANGE,
    Animation,
    FrameSweep,
    StepReplay,
    Sweep,
    TimeSweep,
    probe_length,
    replay_copy,
    sweeps_of,
    write_animation,
)
from app.export.encoders import GIF_FPS_MAX
from app.export.figure import SIZE_PRESETS, SIZE_TITLES, Figure
from app.export.replay import RecordLog
from app.panels.base import Panel
from core.errors import UserError

FORMAT_TITLES = (("gif", "GIF (PowerPoint, Keynote, Google Slides)"), ("mp4", "MP4, H.264 (PowerPoint, Keynote)"),
                 ("apng", "APNG, lossless (browsers)"))
SWEEP_TITLES = {"t": "Time steps t of the probe", "steps": "Training steps (replayed)",
                "expansions": "Beam expansions"}
THEMES = (("slide", "Slide (white, large text and lines)"), ("light", "Light"), ("dark", "Dark"))
CUSTOM = "custom"
SLICE_S = 0.05  # render for this long, then let the window breathe


def offered(panel: Panel) -> tuple[str, ...]:
    """The sweeps the dialog offers for ``panel``: expansions only once there is a decode."""
    return tuple(k for k in sweeps_of(panel) if k != "expansions" or panel.frame_count() > 0)


class AnimationDialog(QDialog):
    """The choices of ``export --animate`` for one panel."""

    def __init__(self, panels: dict[str, Panel], current: str, figure: Figure, replay_note: str = "",
                 folder: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export Animation")
        self.panels, self.folder = panels, folder
        form = QFormLayout(self)
        self.panel = QComboBox()
        for name, panel in panels.items():
            if offered(panel):
                self.panel.addItem(panel.title, name)
        self.panel.setCurrentIndex(max(self.panel.findData(current), 0))
        self.format = QComboBox()
        for key, title in FORMAT_TITLES:
            self.format.addItem(title, key)
        self.over = QComboBox()
        self.fps = QDoubleSpinBox()
        self.fps.setRange(*FPS_RANGE)
        self.fps.setDecimals(1)
        self.fps.setSuffix(" frames/s")
        self.frames = QSpinBox()
        self.frames.setRange(*FRAMES_RANGE)
        self.frames.setValue(100)
        self.frames.setPrefix("at most ")
        self.frames.setSuffix(" frames")
        self.loop = QCheckBox("Loop forever")
        self.loop.setChecked(True)
        self.size = QComboBox()
        for key, (w, h) in SIZE_PRESETS.items():
            self.size.addItem(f"{SIZE_TITLES[key]} ({w}×{h})", key)
        self.size.addItem("Custom size", CUSTOM)
        self.width, self.height = QSpinBox(), QSpinBox()
        for spin, (lo, hi) in ((self.width, (320, 7680)), (self.height, (240, 4320))):
            spin.setRange(lo, hi)
            spin.setSuffix(" px")
        custom = QHBoxLayout()
        custom.addWidget(self.width)
        custom.addWidget(self.height)
        self.theme = QComboBox()
        for key, title in THEMES:
            self.theme.addItem(title, key)
        self.caption = QCheckBox("Caption: panel title, settings and the frame (t, step or expansion)")
        self.note = QLabel(replay_note)
        self.note.setWordWrap(True)
        self.note.setObjectName("animation-note")
        form.addRow("Panel", self.panel)
        form.addRow("Format", self.format)
        form.addRow("Over", self.over)
        form.addRow("", self.note)
        form.addRow("Speed", self.fps)
        form.addRow("Frames", self.frames)
        form.addRow("", self.loop)
        form.addRow("Size", self.size)
        form.addRow("", custom)
        form.addRow("Theme", self.theme)
        form.addRow("", self.caption)
        buttons = QDialogButtonBox(QDialogButtonBox.Cancel)
        self.save_button = buttons.addButton("Save…", QDialogButtonBox.AcceptRole)
        self.save_button.clicked.connect(lambda _=False: self.choose_file())
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.path: str | None = None
        self.panel.currentIndexChanged.connect(self._offer_sweeps)
        self.over.currentIndexChanged.connect(self._sweep_chosen)
        self.format.currentIndexChanged.connect(self._update)
        self.size.currentIndexChanged.connect(self._update)
        preset = next((k for k, v in SIZE_PRESETS.items() if v == figure.size), CUSTOM)
        self.size.setCurrentIndex(self.size.findData(preset))
        self.width.setValue(figure.size[0])
        self.height.setValue(figure.size[1])
        self.theme.setCurrentIndex(max(self.theme.findData(figure.theme), 0))
        self.caption.setChecked(figure.caption)
        self._offer_sweeps()

    def _offer_sweeps(self) -> None:
        self.over.blockSignals(True)
        self.over.clear()
        panel = self.current_panel
        for key in offered(panel) if panel is not None else ():
            self.over.addItem(SWEEP_TITLES[key], key)
        self.over.blockSignals(False)
        self._sweep_chosen()

    def _sweep_chosen(self) -> None:
        self.fps.setValue(DEFAULT_FPS.get(self.over.currentData(), 10.0))
        self._update()

    def _update(self) -> None:
        over, fmt = self.over.currentData(), self.format.currentData()
        self.fps.setMaximum(GIF_FPS_MAX if fmt == "gif" else FPS_RANGE[1])
        self.loop.setEnabled(fmt != "mp4")  # an MP4 loops where it is played
        self.note.setVisible(over == "steps")
        custom = self.size.currentData() == CUSTOM
        self.width.setVisible(custom)
        self.height.setVisible(custom)
        self.save_button.setEnabled(over is not None)

    @property
    def current_panel(self) -> Panel | None:
        name = self.panel.currentData()
        return self.panels[name] if name is not None else None

    def animation(self) -> Animation:
        fmt = self.format.currentData()
        return Animation(format=fmt, over=self.over.currentData(), fps=self.fps.value(),
                         frames_max=self.frames.value(), loop=self.loop.isChecked() and fmt != "mp4").validated()

    def figure(self) -> Figure:
        mode = self.size.currentData()
        size = (self.width.value(), self.height.value()) if mode == CUSTOM else SIZE_PRESETS[mode]
        return Figure(size=size, theme=self.theme.currentData(), caption=self.caption.isChecked()).validated()

    def choose_file(self) -> None:
        fmt = self.format.currentData()
        suggested = str(Path(self.folder) / f"{self.panel.currentData()}.{fmt}")
        path, _ = QFileDialog.getSaveFileName(self, "Export Animation", suggested, f"{fmt.upper()} (*.{fmt})")
        if path:
            self.path = path if Path(path).suffix.lower() == f".{fmt}" else f"{path}.{fmt}"
            self.accept()


class AnimationRun(QObject):
    """Drives ``frames`` (app.export.animation.write_animation) in slices with a progress
    dialog; ``finished`` carries the path written, or None (cancelled, or ``error`` says why)."""

    finished = Signal(object)
    progressed = Signal(int)  # frames written so far

    def __init__(self, frames: Iterator[int], total: int, path: Path, parent: QWidget):
        super().__init__(parent)
        self.frames: Iterator[int] | None = frames
        self.path, self.error, self.cancelled = Path(path), "", False
        self.progress = QProgressDialog(f"Writing {self.path.name}…", "Cancel", 0, total, parent)
        self.progress.setObjectName("animation-progress")
        self.progress.setWindowTitle("Export Animation")
        self.progress.setWindowModality(Qt.WindowModal)
        self.progress.setMinimumDuration(0)
        self.progress.setAutoClose(False)
        self.progress.setAutoReset(False)
        self.progress.canceled.connect(self.cancel)

    def start(self) -> None:
        self.progress.setValue(0)
        QTimer.singleShot(0, self._tick)

    def _tick(self) -> None:
        deadline = time.monotonic() + SLICE_S
        try:
            while self.frames is not None:
                done = next(self.frames)
                self.progress.setValue(done)  # a modal progress dialog handles events here: Cancel
                self.progressed.emit(done)
                if time.monotonic() > deadline:
                    break
        except StopIteration:
            self._end(self.path)
            return
        except (UserError, ValueError, OSError) as err:
            self.error = " ".join(str(err).split())
            self._end(None)
            return
        except BaseException:
            self._end(None)
            raise
        if self.frames is not None:
            QTimer.singleShot(0, self._tick)  # armed only now, so a slice never runs inside another

    def cancel(self) -> None:
        """Stop at once: the generator closes, which removes the temporary file."""
        if self.frames is not None:
            self.cancelled = True
            self.frames.close()
            self._end(None)

    def _end(self, path: Path | None) -> None:
        self.frames = None
        self.progress.canceled.disconnect(self.cancel)
        self.progress.close()
        self.progress.deleteLater()
        self.finished.emit(path)


class AnimationActions(QObject):
    """Export Animation… for one window: the menu entries, the record log, the runs."""

    def __init__(self, window: Any, exports: Any):
        super().__init__(window)
        self.window, self.exports = window, exports
        self.log = RecordLog()
        self.run: AnimationRun | None = None
        self._listening: Any = None  # the controller whose records the log takes
        window.run_built.connect(self._built)
        exports.menu.addAction(self._action("Export Animation…", lambda: self.open_dialog(None), window))
        for panel in window.panels.values():
            actions = panel.actions()
            action = self._action("Export Animation…", lambda p=panel: self.open_dialog(p.name), panel)
            figure = next((i for i, a in enumerate(actions) if a.text() == "Export Figure…"), None)
            after = actions[figure + 1] if figure is not None and figure + 1 < len(actions) else None
            panel.insertAction(after, action)  # right after Export Figure…, whatever else the menu holds

    @staticmethod
    def _action(text: str, slot: Callable[[], None], parent: QObject) -> QAction:
        action = QAction(text, parent)
        action.triggered.connect(lambda _=False: slot())
        return action

    def _built(self, info: Any) -> None:
        self.log.reset()
        controller = self.window.controller
        if controller is not None and controller is not self._listening:
            controller.records_ready.connect(self.log.add)
            self._listening = controller

    # -- commands --------------------------------------------------------------------------
    def open_dialog(self, name: str | None) -> AnimationDialog | None:
        window = self.window
        visible = [p.name for p in window.visible_panels()]
        current = name or (visible[0] if visible else next(iter(window.panels)))
        dialog = AnimationDialog(window.panels, current, self.exports.figure, self.log.describe(),
                                 self.exports.last_folder, window)
        if dialog.exec() == QDialog.Accepted and dialog.path:
            self._guarded(lambda: self.start(dialog.current_panel, dialog.animation(), dialog.figure(),
                                             dialog.path))
        return dialog

    def sweep(self, panel: Panel, animation: Animation) -> Sweep:
        if animation.over == "t":
            labels = getattr(getattr(self.window, "transport", None), "labels", None) or ()
            return TimeSweep(panel, len(labels) or probe_length(self.log.records()), animation.frames_max)
        if animation.over == "expansions":
            return FrameSweep(panel, animation.frames_max)
        run = self.window.run_info
        if run is None:
            raise ValueError("nothing to replay yet: the experiment is still being built")
        return StepReplay(replay_copy(panel), run, self.log.records(), animation.frames_max)

    def start(self, panel: Panel, animation: Animation, figure: Figure, path: str | Path) -> AnimationRun:
        """Begin writing ``panel``'s animation to ``path`` (ValueError/UserError at once for bad
        choices); the returned run reports through ``finished``."""
        if self.run is not None:
            raise ValueError("an animation is being written; wait for it or cancel it first")
        animation = animation.validated()
        animation.check_size(figure.validated().size)
        sweep = self.sweep(panel, animation)
        path = Path(path)
        self.exports.last_folder = str(path.parent)
        self.exports.figure = figure
        run = self.run = AnimationRun(write_animation(sweep, path, figure, animation, self.exports.step()),
                                      sweep.count, path, self.window)
        resume = self._pause_for(run) if animation.over != "steps" else False
        run.finished.connect(lambda written: self._finished(run, sweep, written, resume))
        if not resume:
            run.start()
        return run

    def _pause_for(self, run: AnimationRun) -> bool:
        """Pause training (if it runs) so every frame shows one step; start ``run`` once it has
        paused. Returns whether training should resume afterwards."""
        controller = self.window.controller
        if controller is None or self.window.state != "running":
            return False

        def paused(state: str) -> None:
            if state != "running":
                controller.state_changed.disconnect(paused)
                run.start()

        controller.state_changed.connect(paused)
        controller.pause()
        return True

    def _finished(self, run: AnimationRun, sweep: Sweep, written: Path | None, resume: bool) -> None:
        self.run = None
        if isinstance(sweep, StepReplay):
            sweep.panel.deleteLater()  # the copy
        if resume and self.window.controller is not None:
            self.window.controller.run()
        status = self.window.status
        if written is not None:
            size = written.stat().st_size / 2**20
            status.showMessage(f"Exported {written} ({sweep.count} frames, {size:.1f} MB)", 8000)
        elif run.error:
            QMessageBox.warning(self.window, "Cannot export the animation", run.error)
        else:
            status.showMessage("Animation cancelled; nothing was written", 5000)

    def _guarded(self, job: Callable[[], Any]) -> Any:
        try:
            return job()
        except (UserError, ValueError, OSError) as err:
            QMessageBox.warning(self.window, "Cannot export the animation", " ".join(str(err).split()))
            return None
