"""Export Animation… in the real window: the menu, the dialog's choices, a replay of what the
window received, Cancel that leaves nothing, and training paused while the live panel sweeps."""

from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtWidgets import QPushButton

from app.export.animate_dialog import AnimationDialog, offered
from app.export.animation import Animation, drawn_steps
from app.export.figure import Figure

SMALL = Figure(size=(480, 270))


def snapshots(qtbot, window, count: int) -> None:
    """Step ``count`` times, one at a time, so each step carries the visible panels' instruments."""
    for _ in range(count):
        before = window.last_step.step if window.last_step else 0
        window.step(1)
        qtbot.waitUntil(lambda b=before: window.last_step is not None and window.last_step.step == b + 1,
                        timeout=30_000)


def finish(qtbot, run):
    with qtbot.waitSignal(run.finished, timeout=120_000) as done:
        pass
    return done.args[0]


@pytest.fixture
def offscreen_window(qtbot, lstm_run):
    """The real window without a training process, showing ``lstm_run`` (as shot and export build it)."""
    from app.window.offscreen import build_window

    window = build_window(*lstm_run)
    qtbot.addWidget(window)
    yield window
    window.close()


def test_every_panel_menu_offers_export_animation_after_export_figure(offscreen_window):
    for panel in offscreen_window.panels.values():
        texts = [a.text() for a in panel.actions()]  # (a panel's What if actions may come first)
        assert texts[texts.index("Export Figure…") + 1] == "Export Animation…", (panel.name, texts)
    assert "Export Animation…" in [a.text() for a in offscreen_window.exports.menu.actions()]


def test_the_dialog_offers_what_each_panel_can_sweep(qtbot, offscreen_window):
    panels = offscreen_window.panels
    assert offered(panels["hidden"]) == ("t", "steps") and offered(panels["training"]) == ("steps",)
    assert offered(panels["decoding"]) == ()  # no decode on the adding task
    dialog = AnimationDialog(panels, "gradients", Figure(size=(640, 360)), "Kept: …")
    qtbot.addWidget(dialog)
    names = [dialog.panel.itemData(i) for i in range(dialog.panel.count())]
    assert "decoding" not in names and "compare" not in names and "hidden" in names
    assert dialog.panel.currentData() == "gradients"
    assert [dialog.over.itemData(i) for i in range(dialog.over.count())] == ["t", "steps"]
    dialog.format.setCurrentIndex(dialog.format.findData("mp4"))
    assert not dialog.loop.isEnabled() and not dialog.animation().loop
    dialog.over.setCurrentIndex(dialog.over.findData("steps"))
    assert dialog.note.isVisibleTo(dialog) and dialog.fps.value() == 10
    assert dialog.figure().size == (640, 360) and dialog.animation().over == "steps"


def test_a_bad_choice_is_refused_at_once(offscreen_window, tmp_path):
    actions = offscreen_window.exports.animations
    with pytest.raises(ValueError, match="even width and height"):
        actions.start(offscreen_window.panels["hidden"], Animation("mp4"), Figure(size=(481, 270)), tmp_path / "h.mp4")
    with pytest.raises(ValueError, match="training has no time cursor"):
        actions.start(offscreen_window.panels["training"], Animation("gif", "t"), SMALL, tmp_path / "t.gif")
    assert actions.run is None and list(tmp_path.iterdir()) == []


def test_replay_cancel_and_pause_in_the_live_window(qtbot, window, tmp_path):
    """With the training process: (1) a replay of training steps draws a frame at each step the
    hidden panel got a probe for, and the live panel stays in its dock; (2) Cancel leaves no
    file; (3) training pauses while the live panel sweeps over t, and resumes after."""
    snapshots(qtbot, window, 4)
    actions, hidden = window.exports.animations, window.panels["hidden"]
    assert drawn_steps(hidden.draws, actions.log.records()) == [0, 1, 2, 3, 4]
    run = actions.start(hidden, Animation("gif", "steps"), SMALL, tmp_path / "hidden.gif")
    assert finish(qtbot, run) == tmp_path / "hidden.gif"
    with Image.open(tmp_path / "hidden.gif") as image:
        assert (image.n_frames, image.size) == (5, (480, 270))
    assert window.docks["hidden"].widget() is hidden
    assert window.status.currentMessage().startswith(f"Exported {tmp_path / 'hidden.gif'} (5 frames")

    target = tmp_path / "cancelled.apng"
    run = actions.start(hidden, Animation("apng", "t"), SMALL, target)
    button = run.progress.findChild(QPushButton)
    assert button.text() == "Cancel"
    run.progressed.connect(lambda done: done == 2 and button.click())
    assert finish(qtbot, run) is None
    assert run.cancelled and actions.run is None and not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert window.docks["hidden"].widget() is hidden
    assert window.status.currentMessage() == "Animation cancelled; nothing was written"

    window.toggle_run()
    qtbot.waitUntil(lambda: window.state == "running", timeout=30_000)
    run = actions.start(hidden, Animation("gif", "t", frames_max=4), SMALL, tmp_path / "h.gif")
    seen = []  # (state, step) as each frame is written
    run.progressed.connect(lambda done: seen.append((window.state, window.last_step.step)))
    assert finish(qtbot, run) == tmp_path / "h.gif"
    assert len(seen) == 4 and {state for state, _ in seen} == {"paused"}
    assert len({step for _, step in seen}) == 1  # no step was taken while the frames were drawn
    qtbot.waitUntil(lambda: window.state == "running", timeout=30_000)
    window.toggle_run()
    qtbot.waitUntil(lambda: window.state != "running", timeout=30_000)
