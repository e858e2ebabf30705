"""A trainer with interventions: the counterfactual probe, lesion training, sessions, the
ablation sweep on a trained adding-lstm."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch

from core.config import Experiment
from core.errors import SessionError
from core.interventions import Intervention, InterventionError, parse_intervention
from core.session.format import open_session, save_session
from core.training.trainer import Trainer

TINY = Experiment(task="adding", cell="lstm", hidden_size=8, seq_len=20, batch_size=8, lr=0.01)
FORGET = parse_intervention("gate=forget,units=1;3,t=10:,op=set,value=0")


def trained(exp: Experiment = TINY, steps: int = 5) -> Trainer:
    trainer = Trainer(exp)
    list(trainer.run(steps))
    return trainer


def test_no_enabled_edit_gives_no_counterfactual():
    trainer = trained()
    assert trainer.counterfactual() is None
    trainer.set_interventions([Intervention("hidden", 0, (1,), None, 0, None, "zero", enabled=False)])
    assert trainer.counterfactual() is None and not trainer.lesion


def test_the_counterfactual_beside_the_factual_probe():
    trainer = trained()
    trainer.set_interventions([FORGET])
    record = trainer.counterfactual()
    probe = trainer.probe()
    f, c = record.factual, record.counterfactual
    assert record.interventions == (FORGET.text(),) and "forget gate f of units 1;3" in record.descriptions[0]
    assert f.labels == c.labels == probe.labels and f.step == c.step == trainer.step_count
    np.testing.assert_allclose(f.hidden[0], probe.hidden[0], atol=1e-6)  # the probe, through the loop
    np.testing.assert_allclose(f.cell[0], probe.cell[0], atol=1e-6)
    assert np.array_equal(f.hidden[0][:10], c.hidden[0][:10])  # equal until the edit starts
    assert np.all(c.gates[0]["forget"][10:, [1, 3]] == 0)
    assert not np.allclose(f.hidden[0][10:], c.hidden[0][10:])
    batch = trainer.probe_batch()
    with torch.no_grad():
        loss, _ = trainer.model.loss(batch)
        pred = trainer.model.readout(torch.as_tensor(f.hidden[0][-1]))
    assert record.loss[0] == pytest.approx(float(loss), abs=1e-6)
    np.testing.assert_allclose(record.prediction[0], pred.numpy(), atol=1e-6)
    assert record.loss[1] == pytest.approx(float((record.prediction[1][0] - batch.y[0, 0]) ** 2), abs=1e-6)


def test_counterfactual_gradients_are_the_bptt_instrument_on_the_edited_run():
    trainer = trained()
    trainer.set_interventions([parse_intervention("target=hidden,op=scale,value=1")])  # changes nothing
    same = trainer.counterfactual().gradient_norms
    for mine, instrument in zip(same, trainer.gradients().norms, strict=True):
        np.testing.assert_allclose(mine, instrument, rtol=1e-4, atol=1e-9)
    trainer.set_interventions([parse_intervention("gate=forget,t=5:,op=set,value=0")])  # c forgets from t = 5
    shut = trainer.counterfactual().gradient_norms[0]
    assert shut[:4].max() < 1e-3 * shut[-1]  # with f = 0 only h carries the gradient back, and it fades


def test_a_refused_list_changes_nothing():
    trainer = trained()
    trainer.set_interventions([FORGET], lesion=True)
    with pytest.raises(InterventionError, match="units: unit 8 is out of range; allowed 0 to 7"):
        trainer.set_interventions([FORGET, parse_intervention("units=8,op=zero")])
    assert trainer.interventions == (FORGET,) and trainer.lesion
    seq2seq = Trainer(Experiment(task="reverse", hidden_size=8, seq_len=6, batch_size=4))
    with pytest.raises(InterventionError, match="encoder-decoder"):
        seq2seq.set_interventions([FORGET])


def test_an_empty_list_trains_bit_identically():
    plain, edited = Trainer(TINY), Trainer(TINY)
    edited.set_interventions([], lesion=True)
    assert not edited.lesion
    for a, b in zip(plain.run(5), edited.run(5), strict=True):
        assert a.loss == b.loss and a.grad_norm == b.grad_norm
    assert all(np.array_equal(x, y) for x, y in zip(plain.probe().hidden, edited.probe().hidden, strict=True))


def test_a_lesion_applies_while_training():
    """Every unit of h zeroed: the readout sees h_n = 0, so only its bias can learn."""
    trainer = Trainer(TINY)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.set_interventions([parse_intervention("target=hidden,op=zero")], lesion=True)
    records = list(trainer.run(4))
    after = trainer.model.state_dict()
    for name, value in before.items():
        assert torch.equal(value, after[name]) == (name != "readout.bias"), name
    # the loss of each step is that of predicting the readout bias (as it was before the step)
    bias = before["readout.bias"]
    probe = Trainer(TINY)
    batch = probe.task.sample(TINY.batch_size, probe.generator)
    assert records[0].loss == pytest.approx(float(((bias - batch.y) ** 2).mean()), rel=1e-6)


def test_sessions_keep_the_interventions_and_a_lesion_resumes_exactly(tmp_path):
    edits = [FORGET, Intervention("hidden", 0, (2,), None, 0, None, "scale", 0.5, enabled=False)]
    straight = Trainer(TINY)
    straight.set_interventions(edits, lesion=True)
    losses = [r.loss for r in straight.run(6)]
    first = Trainer(TINY)
    first.set_interventions(edits, lesion=True)
    list(first.run(3))
    save_session(first, tmp_path / "s.rnnx")
    resumed = open_session(tmp_path / "s.rnnx")
    assert resumed.interventions == tuple(edits) and resumed.lesion
    assert [r.loss for r in resumed.run(3)] == losses[3:]


def _rewrite(path, change):
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    header = json.loads(members["session.json"])
    change(header)
    members["session.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.mark.parametrize("change, says", [
    (lambda h: h.update(interventions=[{"target": "gate", "gate": "reset", "op": "zero"}]), "not a gate of lstm"),
    (lambda h: h.update(interventions=[{"target": "hidden", "op": "zero", "units": [99]}]), "unit 99 is out of range"),
    (lambda h: h.update(interventions="all"), "interventions must be a list"),
    (lambda h: h.update(lesion="yes"), "lesion must be true or false"),
])
def test_bad_saved_interventions_are_refused_naming_the_file(tmp_path, change, says):
    path = tmp_path / "s.rnnx"
    save_session(trained(steps=1), path)
    _rewrite(path, change)
    with pytest.raises(SessionError, match=says) as info:
        open_session(path)
    assert str(path) in str(info.value)


def test_sessions_from_before_interventions_open_without_them(tmp_path):
    path = tmp_path / "s.rnnx"
    save_session(trained(steps=1), path)
    _rewrite(path, lambda h: (h.pop("interventions"), h.pop("lesion")))
    trainer = open_session(path)
    assert trainer.interventions == () and not trainer.lesion


def test_the_ablation_sweep_is_the_counterfactual_loss_of_each_unit():
    trainer = trained(TINY.replace(num_layers=2, cell="gru"))
    records = trainer.ablation()
    assert [r.layer for r in records] == [0, 1]
    for record in records:
        assert record.effects.shape == (8,) and record.step == trainer.step_count
        for unit in (0, 5):
            trainer.set_interventions([Intervention("hidden", record.layer, (unit,), None, 0, None, "zero")])
            cf = trainer.counterfactual()
            assert record.base_loss == pytest.approx(cf.loss[0], abs=1e-6)
            assert record.effects[unit] == pytest.approx(cf.loss[1] - cf.loss[0], abs=1e-6)
    with pytest.raises(InterventionError, match="layer 2 is out of range; allowed 0 to 1"):
        trainer.ablation((2,))


# --------------------------------------------------------------------------- trained
SEED_SHIFT = int(os.environ.get("RNN_EXPLORER_TEST_SEED", "0"))
MAX_STEPS, LEARNED = 2000, 0.05  # seed 1 leaves the baseline only after 1,200-1,500 steps


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.parametrize("seed", range(5))
def test_zeroing_the_top_unit_of_a_trained_adding_lstm_costs_far_more_than_the_median(seed):
    """adding-lstm (64 units, T 50), trained until the mean loss of 100 steps is under 0.05
    (900-1,600 steps), seeds 0-4 (this machine, 1 thread): zeroing the top-ranked unit raised
    the probe loss by 0.26-0.86 (the unit carrying the first marked value: the prediction
    loses it); zeroing the median unit changed it by -0.0018 to -0.0003; top / |median| was
    477-2,163. Before the model learns (600-900 steps) the top unit costs 0.04-0.07 and the
    ratio is 8-44, so the thresholds tell a unit that carries the sum from an untrained one.
    Asserted: top >= 0.1 and >= 100x |median|. One seed a test, so each keeps to the timeout
    (60-140 s a seed on a loaded 2-core machine)."""
    from core.presets import load_preset

    trainer = Trainer(load_preset("adding-lstm").experiment.replace(seed=seed + SEED_SHIFT))
    while trainer.step_count < MAX_STEPS:
        list(trainer.run(100))
        if trainer.history.column("loss")[-100:].mean() < LEARNED:
            break
    assert trainer.history.column("loss")[-100:].mean() < LEARNED, "did not learn the adding problem"
    sweep = trainer.ablation()[0]
    top = sweep.effects[sweep.order[0]]
    median = float(np.median(sweep.effects))
    assert top >= 0.1, (trainer.step_count, top)
    assert top >= 100 * abs(median), (trainer.step_count, top, median)
