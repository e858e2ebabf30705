"""Figures for slides and papers: one panel as a PNG or SVG of an exact size.

A figure is the panel itself, painted offscreen. ``staged`` lifts the panel out of its dock,
restyles it in the figure's theme, hides its option row and lays it out at the figure's
*layout* size: the pixel size divided by ``scale``. Painting then scales by ``scale``, so
text, ticks and margins grow with the pixel size the way a high-DPI screen draws them (a
1920x1080 slide is laid out at 960x540 and painted at 2x). pyqtgraph draws lines with
cosmetic pens, whose width is in device pixels and does not grow with the painter, so for
the paint those pens (and marker sizes) are widened by ``scale * theme.line_scale`` and
restored after. Afterwards the panel goes back to its dock as it was.

PNG: painted into a QImage of exactly the requested pixels. SVG: the same painting into a
QSvgGenerator with an explicit size, viewBox (in pixels) and background; text stays text
(axis labels, tick labels, legends), heatmaps are embedded images. Files are written
atomically: a failed export leaves no partial file. An optional caption above the panel
names it and the experiment's key settings.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QEventLoop,
    QIODevice,
    QPoint,
    QRect,
    QRectF,
    QSize,
    Qt,
)
from PySide6.QtGui import (
    QColor,
    QFontMetricsF,
    QGuiApplication,
    QImage,
    QPainter,
    QPalette,
    QPen,
    QRegion,
)
from PySide6.QtWidgets import QApplication, QBoxLayout, QDockWidget, QWidget

from app.panels.base import Panel
from app.theme import FONT_POINTS, get_theme, qt_palette, ui_font
from core.atomic import atomic_write

FIGURE_FORMATS = ("png", "svg")
SIZE_PRESETS = {"slide": (1920, 1080), "4k": (3840, 2160), "square": (1080, 1080)}
SIZE_TITLES = {"slide": "Slide 16:9", "4k": "4K 16:9", "square": "Square"}
SLIDE_LAYOUT_HEIGHT = 540  # slide theme: 10 pt text is then ~1/40 of the figure's height
SCREEN_DPI = 96.0
MIN_SIZE, MAX_SIZE = (320, 240), (7680, 4320)


@dataclass(frozen=True)
class Figure:
    """How to draw a panel as a figure.

    size:     (width, height) in pixels of the PNG (an SVG's width and height in px).
    theme:    "slide" (white, larger text and lines), "light" or "dark".
    scale:    device pixels per layout pixel (text and line size); None picks it: slide
              lays out at 540 px high, other themes at the pixel size (or dpi / 96).
    caption:  draw the panel title and the experiment's key settings above the panel.
    controls: keep the panel's option row (check boxes, menus) in the picture.
    dpi:      resolution recorded in the PNG (its physical size in PowerPoint or print).
    """

    size: tuple[int, int] = SIZE_PRESETS["slide"]
    theme: str = "slide"
    scale: float | None = None
    caption: bool = True
    controls: bool = False
    dpi: float | None = None

    @property
    def device_scale(self) -> float:
        if self.scale:
            return float(self.scale)
        if self.theme == "slide":
            return max(1.0, self.size[1] / SLIDE_LAYOUT_HEIGHT)
        return self.dpi / SCREEN_DPI if self.dpi else 1.0

    @property
    def layout_size(self) -> tuple[int, int]:
        s = self.device_scale
        return max(1, round(self.size[0] / s)), max(1, round(self.size[1] / s))

    def validated(self) -> Figure:
        """This figure, or ValueError naming the bad value and what is allowed."""
        get_theme(self.theme)
        check_size(self.size)
        if self.scale is not None and not 0.25 <= self.scale <= 16:
            raise ValueError(f"scale must be from 0.25 to 16; got {self.scale!r}")
        if self.dpi is not None and not 10 <= self.dpi <= 2400:
            raise ValueError(f"dpi must be from 10 to 2400; got {self.dpi!r}")
        return self


DEFAULT_FIGURE = Figure()  # a 1920x1080 slide


def at_dpi(panel: QWidget, dpi: float, **options: Any) -> Figure:
    """The panel at its current on-screen size, printed at ``dpi`` (300 for a paper)."""
    scale = dpi / SCREEN_DPI
    size = (round(max(panel.width(), 1) * scale), round(max(panel.height(), 1) * scale))
    options.setdefault("theme", "light")
    return Figure(size=size, scale=scale, dpi=dpi, **options)


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    if not (MIN_SIZE[0] <= w <= MAX_SIZE[0] and MIN_SIZE[1] <= h <= MAX_SIZE[1]):
        raise ValueError(f"size must be from {MIN_SIZE[0]}x{MIN_SIZE[1]} to {MAX_SIZE[0]}x{MAX_SIZE[1]}; "
                         f"got {w}x{h}")
    return int(w), int(h)


def parse_size(text: str) -> tuple[int, int]:
    """'slide', '4k', 'square' or 'WIDTHxHEIGHT' -> pixels; ValueError naming what is allowed."""
    key = (text or "").strip().lower()
    if key in SIZE_PRESETS:
        return SIZE_PRESETS[key]
    m = re.fullmatch(r"(\d+)\s*[x×]\s*(\d+)", key)
    if not m:
        raise ValueError(f"size must be WIDTHxHEIGHT (e.g. 1920x1080) or one of {', '.join(SIZE_PRESETS)}; "
                         f"got {text!r}")
    return check_size((int(m.group(1)), int(m.group(2))))


# ------------------------------------------------------------------------------ caption
def settings_text(run: Any) -> str:
    """The experiment's key settings in one line, e.g. 'LSTM · adding · 32 units · lr 0.001 · seed 0'."""
    if run is None:
        return ""
    e = run.experiment
    parts = [e.cell.upper() + (f" x{e.num_layers}" if e.num_layers > 1 else ""), run.task_title or e.task,
             f"{e.hidden_size} units", f"T {e.seq_len}", f"batch {e.batch_size}", f"{e.optimizer} lr {e.lr:g}"]
    if e.clip > 0:
        parts.append(f"clip {e.clip:g}")
    if e.tbptt > 0:
        parts.append(f"TBPTT {e.tbptt}")
    parts.append(f"seed {e.seed}")
    return " · ".join(parts)


def caption_lines(panel: Panel, step: int | None = None) -> tuple[str, str]:
    """(title, details): the panel's title, then settings, the step, the panel's note and the
    interventions on show (``panel.what_if_caption``), each part once (a note may repeat settings, e.g.
    the compare panel's 'seed 0 · 64 units')."""
    parts = [part for part in settings_text(panel.run).split(" · ") if part]
    note = " ".join(panel.note.text().split()) if hasattr(panel, "note") else ""
    if step is not None and f"step {step}" not in note:
        parts.append(f"step {step}")
    if getattr(panel, "what_if_caption", ""):  # before the note: the details are cut after two lines
        parts.append(panel.what_if_caption)
    for part in note.split(" · "):
        if part and part not in parts:
            parts.append(part)
    return panel.title, " · ".join(parts)


def _caption_fonts():
    return ui_font(FONT_POINTS + 1, bold=True), ui_font(FONT_POINTS - 1.5)


def _details(text: str, width: float) -> tuple[str, float]:
    """The details line wrapped to at most two lines of ``width`` (elided beyond): (text, height)."""
    metrics = QFontMetricsF(_caption_fonts()[1])
    shown = metrics.elidedText(text, Qt.ElideRight, 1.9 * width)
    height = metrics.boundingRect(QRectF(0, 0, width, 1e6), Qt.TextWordWrap, shown).height()
    return shown, max(height, metrics.height())


def caption_height(lines: tuple[str, str], width: int) -> int:
    """Layout pixels the caption takes above a panel ``width`` layout pixels wide."""
    return round(4 + QFontMetricsF(_caption_fonts()[0]).height() + _details(lines[1], width - 16)[1] + 6)


def _draw_caption(painter: QPainter, lines: tuple[str, str], width: int, theme: Any) -> None:
    title_font, detail_font = _caption_fonts()
    title_height = QFontMetricsF(title_font).height()
    painter.setFont(title_font)
    painter.setPen(QColor(theme.foreground))
    title = QFontMetricsF(title_font).elidedText(lines[0], Qt.ElideRight, width - 16)
    painter.drawText(QRectF(8, 4, width - 16, title_height), Qt.AlignLeft | Qt.AlignVCenter, title)
    details, height = _details(lines[1], width - 16)
    painter.setFont(detail_font)
    painter.setPen(QColor(theme.muted))
    painter.drawText(QRectF(8, 4 + title_height, width - 16, height), Qt.AlignLeft | Qt.AlignTop | Qt.TextWordWrap,
                     details)


# ------------------------------------------------------------------------------ staging
def _settle(panel: Panel) -> None:
    """Let layouts settle (docks, then plots take a few passes), then redraw the data."""
    app = QApplication.instance()
    for _ in range(3):
        app.processEvents(QEventLoop.ExcludeUserInputEvents)
        panel.refresh(force=True)


@contextlib.contextmanager
def staged(panel: Panel, figure: Figure, lines: tuple[str, str] | None = None) -> Iterator[Stage]:
    """Lift ``panel`` out of its container, styled and laid out for ``figure``; put it back after."""
    theme = get_theme(figure.theme)
    old_theme, old_size, old_minimum, was_visible = panel.theme, panel.size(), panel.minimumSize(), panel.isVisible()
    palette_set, old_palette = panel.testAttribute(Qt.WA_SetPalette), QPalette(panel.palette())
    parent = panel.parentWidget()
    box = parent.layout() if parent is not None and isinstance(parent.layout(), QBoxLayout) else None
    index = box.indexOf(panel) if box is not None else -1
    stretch = box.stretch(index) if box is not None and index >= 0 else 0
    controls = [] if figure.controls else _visible_controls(panel)
    for widget in controls:
        widget.hide()
    stand_in = None
    if isinstance(parent, QDockWidget):  # a stand-in that sizes like the panel keeps the window's layout
        stand_in = StandIn(panel)
        parent.setWidget(stand_in)
    elif parent is not None:
        panel.setParent(None)
    panel.setAttribute(Qt.WA_DontShowOnScreen, True)
    palette = qt_palette(theme)
    palette.setColor(QPalette.Window, QColor(theme.surface))
    panel.setPalette(palette)
    panel.apply_theme(theme)
    try:
        width, height = figure.layout_size
        top = caption_height(lines, width) if figure.caption and lines else 0
        panel.setMinimumSize(0, 0)
        panel.resize(width, max(height - top, 1))
        panel.show()
        _settle(panel)
        if panel.height() > max(height - top, 1) or panel.width() > width:
            raise ValueError(f"size {figure.size[0]}x{figure.size[1]} lays {panel.title} out at {width}x{height}, "
                             f"smaller than it can be ({panel.width()}x{panel.height() + top}); "
                             f"choose a larger size or a smaller scale")
        yield Stage(panel, figure, theme, lines if figure.caption else None, top)
    finally:
        panel.hide()
        panel.setAttribute(Qt.WA_DontShowOnScreen, False)
        if palette_set:
            panel.setPalette(old_palette)
        else:  # inherit the window's again (QPalette() alone left the staged palette's colours)
            panel.setPalette(QPalette())
            panel.setAttribute(Qt.WA_SetPalette, False)
            if panel.parentWidget() is not None:
                panel.setPalette(panel.parentWidget().palette().resolve(QPalette()))
                panel.setAttribute(Qt.WA_SetPalette, False)
        panel.apply_theme(old_theme)
        for widget in controls:
            widget.show()
        if isinstance(parent, QDockWidget):
            parent.setWidget(panel)
            stand_in.deleteLater()
        elif box is not None and index >= 0:
            box.insertWidget(index, panel, stretch)
        elif parent is not None:
            panel.setParent(parent)
        panel.setMinimumSize(old_minimum)
        panel.resize(old_size)
        panel.setVisible(was_visible)
        panel.refresh(force=True)


class StandIn(QWidget):
    """Holds a panel's place in its dock while the panel is staged: the same size hints,
    policy and limits, so the window lays its docks out exactly as before (a dock emptied
    for a moment came back a pixel shorter, or much wider when it was a tab)."""

    def __init__(self, panel: QWidget):
        super().__init__()
        self._hint, self._minimum = panel.sizeHint(), panel.minimumSizeHint()
        self.setSizePolicy(panel.sizePolicy())
        self.setMinimumSize(panel.minimumSize())
        self.setMaximumSize(panel.maximumSize())
        self.resize(panel.size())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        return self._hint

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        return self._minimum


def _visible_controls(panel: Panel) -> list[QWidget]:
    options = getattr(panel, "options", None)
    items = [options.itemAt(i) for i in range(options.count())] if options is not None else []
    return [item.widget() for item in items if item.widget() is not None and not item.widget().isHidden()]


@dataclass
class Stage:
    """A staged panel, ready to paint (see ``staged``)."""

    panel: Panel
    figure: Figure
    theme: Any
    caption: tuple[str, str] | None
    top: int

    def paint(self, painter: QPainter) -> None:
        """Paint the figure (background, caption, panel) at ``figure.size`` device pixels."""
        scale = self.figure.device_scale
        width, height = self.figure.layout_size
        painter.save()
        painter.fillRect(QRectF(0, 0, *self.figure.size), QColor(self.theme.surface))  # the whole canvas
        painter.scale(scale, scale)
        if self.caption:
            _draw_caption(painter, self.caption, width, self.theme)
        with widened_pens(self.panel, scale, self.theme.line_scale):
            self.panel.render(painter, QPoint(0, self.top), QRegion(self.panel.rect()),
                              QWidget.RenderFlag.DrawChildren | QWidget.RenderFlag.DrawWindowBackground)
        painter.restore()

    def image(self) -> QImage:
        """The figure as a QImage of exactly ``figure.size`` pixels."""
        width, height = self.figure.size
        image = QImage(width, height, QImage.Format_ARGB32)
        image.fill(QColor(self.theme.surface))
        if self.figure.dpi:
            dots_per_metre = round(self.figure.dpi / 0.0254)
            image.setDotsPerMeterX(dots_per_metre)
            image.setDotsPerMeterY(dots_per_metre)
        painter = QPainter(image)
        painter.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing | QPainter.SmoothPixmapTransform)
        self.paint(painter)
        painter.end()
        return image

    def svg(self, title: str = "") -> bytes:
        """The figure as SVG: viewBox and size in pixels, so a line is as wide as in the PNG."""
        from PySide6.QtSvg import QSvgGenerator

        width, height = self.figure.size
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.WriteOnly)
        generator = QSvgGenerator()
        generator.setOutputDevice(buffer)
        generator.setSize(QSize(width, height))
        generator.setViewBox(QRect(0, 0, width, height))
        generator.setResolution(round(self.figure.dpi or SCREEN_DPI))
        generator.setTitle(title)
        generator.setDescription("RNN Explorer figure")
        painter = QPainter(generator)
        self.paint(painter)
        painter.end()
        buffer.close()
        return bytes(data.data())


# ------------------------------------------------------------------------------ pens
def _pen_slots(item: Any) -> list[tuple[Any, Any, bool]]:
    """(current pen, setter, is a data line) for each pen ``item`` draws with."""
    parent = item.parentItem()
    if isinstance(item, pg.PlotDataItem):
        return [(item.opts.get("pen"), item.setPen, True)]
    if isinstance(item, pg.PlotCurveItem) and not isinstance(parent, pg.PlotDataItem):
        return [(item.opts.get("pen"), item.setPen, True)]
    if isinstance(item, pg.InfiniteLine):
        return [(item.pen, item.setPen, True)]
    if isinstance(item, (pg.AxisItem, pg.LegendItem)):  # frames and grids: as on screen, no bolder
        return [(item.pen(), item.setPen, False)]
    return []


@contextlib.contextmanager
def widened_pens(panel: Panel, scale: float, line_scale: float = 1.0) -> Iterator[None]:
    """Widen the cosmetic pens of the panel's plots for a paint at ``scale``: frames, grids and
    markers by ``scale``, data and reference lines by ``scale * line_scale``."""
    undo: list[tuple[Any, Any]] = []
    for view in panel.plot_widgets():
        for item in view.scene().items():
            for pen, setter, is_line in _pen_slots(item):
                if isinstance(pen, QPen) and pen.isCosmetic() and pen.style() != Qt.NoPen:
                    wide = QPen(pen)
                    wide.setWidthF(max(pen.widthF(), 1.0) * scale * (line_scale if is_line else 1.0))
                    undo.append((setter, QPen(pen)))
                    setter(wide)
            if isinstance(item, pg.ScatterPlotItem) and not isinstance(item.parentItem(), pg.PlotDataItem):
                size = item.opts.get("size")
                if isinstance(size, (int, float)):
                    undo.append((item.setSize, size))
                    item.setSize(size * scale)
    try:
        yield
    finally:
        for setter, value in reversed(undo):
            setter(value)


# ------------------------------------------------------------------------------ files
def render_image(panel: Panel, figure: Figure, lines: tuple[str, str] | None = None) -> QImage:
    with staged(panel, figure.validated(), lines or caption_lines(panel)) as stage:
        return stage.image()


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError("could not encode the PNG")
    buffer.close()
    return bytes(data.data())


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (no partial file on failure)."""
    path = Path(path)
    with atomic_write(path) as f:
        f.write(data)
    return path


def save_png(panel: Panel, path: str | Path, figure: Figure = DEFAULT_FIGURE,
             lines: tuple[str, str] | None = None) -> Path:
    """Save ``panel`` as a PNG of exactly ``figure.size`` pixels."""
    return write_bytes(Path(path), png_bytes(render_image(panel, figure, lines)))


def save_svg(panel: Panel, path: str | Path, figure: Figure = DEFAULT_FIGURE,
             lines: tuple[str, str] | None = None) -> Path:
    """Save ``panel`` as an SVG (vector lines and text) of ``figure.size`` pixels."""
    with staged(panel, figure.validated(), lines or caption_lines(panel)) as stage:
        data = stage.svg(title=panel.title)
    return write_bytes(Path(path), data)


def save_figure(panel: Panel, path: str | Path, figure: Figure = DEFAULT_FIGURE,
                lines: tuple[str, str] | None = None) -> Path:
    """PNG or SVG by the file's suffix."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise ValueError(f"a figure file must end in .png or .svg; got {str(path)!r}")
    return (save_png if suffix == "png" else save_svg)(panel, path, figure, lines)


def copy_image(panel: Panel, figure: Figure = DEFAULT_FIGURE, lines: tuple[str, str] | None = None) -> QImage:
    """Put the figure on the clipboard (paste it into slides) and return it."""
    image = render_image(panel, figure, lines)
    QGuiApplication.clipboard().setImage(image)
    return image
