"""A trainer with interventions: the counterfactual probe, lesion training, sessions, the
ablation sweep on a trained adding-lstm."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from core.config import Experiment
from core.errors import SessionError
from core.interventions import Intervention, InterventionError, parse_intervention
from core.session.format import open_session, save_session
from core.training.trainer import Trainer
from tests.outcomes import seed_shift

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
SEED_SHIFT = seed_shift()  # RNN_EXPLORER_TEST_SEED
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
    Asserted: top >= 0.1 and >= 100x |median|. The first-order estimate (one forward and
    backward) ranked the same unit first on seeds 0-4 (rank correlation with the sweep
    0.75-0.999) while putting its effect at 0.13-0.41: asserted, the same top unit. One seed
    a test, so each keeps to the timeout (60-140 s a seed on a loaded 2-core machine)."""
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
    assert trainer.ablation(method="first-order")[0].order[0] == sweep.order[0]


# --------------------------------------------------------------------------- first order
def _scaled_loss(trainer: Trainer, layer: int, unit: int, scale: float) -> float:
    trainer.set_interventions([Intervention("hidden", layer, (unit,), None, 0, None, "scale", scale)])
    return trainer.counterfactual().loss[1]


@pytest.mark.parametrize("cell, task, padding", [("rnn", "adding", "post"), ("gru", "padding", "post"),
                                                 ("lstm", "padding", "pre"), ("lstm", "adding", "post")])
def test_first_order_effects_are_the_derivative_of_the_loss_in_the_units_scale(cell, task, padding):
    """Independent reference: unit v's hidden state scaled by (1 + e) at every step through
    the counterfactual run (no autograd), a central difference in float64; the estimate of
    zeroing (scale 0) is -dL/de at e = 0. Padded probes (pre and post, masked) included."""
    trainer = trained(TINY.replace(cell=cell, task=task, padding=padding, num_layers=2), steps=20)
    trainer.model.double()
    probe = _double(trainer.probe_batch())
    trainer.probe_batch = lambda: probe
    for layer in (0, 1):
        record = trainer.ablation((layer,), "first-order")[0]
        assert record.method == "first-order" and record.effects.shape == (8,)
        for unit in (0, 3, 7):
            eps = 1e-5
            slope = (_scaled_loss(trainer, layer, unit, 1 + eps) - _scaled_loss(trainer, layer, unit, 1 - eps)) / (2 * eps)
            assert record.effects[unit] == pytest.approx(-slope, rel=1e-5, abs=1e-9), (layer, unit)


def _double(batch):
    from dataclasses import replace

    return replace(batch, x=batch.x.double(), y=batch.y.double() if batch.y.is_floating_point() else batch.y)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_first_order_effects_rank_units_as_the_sweep_does_on_a_young_model(cell):
    """A model 100 steps into training is near linear in each unit: the estimate ranks the
    units as the exact sweep does (Spearman >= 0.9 and the same top unit) and has the same
    base loss; it is not the sweep's number where a unit saturates, so only the ranking is
    compared. Measured here: Spearman 0.97-0.998 for hidden 32, T 30 after 300 steps."""
    from scipy.stats import spearmanr

    trainer = trained(TINY.replace(cell=cell, hidden_size=24), steps=100)
    exact, estimate = trainer.ablation((0,))[0], trainer.ablation((0,), "first-order")[0]
    assert estimate.base_loss == pytest.approx(exact.base_loss, rel=1e-6)
    assert spearmanr(exact.effects, estimate.effects)[0] >= 0.9
    assert estimate.order[0] == exact.order[0]
    with pytest.raises(InterventionError, match="unknown ablation method 'fast'; allowed exact, first-order"):
        trainer.ablation((0,), "fast")


@pytest.mark.parametrize("cell, nonlinearity, embedding", [("rnn", "tanh", "off"), ("rnn", "relu", "off"),
                                                           ("lstm", "tanh", "off"), ("lstm", "tanh", "on")])
def test_the_fused_estimate_equals_the_loops(cell, nonlinearity, embedding):
    """An RNN or LSTM without padding takes torch's fused kernels with W_hh's columns scaled
    (core.models.interventions._fused_estimates); the reference is the instrumented loop's
    dL/dh_t * h_t (any cell, any padding), in float64, for each layer of a 2-layer stack.
    Measured over seeds 0-3: the two agree to 1e-16; 3-7 of the 7 units have a non-zero
    effect (the fewest with relu, whose dead units have none)."""
    from core.models.interventions import _loop_estimates as loop  # the reference path
    from core.models.interventions import ablation_estimates

    exp = Experiment(task="charlm" if embedding == "on" else "adding", cell=cell, nonlinearity=nonlinearity,
                     embedding=embedding, embed_size=5, hidden_size=7, num_layers=2, seq_len=15, batch_size=3,
                     masking="off")  # text probes are padded: unmasked, the fused path takes them
    trainer = trained(exp, steps=5)
    model = trainer.model.double().eval()
    batch = _double(trainer.probe_batch())
    assert model.recurrent_kwargs(batch) == {}  # unpadded: the fused path
    for layer in (0, 1):
        loss, fused = ablation_estimates(model, batch, layer)
        ref_loss, ref = loop(model, model.recurrent, model.inputs(batch), batch, layer, {})
        assert loss == pytest.approx(float(model.loss(batch)[0].detach()), rel=1e-12)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        torch.testing.assert_close(fused, ref, rtol=1e-9, atol=1e-12)
        assert torch.count_nonzero(ref) >= 3  # units that move the loss (relu units can be dead)
    assert torch.set_flush_denormal(False)  # flushing was switched off again (and is supported)


@pytest.mark.parametrize("method", ["exact", "first-order"])
def test_the_sweep_reads_the_inputs_through_the_embedding(method):
    """With a token embedding the recurrent stack reads x @ E, not the one-hot x: the sweep,
    its estimate and the counterfactual refused such a model ("x must have shape [T, B, 5]")
    before. Reference: the unedited run's loss is the model's own (fused) loss."""
    exp = Experiment(task="charlm", cell="lstm", embedding="on", embed_size=5, hidden_size=6, seq_len=12,
                     batch_size=3)
    trainer = trained(exp, steps=3)
    record = trainer.ablation((0,), method)[0]
    model = trainer.model.eval()
    assert record.base_loss == pytest.approx(float(model.loss(trainer.probe_batch())[0].detach()), rel=1e-5)
    assert record.effects.shape == (6,) and np.all(np.isfinite(record.effects))
    trainer.set_interventions([Intervention("hidden", 0, (1,), None, 0, None, "zero")], lesion=True)
    counter = trainer.counterfactual()
    assert counter.loss[0] == pytest.approx(record.base_loss, rel=1e-5)
    assert counter.loss[1] != counter.loss[0] and counter.gradient_norms is not None
    assert np.all(counter.counterfactual.hidden[0][:, 1] == 0)
    assert np.isfinite(trainer.step().loss)  # lesion training reads the embedding too
