"""A real session, driven as a person drives it: the contract for every panel.

The real MainWindow (its own training process) goes through every preset in turn: choose
it (a click on its entry in the open preset list), step, run and pause (toolbar clicks),
scrub t (the keyboard's actions), and on some presets resize to 1280x720 and 1920x1080,
switch to the dark theme and back (clicks through View > Theme), export a figure and all
panels (File > Export > Export All Panels…), save the session and reopen it (File > Save
Session As… and File > Open Session…; the file dialogs are answered with a path). After
every action the invariants of tests/app/invariants.py must hold for every visible panel
(data shown or a note saying why not, data inside the view, the same step everywhere once
paused, no text cut, no legend over data). They are written over ``window.panels`` and
what each panel draws, so a new panel is held to them on the day it is registered.

Slow (about a minute and a half on an idle 2-core machine): every preset is built and
trained a few steps.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMenu
from pytestqt.exceptions import TimeoutError

from app.export.batch import has_content
from app.export.figure import Figure, save_png
from core.presets import list_presets
from tests.app.invariants import assert_window_ok, step_problems, window_problems

pytestmark = pytest.mark.slow

PRESETS = [p.name for p in list_presets()]
# Where the window is also resized, re-themed, exported and saved: a sequence model, a
# gated one with histories, and a translation task with its own panels.
FULL = {"adding-lstm", "vanishing-rnn", "dates-attention"}
SIZES = ((1280, 720), (1920, 1080))


def click(qtbot, window, action) -> None:
    """Click ``action``'s toolbar button (a person's click); from the overflow menu when
    the toolbar has no room for it."""
    button = window.transport.widgetForAction(action)
    if button is not None and button.isVisible():
        qtbot.mouseClick(button, Qt.LeftButton)
    else:
        action.trigger()


def choose(qtbot, window, name: str) -> None:
    """Open the Experiment dock's preset list and click ``name``'s entry."""
    combo = window.form.preset_combo
    row = next(i for i in range(combo.count()) if combo.itemData(i, Qt.UserRole) == name)
    if window.run_info is not None and window.preset_name == name:
        return
    with qtbot.waitSignal(window.run_built, timeout=120_000):
        combo.showPopup()
        view = combo.view()
        qtbot.waitUntil(view.isVisible)
        index = combo.model().index(row, 0)
        view.scrollTo(index)
        qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=view.visualRect(index).center())
    assert not view.isVisible()  # the click closed the list
    assert window.preset_name == name and combo.shown_text() == name


def settled(qtbot, window, where: str) -> None:
    """Stopped, every panel caught up with the last step, drawn: then every invariant."""
    qtbot.waitUntil(lambda: window.state in ("paused", "idle", "diverged") and not window.engine_busy,
                    timeout=120_000)
    qtbot.waitUntil(lambda: (window.draw_frame() or True) and not step_problems(window), timeout=60_000)
    for panel in window.panels.values():
        panel.refresh(force=True)
    problems = []

    def clean() -> bool:  # a layout takes a few passes of the event loop to settle
        problems[:] = window_problems(window)
        return not problems

    try:
        qtbot.waitUntil(clean, timeout=5_000)
    except TimeoutError:  # (pytest-qt's) the problems are named below
        pass
    assert_window_ok(window, where=where)


def train(qtbot, window, name: str) -> None:
    """Step, Step x10, Run a few steps, Pause: as the toolbar buttons do."""
    t = window.transport
    before = window.last_step.step if window.last_step is not None else window.run_info.step
    click(qtbot, window, t.step_action)
    qtbot.waitUntil(lambda: window.last_step is not None and window.last_step.step == before + 1
                    and window.state == "paused", timeout=60_000)
    settled(qtbot, window, f"{name}: after Step")
    click(qtbot, window, t.run_action)
    qtbot.waitUntil(lambda: window.last_step.step >= before + 4 or window.state == "diverged", timeout=120_000)
    click(qtbot, window, t.run_action)  # Pause
    qtbot.waitUntil(lambda: window.state in ("paused", "diverged"), timeout=60_000)
    settled(qtbot, window, f"{name}: after Pause")


def scrub(qtbot, window, name: str) -> None:
    """Move t with the keyboard, as the Left/Right/End shortcuts do."""
    t = window.transport
    if t.scrubber.maximum() == 0:
        return
    for action in t.time_actions[1], t.time_actions[3]:  # Right, then End
        action.trigger()
    assert t.time_step == t.scrubber.maximum()
    assert all(p.time_cursor == t.time_step for p in window.panels.values())
    settled(qtbot, window, f"{name}: t moved to {t.time_step}")


def resize_and_theme(qtbot, window, name: str) -> None:
    for size in SIZES:
        window.resize(*size)
        qtbot.waitUntil(lambda s=size: window.size().toTuple() == s)
        settled(qtbot, window, f"{name}: at {size[0]}x{size[1]}")
    for theme in ("dark", "light"):
        menu_click(qtbot, window, "View", "Theme", theme.capitalize())
        assert window.theme.name == theme
        settled(qtbot, window, f"{name}: {theme} theme")


def export(qtbot, window, name: str, folder) -> None:
    panel = window.visible_panels()[0]
    path = save_png(panel, folder / f"{name}-{panel.name}.png", Figure(size=(800, 450)))
    assert path.stat().st_size > 0
    into = folder / name
    into.mkdir()
    with pytest.MonkeyPatch.context() as patch:  # File > Export > Export All Panels…, the folder chosen
        patch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(into))
        menu_click(qtbot, window, "File", "Export", "Export All Panels…")
    written = {f.name for f in into.iterdir()}
    drawn = {f"{p.name}.png" for p in window.visible_panels() if has_content(p)}
    assert drawn and drawn <= written, (sorted(drawn - written), sorted(written))
    empty = [p.name for p in window.visible_panels() if not has_content(p)]  # skipped, and said
    assert all(f"{p}: nothing to show yet, skipped" in window.status.currentMessage() for p in empty)
    settled(qtbot, window, f"{name}: after exporting")


def menu_click(qtbot, window, *path: str) -> None:
    """Click through the menu bar: ``menu_click(qtbot, window, "File", "Save Session As…")``.

    Each menu is opened on screen and its entry clicked where it is drawn."""
    bar = window.menuBar()
    top = next(a for a in bar.actions() if a.text().replace("&", "") == path[0])
    qtbot.mouseClick(bar, Qt.LeftButton, pos=bar.actionGeometry(top).center())
    menu = top.menu()
    qtbot.waitUntil(menu.isVisible)
    for i, text in enumerate(path[1:]):
        action = next(a for a in menu.actions() if a.text().replace("&", "") == text)
        qtbot.mouseClick(menu, Qt.LeftButton, pos=menu.actionGeometry(action).center())
        if i < len(path) - 2:  # a submenu: it opens under the pointer
            menu = action.menu()
            qtbot.waitUntil(menu.isVisible)
    qtbot.waitUntil(lambda: not any(m.isVisible() for m in window.findChildren(QMenu)))


def save_and_reopen(qtbot, window, name: str, folder, monkeypatch) -> None:
    """File > Save Session As… then File > Open Session…, the file dialogs answered with ``path``."""
    path = folder / f"{name}.rnnx"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    histories = window.sessions.panel_histories()
    step = window.last_step.step
    with qtbot.waitSignal(window.sessions.saved, timeout=60_000):
        menu_click(qtbot, window, "File", "Save Session As…")
    assert path.is_file()
    with qtbot.waitSignal(window.sessions.opened, timeout=120_000):
        menu_click(qtbot, window, "File", "Open Session…")
    assert window.run_info.step == step
    reopened = window.sessions.panel_histories()
    assert set(reopened) == set(histories)
    for key, values in histories.items():
        assert reopened[key].shape == values.shape, key
    settled(qtbot, window, f"{name}: reopened")


def test_a_session_through_every_preset_holds_together(qtbot, tmp_path, monkeypatch):
    from app.window.main_window import MainWindow

    window = MainWindow(preset=PRESETS[0], theme="light")
    qtbot.addWidget(window)
    window.resize(1600, 900)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.run_info is not None, timeout=120_000)
    for name in PRESETS:
        choose(qtbot, window, name)
        settled(qtbot, window, f"{name}: built")
        train(qtbot, window, name)
        scrub(qtbot, window, name)
        if name in FULL:
            resize_and_theme(qtbot, window, name)
            export(qtbot, window, name, tmp_path)
            save_and_reopen(qtbot, window, name, tmp_path, monkeypatch)
            window.resize(1600, 900)
    window.close()
