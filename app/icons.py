"""Transport icons drawn in the theme's text colour (the style's own icons vanish on dark)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF

SIZE = 32  # drawn at 2x and scaled down by Qt: crisp at the toolbar's 16-20 px


def _canvas() -> tuple[QPixmap, QPainter]:
    pixmap = QPixmap(SIZE, SIZE)
    pixmap.fill(Qt.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.Antialiasing)
    return pixmap, painter


def _triangle(painter: QPainter, x0: float, x1: float) -> None:
    painter.drawPolygon(QPolygonF([QPointF(x0, 6), QPointF(x1, SIZE / 2), QPointF(x0, SIZE - 6)]))


def icon(name: str, color: str) -> QIcon:
    """'run', 'pause', 'step', 'step10' or 'reset', filled with ``color``."""
    pixmap, p = _canvas()
    p.setPen(Qt.NoPen)
    p.setBrush(QColor(color))
    if name == "run":
        _triangle(p, 8, 26)
    elif name == "pause":
        p.drawRoundedRect(QRectF(8, 6, 6, 20), 1.5, 1.5)
        p.drawRoundedRect(QRectF(18, 6, 6, 20), 1.5, 1.5)
    elif name == "step":
        _triangle(p, 6, 21)
        p.drawRoundedRect(QRectF(22, 6, 4, 20), 1, 1)
    elif name == "step10":
        _triangle(p, 2, 14)
        _triangle(p, 12, 24)
        p.drawRoundedRect(QRectF(25, 6, 4, 20), 1, 1)
    elif name == "reset":
        pen = QPen(QColor(color), 3.2)
        pen.setCapStyle(Qt.RoundCap)
        p.setPen(pen)
        p.setBrush(Qt.NoBrush)
        arc = QPainterPath()
        arc.arcMoveTo(QRectF(6, 6, 20, 20), 110)
        arc.arcTo(QRectF(6, 6, 20, 20), 110, 290)
        p.drawPath(arc)
        p.setPen(Qt.NoPen)
        p.setBrush(QColor(color))
        p.drawPolygon(QPolygonF([QPointF(9, 2), QPointF(17, 8), QPointF(8, 12)]))
    else:
        p.end()
        raise ValueError(f"unknown icon {name!r}")
    p.end()
    return QIcon(pixmap)
