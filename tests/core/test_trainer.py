"""Trainer: reproducible, one update per step, non-finite updates refused, records are plain data."""

import math

import numpy as np
import pytest
import torch

from core.config import Experiment
from core.presets import load_preset
from core.training.trainer import Trainer
from tests.outcomes import first_step_below, lowest_mean, outcome, train

SMALL = Experiment(task="adding", cell="gru", hidden_size=8, seq_len=10, batch_size=8, lr=0.01)


def test_same_seed_same_numbers_other_seed_other_numbers():
    a = [r.loss for r in Trainer(SMALL).run(5)]
    b = [r.loss for r in Trainer(SMALL).run(5)]
    c = [r.loss for r in Trainer(SMALL.replace(seed=1)).run(5)]
    assert a == b and a != c


def test_step_is_one_update_and_history_grows():
    trainer = Trainer(SMALL)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    record = trainer.step()
    assert record.step == trainer.step_count == 1 and len(trainer.history) == 1
    assert trainer.history.column("loss")[0] == record.loss
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert record.grad_norm > 0 and not record.clipped and not record.diverged
    # the recorded norm is the real total gradient norm
    assert record.grad_norm == pytest.approx(math.sqrt(sum(v ** 2 for v in record.param_grad_norms.values())), rel=1e-5)


def test_clipping_caps_the_norm():
    trainer = Trainer(SMALL.replace(clip=1e-3))
    record = trainer.step()
    assert record.clipped and record.grad_norm > 1e-3
    assert record.grad_norm_clipped == pytest.approx(1e-3, rel=1e-4)


def test_non_finite_step_is_not_applied_and_the_last_good_state_comes_back():
    trainer = Trainer(SMALL)
    initial = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.step()
    with torch.no_grad():
        trainer.model.readout.bias.fill_(float("inf"))
    record = trainer.step()
    assert record.diverged and trainer.step_count == 1 and record.restored_step == 0
    for a, b in zip(initial, trainer.model.parameters()):
        assert torch.equal(a, b)  # the weights whose loss was last finite (before step 1)
    with torch.no_grad():
        trainer.model.readout.bias.fill_(float("inf"))
    records = list(trainer.run(10))
    assert len(records) == 1 and records[0].diverged  # run stops at the first divergence


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_probe_record_is_plain_numpy_with_named_gates(cell):
    trainer = Trainer(SMALL.replace(cell=cell, num_layers=2))
    record = trainer.step(probe=True)
    probe = record.probe
    assert probe.T == 10 and len(probe.hidden) == 2
    assert all(isinstance(h, np.ndarray) and h.shape == (10, 8) for h in probe.hidden)
    expected = {"rnn": set(), "lstm": {"input", "forget", "cell", "output"}, "gru": {"reset", "update", "new"}}
    assert set(probe.gates[0]) == expected[cell]
    assert (probe.cell is not None) == (cell == "lstm")


def test_padding_probe_shows_unmasked_leak():
    trainer = Trainer(load_preset("padding-gru").experiment)
    probe = trainer.probe()
    assert not probe.valid.all() and probe.unmasked_hidden is not None
    last_real = np.flatnonzero(probe.valid)[-1]
    # masked: the state is held through the padding; unmasked: the zeros change it
    np.testing.assert_allclose(probe.hidden[0][-1], probe.hidden[0][last_real], atol=1e-6)
    assert np.abs(probe.unmasked_hidden[0][-1] - probe.hidden[0][-1]).max() > 1e-3


@pytest.mark.slow
@pytest.mark.trained
def test_adding_gated_cells_beat_the_baseline_while_the_rnn_does_not():
    """What the adding-* presets say, each trained only as long as its claim needs (about
    40 s): the GRU and the LSTM fall below the task's target (0.01) well within the
    3000-step budget, the RNN's loss stays near the 0.167 baseline for all of it. Measured
    over seeds 0-4, 1 thread: the GRU reaches the target at step 418-499, the LSTM at
    893-1557; the RNN's lowest 100-step mean is 0.157-0.162."""
    baseline, reached = 1 / 6, {}
    for cell, steps in (("gru", 1000), ("lstm", 2500)):
        trainer, losses = train(load_preset(f"adding-{cell}").experiment, steps)
        reached[cell] = outcome(f"adding-{cell}/reaches_target", first_step_below(losses, trainer.task.target))
    _, losses = train(load_preset("adding-rnn").experiment)
    lowest = outcome("adding-rnn/lowest_100_step_mean", lowest_mean(losses, 100))
    assert reached["gru"] <= 800 and reached["lstm"] <= 2200, reached
    assert lowest > 0.8 * baseline, lowest


@pytest.mark.slow
@pytest.mark.trained
def test_padding_without_masking_ends_two_orders_of_magnitude_higher():
    """padding-gru's claim (about 15 s): masking on solves the task within a few hundred
    steps; masking off, the trailing zeros leak into the state and the final loss is far
    higher, though both are small, so the effect is relative. Measured over seeds 0-4 at
    1000 steps, 1 thread: masked below the target (0.002) at step 108-133; last-100 mean
    1.0e-5 to 1.6e-5 masked, 2.5e-3 to 2.6e-3 unmasked, a ratio of 160-271."""
    exp = load_preset("padding-gru").experiment
    trainer, masked = train(exp)
    _, unmasked = train(exp.replace(masking="off"))
    reached = outcome("padding-gru/masked_reaches_target", first_step_below(masked, trainer.task.target))
    ratio = outcome("padding-gru/unmasked_over_masked", unmasked[-100:].mean() / masked[-100:].mean())
    assert reached <= 400 and ratio >= 30, (reached, ratio)


def test_a_metric_a_step_does_not_report_reads_nan_after_the_history_grows():
    """Held-out scores come every 50 steps: the steps between read "not measured" (nan). Past
    the first 1,024 rows the columns grew with zeros, and those steps read exact match 0 in
    the panels and in saved sessions."""
    from core.training.history import History

    history = History(capacity=2)
    history.append_values({"step": 1, "loss": 0.5, "metric/exact_match": 0.5})
    for step in (2, 3, 4, 5):  # grows twice (2 -> 4 -> 8 rows)
        history.append_values({"step": step, "loss": 0.4})
    history.append_values({"step": 6, "loss": 0.3, "metric/exact_match": 0.75})
    np.testing.assert_array_equal(history.column("metric/exact_match"), [0.5, *[np.nan] * 4, 0.75])
    np.testing.assert_array_equal(history.column("step"), [1, 2, 3, 4, 5, 6])
