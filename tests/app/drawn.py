"""What an axis draws, for tests that check labels on screen and on slides."""

from __future__ import annotations

from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter


def drawn_labels(axis) -> list[tuple[QRectF, str]]:
    """(scene rect, text) of each tick label ``axis`` draws now, as its paint lays them out
    (pyqtgraph leaves out any it finds no room for)."""
    image = QImage(8, 8, QImage.Format_ARGB32)
    painter = QPainter(image)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [(axis.mapRectToScene(rect), text) for rect, _, text in (specs[2] if specs else [])]
