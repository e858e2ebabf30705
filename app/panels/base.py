"""The panel base class: how a view plugs into the window.

A panel is a QWidget that shows part of a run. The window owns the data flow:

1. ``reset(run)`` when a new trainer is built (new experiment, Reset): forget old data,
   adapt to the run (e.g. the gates panel shows LSTM or GRU gates).
2. ``update_record(record)`` for every record the worker emits, in order: a
   ``StepRecord`` per optimiser update (with ``probe``/``gradients``/``spectrum``
   attached when they were asked for), or a lone ``ProbeRecord``/``GradientRecord``/
   ``SpectrumRecord`` (the state right after a build). This must be cheap: keep the data,
   mark the panel dirty, draw nothing.
3. ``refresh()`` on the window's frame timer (at most ~30 Hz): redraw if dirty, reusing
   plot items (``setData``, ``setImage(autoLevels=False)``).

Also: ``set_time_cursor(t)`` moves this panel's time cursors (the scrubber is linked across
panels); ``export_data()`` returns the plotted arrays by name (for CSV/NPZ export);
``plot_widgets()`` lists the pyqtgraph views (for PNG/SVG export and theming);
``apply_theme(theme)`` restyles in place; ``histories()`` and ``restore_histories(arrays)``
save and give back what the panel drew over training (a session keeps it).

To add a panel: subclass, set ``name`` (lower-case, used in the CLI and settings),
``title``, ``draws`` (the record types it takes; each has its hook, see ``HOOKS``) and
``instruments`` (which of "probe", "gradients", "spectrum", "counterfactual", "dynamics" it needs, so the training
process computes them only when a visible panel shows them), implement those hooks,
``redraw`` and ``export_data``, and list the class in ``app/panels/__init__.py``. A panel
that talks to the training process itself (decoding) overrides ``connect_engine``; one
with a process of its own (compare) overrides ``shutdown``.
Panels hold no numerics beyond cheap reductions from ``app.panels.analysis``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QLabel, QSizePolicy, QVBoxLayout, QWidget

from app.panels.header import HeaderLayout
from app.panels.plots import Heatmap, cursor, style_plot
from app.theme import LIGHT, Theme
from app.training.messages import RunInfo, Unavailable
from core.records import (
    CounterfactualRecord,
    DynamicsRecord,
    GradientRecord,
    ProbeRecord,
    SpectrumRecord,
    StepRecord,
)

# The hook that takes each kind of record (a panel declares the kinds it takes in ``draws``).
HOOKS = {StepRecord: "on_step", ProbeRecord: "on_probe", GradientRecord: "on_gradients",
         SpectrumRecord: "on_spectrum", CounterfactualRecord: "on_counterfactual", DynamicsRecord: "on_dynamics"}
INSTRUMENT_OF = {ProbeRecord: "probe", GradientRecord: "gradients", SpectrumRecord: "spectrum",
                 CounterfactualRecord: "counterfactual", DynamicsRecord: "dynamics"}
SEPARATOR = "  ·  "  # between the parts of a note


class Panel(QWidget):
    """Base class of every panel; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    draws: ClassVar[frozenset[type]] = frozenset()  # record types taken (keys of HOOKS)
    instruments: ClassVar[frozenset[str]] = frozenset()
    # The least height (pixels) at which the panel is legible; the window's layout stacks a
    # panel under another only when both get this much (app.window.layouts), else tabs it.
    min_height: ClassVar[int] = 240
    what_if_caption = ""  # the interventions on show, for figure captions (app.window.interventions sets it)

    def __init__(self, theme: Theme = LIGHT, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(f"{self.name}-panel")
        self.theme = theme
        self.run: RunInfo | None = None
        self.time_cursor = 0
        self._dirty = False
        self._unavailable: dict[str, Unavailable] = {}  # instrument -> why its latest is missing
        self._note_suffix = ""  # what _say_unavailable appended to the note
        self._cursors: list[pg.InfiniteLine] = []
        self._heatmaps: list[Heatmap] = []
        self._views: list[pg.GraphicsView] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 4)
        layout.setSpacing(2)
        # The header: option widgets that wrap onto more lines when the panel is narrow, and
        # the note, at their right or on a line of its own (app.panels.header): nothing in
        # it is ever cut off, and it asks for no more width than its widest widget.
        self.options_bar = QWidget()
        self.options_bar.setObjectName("panel-options")
        policy = QSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
        policy.setHeightForWidth(True)
        self.options_bar.setSizePolicy(policy)
        self.options = HeaderLayout(self.options_bar)
        self.options.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(self.options_bar)
        self.note = QLabel("")  # a line of context: the step shown, what the lines mean
        self.note.setObjectName("panel-note")
        self.build()
        self.options.set_note(self.note)
        # Styled as a change of theme styles it, so restyling (an export does, to the slide
        # theme and back) leaves the panel exactly as it was: the note was drawn in the
        # palette's text colour until the first restyle turned it grey.
        self.apply_theme(theme)
        self._dirty = False

    # -- contract --------------------------------------------------------------------------
    def reset(self, run: RunInfo) -> None:
        """A new trainer was built: drop old data and adapt to ``run``.

        Every curve and image of the old run is emptied and the note cleared here, for every
        panel, so none goes on showing the previous preset's data until its redraw."""
        self.run = run
        self._unavailable.clear()
        self._note_suffix = ""
        self.note.setText("")
        for view in self._views:
            for item in view.scene().items():
                if isinstance(item, pg.PlotDataItem):
                    item.setData([], [])
                elif isinstance(item, pg.ImageItem) and item.image is not None:
                    item.clear()
        self.clear()
        self._dirty = True

    def update_record(self, record: Any) -> None:
        """Take one record from the training process (cheap: store it, mark the panel dirty).

        Only the kinds of record the panel ``draws`` reach its hooks and mark it dirty, so
        e.g. the hidden-state panel does not redraw the same probe on every training step.
        """
        if isinstance(record, Unavailable):  # said in the note (see _say_unavailable)
            if record.instrument in self.instruments:
                self._unavailable[record.instrument] = record
                self._dirty = True
            return
        if isinstance(record, StepRecord):
            items = (record, record.probe, record.gradients, record.spectrum, record.counterfactual,
                     record.dynamics)
        else:
            items = (record,)
        for item in items:
            if type(item) in self.draws:
                getattr(self, HOOKS[type(item)])(item)
                self._unavailable.pop(INSTRUMENT_OF.get(type(item), ""), None)
                self._dirty = True

    def connect_engine(self, controller: Any) -> None:
        """The window's training controller (app.training.controller), for panels that ask
        the training process for work of their own (decoding); most panels need nothing."""

    def shutdown(self) -> None:
        """The window is closing: end anything the panel runs itself (compare's process)."""

    def refresh(self, force: bool = False) -> bool:
        """Redraw if new data arrived since the last redraw. Returns whether it drew."""
        if not (self._dirty or force):
            return False
        self._dirty = False
        self.redraw()
        self._say_unavailable()
        return True

    def _say_unavailable(self) -> None:
        """End the note with what could not be computed, and at which step: a panel whose
        instrument failed (or does not apply to the task) says so instead of passing its
        older data off as current."""
        text = self.note.text()
        own = text[: -len(self._note_suffix)] if self._note_suffix and text.endswith(self._note_suffix) else text
        parts = [own] if own else []
        parts += [f"{u.instrument} not available at step {u.step}: {u.reason}" for u in self._unavailable.values()]
        shown = SEPARATOR.join(parts)
        self._note_suffix = shown[len(own):]
        if shown != text:
            self.note.setText(shown)

    def invalidate(self) -> None:
        """Redraw at the next ``refresh`` even if no new record arrived."""
        self._dirty = True

    def set_time_cursor(self, t: int) -> None:
        """Move this panel's time cursors to time step ``t`` of the probe."""
        self.time_cursor = int(t)
        for line in self._cursors:
            line.setValue(self.time_cursor)
        self.on_time_cursor(self.time_cursor)

    def export_data(self) -> dict[str, np.ndarray]:
        """The arrays this panel plots, by name (copies)."""
        return {}

    def histories(self) -> dict[str, np.ndarray]:
        """What this panel has drawn over training that its records cannot give back (e.g.
        the gradient heatmap's snapshots, the spectral radius over steps), by name, as plain
        numeric arrays. A saved session keeps them (traces.npz) and ``restore_histories`` takes
        them back when it is reopened. Panels that keep no such history return {}."""
        return {}

    def restore_histories(self, arrays: dict[str, np.ndarray]) -> None:
        """Take back what ``histories()`` gave, after ``reset`` for the reopened run (entries
        after ``self.run.step`` are left out); ValueError when the arrays do not fit."""

    def plot_widgets(self) -> list[pg.GraphicsView]:
        """The pyqtgraph views of this panel, for image export and theming."""
        return list(self._views)

    def apply_theme(self, theme: Theme) -> None:
        """Restyle every plot, cursor and heatmap for ``theme``."""
        self.theme = theme
        for view in self._views:
            view.setBackground(theme.surface)
            layout = getattr(view, "ci", None)
            for item in list(layout.items) if layout is not None else ():
                if isinstance(item, pg.PlotItem):
                    style_plot(item, theme)
        for line in self._cursors:
            line.setPen(pg.mkPen(theme.cursor, width=1.5, style=pg.QtCore.Qt.DashLine, cosmetic=True))
        for heatmap in self._heatmaps:
            heatmap.style(theme)
        self.note.setStyleSheet(f"color: {theme.muted};")
        self.on_theme(theme)
        self._dirty = True

    # -- shared widgets ------------------------------------------------------------------------
    def make_layer_selector(self) -> None:
        """``self.layer_label`` and ``self.layer``: which recurrent layer the panel shows.

        Changing it redraws the panel; the caller adds the two widgets to its options row.
        """
        self.layer_label = QLabel("Layer")
        self.layer = QComboBox()
        self.layer.currentIndexChanged.connect(lambda _: self.refresh(force=True))

    def reset_layer_selector(self) -> None:
        """Offer the run's layers (the top one selected); hidden for a single layer."""
        layers = self.run.num_layers if self.run else 1
        self.layer.blockSignals(True)
        self.layer.clear()
        self.layer.addItems([str(i) for i in range(layers)])
        self.layer.setCurrentIndex(layers - 1)
        self.layer.blockSignals(False)
        self.layer.setVisible(layers > 1)
        self.layer_label.setVisible(layers > 1)

    # -- hooks for subclasses ------------------------------------------------------------------
    def build(self) -> None:
        """Create widgets and plot items (called once from ``__init__``)."""

    def clear(self) -> None:
        """Forget all data (called by ``reset``)."""

    def on_step(self, record: StepRecord) -> None: ...

    def on_probe(self, record: ProbeRecord) -> None: ...

    def on_gradients(self, record: GradientRecord) -> None: ...

    def on_spectrum(self, record: SpectrumRecord) -> None: ...

    def on_dynamics(self, record: DynamicsRecord) -> None: ...
    def on_counterfactual(self, record: CounterfactualRecord | None) -> None:
        """What if: the probe with interventions beside the factual one; None when they were
        all switched off or removed (the window calls it then)."""

    def on_time_cursor(self, t: int) -> None: ...

    def on_theme(self, theme: Theme) -> None: ...

    def redraw(self) -> None:
        """Push the stored data into the plot items."""

    # -- helpers for subclasses -------------------------------------------------------------------
    def add_view(self, view: pg.GraphicsView, stretch: int = 1) -> pg.GraphicsView:
        view.setBackground(self.theme.surface)
        # Antialias the curves only (each curve sets it for itself): for images, axes, bars
        # and shading it buys nothing visible and costs ~25% of a frame in software raster.
        view.setAntialiasing(False)
        self.layout().addWidget(view, stretch)
        self._views.append(view)
        return view

    def add_cursor(self, plot: pg.PlotItem) -> pg.InfiniteLine:
        line = cursor(plot, self.theme)
        line.setValue(self.time_cursor)
        self._cursors.append(line)
        return line

    def add_heatmap(self, heatmap: Heatmap) -> Heatmap:
        heatmap.style(self.theme)
        self._heatmaps.append(heatmap)
        return heatmap

    def remove_heatmaps(self) -> None:
        self._heatmaps.clear()

    def remove_cursors(self) -> None:
        self._cursors.clear()

    @property
    def cursors(self) -> list[pg.InfiniteLine]:
        """The time cursors this panel draws (tests check they follow the scrubber)."""
        return list(self._cursors)
