"""What the window remembers between runs: size, docks, theme, preset, and the folders its
file dialogs start in (they reset on every start, and dialogs opened in the program's folder)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt
from PySide6.QtWidgets import QFileDialog

from app.window.main_window import MainWindow


def opened(qtbot, **kwargs) -> MainWindow:
    window = MainWindow(autostart=True, **kwargs)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.run_info is not None, timeout=60_000)
    return window


def test_size_docks_theme_and_preset_come_back_at_the_next_start(qtbot):
    window = opened(qtbot, preset="adding-gru")
    # Within the offscreen screen (800x800: restoring keeps a window on its screen), and no
    # narrower than its docks allow (asked for 760, it came back 782 wide once main added docks)
    window.resize(796, 600)
    qtbot.waitUntil(lambda: window.size().toTuple() == (796, 600))
    window.theme_actions["dark"].trigger()
    combo = window.form.preset_combo
    row = next(i for i in range(combo.count()) if combo.itemData(i, Qt.UserRole) == "sine-gru")
    with qtbot.waitSignal(window.run_built, timeout=60_000):
        combo.activated.emit(row)  # as a click on the preset in the list
    window.docks["spectrum"].setFloating(True)  # the user's own arrangement
    window.close()

    again = opened(qtbot)  # no preset or theme given: the last ones
    assert again.size().toTuple() == (796, 600)
    assert again.theme.name == "dark" and again.theme_actions["dark"].isChecked()
    assert again.preset_name == "sine-gru" and again.run_info.task_name == "sine"
    assert again.form.preset_combo.shown_text() == "sine-gru"
    assert again.docks["spectrum"].isFloating() and again.layout_manager.custom
    again.arrange_panels()  # View > Reset Layout: back to the default, which follows the size again
    assert not again.docks["spectrum"].isFloating() and not again.layout_manager.custom
    again.close()


def test_file_dialogs_start_in_documents_then_in_the_last_folder_used(qtbot, tmp_path, monkeypatch):
    asked: list[str] = []
    target = tmp_path / "lecture"
    target.mkdir()

    def save_dialog(parent, title, start, *args):
        asked.append(start)
        return str(target / Path(start).name), ""

    def open_dialog(parent, title, start, *args):
        asked.append(start)
        return "", ""  # cancelled

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", open_dialog)
    window = opened(qtbot)
    window.step(1)
    qtbot.waitUntil(lambda: window.last_step is not None and window.state == "paused", timeout=30_000)
    documents = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation)
    home = documents if documents and Path(documents).is_dir() else str(Path.home())
    with qtbot.waitSignal(window.sessions.saved, timeout=30_000):
        window.sessions.save_as()
    assert Path(asked[-1]).parent == Path(home)  # not the program's folder
    assert (target / "session.rnnx").is_file()
    window.sessions.open_dialog()
    assert asked[-1] == str(target)  # where the last session went
    window.close()
    again = opened(qtbot)
    again.sessions.open_dialog()
    assert asked[-1] == str(target)  # and at the next start too
    again.close()
