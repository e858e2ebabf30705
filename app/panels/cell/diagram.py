"""Graphics items of the cell diagram: gate boxes, pointwise operations, state pills, wires.

Everything is drawn in scene units (the view scales the whole scene to fit), so the picture
keeps its proportions from a laptop to a projected 1920x1080 slide. Items know nothing
about the model: they show a value and a colour given to them (see app.panels.cell.view).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPolygonItem,
    QGraphicsScene,
    QGraphicsTextItem,
)

from app.theme import Theme, ink_for

SERIF = "DejaVu Serif"
SANS = "DejaVu Sans"


def font(pixels: int, bold: bool = False, family: str = SANS, italic: bool = False) -> QFont:
    f = QFont(family)
    f.setPixelSize(pixels)
    f.setBold(bold)
    f.setItalic(italic)
    return f


def text_item(parent: QGraphicsItem | None, html: str, f: QFont, color: str | QColor) -> QGraphicsTextItem:
    item = QGraphicsTextItem(parent)
    item.setFont(f)
    item.setDefaultTextColor(QColor(color))
    item.setHtml(html)
    item.setAcceptHoverEvents(False)
    return item


def center_text(item: QGraphicsTextItem, x: float, y: float, anchor: str = "center") -> None:
    """Place ``item`` so that its anchor ('center', 'left', 'right') sits at (x, y)."""
    r = item.boundingRect()
    dx = {"center": r.width() / 2, "left": 0.0, "right": r.width()}[anchor]
    item.setPos(x - dx, y - r.height() / 2)


class _Hoverable:
    """Reports hover to a callback with the item's key; draws a thicker outline meanwhile."""

    key: str
    on_hover: Callable[[str], None] | None

    def hoverEnterEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        pen = self.pen()
        pen.setWidthF(self._pen_width * 2.2)
        self.setPen(pen)
        if self.on_hover is not None:
            self.on_hover(self.key)
        super().hoverEnterEvent(event)

    def hoverLeaveEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        pen = self.pen()
        pen.setWidthF(self._pen_width)
        self.setPen(pen)
        super().hoverLeaveEvent(event)


class Node(_Hoverable, QGraphicsPathItem):
    """A rounded box (gate), circle (pointwise op) or pill (state) filled with its live value.

    ``half`` is the half width and height, used to end wires at the outline.
    """

    def __init__(self, scene: QGraphicsScene, theme: Theme, key: str, x: float, y: float,
                 w: float, h: float, radius: float, on_hover: Callable[[str], None] | None = None):
        super().__init__()
        self.key, self.on_hover, self.half = key, on_hover, (w / 2, h / 2)
        path = QPainterPath()
        path.addRoundedRect(QRectF(-w / 2, -h / 2, w, h), radius, radius)
        self.setPath(path)
        self.setPos(x, y)
        self._pen_width = 1.6
        self.setPen(QPen(QColor(theme.foreground), self._pen_width))
        self.setBrush(QBrush(QColor(theme.surface)))
        self.setZValue(2)
        self.setAcceptHoverEvents(on_hover is not None)
        if on_hover is not None:
            self.setCursor(Qt.PointingHandCursor)
        self.value: float | None = None
        self.fill = QColor(theme.surface)
        self.texts: list[QGraphicsTextItem] = []
        scene.addItem(self)

    def set_fill(self, fill: QColor) -> None:
        self.fill = QColor(fill)
        self.setBrush(QBrush(self.fill))
        ink = ink_for(self.fill)
        for item in self.texts:
            item.setDefaultTextColor(ink)


class GateBox(Node):
    """A gate: its symbol, its squashing function and its live value, e.g. 'f', 'σ', '0.873'."""

    W, H = 124.0, 92.0

    def __init__(self, scene, theme, key, x, y, symbol: str, function: str, on_hover=None):
        super().__init__(scene, theme, key, x, y, self.W, self.H, 12, on_hover)
        self.symbol = text_item(self, f"<i>{symbol}</i>", font(30, True, SERIF), theme.foreground)
        self.function = text_item(self, function, font(15), theme.foreground)
        self.number = text_item(self, "", font(18, True), theme.foreground)
        self.texts = [self.symbol, self.function, self.number]
        center_text(self.symbol, -22, -18)
        center_text(self.function, 26, -18)

    def set_value(self, value: float, text: str, fill: QColor) -> None:
        self.value = float(value)
        self.number.setPlainText(text)
        center_text(self.number, 0, 22)
        self.set_fill(fill)


class Pill(Node):
    """A state (h_{t-1}, c_t, x_t, ...): its name and live value on a rounded pill."""

    W, H = 176.0, 46.0

    def __init__(self, scene, theme, key, x, y, label_html: str, on_hover=None, w: float | None = None):
        super().__init__(scene, theme, key, x, y, w or self.W, self.H, self.H / 2, on_hover)
        self.width = w or self.W
        self.label = text_item(self, label_html, font(19, False, SERIF, italic=True), theme.foreground)
        self.number = text_item(self, "", font(17, True), theme.foreground)
        self.texts = [self.label, self.number]
        center_text(self.label, -self.width / 2 + 14, 0, "left")

    def set_value(self, value: float | None, text: str, fill: QColor) -> None:
        self.value = None if value is None else float(value)
        self.number.setPlainText(text)
        center_text(self.number, self.width / 2 - 14, 0, "right")
        self.set_fill(fill)


class Op(Node):
    """A pointwise operation (×, +, 1−, tanh) in a circle, with a small value label beside it."""

    def __init__(self, scene, theme, key, x, y, symbol: str, note_at: tuple[float, float] = (22, -22)):
        w = 58.0 if len(symbol) > 2 else 36.0
        super().__init__(scene, theme, key, x, y, w, 36.0, 18.0)
        self.setBrush(QBrush(QColor(theme.background)))
        self.symbol = text_item(self, symbol, font(19 if len(symbol) <= 2 else 15, True), theme.foreground)
        center_text(self.symbol, 0, 0)
        self.note = text_item(None, "", font(14), theme.muted)
        self.note.setZValue(3)
        scene.addItem(self.note)
        self.note_at = (x + note_at[0], y + note_at[1])

    def set_note(self, html: str) -> None:
        self.note.setHtml(html)
        center_text(self.note, *self.note_at, anchor="left" if self.note_at[0] >= self.x() else "right")


def wire(scene: QGraphicsScene, theme: Theme, points: list, arrow: bool = True,
         dashed: bool = False) -> QGraphicsPathItem:
    """A polyline from node or point to node or point, ending at node outlines, with an arrowhead.

    ``points``: QPointF-able (x, y) tuples or Nodes (first and/or last); segments must be
    horizontal or vertical where they touch a node.
    """
    xy = [QPointF(p.x(), p.y()) if isinstance(p, Node) else QPointF(*p) for p in points]
    for end, nxt in ((0, 1), (-1, -2)):
        node = points[end]
        if isinstance(node, Node):
            a, b = xy[end], xy[nxt]
            hw, hh = node.half
            if abs(b.x() - a.x()) > abs(b.y() - a.y()):
                xy[end] = QPointF(a.x() + (hw if b.x() > a.x() else -hw), a.y())
            else:
                xy[end] = QPointF(a.x(), a.y() + (hh if b.y() > a.y() else -hh))
    color = QColor(theme.muted if dashed else theme.foreground)
    path = QPainterPath(xy[0])
    tip, before = xy[-1], xy[-2]
    d = tip - before
    length = max((d.x() ** 2 + d.y() ** 2) ** 0.5, 1e-6)
    ux, uy = d.x() / length, d.y() / length
    head = 11.0 if arrow else 0.0
    for p in xy[1:-1]:
        path.lineTo(p)
    path.lineTo(QPointF(tip.x() - ux * head * 0.8, tip.y() - uy * head * 0.8))
    item = QGraphicsPathItem(path)
    item.setPen(QPen(color, 2.2, Qt.DashLine if dashed else Qt.SolidLine, Qt.FlatCap, Qt.RoundJoin))
    item.setZValue(1)
    scene.addItem(item)
    if arrow:
        px, py = -uy, ux
        poly = QPolygonF([tip, QPointF(tip.x() - ux * head + px * head * 0.45, tip.y() - uy * head + py * head * 0.45),
                          QPointF(tip.x() - ux * head - px * head * 0.45, tip.y() - uy * head - py * head * 0.45)])
        head_item = QGraphicsPolygonItem(poly, item)
        head_item.setPen(QPen(Qt.NoPen))
        head_item.setBrush(QBrush(color))
    return item


def junction(scene: QGraphicsScene, theme: Theme, x: float, y: float) -> None:
    """A dot where one wire splits into two (the same value goes both ways)."""
    dot = QGraphicsEllipseItem(x - 4.5, y - 4.5, 9, 9)
    dot.setBrush(QBrush(QColor(theme.foreground)))
    dot.setPen(QPen(Qt.NoPen))
    dot.setZValue(2)
    scene.addItem(dot)
