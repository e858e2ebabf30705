"""The main window's menu bar: File, View (panels, theme, layout) and Help, and the
window-level dialogs they open (Export Window Image, the box for an unexpected error).

Other modules add to these menus through ``window.menus["file"]`` etc.; nothing that does
not exist yet is listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget

from app.settings import folder, remember_folder
from app.window.help import ABOUT_HTML, EQUATIONS_HTML, TECHNIQUES_HTML, shortcuts_html


def build_menus(window: Any) -> tuple[dict[str, QMenu], dict[str, QAction]]:
    """Create the menus of ``window`` (a MainWindow); returns them by name, and the theme
    actions by theme name (the window checks the one in use)."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    export = QAction("Export Window Image…", window)
    export.triggered.connect(window.export_window_image)
    file_menu.addAction(export)
    file_menu.addSeparator()
    quit_action = QAction("Quit", window)
    quit_action.setShortcut(QKeySequence.Quit)
    quit_action.triggered.connect(window.close)
    file_menu.addAction(quit_action)

    view = bar.addMenu("&View")
    view.addAction(window.experiment_dock.toggleViewAction())
    view.addAction(window.transport.toggleViewAction())
    view.addSeparator()
    for dock in window.docks.values():
        view.addAction(dock.toggleViewAction())
    view.addSeparator()
    theme_menu = view.addMenu("Theme")
    group = QActionGroup(window)
    theme_actions = {}
    for name in ("light", "dark"):
        action = QAction(name.capitalize(), window, checkable=True)
        action.setChecked(name == window.theme.name)
        action.triggered.connect(lambda _=False, n=name: window.set_theme(n))
        group.addAction(action)
        theme_menu.addAction(action)
        theme_actions[name] = action
    reset_layout = QAction("Reset Layout", window)
    reset_layout.triggered.connect(window.arrange_panels)
    view.addAction(reset_layout)

    help_menu = bar.addMenu("&Help")
    for title, html, keys in (("Keyboard Shortcuts", shortcuts_html(), "F1"),
                              ("Equations", EQUATIONS_HTML, ""), ("Techniques", TECHNIQUES_HTML, ""),
                              ("About RNN Explorer", ABOUT_HTML, "")):
        action = QAction(title + "…", window)
        if keys:
            action.setShortcut(QKeySequence(keys))
        action.triggered.connect(lambda _=False, t=title, h=html: window.show_help(t, h))
        help_menu.addAction(action)

    return {"file": file_menu, "view": view, "help": help_menu}, theme_actions


def export_window_image(window: QWidget) -> None:
    """File > Export Window Image…: the whole window as a PNG."""
    path, _ = QFileDialog.getSaveFileName(window, "Export Window Image", str(Path(folder("export")) / "rnn-explorer.png"),
                                          "PNG (*.png)")
    if path:
        remember_folder("export", path)
        window.grab().save(path)


def error_box(window: QWidget, failure: Any) -> QMessageBox:
    """A non-modal box (nothing waits for it) with ``failure``'s message and, under Details, its traceback."""
    from core.logs import LOG_FILE, data_dir

    box = QMessageBox(QMessageBox.Warning, "Something went wrong",
                      f"{failure.message}\n\nRNN Explorer keeps the model: you can go on training, "
                      f"change the experiment or save the session. The details are also in the log file, "
                      f"{data_dir() / LOG_FILE}.", QMessageBox.Ok, window)
    box.setObjectName("error-box")
    box.setDetailedText(failure.details or "")
    box.setModal(False)
    box.show()
    return box
