"""Spectrum panel: singular values of the recurrent weights, and the spectral radius over training.

Pascanu et al. (2013): for an RNN whose nonlinearity has derivative at most gamma, a largest
singular value of W_hh below 1/gamma is sufficient for gradients to vanish, and above it is
necessary for them to explode. The bound is drawn as a line; gated cells have no such bound
and show the singular values of each gate's block instead.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from app.panels.base import Panel
from app.panels.legends import LineKey, add_legend
from app.panels.plots import fit_left_axes, hline, long_curve, new_plot, pen
from app.panels.series import Series
from app.theme import SERIES, Theme, cell_color
from core.names import GATE_SYMBOLS
from core.records import SpectrumRecord

MAX_LAYERS = 8
MAX_DOTS = 64


class SpectrumPanel(Panel):
    name = "spectrum"
    title = "Spectrum"
    draws = frozenset({SpectrumRecord})
    instruments = frozenset({"spectrum"})

    def build(self) -> None:
        self.make_layer_selector()
        self.options.addWidget(self.layer_label)
        self.options.addWidget(self.layer)
        t = self.theme
        view = self.add_view(pg.GraphicsLayoutWidget())
        self.sv_plot = new_plot(view.ci, t, row=0, col=0, x="index k", y="singular value σ<sub>k</sub>")
        add_legend(self.sv_plot, offset=(-10, 5), colCount=2)
        self.sv_curves: list[pg.PlotDataItem] = []
        self.bound = hline(self.sv_plot, t.diverged, label=None)
        self.bound_key = LineKey(self.bound, self.sv_plot.legend)  # named above the data, not on the curves
        self.radius_plot = new_plot(view.ci, t, row=0, col=1, x="step", y="spectral radius ρ(W<sub>hh</sub>)")
        add_legend(self.radius_plot, offset=(-10, 5))  # layers, when there are several
        self.unit_line = hline(self.radius_plot, t.baseline, "ρ = 1", Qt.DotLine)
        self.unit_line.setValue(1.0)
        self.radius_curves: list[pg.PlotDataItem] = []
        for plot in (self.sv_plot, self.radius_plot):
            fit_left_axes(plot)
        self.record: SpectrumRecord | None = None
        self._legend_names: tuple = ()
        self.radius = Series("step", *(f"l{i}" for i in range(MAX_LAYERS)))

    def clear(self) -> None:
        self.record = None
        self._legend_names = ()
        self.radius.clear()
        for curve in self.radius_curves:  # colours follow the cell kind, which may change
            self.radius_plot.removeItem(curve)
        self.radius_curves = []
        self.reset_layer_selector()

    def on_spectrum(self, record: SpectrumRecord) -> None:
        self.record = record
        radii = list(record.radius[:MAX_LAYERS]) + [np.nan] * (MAX_LAYERS - len(record.radius))
        if len(self.radius) and self.radius.column("step")[-1] == record.step:
            return
        self.radius.append(record.step, *radii)

    def histories(self) -> dict[str, np.ndarray]:
        return self.radius.to_dict()

    def restore_histories(self, arrays: dict[str, np.ndarray]) -> None:
        if arrays:
            self.radius.load(arrays, up_to=self.run.step if self.run else None)
            self.invalidate()

    def export_data(self) -> dict[str, np.ndarray]:
        r = self.record
        if r is None:
            return {}
        out = {"radius_step": self.radius.column("step").copy()}
        for i, sv in enumerate(r.singular_values):
            out[f"singular_values_l{i}"] = sv.copy()
            out[f"radius_l{i}"] = self.radius.column(f"l{i}").copy()
        for key, sv in r.blocks.items():
            out[f"singular_values_{key.replace('/', '_')}"] = sv.copy()
        return out

    def _series(self, r: SpectrumRecord) -> list[tuple[str, np.ndarray, str]]:
        """(legend name, singular values, colour) for the curves to draw."""
        layer = min(max(self.layer.currentIndex(), 0), len(r.singular_values) - 1)
        prefix = f"layer{layer}/"
        blocks = [(k[len(prefix):], v) for k, v in r.blocks.items() if k.startswith(prefix)]
        if blocks:
            return [(f"{GATE_SYMBOLS.get(g, g)} {g}", v, SERIES[i % len(SERIES)])
                    for i, (g, v) in enumerate(blocks)]
        kind = self.run.kind if self.run else "rnn"
        return [("W_hh", r.singular_values[layer], cell_color(kind))]

    def redraw(self) -> None:
        r = self.record
        if r is None:
            return
        series = self._series(r)
        while len(self.sv_curves) < len(series):
            self.sv_curves.append(self.sv_plot.plot())
        names = tuple((name, color) for name, _, color in series)
        restyle = names != self._legend_names  # legends are slow to rebuild: only on change
        if restyle:
            self._legend_names = names
            self.sv_plot.legend.clear()
        for i, curve in enumerate(self.sv_curves):
            if i < len(series):
                name, values, color = series[i]
                curve.setData(np.arange(1, len(values) + 1), values)
                if restyle:
                    curve.setPen(pen(color, 1.8))
                    # dots help read a few values; hundreds are a line (and slow to draw)
                    curve.setSymbol("o" if len(values) <= MAX_DOTS else None)
                    curve.setSymbolSize(4)
                    curve.setSymbolBrush(color)
                    curve.setSymbolPen(None)
                    self.sv_plot.legend.addItem(curve, name)
                curve.show()
            else:
                curve.hide()
        if r.bound is not None:
            self.bound.show()
            if self.bound.value() != r.bound:
                self.bound.setValue(r.bound)
        else:
            self.bound.hide()
        self.bound_key.set(f"1/γ = {r.bound:g}" if r.bound is not None else "")  # (after the curves' entries)
        self._draw_radius(len(r.radius))
        self._label_radius(r)
        sigma = max((float(v[0]) for _, v, _ in series if len(v)), default=float("nan"))
        # The regime is the record's, over all layers; σ_max is the layer shown.
        if r.regime == "explosion possible":
            regime = f"regime: explosion possible, not certain (σ_max > 1/γ = {r.bound:g})"
        elif r.regime == "vanishing":
            regime = f"regime: vanishing (σ_max < 1/γ = {r.bound:g})"
        else:
            regime = f"regime: {r.regime}"
        layer = f" (layer {self.layer.currentIndex()})" if len(r.singular_values) > 1 else ""
        self.note.setText(f"step {r.step}  ·  σ_max {sigma:.3g}{layer}  ·  {regime}")

    def _label_radius(self, r: SpectrumRecord) -> None:
        """Name the matrix whose radius is drawn; rho = 1 means something only for an RNN's
        W_hh (the marginal linear recurrence), not for a gated cell's candidate block."""
        name = r.radius_of.replace("W_", "W<sub>") + "</sub>"
        label = f"spectral radius ρ({name})"
        if r.radius_of != "W_hh":
            label += " (candidate block)"
        if self.radius_plot.getAxis("left").labelText != label:
            self.radius_plot.setLabel("left", label)
        self.unit_line.setVisible(r.radius_of == "W_hh")

    def _draw_radius(self, layers: int) -> None:
        while len(self.radius_curves) < layers:
            i = len(self.radius_curves)
            color = cell_color(self.run.kind if self.run else "rnn") if i == 0 else SERIES[i % len(SERIES)]
            name = f"layer {i}" if layers > 1 else None
            self.radius_curves.append(long_curve(self.radius_plot, pen=pen(color, 2), name=name))
        steps = self.radius.column("step")
        for i, curve in enumerate(self.radius_curves):
            curve.setData(steps, self.radius.column(f"l{i}"), connect="finite")
            curve.setVisible(i < layers)

    def on_theme(self, theme: Theme) -> None:
        self.unit_line.setPen(pen(theme.baseline, 1.5, Qt.DotLine))
        self.unit_line.label.setColor(theme.baseline)
        self.bound_key.restyle()
