"""Export in the window: the Export dialog, File > Export, and every panel's right-click menu.

Right-click a panel: Export Figure… (the dialog, on that panel), Export Animation…
(app.export.animate_dialog), Export Data… (CSV, NPZ or JSON by the data's shape) and Copy
Figure (the last figure settings, onto the clipboard).
File > Export: Export Panel… and Export All Panels… (every visible panel, its data and
``experiment.json`` into one folder). The dialog remembers its settings for the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QMessageBox,
    QSpinBox,
    QWidget,
)

from app.export.animate_dialog import AnimationActions
from app.export.batch import FORMATS, export_all, has_content
from app.export.data import choose_format, write_data
from app.export.figure import (
    SIZE_PRESETS,
    SIZE_TITLES,
    Figure,
    at_dpi,
    caption_lines,
    copy_image,
    save_figure,
)
from app.panels.base import Panel
from app.settings import folder, remember_folder
from core.errors import UserError

KINDS = (("png", "PNG image"), ("svg", "SVG vector image (Inkscape, PowerPoint)"), ("data", "Data (CSV, NPZ or JSON)"))
THEME_TITLES = (("slide", "Slide (white, large text and lines)"), ("light", "Light"), ("dark", "Dark"))
CUSTOM, DPI = "custom", "dpi"


class ExportDialog(QDialog):
    """Choose a panel, a format, a size (preset, custom or DPI), a theme and the caption."""

    def __init__(self, panels: dict[str, Panel], current: str, figure: Figure, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.panels = panels
        form = QFormLayout(self)
        self.panel = QComboBox()
        for name, panel in panels.items():
            self.panel.addItem(panel.title, name)
        self.panel.setCurrentIndex(max(self.panel.findData(current), 0))
        self.kind = QComboBox()
        for key, title in KINDS:
            self.kind.addItem(title, key)
        self.size = QComboBox()
        for key, (w, h) in SIZE_PRESETS.items():
            self.size.addItem(f"{SIZE_TITLES[key]} ({w}×{h})", key)
        self.size.addItem("Custom size", CUSTOM)
        self.size.addItem("Current size at a DPI", DPI)
        self.width, self.height, self.dpi = QSpinBox(), QSpinBox(), QSpinBox()
        for spin, (lo, hi) in ((self.width, (320, 7680)), (self.height, (240, 4320)), (self.dpi, (72, 1200))):
            spin.setRange(lo, hi)
        self.width.setSuffix(" px")
        self.height.setSuffix(" px")
        self.dpi.setSuffix(" dpi")
        self.dpi.setValue(300)
        custom = QHBoxLayout()
        for w in (self.width, self.height, self.dpi):
            custom.addWidget(w)
        self.theme = QComboBox()
        for key, title in THEME_TITLES:
            self.theme.addItem(title, key)
        self.caption = QCheckBox("Caption: panel title and the experiment's key settings")
        self.controls = QCheckBox("Include the panel's option controls")
        form.addRow("Panel", self.panel)
        form.addRow("Format", self.kind)
        form.addRow("Size", self.size)
        form.addRow("", custom)
        form.addRow("Theme", self.theme)
        form.addRow("", self.caption)
        form.addRow("", self.controls)
        buttons = QDialogButtonBox(QDialogButtonBox.Cancel)
        self.copy_button = buttons.addButton("Copy Image", QDialogButtonBox.ActionRole)
        self.save_button = buttons.addButton("Save…", QDialogButtonBox.AcceptRole)
        self.copy_button.clicked.connect(self.copy)
        self.save_button.clicked.connect(self.choose_file)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.kind.currentIndexChanged.connect(self._update)
        self.size.currentIndexChanged.connect(self._update)
        self.set_figure(figure)

    # -- state ------------------------------------------------------------------------------
    def set_figure(self, figure: Figure) -> None:
        preset = next((k for k, v in SIZE_PRESETS.items() if v == figure.size), None)
        key = DPI if figure.dpi else preset or CUSTOM
        self.size.setCurrentIndex(self.size.findData(key))
        self.width.setValue(figure.size[0])
        self.height.setValue(figure.size[1])
        if figure.dpi:
            self.dpi.setValue(round(figure.dpi))
        self.theme.setCurrentIndex(max(self.theme.findData(figure.theme), 0))
        self.caption.setChecked(figure.caption)
        self.controls.setChecked(figure.controls)
        self._update()

    def _update(self) -> None:
        mode, figure_kind = self.size.currentData(), self.kind.currentData() != "data"
        self.width.setVisible(mode == CUSTOM)
        self.height.setVisible(mode == CUSTOM)
        self.dpi.setVisible(mode == DPI)
        for widget in (self.size, self.theme, self.caption, self.controls):
            widget.setEnabled(figure_kind)
        self.copy_button.setEnabled(figure_kind)

    @property
    def current_panel(self) -> Panel:
        return self.panels[self.panel.currentData()]

    def figure(self) -> Figure:
        """The figure the dialog describes (ValueError for impossible values)."""
        options = {"theme": self.theme.currentData(), "caption": self.caption.isChecked(),
                   "controls": self.controls.isChecked()}
        mode = self.size.currentData()
        if mode == DPI:
            return at_dpi(self.current_panel, self.dpi.value(), **options).validated()
        size = (self.width.value(), self.height.value()) if mode == CUSTOM else SIZE_PRESETS[mode]
        return Figure(size=size, **options).validated()

    def suggested_name(self) -> str:
        kind, panel = self.kind.currentData(), self.current_panel
        if kind == "data":
            return f"{panel.name}.{choose_format(panel.export_data() or {}, ('csv', 'npz', 'json')) or 'json'}"
        return f"{panel.name}.{kind}"

    # -- actions ----------------------------------------------------------------------------
    def export_to(self, path: str | Path, step: int | None = None) -> Path:
        """Write the chosen panel to ``path`` (figure or data, by the chosen format)."""
        panel = self.current_panel
        if not has_content(panel):
            raise ValueError(f"{panel.title} has nothing to show yet")
        if self.kind.currentData() == "data":
            return write_data(panel.export_data(), path)
        return save_figure(panel, path, self.figure(), caption_lines(panel, step))

    def copy(self) -> None:
        try:
            copy_image(self.current_panel, self.figure())
        except (UserError, ValueError, OSError) as err:
            QMessageBox.warning(self, "Cannot copy the figure", str(err))

    def choose_file(self) -> None:
        kind = self.kind.currentData()
        filters = "CSV (*.csv);;NPZ (*.npz);;JSON (*.json)" if kind == "data" else f"{kind.upper()} (*.{kind})"
        path, _ = QFileDialog.getSaveFileName(self, "Export", str(Path(folder("export")) / self.suggested_name()),
                                              filters)
        if path:
            remember_folder("export", path)
            self.path = path
            self.accept()


class ExportActions(QObject):
    """File > Export and the panels' right-click menus for one MainWindow (``window.exports``)."""

    def __init__(self, window: Any):
        super().__init__(window)
        self.window = window
        self.figure = Figure()  # the last settings used, for Copy Figure and Export All
        file_menu = window.menus["file"]
        first = file_menu.actions()[0] if file_menu.actions() else None
        menu = file_menu.addMenu("Export")
        menu.addAction(self._action("Export Panel…", lambda: self.open_dialog(None), QKeySequence("Ctrl+E")))
        menu.addAction(self._action("Export All Panels…", self.export_all_dialog, QKeySequence("Ctrl+Shift+E")))
        file_menu.insertMenu(first, menu)
        self.menu = menu
        for panel in window.panels.values():
            panel.setContextMenuPolicy(Qt.ActionsContextMenu)
            panel.addActions([
                self._action("Export Figure…", lambda p=panel: self.open_dialog(p.name), parent=panel),
                self._action("Export Data…", lambda p=panel: self.export_data_dialog(p), parent=panel),
                self._action("Copy Figure", lambda p=panel: self.copy(p), parent=panel),
            ])
        self.animations = AnimationActions(window, self)  # Export Animation…, after Export Figure…

    def _action(self, text: str, slot: Any, keys: QKeySequence | None = None, parent: QObject | None = None) -> QAction:
        action = QAction(text, parent or self.window)
        if keys is not None:
            action.setShortcut(keys)
        action.triggered.connect(lambda _=False: slot())
        return action

    def step(self) -> int | None:
        w = self.window
        return w.last_step.step if w.last_step is not None else (w.run_info.step if w.run_info else None)

    def source(self) -> dict[str, Any]:
        sessions = getattr(self.window, "sessions", None)
        path = getattr(sessions, "path", None)
        return {"app": "gui", "preset": self.window.preset_name, "session": str(path) if path else None,
                "note": "config is authoritative: the run may have been changed after picking the preset"}

    # -- commands ----------------------------------------------------------------------------
    def dialog(self, name: str | None = None) -> ExportDialog:
        visible = [p.name for p in self.window.visible_panels()]
        current = name or (visible[0] if visible else next(iter(self.window.panels)))
        return ExportDialog(self.window.panels, current, self.figure, self.window)

    def open_dialog(self, name: str | None) -> None:
        dialog = self.dialog(name)
        if dialog.exec() != QDialog.Accepted or not getattr(dialog, "path", None):
            return
        self._guarded(lambda: self._export_with(dialog, dialog.path), "Cannot export")

    def _export_with(self, dialog: ExportDialog, path: str) -> Path:
        if dialog.kind.currentData() != "data":
            self.figure = dialog.figure()
        written = dialog.export_to(path, self.step())
        self.window.status.showMessage(f"Exported {written}", 5000)
        return written

    def export_data_dialog(self, panel: Panel) -> None:
        data = panel.export_data()
        if not data:
            QMessageBox.information(self.window, "Export Data", f"{panel.title} has no data yet.")
            return
        fmt = choose_format(data, ("csv", "npz", "json"), getattr(panel, "data_format", None))
        suggested = str(Path(folder("export")) / f"{panel.name}.{fmt}")
        path, _ = QFileDialog.getSaveFileName(self.window, "Export Data", suggested,
                                              "CSV (*.csv);;NPZ (*.npz);;JSON (*.json)")
        if path:
            remember_folder("export", path)
            self._guarded(lambda: write_data(data, path), "Cannot export the data")

    def copy(self, panel: Panel) -> None:
        image = self._guarded(lambda: copy_image(panel, self.figure, caption_lines(panel, self.step())),
                              "Cannot copy the figure")
        if image is not None:
            self.window.status.showMessage(f"Copied {panel.title} ({image.width()}×{image.height()})", 4000)

    def export_all_dialog(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self.window, "Export All Panels Into", folder("export"))
        if chosen:
            self._guarded(lambda: self.export_all(chosen), "Cannot export")

    def export_all(self, folder: str | Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
        """Every visible panel (figures and data) and experiment.json into ``folder``."""
        window = self.window
        if window.run_info is None:
            raise ValueError("nothing to export yet: the experiment is still being built")
        remember_folder("export", folder)
        notes: list[str] = []
        written = export_all(window.visible_panels(), folder, window.run_info, self.step() or 0,
                             formats=formats, figure=self.figure, source=self.source(), warn=notes.append)
        window.status.showMessage(f"Exported {len(written)} files to {folder}" +
                                  (f" ({'; '.join(notes)})" if notes else ""), 8000)
        return written

    def _guarded(self, job: Any, title: str) -> Any:
        try:
            return job()
        except (UserError, ValueError, OSError) as err:
            QMessageBox.warning(self.window, title, " ".join(str(err).split()))
            return None
