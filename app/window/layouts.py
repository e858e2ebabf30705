"""Where the panel docks go: the default arrangement, fitted to the window's size.

``app.panels.LAYOUT`` gives columns of panels, top to bottom. A column stacks only as many
panels as fit the window's height at their ``Panel.min_height``; the rest become tabs of
the last one stacked (so at 1280x720 Gates is a tab beside Hidden state at full height, not
a sliver under it), and panels missing from LAYOUT are tabs of the last column. The
Experiment dock takes a fifth of the width (240 to 340 px).

While the user has not moved, floated or closed a dock, the arrangement follows the window:
a resize that changes how many panels a column can stack arranges them again. Once the user
has changed it, it is theirs (saved with the window, see app.window.prefs) until View >
Reset Layout.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QTabBar

from app.panels import COLUMN_WIDTHS, LAYOUT

TITLE_BAR = 26  # a dock's title bar, pixels
FORM_WIDTH = (240, 340)  # the Experiment dock's width: a fifth of the window, within these


class PanelLayout(QObject):
    """The arrangement of one MainWindow's docks (``window.layout_manager``)."""

    def __init__(self, window: Any):
        super().__init__(window)
        self.window = window
        self.custom = False  # the user moved, floated or closed a dock
        self.tier: tuple[int, ...] = ()  # panels stacked per column in the current arrangement
        self._arranging = False
        for dock in window.docks.values():
            dock.dockLocationChanged.connect(self._moved)
            dock.topLevelChanged.connect(self._moved)
            dock.toggleViewAction().triggered.connect(self._moved)
            dock.installEventFilter(self)  # its close button
        window.installEventFilter(self)  # tab bars the window makes later, for any dock (What if)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(60)  # after the resize has been laid out (a 0-ms timer came before)
        self._timer.timeout.connect(self._settled)
        self._proportion = False  # arranged during a resize: give the docks their proportions once it settles

    # -- what fits ----------------------------------------------------------------------------
    def panel_height(self) -> int:
        """Height left for the docks once the menu, toolbar and a one-line status bar have
        theirs (a longer message makes the status bar taller for a while: not a new layout)."""
        w = self.window
        status = w.status.fontMetrics().height() + 12
        chrome = w.menuBar().sizeHint().height() + w.transport.sizeHint().height() + status
        return max(w.height() - chrome, 200)

    def stacked(self) -> list[list[str]]:
        """Per LAYOUT column, the panels stacked (the first always; the others while they fit)."""
        height = self.panel_height()
        columns = []
        for column in LAYOUT:
            names = [n for n, _ in column if n in self.window.docks]
            kept, used = [], 0
            for name in names:
                need = type(self.window.panels[name]).min_height + TITLE_BAR
                if kept and used + need > height:
                    break
                kept.append(name)
                used += need
            if kept:
                columns.append(kept)
        return columns

    # -- arranging ----------------------------------------------------------------------------
    def arrange(self) -> None:
        """The default arrangement for the window's size (View > Reset Layout)."""
        w = self.window
        self._arranging = True
        try:
            stacked = self.stacked()
            for dock in w.docks.values():  # out of every split and tab group of the old arrangement
                dock.setFloating(False)  # (first: a floating dock taken out stays floating)
                w.removeDockWidget(dock)
            tops = [column[0] for column in stacked]
            for i, name in enumerate(tops):  # the columns side by side ...
                if i == 0:
                    w.addDockWidget(Qt.RightDockWidgetArea, w.docks[name])
                else:
                    w.splitDockWidget(w.docks[tops[i - 1]], w.docks[name], Qt.Horizontal)
            for column in stacked:  # ... each column's panels top to bottom ...
                for above, below in zip(column, column[1:], strict=False):
                    w.splitDockWidget(w.docks[above], w.docks[below], Qt.Vertical)
            placed = {n for column in stacked for n in column}
            for column, full in zip(stacked, LAYOUT, strict=False):  # ... the rest as tabs
                for name in [n for n, _ in full if n in w.docks and n not in placed]:
                    w.tabifyDockWidget(w.docks[column[-1]], w.docks[name])
                    placed.add(name)
            last = stacked[-1][-1] if stacked else None
            for name, dock in w.docks.items():
                if name not in placed and last is not None:
                    w.tabifyDockWidget(w.docks[last], dock)
            for dock in w.docks.values():
                dock.show()
            for column in stacked:  # the laid-out panels in front of the tabs behind them
                w.docks[column[-1]].raise_()
            self.tier = tuple(len(c) for c in stacked)
            self.custom = False
            self._proportion = True
            self.size_docks(stacked)
            self.fit_tabs()
        finally:
            self._arranging = False

    def size_docks(self, stacked: list[list[str]] | None = None) -> None:
        """Default proportions: the form a fifth of the width, columns and rows per LAYOUT."""
        w = self.window
        stacked = stacked if stacked is not None else self.stacked()
        width = w.width()  # (asking for more than the window has made Qt widen the window)
        form = min(max(width // 5, FORM_WIDTH[0]), FORM_WIDTH[1])
        w.resizeDocks([w.experiment_dock], [form], Qt.Horizontal)
        tops = [w.docks[column[0]] for column in stacked]
        weights = COLUMN_WIDTHS[: len(tops)]
        rest = width - form
        w.resizeDocks(tops, [rest * c // sum(weights) for c in weights], Qt.Horizontal)
        height = self.panel_height()
        relative = {n: h for column in LAYOUT for n, h in column}
        for column in stacked:
            total = sum(relative.get(n, 1) for n in column) or 1
            w.resizeDocks([w.docks[n] for n in column], [height * relative.get(n, 1) // total for n in column],
                          Qt.Vertical)

    def fit_tabs(self) -> None:
        """Dock tabs show whole titles (scroll arrows when they do not all fit, never "Gra…")."""
        for bar in self.window.findChildren(QTabBar):
            bar.setElideMode(Qt.ElideNone)
            bar.setUsesScrollButtons(True)

    def follow_size(self) -> None:
        """Arrange again if the window's size changed what a column can stack (unless the
        user arranged the docks)."""
        if self.custom or self._arranging:
            return
        if tuple(len(c) for c in self.stacked()) != self.tier:
            self.arrange()
        else:
            self.fit_tabs()

    def _settled(self) -> None:
        """The resize has been laid out: Qt shares a size change among the docks as it
        likes (the Experiment dock took half of a 1280-pixel window, and proportions set
        before the first show do not take), so the default arrangement gets its
        proportions again now (a layout the user arranged is left alone)."""
        self.follow_size()
        if not self.custom:
            self._proportion = False
            self.size_docks()

    def resized(self) -> None:
        """The window's resizeEvent: follow the new size now (what is visible then is what
        the user sees), and once more when the resize has settled."""
        self.follow_size()
        self._timer.start()

    # -- the user's changes -------------------------------------------------------------------
    def _moved(self, *_) -> None:
        if not self._arranging:
            self.custom = True
            QTimer.singleShot(0, self.fit_tabs)  # a new tab bar may have appeared

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        if event.type() == QEvent.Close and isinstance(watched, QDockWidget) and not self._arranging:
            self.custom = True
        elif event.type() == QEvent.ChildPolished and isinstance(event.child(), QTabBar):
            event.child().setElideMode(Qt.ElideNone)
            event.child().setUsesScrollButtons(True)
        return False
