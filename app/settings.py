"""The app's settings (QSettings, an INI file in the data directory) and the folders its
file dialogs remember: shared by the window (app.window.prefs) and the export dialogs.

A file dialog of a kind ("sessions", "export") starts in the last folder one of that kind
used (``folders/<kind>``), or in the user's Documents folder, never in the program's own.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths


def settings() -> QSettings:
    """The app's settings: an INI file in the data directory (tests get a private one)."""
    from core.logs import data_dir

    return QSettings(str(data_dir() / "settings.ini"), QSettings.IniFormat)


def folder(kind: str) -> str:
    """Where a file dialog of ``kind`` starts: the last folder it used, if it still exists,
    else Documents (else the home folder)."""
    last = settings().value(f"folders/{kind}", "", type=str)
    if last and Path(last).is_dir():
        return last
    documents = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation)
    return documents if documents and Path(documents).is_dir() else str(Path.home())


def remember_folder(kind: str, path: str | Path) -> None:
    """A dialog of ``kind`` chose ``path`` (a file or a folder): start there next time."""
    path = Path(path)
    store = settings()
    store.setValue(f"folders/{kind}", str(path if path.is_dir() else path.parent))
    store.sync()
