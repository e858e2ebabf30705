"""The beam-search tree, drawn left to right by step, for one decode (app.decode_job.DecodeView).

Nodes are coloured by their cumulative log-probability (one sequential map, a colour bar
says which); kept hypotheses are full circles, finished ones end in a square eos marker
labelled with their final (length-normalised) score, pruned continuations are small and
faded. Greedy's path is overlaid dashed (and continued in grey where it leaves the beam),
the selected hypothesis's path drawn bold. Hover a node for its token, log-prob and score;
click one to select it.

All nodes are one ScatterPlotItem and all edges two line items (connect="pairs"), so
stepping through hundreds of nodes costs a few setData calls; labels are pooled text items
and capped, so a very wide beam stays responsive (hover still names every node).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor

from app.panels.axes import space_bar_ticks
from app.panels.legends import add_legend
from app.panels.plots import new_plot, pen
from app.theme import FONT_POINTS, OKABE_ITO, Theme, colormap, ink_for, ui_font

MAX_LABELS = 400
GREEDY_COLOR = OKABE_ITO["orange"]
EOS_TEXT = "<eos>"


def token_text(texts: tuple[str, ...], token: int) -> str:
    text = texts[token] if 0 <= token < len(texts) else str(token)
    return {" ": "␣", "<eos>": "eos", "<bos>": "bos"}.get(text, text)


class BeamTreePlot(pg.GraphicsLayoutWidget):
    """The tree of one decode. ``show_steps(k)`` reveals the first k expansions;
    ``node_clicked`` names a clicked node id."""

    node_clicked = Signal(int)

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.theme = theme
        self.setBackground(theme.surface)
        self.plot = new_plot(self.ci, theme, row=0, col=0, x="step (tokens generated)")
        self.plot.hideAxis("left")
        self.plot.invertY(True)
        self.plot.showGrid(x=True, y=False, alpha=0.12)
        self.plot.getAxis("bottom").setTickSpacing(1, 1)
        self.pruned_edges = pg.PlotDataItem(connect="pairs", pen=pen(theme.muted + "55", 1.0))
        self.edges = pg.PlotDataItem(connect="pairs", pen=pen(theme.muted, 1.8))
        self.greedy_line = pg.PlotDataItem(pen=pen(GREEDY_COLOR, 4.0, Qt.DashLine))
        self.greedy_ghost = pg.PlotDataItem(pen=pen(GREEDY_COLOR + "99", 2.5, Qt.DotLine), symbol="o",
                                            symbolSize=11, symbolBrush=pg.mkBrush(theme.surface),
                                            symbolPen=pen(GREEDY_COLOR, 1.5))
        self.selected_line = pg.PlotDataItem(pen=pen(theme.accent, 5.0))
        self.nodes = pg.ScatterPlotItem(hoverable=True, tip=self._tip, pxMode=True,
                                        hoverPen=pen(theme.foreground, 2.5))
        self.nodes.sigClicked.connect(self._clicked)
        for z, item in enumerate((self.pruned_edges, self.edges, self.greedy_ghost, self.selected_line,
                                  self.greedy_line, self.nodes)):  # greedy's dashes show on a shared path
            item.setZValue(z)
            self.plot.addItem(item)
        self.bar = pg.ColorBarItem(values=(-1.0, 0.0), colorMap=colormap(theme.sequential_map), interactive=False,
                                   width=12, label="cumulative log p", colorMapMenu=False)
        self.ci.addItem(self.bar, row=0, col=1)
        self.bar.axis.setTickFont(ui_font(FONT_POINTS - 1))
        self._space_bar_ticks = space_bar_ticks(self.bar)
        self.bar.axis.setTextPen(theme.foreground)
        self._legend()
        self.labels: list[pg.TextItem] = []
        self.view = None
        self.count = self.steps = 0
        self.scale = 1.0
        self.plot.vb.sigResized.connect(self._resized)
        self.plot.vb.sigYRangeChanged.connect(self._rescale)
        self.selected: int | None = None

    def _legend(self) -> None:
        legend = add_legend(self.plot, offset=(10, 10), labelTextSize=f"{FONT_POINTS}pt",
                            labelTextColor=self.theme.foreground, brush=pg.mkBrush(self.theme.surface + "E0"),
                            pen=pen(self.theme.muted, 1))
        # Short names (the panel's help and the hover say more): above a narrow tree, long ones
        # took a row each and left the tree a strip.
        samples = (("kept", "o", 18, 255), ("finished: score", "s", 18, 255), ("pruned", "o", 13, 90))
        mid = colormap(self.theme.sequential_map).map(0.55, mode="qcolor")
        for label, symbol, size, alpha in samples:
            color = pg.mkColor(mid)
            color.setAlpha(alpha)
            legend.addItem(pg.ScatterPlotItem(symbol=symbol, size=size, brush=pg.mkBrush(color),
                                              pen=pen(self.theme.foreground, 1)), label)
        legend.addItem(pg.PlotDataItem(pen=pen(self.theme.accent, 5.0)), "selected")
        legend.addItem(pg.PlotDataItem(pen=pen(GREEDY_COLOR, 4.0, Qt.DashLine)), "greedy")

    # -- data ------------------------------------------------------------------------------------
    def set_view(self, view) -> None:
        """A new decode: fix the frame to the whole tree (so stepping grows into it)."""
        self.view = view
        self.selected = None
        tree = view.result.tree
        scores = np.array([n.cum_log_prob for n in tree])
        lo = float(scores.min()) if len(scores) > 1 else -1.0
        self.levels = (min(lo, -1e-3), 0.0)
        self.bar.setLevels(self.levels)
        self._space_bar_ticks()
        self.steps_of = np.array([n.step for n in tree])
        self._frame()

    def _frame(self) -> None:
        """The whole tree in view with room for its labels at both ends ("bos" left of the
        root, "eos  −1.09" right of the last finished nodes): a fixed margin in steps cut
        them off once the plot was narrow."""
        view = self.view
        if view is None:
            return
        from PySide6.QtGui import QFontMetricsF

        xs, ys = view.positions[:, 0], view.positions[:, 1]
        tree, lp = view.result.tree, view.result.length_penalty
        bold = QFontMetricsF(ui_font(FONT_POINTS + 2, bold=True))
        finished = [f"{token_text(view.result.token_texts, n.token)}  {n.cum_log_prob / n.step ** lp:+.2f}"
                    for n in tree if n.status == "finished"] or [""]
        node = 16.0  # a node's radius, pixels
        left = QFontMetricsF(ui_font(FONT_POINTS, bold=True)).horizontalAdvance("bos") + 2 * node
        right = max(bold.horizontalAdvance(t) for t in finished) + 2 * node
        width = max(self.plot.vb.width(), 1.0)
        a, b = min(left / width, 0.3), min(right / width, 0.45)  # shares of the width the labels need
        span = max(float(xs.max() - xs.min()), 1.0)
        total = span / (1.0 - a - b)
        x0, x1 = float(xs.min()) - a * total, float(xs.max()) + b * total
        rows = max(float(ys.max() - ys.min()), 1.0) + 1.6
        top = min(1.6 * bold.height() / max(self.plot.vb.height(), 1.0), 0.3)  # greedy's tokens above its path
        y0, y1 = float(ys.min()) - 0.8 - top * rows / (1.0 - top), float(ys.max()) + 0.8
        self.plot.setLimits(xMin=x0 - 1, xMax=x1 + 1, yMin=y0 - 1.2, yMax=y1 + 1.2)
        self.plot.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)

    def _scale(self) -> float:
        """Node size factor: full size while rows are at least 30 px apart, smaller below."""
        vb = self.plot.vb
        span = vb.viewRange()[1][1] - vb.viewRange()[1][0]
        pixels = vb.height() / span if span > 0 and vb.height() > 0 else 30.0
        return float(min(max(pixels / 30.0, 0.35), 1.0))

    def _rescale(self) -> None:
        if self.view is not None and abs(self._scale() - self.scale) > 0.05:
            self.show_steps(self.steps)

    def _resized(self) -> None:
        self._frame()
        self._rescale()

    def visible_count(self, steps: int) -> int:
        """How many nodes the first ``steps`` expansions made (the root included)."""
        return int(np.searchsorted(self.steps_of, steps, side="right"))

    def show_steps(self, steps: int) -> None:
        view = self.view
        tree, pos = view.result.tree, view.positions
        self.steps = steps
        n = self.count = self.visible_count(steps)
        shown = tree[:n]
        status = [node.status for node in shown]
        cmap = colormap(self.theme.sequential_map)
        lo = self.levels[0]
        colors = cmap.map(np.clip([(node.cum_log_prob - lo) / -lo for node in shown], 0, 1), mode="qcolor")
        brushes, sizes, symbols, pens = [], [], [], []
        outline, faint = pen(self.theme.foreground, 1.2), pen(self.theme.muted, 0.8)
        scale = self.scale = self._scale()
        eos = view.result.token_texts.index(EOS_TEXT) if EOS_TEXT in view.result.token_texts else -1
        for node, s, color in zip(shown, status, colors, strict=True):
            if s == "pruned":
                color.setAlpha(90)
            brushes.append(pg.mkBrush(color))
            sizes.append(scale * {"root": 30, "kept": 26, "finished": 26, "pruned": 19}[s])
            symbols.append("d" if s == "root" else "s" if s == "finished" or node.token == eos else "o")
            pens.append(faint if s == "pruned" else outline)
        self.nodes.setData(pos[:n, 0], pos[:n, 1], brush=brushes, size=sizes, symbol=symbols, pen=pens,
                           data=np.arange(n))
        parents = np.array([node.parent for node in shown[1:]], dtype=np.int64)
        pruned = np.array([s == "pruned" for s in status[1:]], dtype=bool)
        for item, mask in ((self.edges, ~pruned), (self.pruned_edges, pruned)):
            kids = np.arange(1, n)[mask]
            xy = np.empty((2 * len(kids), 2))
            xy[0::2], xy[1::2] = pos[parents[mask]], pos[kids]
            item.setData(xy[:, 0], xy[:, 1])
        self._draw_greedy(steps)
        self._draw_labels()
        self.select(self.selected)

    def _draw_greedy(self, steps: int) -> None:
        view, pos = self.view, self.view.positions
        ids = [i for i in view.greedy_nodes if i < self.count]
        self.greedy_line.setData(pos[ids, 0], pos[ids, 1])
        rest = view.greedy_rest if len(ids) == len(view.greedy_nodes) else ()
        last = ids[-1]
        start = len(view.greedy_nodes) - 1  # greedy's step at the last matched node
        shown = [t for k, t in enumerate(rest) if start + 1 + k <= steps]
        if shown:
            x = pos[last, 0] + np.arange(len(shown) + 1)
            y = np.full(len(shown) + 1, pos[last, 1] + (0.35 if self._has_children(last) else 0.0))
            y[0] = pos[last, 1]
            self.greedy_ghost.setData(x, y)
        else:
            self.greedy_ghost.setData([], [])
        self._ghost = (x[1:], y[1:], shown) if shown else None

    def _has_children(self, node_id: int) -> bool:
        return any(node.parent == node_id for node in self.view.result.tree[: self.count])

    def _draw_labels(self) -> None:
        """Each token inside its node (ink chosen for the fill); finished nodes get their
        final score beside them; greedy's tokens outside the tree beside its ghost nodes."""
        view = self.view
        tree, pos, texts = view.result.tree, view.positions, view.result.token_texts
        lp = view.result.length_penalty
        order = sorted(range(self.count), key=lambda i: (tree[i].status == "pruned", i))[:MAX_LABELS]
        brushes = self.nodes.data["brush"]
        wanted: list[tuple[float, float, str, QColor, int, tuple[float, float]]] = []
        for i in order:
            node = tree[i]
            if node.status == "root":
                wanted.append((pos[i, 0], pos[i, 1], "bos", QColor(self.theme.foreground), 0, (1.25, 0.5)))
                continue
            text = token_text(texts, node.token)
            if node.status == "finished":
                score = f"{text}  {node.cum_log_prob / node.step ** lp:+.2f}".replace("-", "−")
                wanted.append((pos[i, 0], pos[i, 1], score, QColor(self.theme.foreground), 2, (-0.16, 0.5)))
                continue
            if text == "eos" or self.scale < 0.45:
                continue  # the square says eos; too small a node to hold its token (hover names it)
            fill = brushes[i].color()
            ink = QColor(self.theme.muted) if node.status == "pruned" else ink_for(fill)
            size = 0 if node.status == "kept" else -2
            wanted.append((pos[i, 0], pos[i, 1], text if len(text) <= 3 else text[:2] + "…", ink, size, (0.5, 0.5)))
        if self._ghost is not None:
            for x, y, token in zip(*self._ghost, strict=True):
                wanted.append((x, y, token_text(texts, token), QColor(GREEDY_COLOR), 0, (-0.3, 1.0)))
        while len(self.labels) < len(wanted):
            label = pg.TextItem("")
            label.setZValue(10)
            self.plot.addItem(label, ignoreBounds=True)
            self.labels.append(label)
        inner = max(FONT_POINTS * min(1.0, 1.15 * self.scale), 6.5)  # tokens shrink with their nodes
        for label, (x, y, text, color, size, anchor) in zip(self.labels, wanted, strict=False):
            points = FONT_POINTS + size if anchor != (0.5, 0.5) else inner + min(size, 0)
            label.setFont(ui_font(points, bold=size >= 0))
            label.setAnchor(anchor)
            label.setText(text, color=color)
            label.setPos(x, y)
            label.show()
        for label in self.labels[len(wanted):]:
            label.hide()

    # -- selection -------------------------------------------------------------------------------------
    def select(self, node_id: int | None) -> None:
        """Draw the path from the root to ``node_id`` (None clears it)."""
        self.selected = node_id
        if node_id is None or self.view is None or node_id >= self.count:
            self.selected_line.setData([], [])
            return
        from core.decoding.tree import path_to

        ids = path_to(self.view.result.tree, node_id)
        pos = self.view.positions
        self.selected_line.setData(pos[ids, 0], pos[ids, 1])

    def _clicked(self, _item, points, _event) -> None:
        if len(points):
            self.node_clicked.emit(int(points[0].data()))

    def _tip(self, x: float, y: float, data) -> str:
        view = self.view
        node = view.result.tree[int(data)]
        if node.status == "root":
            return "bos: where decoding starts"
        token = token_text(view.result.token_texts, node.token)
        lines = [f"token {token!r} at step {node.step}  ({node.status})",
                 f"log p(token | prefix) = {node.log_prob:.3f}", f"cumulative log p = {node.cum_log_prob:.3f}"]
        if node.status == "finished":
            lines.append(f"score = {node.cum_log_prob:.3f} / {node.step}^{view.result.length_penalty:g} = "
                         f"{node.cum_log_prob / node.step ** view.result.length_penalty:.3f}")
        return "\n".join(lines)

    def apply_theme(self, theme: Theme) -> None:
        """Restyle in place (the panel's base styles axes and background)."""
        self.theme = theme
        self.pruned_edges.setPen(pen(theme.muted + "55", 1.0))
        self.edges.setPen(pen(theme.muted, 1.8))
        self.selected_line.setPen(pen(theme.accent, 5.0))
        self.bar.axis.setTextPen(theme.foreground)
        self.plot.legend.setLabelTextColor(theme.foreground)
        self.plot.legend.setBrush(pg.mkBrush(theme.surface + "E0"))
        if self.view is not None:
            self.show_steps(self.steps)

    def clear_tree(self) -> None:
        """Forget the decode (not ``clear``: GraphicsLayoutWidget's clear empties the layout)."""
        self.view = None
        self.count = 0
        for item in (self.nodes, self.edges, self.pruned_edges, self.greedy_line, self.greedy_ghost,
                     self.selected_line):
            item.setData([], [])
        for label in self.labels:
            label.hide()
