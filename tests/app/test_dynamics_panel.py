"""The Dynamics panel: what it draws from a real DynamicsRecord, its export, the time cursor,
the selected point's eigenvalues, and asking the real training process for another input."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage

from app.panels import panel_class
from core.instruments.dynamics_record import Settings
from main import main
from tests.app.conftest import tiny


@pytest.fixture(scope="module")
def parity_run():
    """(run info, records): a tiny parity GRU after 5 steps, with its dynamics under input 1."""
    from app.training.engine import make_trainer, run_info
    from app.window.offscreen import train_records

    trainer = make_trainer(tiny(task="parity", cell="gru", hidden_size=6, seq_len=10))
    records = train_records(trainer, 5)
    trainer.choose_dynamics_input("1")
    return run_info(trainer), [*records, trainer.dynamics(Settings(starts=24))]


def fed(qtbot, run, size=(900, 500)):
    from tests.app.conftest import fed as fed_panel

    return fed_panel(qtbot, "dynamics", run, size=size, show=True)


def test_draws_trajectories_points_and_the_selected_points_eigenvalues(qtbot, parity_run):
    panel = fed(qtbot, parity_run)
    r = panel.record
    assert r.input_name == "1" and panel.input.currentText() == "1"
    assert [panel.input.itemText(i) for i in range(panel.input.count())] == ["zero", "1"]
    x, y = panel.points.getData()
    np.testing.assert_allclose(x, r.projected[:, 0])
    np.testing.assert_allclose(y, r.projected[:, 1])
    ok = r.valid[0]
    np.testing.assert_allclose(panel.line.getData()[0], r.trajectories[0, ok, 0])
    ev_x, ev_y = panel.eigenvalues.getData()
    np.testing.assert_allclose(ev_x + 1j * ev_y, r.eigenvalues[panel.selected])
    assert "fixed" in panel.note.text() and "input 1" in panel.note.toolTip()
    assert panel.pc_plot.getAxis("bottom").labelText.startswith("PC1 (")


def test_the_cursor_rings_the_probes_state_at_t_and_the_axes_choice_changes_the_plane(qtbot, parity_run):
    panel = fed(qtbot, parity_run)
    r = panel.record
    panel.set_time_cursor(4)
    x, y = panel.now.getData()
    assert (x[0], y[0]) == pytest.approx((r.trajectories[0, 4, 0], r.trajectories[0, 4, 1]))
    panel.axes.setCurrentIndex(2)  # PC2 - PC3
    x, y = panel.now.getData()
    assert (x[0], y[0]) == pytest.approx((r.trajectories[0, 4, 1], r.trajectories[0, 4, 2]))
    assert panel.pc_plot.getAxis("left").labelText.startswith("PC3 (")


def test_selecting_a_point_shows_its_eigenvalues_and_the_choice_survives_an_update(qtbot, parity_run):
    import dataclasses

    info, records = parity_run
    record = records[-1]
    two = dataclasses.replace(record, points=np.concatenate([record.points, record.points + 1.0]),
                              projected=np.concatenate([record.projected, record.projected + 1.0]),
                              q=np.concatenate([record.q, record.q + 1e-6]),
                              fixed=np.concatenate([record.fixed, ~record.fixed]),
                              stable=np.concatenate([record.stable, ~record.stable]),
                              marginal=np.concatenate([record.marginal, record.marginal]),
                              eigenvalues=np.concatenate([record.eigenvalues, 2 * record.eigenvalues]))
    panel = fed(qtbot, (info, [*records[:-1], two]))
    last = len(two.q) - 1
    panel.select_point(last)
    ev_x, ev_y = panel.eigenvalues.getData()
    np.testing.assert_allclose(ev_x + 1j * ev_y, two.eigenvalues[last])
    assert "slow point" in panel.eig_plot.titleLabel.text and "q = 1" not in panel.eig_plot.titleLabel.text
    # a new record with the points in another order: the selection follows the same point
    order = np.arange(len(two.q))[::-1]
    shuffled = dataclasses.replace(two, points=two.points[order], projected=two.projected[order], q=two.q[order],
                                   fixed=two.fixed[order], stable=two.stable[order], marginal=two.marginal[order],
                                   eigenvalues=two.eigenvalues[order])
    panel.update_record(shuffled)
    assert panel.refresh()
    assert panel.selected == 0  # the same state, now first


def test_colour_by_input_names_the_symbols_and_export_holds_the_record(qtbot, parity_run):
    panel = fed(qtbot, parity_run)
    panel.color_by.setCurrentIndex(1)
    names = [label.text for _, label in panel.legend.items]
    assert "input 1" in names and not panel.bar.isVisible()
    panel.color_by.setCurrentIndex(0)
    assert panel.bar.isVisible()
    data = panel.export_data()
    r = panel.record
    np.testing.assert_array_equal(data["eigenvalues_real"] + 1j * data["eigenvalues_imag"], r.eigenvalues)
    assert data["explained_variance"].tolist() == r.explained.tolist() and str(data["input_name"]) == "1"
    assert all(isinstance(v, np.ndarray) and v.dtype.kind != "c" for v in data.values())  # NPZ/JSON-able


def test_an_encoder_decoder_run_says_there_are_no_dynamics(qtbot):
    from app.training.engine import make_trainer, run_info

    info = run_info(make_trainer(tiny(task="reverse", cell="gru", hidden_size=8, embed_size=8)))
    panel = panel_class("dynamics")()
    qtbot.addWidget(panel)
    panel.reset(info)
    panel.refresh(force=True)
    assert "encoder-decoder" in panel.empty.toPlainText() and panel.export_data() == {}


def test_export_writes_the_slide_figure_and_the_data(qapp, tmp_path):
    out = tmp_path / "figs"
    rc = main(["export", "--preset", "parity-gru", "--steps", "3", "--out", str(out), "--panels", "dynamics",
               "--formats", "png,npz"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["dynamics.npz", "dynamics.png", "experiment.json"]
    assert QImage(str(out / "dynamics.png")).size().toTuple() == (1920, 1080)
    with np.load(out / "dynamics.npz") as data:
        assert data["points"].shape[1] == 32 and data["trajectories"].shape[1:] == (50, 3)
        assert (data["q"][data["fixed"]] <= 1e-12).all() and str(data["input_name"]) == "zero"


def test_the_window_asks_the_training_process_and_another_input_comes_back(qtbot):
    """In the real window: once the panel is shown it gets the dynamics of the fresh model;
    choosing input 1 computes them under it at once, and live updates keep input 1."""
    from app.window.main_window import MainWindow

    w = MainWindow(experiment=tiny(task="parity", cell="gru", hidden_size=6, seq_len=10))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.run_info is not None, timeout=60_000)
    panel = w.panels["dynamics"]
    w.docks["dynamics"].raise_()
    qtbot.waitUntil(lambda: panel.record is not None, timeout=60_000)
    assert panel.record.input_name == "zero" and panel.record.step == 0
    panel.input.setCurrentText("1")
    panel.input.activated.emit(panel.input.currentIndex())
    qtbot.waitUntil(lambda: panel.record.input_name == "1", timeout=60_000)
    w.step(3)  # a manual step carries what the visible panels need
    qtbot.waitUntil(lambda: panel.record.step == 3, timeout=60_000)
    assert panel.record.input_name == "1"
    w.close()


def test_the_replay_log_keeps_dynamics_as_a_snapshot_not_in_every_steps_scalars(parity_run):
    """A StepRecord carrying dynamics: the scalars the log keeps for every step must not hold
    it (50,000 steps of it would not be bounded), the snapshots must."""
    import dataclasses

    from app.export.replay import RecordLog
    from core.records import DynamicsRecord, StepRecord

    _, records = parity_run
    step = next(r for r in reversed(records) if isinstance(r, StepRecord))
    log = RecordLog()
    log.add([dataclasses.replace(step, dynamics=records[-1])])
    kept = log.records()
    assert type(kept[0]) is StepRecord and kept[0].dynamics is None
    assert [r for r in kept if isinstance(r, DynamicsRecord)] == [records[-1]]
