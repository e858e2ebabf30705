"""Sessions in the window: save and open, damaged files, opening mid-run, recent files, autosave, recovery."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMessageBox

from app.training.engine import history_records
from app.window.sessions import settings
from core.session.autosave import autosave_path, find_recovery
from core.session.format import save_session
from tests.app.conftest import tiny


@pytest.fixture
def dialogs(monkeypatch):
    """Warnings the app shows, recorded instead of blocking the test."""
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: shown.append((title, text)))
    return shown


def run_to(qtbot, window, step: int) -> None:
    window.step(step - (window.last_step.step if window.last_step else 0))
    qtbot.waitUntil(lambda: window.last_step is not None and window.last_step.step == step
                    and window.state == "paused", timeout=30_000)


def save(qtbot, window, path: Path) -> Path:
    with qtbot.waitSignal(window.sessions.saved, timeout=30_000):
        assert window.sessions.save_to(path)
    return path


def trained_session(path: Path, steps: int) -> Path:
    from core.training.trainer import Trainer

    trainer = Trainer(tiny())
    for _ in range(steps):
        trainer.step()
    save_session(trainer, path)
    return path


def test_history_becomes_step_records():
    from core.training.trainer import Trainer

    trainer = Trainer(tiny())
    losses = [trainer.step().loss for _ in range(3)]
    records = history_records(trainer.history)
    assert [r.step for r in records] == [1, 2, 3]
    np.testing.assert_array_equal([r.loss for r in records], losses)
    assert history_records(Trainer(tiny()).history) == []


def test_the_file_menu_offers_sessions_and_prunes_recent_files(window, tmp_path):
    s = window.sessions
    assert s.save_action.shortcut() == QKeySequence(QKeySequence.Save)
    assert s.open_action.shortcut() == QKeySequence(QKeySequence.Open)
    texts = [a.text() for a in window.menus["file"].actions()]
    assert texts[:2] == ["Open Session…", "Open Recent"] and "Save Session As…" in texts and "Export" in texts
    kept, gone = tmp_path / "kept.rnnx", tmp_path / "gone.rnnx"
    for path in (kept, gone):
        path.write_bytes(b"x")
    settings().setValue("sessions/recent", [str(gone), str(kept)])
    gone.unlink()
    assert s.recent() == [str(kept)]
    assert settings().value("sessions/recent", type=list) == [str(kept)]
    s.recent_menu.aboutToShow.emit()
    assert [a.text() for a in s.recent_menu.actions()] == ["kept.rnnx"]


def test_open_recent_lists_a_saved_file_at_once(qtbot, window, tmp_path):
    """Open Recent stayed greyed out after the first save until a restart: a disabled menu
    never shows, so filling it on show never ran."""
    s = window.sessions
    assert not s.recent_menu.menuAction().isEnabled()
    run_to(qtbot, window, 1)
    save(qtbot, window, tmp_path / "first.rnnx")
    assert s.recent_menu.menuAction().isEnabled()
    assert [a.text() for a in s.recent_menu.actions()] == ["first.rnnx"]


def test_save_then_open_restores_the_step_count_and_config(qtbot, window, tmp_path):
    run_to(qtbot, window, 3)
    saved_experiment = window.run_info.experiment
    path = save(qtbot, window, tmp_path / "run.rnnx")
    assert window.sessions.path == path and window.sessions.recent()[0] == str(path)
    with qtbot.waitSignal(window.run_built, timeout=60_000):
        window.apply_experiment(tiny(hidden_size=6, cell="gru"))
    assert window.run_info.step == 0 and window.run_info.kind == "gru"
    assert window.sessions.path is None  # a new run: Save asks where instead of overwriting run.rnnx

    with qtbot.waitSignal(window.sessions.opened, timeout=60_000):
        assert window.sessions.open(path)
    assert window.run_info.step == 3 and window.run_info.experiment == saved_experiment
    assert window.form.experiment == saved_experiment and window.sessions.path == path
    assert list(window.panels["training"].series.column("step")) == [1, 2, 3]  # the saved past is shown
    run_to(qtbot, window, 4)  # and training continues from it


def test_a_reopened_session_shows_every_history_the_panels_drew(qtbot, window, tmp_path):
    """A reopened session lost the gradient heatmap's snapshots and the spectral radius over
    training: only the loss curve (the trainer's own history) came back."""
    for step in range(1, 6):  # each step carries the instruments: six snapshots with the build's
        run_to(qtbot, window, step)
    before = window.sessions.panel_histories()
    assert set(before) >= {"gradients.steps", "gradients.log10_norms", "spectrum.step", "spectrum.l0"}
    assert list(before["gradients.steps"]) == [0, 1, 2, 3, 4, 5]
    assert list(before["spectrum.step"]) == [0, 1, 2, 3, 4, 5]
    path = save(qtbot, window, tmp_path / "histories.rnnx")
    with qtbot.waitSignal(window.run_built, timeout=60_000):
        window.apply_experiment(tiny(hidden_size=6))
    assert len(window.panels["spectrum"].radius) <= 1  # a new run: its own history only
    with qtbot.waitSignal(window.sessions.opened, timeout=60_000):
        assert window.sessions.open(path)
    # the instruments' records arrive one by one after the file opens: wait for both panels'
    # (CI once read the gradients panel between the spectrum's record and its own)
    qtbot.waitUntil(lambda: all(window.panels[name].record is not None
                                and window.panels[name].record.step == 5
                                for name in ("spectrum", "gradients")), timeout=30_000)
    after = window.sessions.panel_histories()
    for name, array in before.items():
        np.testing.assert_array_equal(after[name], array, err_msg=name)
    gradients = window.panels["gradients"]
    gradients.refresh(force=True)
    assert gradients.history.image.image.shape[0] == 6  # six snapshot rows drawn in the heatmap
    assert list(window.panels["spectrum"].radius_curves[0].xData) == [0, 1, 2, 3, 4, 5]


def test_a_damaged_file_is_refused_in_one_line_and_the_run_is_kept(qtbot, window, tmp_path, dialogs):
    run_to(qtbot, window, 2)
    before = window.run_info
    garbage = tmp_path / "garbage.rnnx"
    garbage.write_bytes(b"this is not a session")
    assert window.sessions.open(garbage) is False
    assert len(dialogs) == 1 and str(garbage) in dialogs[0][1] and "\n" not in dialogs[0][1]

    # A readable header with broken weights is caught by the worker: same dialog, same run.
    good = save(qtbot, window, tmp_path / "good.rnnx")
    broken = tmp_path / "broken.rnnx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, b"\x00" * 16 if name == "model.safetensors" else src.read(name))
    with qtbot.waitSignal(window.sessions.failed, timeout=60_000):
        assert window.sessions.open(broken)
    assert len(dialogs) == 2 and str(broken) in dialogs[1][1]
    assert window.run_info is before
    run_to(qtbot, window, 3)  # the old trainer is still there and steps on


def test_opening_while_training_stops_the_run_first(qtbot, window, tmp_path):
    run_to(qtbot, window, 2)
    path = save(qtbot, window, tmp_path / "two.rnnx")
    window.toggle_run()
    qtbot.waitUntil(lambda: window.state == "running" and window.last_step.step > 4, timeout=30_000)
    process = window.controller.process
    with qtbot.waitSignal(window.sessions.opened, timeout=60_000):
        window.sessions.open(path)
    qtbot.waitUntil(lambda: window.state == "idle", timeout=10_000)
    assert window.run_info.step == 2 and window.last_step.step == 2
    assert window.controller.process is process and process.is_alive()  # the same one, not a new one


def test_autosave_leaves_a_recovery_file_until_a_clean_exit(qtbot, window):
    window.sessions.set_autosave_interval(50)
    with qtbot.waitSignal(window.sessions.saved, timeout=30_000) as saved:
        window.step(2)
    assert saved.args == [str(autosave_path())]
    assert find_recovery() == autosave_path()  # a crash now would offer it back
    box = window.sessions.offer_recovery()
    assert box is not None and not box.isModal()
    window.sessions.set_autosave_interval(0)
    next(b for b in box.buttons() if b.text() == "Discard").click()
    assert not autosave_path().exists()
    window.close()
    assert find_recovery() is None


def test_a_crashed_runs_autosave_is_offered_at_start_and_restored(qtbot):
    from app.window.main_window import MainWindow

    trained_session(autosave_path(), 3)  # the last run crashed after this autosave
    window = MainWindow(experiment=tiny())
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.sessions.recovery_offered, timeout=60_000):
        window.show()
    box = window.sessions.recovery_box
    assert box.isVisible() and not box.isModal()  # startup goes on; nothing waits for an answer
    with qtbot.waitSignal(window.sessions.opened, timeout=60_000):
        next(b for b in box.buttons() if b.text() == "Restore").click()
    assert window.run_info.step == 3 and window.sessions.path is None  # Save asks where to keep it
    assert find_recovery() is None
    window.close()
