"""core.bench.training times the real Trainer.step and its instruments, and combines them at
the budgets it is given (tests/app/test_bench.py runs it once at full size)."""

import pytest

from core.bench import training
from core.bench.training import bench_training, instrument_share
from core.training.trainer import Trainer


def test_instrument_share_takes_the_lower_of_the_window_rate_and_the_wall_time_share():
    costs = {"probe": 0.002, "gradients": 0.2, "spectrum": 0.01}
    rates = {"probe": 10.0, "gradients": 3.0, "spectrum": 4.0}
    shares = {"probe": 0.05, "gradients": 0.05, "spectrum": 0.03}
    runs, wall = instrument_share(costs, rates, shares)
    # probe: 10/s (0.02 of wall time, under its 0.05); gradients: capped at 0.05 / 0.2 = 0.25/s;
    # spectrum: 3/s by its share (0.03 / 0.01), under the 4/s asked for
    assert runs == pytest.approx({"probe": 10.0, "gradients": 0.25, "spectrum": 3.0})
    assert wall == pytest.approx(0.02 + 0.05 + 0.03)
    assert instrument_share(costs, {}, {}) == ({}, 0)


def test_the_bench_runs_trainer_step_and_each_instrument(monkeypatch):
    calls = {"step": 0, "probe": 0, "gradients": 0, "spectrum": 0}
    for name in calls:
        original = getattr(Trainer, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Trainer, name, counted)
    budgets = dict(rates={"probe": 10.0, "gradients": 3.0, "spectrum": 4.0},
                   shares={"probe": 0.05, "gradients": 0.05, "spectrum": 0.03})
    r = bench_training("gru", hidden=8, T=6, batch=2, seconds=0.3, **budgets)
    assert calls["step"] == r["steps_timed"] + 2  # two warm-up steps, then one per timed plain step
    assert all(calls[name] >= 3 for name in ("probe", "gradients", "spectrum"))  # warm-up + timed
    assert set(r["instrument_s"]) == {"probe", "gradients", "spectrum"}
    runs, wall = instrument_share(r["instrument_s"], budgets["rates"], budgets["shares"])
    assert r["instrument_runs_per_s"] == runs and r["instrument_wall_share"] == wall
    assert r["full_s_per_step"] == pytest.approx(r["fused_s_per_step"] / (1 - wall))
    assert r["ratio"] > r["fused_ratio"] > 0
    alone = bench_training("rnn", hidden=8, T=6, batch=2, seconds=0.1)  # no budgets: no instruments
    assert alone["ratio"] == alone["fused_ratio"] and alone["instrument_runs_per_s"] == {}


def test_the_plain_step_trains_the_same_weights_with_torch_nn():
    trainer = Trainer(training.Experiment(task="adding", cell="lstm", hidden_size=4, seq_len=5, batch_size=2))
    step = training._plain_step(trainer, 0)
    before = {k: v.clone() for k, v in trainer.model.recurrent.state_dict().items()}
    step()  # trains copies: the trainer's own weights stay as they were
    assert all((trainer.model.recurrent.state_dict()[k] == v).all() for k, v in before.items())


def test_bench_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="kind must be one of rnn, lstm, gru"):
        bench_training("transformer")
