"""The cell drawn as a diagram: gates as boxes, pointwise operations, states and the flow.

One picture per cell kind, in torch.nn's equations (see core.models.recurrent):

* lstm: the cell-state line c_{t-1} -> x f -> + i*g -> c_t runs along the top; the gates
  i, f, g, o read [x_t, h_{t-1}] from the line along the bottom; h_t = o * tanh(c_t).
* gru: h_{t-1} runs along the top and is blended with the new gate n by z:
  h_t = (1 - z) * n + z * h_{t-1}; r gates h_{t-1}'s part of n.
* rnn: one tanh (or relu) layer, h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

Each box and state is filled with its live value for one unit at one time step: a
sequential map over [0, 1] for sigmoid gates, a diverging map with white at 0 for tanh
values and states. The equations are listed under the diagram with the same colours.
"""

from __future__ import annotations

from PySide6.QtCore import QEasingCurve, QRectF, Qt, QVariantAnimation, Signal
from PySide6.QtGui import QBrush, QColor, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QGraphicsScene, QGraphicsView

from app.panels.cell.diagram import (
    SERIF,
    GateBox,
    Node,
    Op,
    Pill,
    center_text,
    font,
    junction,
    text_item,
    wire,
)
from app.panels.cell.equations import EQUATIONS, levels_of, notation_html
from app.theme import Theme, colormap
from core.names import GATE_SYMBOLS, GATES, TANH_GATES

WIDTH = 1100.0
SMALLEST = 0.6  # the scale below which the equations are left out of view, so the cell is larger
ANIMATION_MS = 160


def value_text(key: str, value: float) -> str:
    """3 decimals; signed values always carry their sign (a true minus sign, for print)."""
    text = f"{value:.3f}" if levels_of(key)[0] == 0.0 else f"{value:+.3f}"
    return text.replace("-", "−")


class CellView(QGraphicsView):
    """The diagram of one cell kind. ``set_values`` colours it; ``hovered`` names what the
    pointer is over (a gate name, 'h', 'c', 'h_prev', 'c_prev')."""

    hovered = Signal(str)

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.theme = theme
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing | QPainter.SmoothPixmapTransform)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setFrameShape(QGraphicsView.NoFrame)
        self.setFocusPolicy(Qt.NoFocus)  # arrow keys belong to the panel (time steps)
        self.setMouseTracking(True)
        self.kind = ""
        self.nodes: dict[str, Node] = {}  # gate boxes, state pills, equation chips ("eq:<key>")
        self.ops: dict[str, Op] = {}
        self.values: dict[str, float] = {}
        self._from: dict[str, QColor] = {}
        self._to: dict[str, QColor] = {}
        self._animation = QVariantAnimation(self)
        self._animation.setDuration(ANIMATION_MS)
        self._animation.setStartValue(0.0)
        self._animation.setEndValue(1.0)
        self._animation.setEasingCurve(QEasingCurve.OutCubic)
        self._animation.valueChanged.connect(self._blend)

    # -- structure --------------------------------------------------------------------------
    @property
    def gate_boxes(self) -> dict[str, GateBox]:
        """The gate boxes on show, by gate name (torch.nn's order), e.g. input, forget, ..."""
        return {g: self.nodes[g] for g in GATES.get(self.kind, ()) if isinstance(self.nodes.get(g), GateBox)}

    def key_at(self, pos) -> str | None:
        """The key of the gate box or state under widget position ``pos`` (None: nothing)."""
        for item in self.items(pos):
            while item is not None:
                key = getattr(item, "key", None)
                if isinstance(key, str):
                    return key
                item = item.parentItem()
        return None

    def set_kind(self, kind: str, nonlinearity: str = "tanh", sizes: tuple[int, int] | None = None) -> None:
        """Draw the diagram of ``kind``; ``sizes`` = (r, s), input and hidden size, for the notation."""
        self._animation.stop()
        self.kind = kind
        self.nodes, self.ops, self.values = {}, {}, {}
        scene = self.scene()
        scene.clear()
        scene.setBackgroundBrush(QBrush(QColor(self.theme.surface)))
        bottom = {"lstm": self._lstm, "gru": self._gru, "rnn": self._rnn}[kind](nonlinearity)
        self.diagram_rect = QRectF(0, 0, WIDTH, bottom + 20)  # the cell alone, without the equations
        bottom = self._equations(kind, nonlinearity, bottom + 36)
        note = text_item(None, notation_html(kind, sizes), font(16), self.theme.muted)
        note.setTextWidth(WIDTH - 40)
        note.setPos(20, bottom + 12)
        scene.addItem(note)
        bottom += 16 + note.boundingRect().height()
        bottom = self._legends(kind, bottom + 10)
        scene.setSceneRect(0, 0, WIDTH, bottom + 14)
        self._fit()

    def _box(self, gate: str, x: float, y: float, function: str) -> GateBox:
        box = GateBox(self.scene(), self.theme, gate, x, y, GATE_SYMBOLS.get(gate, gate), function, self.hovered.emit)
        self.nodes[gate] = box
        return box

    def _pill(self, key: str, x: float, y: float, html: str, w: float | None = None) -> Pill:
        pill = Pill(self.scene(), self.theme, key, x, y, html, self.hovered.emit if key != "x" else None, w)
        self.nodes[key] = pill
        return pill

    def _op(self, key: str, x: float, y: float, symbol: str, note_at=(22, -24)) -> Op:
        op = self.ops[key] = Op(self.scene(), self.theme, key, x, y, symbol, note_at)
        return op

    def _lstm(self, _nonlinearity: str) -> float:
        s, t = self.scene(), self.theme
        c_prev = self._pill("c_prev", 110, 70, "c<sub>t−1</sub>")
        c_t = self._pill("c", 990, 70, "c<sub>t</sub>")
        forget_x, plus = self._op("fc", 290, 70, "×"), self._op("c_sum", 550, 70, "+")
        ig, tanh_c = self._op("ig", 550, 230, "×", (-22, -24)), self._op("tanh_c", 820, 165, "tanh", (38, 0))
        out = self._op("h_out", 820, 262, "×")
        h_prev, h_t = self._pill("h_prev", 110, 505, "h<sub>t−1</sub>"), self._pill("h", 990, 262, "h<sub>t</sub>")
        x_t = self._pill("x", 200, 598, "x<sub>t</sub>", w=150)
        boxes = {g: self._box(g, x, 382, "tanh" if g in TANH_GATES else "σ")
                 for g, x in (("forget", 290), ("input", 440), ("cell", 660), ("output", 820))}
        wire(s, t, [c_prev, forget_x])
        wire(s, t, [forget_x, plus])
        wire(s, t, [plus, (820, 70), c_t])
        junction(s, t, 820, 70)
        wire(s, t, [(820, 70), tanh_c])
        wire(s, t, [tanh_c, out])
        wire(s, t, [out, h_t])
        wire(s, t, [boxes["forget"], forget_x])
        wire(s, t, [boxes["input"], (440, 230), ig])
        wire(s, t, [boxes["cell"], (660, 230), ig])
        wire(s, t, [ig, plus])
        wire(s, t, [boxes["output"], out])
        wire(s, t, [h_prev, (820, 505), boxes["output"]])
        wire(s, t, [x_t, (200, 505)], arrow=False)
        for x in (200, 290, 440, 660):
            junction(s, t, x, 505)
        for gate, x in (("forget", 290), ("input", 440), ("cell", 660)):
            wire(s, t, [(x, 505), boxes[gate]])
        self._bus_label(480, 505)
        return 630.0

    def _gru(self, _nonlinearity: str) -> float:
        s, t = self.scene(), self.theme
        h_prev, h_t = self._pill("h_prev", 110, 70, "h<sub>t−1</sub>"), self._pill("h", 990, 70, "h<sub>t</sub>")
        keep, plus = self._op("zh", 470, 70, "×"), self._op("h_sum", 800, 70, "+")
        one_minus, mix = self._op("one_minus_z", 640, 205, "1−"), self._op("zn", 800, 205, "×", (22, -24))
        x_t = self._pill("x", 330, 598, "x<sub>t</sub>", w=150)
        boxes = {g: self._box(g, x, 382, "tanh" if g in TANH_GATES else "σ")
                 for g, x in (("update", 360), ("reset", 580), ("new", 800))}
        wire(s, t, [h_prev, keep])
        wire(s, t, [keep, plus])
        wire(s, t, [plus, h_t])
        junction(s, t, 250, 70)
        wire(s, t, [(250, 70), (250, 505), (800, 505), boxes["new"]])
        wire(s, t, [x_t, (330, 505)], arrow=False)
        for x in (330, 360, 580):
            junction(s, t, x, 505)
        for gate, x in (("update", 360), ("reset", 580)):
            wire(s, t, [(x, 505), boxes[gate]])
        wire(s, t, [boxes["update"], (360, 205), (470, 205)], arrow=False)
        junction(s, t, 470, 205)
        wire(s, t, [(470, 205), keep])
        wire(s, t, [(470, 205), one_minus])
        wire(s, t, [one_minus, mix])
        wire(s, t, [boxes["new"], mix])
        wire(s, t, [mix, plus])
        wire(s, t, [boxes["reset"], boxes["new"]])
        label = text_item(None, "r ⊙ (W<sub>hn</sub>h<sub>t−1</sub> + b<sub>hn</sub>)",
                          font(14, family=SERIF, italic=True), t.muted)
        center_text(label, 690, 452)
        s.addItem(label)
        self._bus_label(420, 505)
        return 630.0

    def _rnn(self, nonlinearity: str) -> float:
        s, t = self.scene(), self.theme
        h_prev, h_t = self._pill("h_prev", 150, 200, "h<sub>t−1</sub>"), self._pill("h", 950, 200, "h<sub>t</sub>")
        box = GateBox(s, t, "layer", 550, 200, "h", nonlinearity, self.hovered.emit)
        self.nodes["layer"] = box
        x_t = self._pill("x", 550, 390, "x<sub>t</sub>", w=150)
        wire(s, t, [h_prev, box])
        wire(s, t, [box, h_t])
        wire(s, t, [x_t, box])
        wire(s, t, [h_t, (950, 90), (150, 90), h_prev], dashed=True)
        label = text_item(None, "next time step: <i>h</i><sub>t</sub> becomes <i>h</i><sub>t−1</sub>",
                          font(15, family=SERIF), t.muted)
        center_text(label, 550, 70)
        s.addItem(label)
        return 430.0

    def _bus_label(self, x: float, y: float) -> None:
        label = text_item(None, "[x<sub>t</sub>, h<sub>t−1</sub>]", font(15, family=SERIF, italic=True),
                          self.theme.muted)
        center_text(label, x, y + 18)
        self.scene().addItem(label)

    def _equations(self, kind: str, nonlinearity: str, top: float) -> float:
        """One row per gate and state: colour chip, name, equation, value. Returns the bottom."""
        s, t, y = self.scene(), self.theme, top
        for key, name, html in EQUATIONS[kind]:
            html = html.replace("tanh", nonlinearity) if kind == "rnn" else html
            symbol = GATE_SYMBOLS.get(key, key)
            chip = Node(s, t, f"eq:{key}", 52, y, 52, 34, 8, self.hovered.emit)
            chip.key = key
            chip.texts = [text_item(chip, f"<i>{symbol}</i>", font(20, True, SERIF), t.foreground)]
            center_text(chip.texts[0], 0, 0)
            self.nodes[f"eq:{key}"] = chip
            label = text_item(None, name, font(15), t.muted)
            center_text(label, 92, y, "left")
            equation = text_item(None, html, font(19, family=SERIF), t.foreground)
            center_text(equation, 262, y, "left")
            number = text_item(None, "", font(18, True), t.foreground)
            number.setData(0, "value")
            chip.setData(1, number)
            for item in (label, equation, number):
                s.addItem(item)
            y += 44
        return y - 22

    def _legends(self, kind: str, top: float) -> float:
        """Colour bars: what a fill colour means (fixed levels, so colours compare across t)."""
        items = [("σ gates", self.theme.sequential_map, (0.0, 1.0)),
                 ("tanh values and h" if kind != "rnn" else "h", self.theme.diverging_map, (-1.0, 1.0))]
        if kind == "lstm":
            items.append(("cell state c", self.theme.diverging_map, levels_of("c")))
        if kind == "rnn":
            items = items[1:]
        x = 20.0
        for label, cmap, (lo, hi) in items:
            for html, width in ((label, 8), (f"{lo:g}", 4)):
                text = text_item(None, html, font(14), self.theme.muted)
                center_text(text, x, top + 10, "left")
                self.scene().addItem(text)
                x += text.boundingRect().width() + width
            bar = QGraphicsRectItem(x, top + 3, 150, 14)
            gradient = QLinearGradient(x, 0, x + 150, 0)
            for stop in range(11):
                gradient.setColorAt(stop / 10, colormap(cmap).map(stop / 10, mode="qcolor"))
            bar.setBrush(QBrush(gradient))
            bar.setPen(QPen(QColor(self.theme.muted), 0.8))
            self.scene().addItem(bar)
            tick = text_item(None, f"{hi:g}", font(14), self.theme.muted)
            center_text(tick, x + 154, top + 10, "left")
            self.scene().addItem(tick)
            x += 154 + tick.boundingRect().width() + 36
        return top + 24

    # -- values -----------------------------------------------------------------------------
    def fill_for(self, key: str, value: float) -> QColor:
        lo, hi = levels_of(key)
        cmap = self.theme.sequential_map if lo == 0.0 else self.theme.diverging_map
        return colormap(cmap).map(min(max((value - lo) / (hi - lo), 0.0), 1.0), mode="qcolor")

    def set_values(self, values: dict[str, float], notes: dict[str, str], animate: bool = False) -> None:
        """Show ``values`` (key -> value of the selected unit at the selected t); ``notes``:
        op key -> html shown beside that operation. Colours ease in when ``animate``."""
        self.values = dict(values)
        self._animation.stop()
        self._from, self._to = {}, {}
        for key, node in self.nodes.items():
            name = key[3:] if key.startswith("eq:") else key
            value = values.get("h" if name == "layer" else name)
            if value is None:
                continue
            text = value_text(name, value)
            fill = self.fill_for(name, value)
            if isinstance(node, (GateBox, Pill)):
                node.set_value(value, text, node.fill)
            else:
                number = node.data(1)
                number.setPlainText(f"= {text}")
                center_text(number, WIDTH - 30, node.y(), "right")
            self._from[key], self._to[key] = QColor(node.fill), fill
        for key, op in self.ops.items():
            op.set_note(notes.get(key, ""))
        if animate and self.isVisible():
            self._animation.start()
        else:
            self._blend(1.0)

    def set_input(self, text: str) -> None:
        """The probe's input at t, as its label (a character, a value), on the x_t pill."""
        pill = self.nodes.get("x")
        if pill is not None:
            text = text if len(text) <= 9 else text[:8] + "…"
            pill.set_value(None, repr(text) if text else "", QColor(self.theme.background))

    @property
    def animating(self) -> bool:
        return self._animation.state() == QVariantAnimation.Running

    def _blend(self, amount: float) -> None:
        for key, target in self._to.items():
            start = self._from[key]
            mixed = QColor.fromRgbF(*(a + (b - a) * float(amount) for a, b in zip(
                start.getRgbF(), target.getRgbF(), strict=True)))
            self.nodes[key].set_fill(mixed)

    # -- view -------------------------------------------------------------------------------
    def _fit(self) -> None:
        """The whole scene when it is legible so (at least SMALLEST of its size), else the
        cell alone, larger: the equations below it are for a roomy panel."""
        whole = self.scene().sceneRect()
        if whole.isEmpty():
            return
        view = self.viewport().rect()
        scale = min(view.width() / whole.width(), view.height() / whole.height())
        part = getattr(self, "diagram_rect", whole)
        self.fitInView(whole if scale >= SMALLEST or part.isEmpty() else part, Qt.KeepAspectRatio)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        self._fit()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().showEvent(event)
        self._fit()
