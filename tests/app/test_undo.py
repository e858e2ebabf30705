"""A trained run that a new preset, Apply or Reset replaces can come back with Undo."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.app.conftest import tiny


def run_to(qtbot, window, step: int) -> None:
    window.step(step - (window.last_step.step if window.last_step else 0))
    qtbot.waitUntil(lambda: window.last_step is not None and window.last_step.step == step
                    and window.state == "paused", timeout=60_000)


def test_apply_replaces_a_trained_run_and_undo_brings_it_back(qtbot, window, monkeypatch):
    """Applying a new hidden size threw away a 2,000-step run with no way back."""
    import app.window.undo as undo

    monkeypatch.setattr(undo, "UNDO_AFTER_SECONDS", 0.0)  # the tiny model trains in milliseconds
    for step in (10, 20):
        run_to(qtbot, window, step)
    before = window.run_info.experiment
    losses = list(window.panels["training"].series.column("loss"))
    radius = window.sessions.panel_histories()["spectrum.l0"]
    form = window.form
    form.fields["hidden_size"].editor.setText("12")
    with qtbot.waitSignal(window.run_built, timeout=60_000):
        qtbot.mouseClick(form.apply_button, Qt.LeftButton)
    assert window.run_info.experiment.hidden_size == 12 and window.run_info.step == 0
    status = window.status
    qtbot.waitUntil(lambda: status.action.isVisible(), timeout=10_000)
    assert status.action.text() == "Undo" and "step 20" in status.currentMessage()
    with qtbot.waitSignal(window.sessions.opened, timeout=60_000):
        qtbot.mouseClick(status.action, Qt.LeftButton)
    assert window.run_info.experiment == before and window.run_info.step == 20
    assert form.experiment == before
    assert list(window.panels["training"].series.column("loss")) == losses  # its past, as it was
    qtbot.waitUntil(lambda: len(window.sessions.panel_histories()["spectrum.l0"]) >= len(radius), timeout=30_000)
    assert list(window.sessions.panel_histories()["spectrum.l0"][: len(radius)]) == list(radius)
    assert window.sessions.path is None and window.sessions.recent() == []  # not a file of the user's
    run_to(qtbot, window, 21)  # and it trains on from where it was


def test_a_run_that_barely_trained_is_replaced_without_an_offer(qtbot, window):
    run_to(qtbot, window, 2)  # milliseconds of training: nothing worth an Undo
    with qtbot.waitSignal(window.run_built, timeout=60_000):
        window.apply_experiment(tiny(hidden_size=6))
    assert not window.status.action.isVisible()
    assert window.discard_guard.kept is None
