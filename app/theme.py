"""Themes: light/dark (and slide, for exported figures) colours, the colour-blind-safe palette and the colour maps.

One place decides every colour the user sees, so a cell kind, a gate or the time cursor
looks the same in every panel and in every exported image. Line colours come from the
Okabe-Ito palette (distinguishable with the common colour-vision deficiencies). Signed
quantities (hidden states, cell states, tanh gates) use a diverging map with symmetric,
fixed levels, so white always means 0; quantities in [0, 1] (sigmoid gates) use viridis.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#999999",
}

# One fixed colour per cell kind, used everywhere (curves, legends, badges).
CELL_COLORS = {"rnn": OKABE_ITO["vermillion"], "lstm": OKABE_ITO["blue"], "gru": OKABE_ITO["green"]}

# Series colours in order, for per-layer or per-unit curves.
SERIES = tuple(OKABE_ITO[k] for k in ("blue", "orange", "green", "purple", "sky", "vermillion", "yellow"))

# Value range each heatmap shows, fixed so that colours mean the same thing at every step.
LEVELS = {"signed": (-1.0, 1.0), "cell_state": (-3.0, 3.0), "unit": (0.0, 1.0)}

FONT_POINTS = 10  # legible on a projected 1920x1080 slide
MONO_FAMILY = "DejaVu Sans Mono"


@dataclass(frozen=True)
class Theme:
    """Colours of one theme. Strings are '#RRGGBB' (or '#RRGGBBAA' for shading)."""

    name: str
    background: str
    surface: str  # plot backgrounds
    foreground: str  # axis text, labels
    muted: str  # grid, secondary text
    accent: str  # selection, focus
    loss: str
    grad_norm: str
    baseline: str
    target: str
    clipped: str
    diverged: str
    cursor: str
    padding: str  # shading over padded time steps
    chunk: str  # shading over alternate truncated-BPTT chunks
    invalid: str  # border of a field with an invalid value
    diverging_map: str
    sequential_map: str
    magnitude_map: str  # log magnitudes (gradient history)
    line_scale: float = 1.0  # exported figures widen every line by this much


LIGHT = Theme(
    name="light",
    background="#F4F5F7",
    surface="#FFFFFF",
    foreground="#202124",
    muted="#80868B",
    accent=OKABE_ITO["blue"],
    loss=OKABE_ITO["blue"],
    grad_norm=OKABE_ITO["orange"],
    baseline="#5F6368",
    target=OKABE_ITO["green"],
    clipped=OKABE_ITO["purple"],
    diverged=OKABE_ITO["vermillion"],
    cursor="#202124",
    padding="#8080804A",
    chunk="#56B4E922",
    invalid="#C5221F",
    diverging_map="CET-D1A",
    sequential_map="viridis",
    magnitude_map="inferno",
)

DARK = Theme(
    name="dark",
    background="#202124",
    surface="#17181A",
    foreground="#E8EAED",
    muted="#9AA0A6",
    accent=OKABE_ITO["sky"],
    loss=OKABE_ITO["sky"],
    grad_norm=OKABE_ITO["orange"],
    baseline="#BDC1C6",
    target=OKABE_ITO["green"],
    clipped=OKABE_ITO["purple"],
    diverged=OKABE_ITO["vermillion"],
    cursor="#F1F3F4",
    padding="#C0C0C040",
    chunk="#56B4E926",
    invalid="#F28B82",
    diverging_map="CET-D1A",
    sequential_map="viridis",
    magnitude_map="inferno",
)

# Figures for slides (export only): white, black text, the same colour-blind-safe colours,
# thicker lines. Fonts and lines are also enlarged with the export size (app.export.figure).
SLIDE = replace(
    LIGHT,
    name="slide",
    background="#FFFFFF",
    foreground="#000000",
    muted="#5F6368",
    cursor="#000000",
    line_scale=1.5,
)

THEMES = {"light": LIGHT, "dark": DARK, "slide": SLIDE}


def get_theme(name: str) -> Theme:
    """The theme called ``name``; ValueError naming the allowed ones otherwise."""
    try:
        return THEMES[name]
    except KeyError:
        raise ValueError(f"theme must be one of {', '.join(THEMES)}; got {name!r}") from None


@cache
def colormap(name: str) -> pg.ColorMap:
    """A pyqtgraph colour map by name (cached: the lookup tables are reused)."""
    return pg.colormap.get(name)


def cell_color(kind: str) -> str:
    """The fixed colour of a cell kind ('rnn', 'lstm', 'gru')."""
    return CELL_COLORS.get(kind, OKABE_ITO["grey"])


def ui_font(points: float = FONT_POINTS, bold: bool = False) -> QFont:
    font = QFont()
    font.setPointSizeF(points)
    font.setBold(bold)
    return font


def apply_theme(theme: Theme, app: QApplication | None = None) -> None:
    """Style the whole application: Qt palette, font, and pyqtgraph's defaults.

    Panels already on screen restyle themselves through ``Panel.apply_theme``.
    """
    app = app or QApplication.instance()
    pg.setConfigOptions(background=theme.surface, foreground=theme.foreground, antialias=True)
    if app is None:
        return
    app.setStyle("Fusion")
    app.setFont(ui_font())
    app.setPalette(qt_palette(theme))


def qt_palette(theme: Theme) -> QPalette:
    """A QPalette for the Fusion style matching ``theme``."""
    fg, bg, surface = QColor(theme.foreground), QColor(theme.background), QColor(theme.surface)
    # Controls a shade off the window colour; QPalette(button, window) derives the bevel
    # shades (Light, Mid, Dark, Shadow) Fusion draws slider grooves and frames with.
    button = bg.lighter(150) if bg.lightness() < 128 else bg.darker(103)
    p = QPalette(button, bg)
    roles = {
        QPalette.Window: bg,
        QPalette.WindowText: fg,
        QPalette.Base: surface,
        QPalette.AlternateBase: bg,
        QPalette.Text: fg,
        QPalette.Button: button,
        QPalette.ButtonText: fg,
        QPalette.ToolTipBase: surface,
        QPalette.ToolTipText: fg,
        QPalette.Highlight: QColor(theme.accent),
        QPalette.HighlightedText: QColor("#FFFFFF"),
        QPalette.PlaceholderText: QColor(theme.muted),
        QPalette.Link: QColor(theme.accent),
    }
    for role, color in roles.items():
        p.setColor(role, color)
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        p.setColor(QPalette.Disabled, role, QColor(theme.muted))
    return p


def ink_for(fill: QColor) -> QColor:
    """Black or white, whichever reads better on ``fill`` (WCAG relative luminance)."""
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    lum = 0.2126 * channel(fill.redF()) + 0.7152 * channel(fill.greenF()) + 0.0722 * channel(fill.blueF())
    return QColor("#FFFFFF") if lum < 0.33 else QColor("#111111")
