"""Headless what if: ``probe --intervene ... --json`` and ``ablate --json``; bad specs are
refused in one line naming the field, before any training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.presets import load_preset
from core.training.trainer import Trainer
from main import main

SPEC = "gate=forget,layer=0,units=3,t=10:,op=set,value=0"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_probe_json_prints_the_factual_and_the_counterfactual(capsys):
    code, out, err = run(capsys, "probe", "--preset", "adding-lstm", "--steps", "4", "--intervene", SPEC,
                         "--intervene", "target=hidden,units=0-1,t=30,op=add,value=0.5", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["interventions"] == [SPEC, "target=hidden,layer=0,units=0;1,t=30,op=add,value=0.5"]
    code, plain_out, _ = run(capsys, "probe", "--preset", "adding-lstm", "--steps", "4", "--json")
    plain = json.loads(plain_out)
    for side in ("factual", "counterfactual"):
        assert set(data[side]) == set(plain) | {"loss", "prediction"}  # the probe --json layout, and more
        assert data[side]["tokens"] == plain["tokens"] and data[side]["kind"] == "lstm"
    np.testing.assert_allclose(data["factual"]["hidden"], plain["hidden"], atol=1e-6)
    np.testing.assert_allclose(data["factual"]["gates"]["0"]["forget"], plain["gates"]["0"]["forget"], atol=1e-6)
    forget = np.array(data["counterfactual"]["gates"]["0"]["forget"])
    assert np.all(forget[10:, 3] == 0)
    np.testing.assert_allclose(forget[:10], np.array(plain["gates"]["0"]["forget"])[:10], atol=1e-6)
    h = np.array(data["counterfactual"]["hidden"][0])
    assert np.array_equal(h[:10], np.array(data["factual"]["hidden"][0])[:10])
    trainer = Trainer(load_preset("adding-lstm").experiment)
    list(trainer.run(4))
    with torch.no_grad():
        probe_loss = float(trainer.model.eval().loss(trainer.probe_batch())[0])
    assert data["factual"]["loss"] == pytest.approx(probe_loss, abs=1e-6)
    assert len(data["factual"]["prediction"]) == 1 and data["counterfactual"]["loss"] != data["factual"]["loss"]


@pytest.mark.parametrize("spec, says", [
    ("gate=reset,units=3,op=zero", "gate: 'reset' is not a gate of lstm; allowed: input, forget, cell, output"),
    ("units=64,op=zero", "units: unit 64 is out of range; allowed 0 to 63 or all"),
    ("t=50:,op=zero", "t: 50 is beyond the sequence (T = 50; steps 0 to 49)"),
    ("units=3,op=zap", "op: 'zap' is not allowed; allowed: set, add, scale, zero"),
])
def test_bad_specs_are_refused_in_one_line_before_training(capsys, spec, says):
    code, out, err = run(capsys, "probe", "--preset", "adding-lstm", "--steps", "100000", "--intervene", spec,
                         "--json")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and says in err and "/100000" not in err  # no training began


def test_probe_reads_typed_text_for_a_character_model(capsys):
    code, out, err = run(capsys, "probe", "--preset", "charlm-lstm", "--input", "Alice was", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["tokens"] == list("Alice was") and len(data["output"]) == 9
    code, _, err = run(capsys, "probe", "--preset", "adding-lstm", "--input", "hello")
    assert code == 2 and "the adding task reads numbers, not text" in err


def test_ablate_json_ranks_the_units(capsys):
    code, out, err = run(capsys, "ablate", "--preset", "adding-gru", "--steps", "3", "--seed", "2", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["steps"] == 3 and [layer["layer"] for layer in data["layers"]] == [0]
    layer = data["layers"][0]
    trainer = Trainer(load_preset("adding-gru").experiment.replace(seed=2))
    list(trainer.run(3))
    record = trainer.ablation()[0]
    np.testing.assert_allclose(layer["effects"], record.effects, atol=1e-9)
    assert layer["base_loss"] == pytest.approx(record.base_loss)
    assert layer["ranking"] == record.order.tolist()
    effects = np.array(layer["effects"])
    assert np.all(np.diff(effects[layer["ranking"]]) <= 0)
    assert data["method"] == "exact"
    code, out, err = run(capsys, "ablate", "--preset", "adding-gru", "--steps", "3", "--seed", "2", "--json",
                         "--first-order")
    assert code == 0, err
    data = json.loads(out)
    estimate = trainer.ablation(method="first-order")[0]
    assert data["method"] == "first-order"
    np.testing.assert_allclose(data["layers"][0]["effects"], estimate.effects, atol=1e-9)
    code, out, err = run(capsys, "ablate", "--preset", "adding-gru", "--steps", "100000", "--layer", "1")
    assert code == 2 and "layer 1 is out of range; allowed 0 to 0" in err and "/100000" not in err
