"""Snapshots in memory (core.session.snapshot), without files: what ``trainer_state`` captures,
that ``restore_trainer_state`` puts back exactly that, the exact one-line refusal of each
kind of wrong state (and that a refused state changes nothing), and the history columns'
round trip with non-finite numbers and missing metrics.

References: the trainer's own state (state_dict, generators, history) read directly, and
hand-written columns.
"""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import Experiment
from core.errors import SessionError
from core.interventions import parse_intervention
from core.records import StepRecord
from core.session.checks import Invalid
from core.session.snapshot import (
    _plain,
    _setting,
    history_columns,
    history_from_columns,
    number,
    restore_trainer_state,
    trainer_state,
)
from core.training.history import History
from core.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
TINY = Experiment(task="adding", hidden_size=4, seq_len=5, batch_size=4, lr=0.01)


def trained(exp: Experiment = TINY, steps: int = 2) -> Trainer:
    trainer = Trainer(exp)
    list(trainer.run(steps))
    return trainer


def same_state(a, b) -> bool:
    """Two trainer_state results are equal (tensors bit for bit, meta as JSON)."""
    (ta, ma), (tb, mb) = a, b
    return (ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
            and json.dumps(ma, sort_keys=True) == json.dumps(mb, sort_keys=True))


@pytest.fixture(scope="module")
def snapshot():
    """A state with something in every part: 3 adam steps, a metric, an intervention."""
    trainer = Trainer(TINY)
    trainer.set_interventions([parse_intervention("units=1,op=zero")], lesion=True)
    list(trainer.run(3))
    trainer.history.append_values({"step": 4, "loss": math.nan, "grad_norm": math.inf, "grad_norm_clipped": 1.5,
                                   "clipped": 1, "diverged": 1, "seconds": 0.1, "metric/accuracy": 0.5})
    trainer.step_count = 4
    return trainer_state(trainer)


# ----------------------------------------------------------------------------- capturing
def test_trainer_state_holds_exactly_the_trainers_state():
    torch.manual_seed(3)
    trainer = trained(TINY.replace(lr=0.02, clip=0.5), 3)
    trainer.set_interventions([parse_intervention("units=2,op=zero")], lesion=False)
    tensors, meta = trainer_state(trainer)
    json.dumps(meta, allow_nan=False)
    model = trainer.model.state_dict()
    optimizer = trainer.optimizer.state_dict()
    want = {f"model/{k}" for k in model} | {"rng/data", "rng/torch_cpu"}
    want |= {f"optimizer/{i}/{key}" for i, entries in optimizer["state"].items() for key in entries}
    assert set(tensors) == want and len(optimizer["state"]) == 6
    for name, value in model.items():
        t = tensors[f"model/{name}"]
        assert torch.equal(t, value) and t.data_ptr() != value.data_ptr() and t.is_contiguous()
        assert not t.requires_grad
    for i, entries in optimizer["state"].items():
        for key, value in entries.items():
            t = tensors[f"optimizer/{i}/{key}"]
            assert torch.equal(t, value) and t.data_ptr() != value.data_ptr()
    assert torch.equal(tensors["rng/data"], trainer.generator.get_state())
    assert torch.equal(tensors["rng/torch_cpu"], torch.get_rng_state())
    assert meta["config"] == trainer.experiment.to_dict() and meta["config"]["lr"] == 0.02
    assert meta["step_count"] == 3 and meta["data_files"] == []
    assert meta["param_names"] == [name for name, _ in trainer.model.named_parameters()]
    group = {**optimizer["param_groups"][0], "betas": [0.9, 0.999]}
    assert meta["optimizer"] == {"param_groups": [group], "state": {}}
    assert meta["history"]["step"] == [1, 2, 3]
    assert meta["history"]["loss"] == trainer.history.column("loss").tolist()
    assert meta["interventions"] == [trainer.interventions[0].to_dict()] and meta["lesion"] is False


def test_the_users_data_files_are_captured():
    path = ROOT / "resources" / "examples" / "rhymes.txt"
    trainer = Trainer(TINY.replace(task="charlm", data=str(path)))
    tensors, meta = trainer_state(trainer)
    content = path.read_bytes()
    assert meta["data_files"] == [{"path": str(path), "sha256": hashlib.sha256(content).hexdigest(),
                                   "size": len(content), "stored": True}]
    assert bytes(tensors["data/0"].numpy()) == content


def test_optimizer_values_are_saved_as_plain_data_or_refused():
    trainer = trained()
    group = trainer.optimizer.param_groups[0]
    group.update(betas=(0.8, math.inf), eps=-math.inf, weight_decay=math.nan)
    _, meta = trainer_state(trainer)
    saved = meta["optimizer"]["param_groups"][0]
    assert saved["betas"] == [0.8, "inf"] and saved["eps"] == "-inf" and saved["weight_decay"] == "nan"
    assert saved["amsgrad"] is False and saved["fused"] is None and saved["params"] == [0, 1, 2, 3, 4, 5]
    json.dumps(meta, allow_nan=False)
    # a non-tensor per-parameter value (torch kept adam's step as a float before 1.12)
    p = next(iter(trainer.model.parameters()))
    trainer.optimizer.state[p]["note"] = (1, None, "x")
    tensors, meta = trainer_state(trainer)
    assert meta["optimizer"]["state"] == {"0": {"note": [1, None, "x"]}} and "optimizer/0/note" not in tensors
    group["lr"] = torch.tensor(0.1)
    with pytest.raises(SessionError) as info:
        trainer_state(trainer)
    assert str(info.value) == "cannot save optimizer setting 'lr': Tensor is not plain data"
    group["lr"], group["betas"] = 0.01, (0.9, [torch.tensor(0.9)])
    with pytest.raises(SessionError) as info:
        trainer_state(trainer)
    assert str(info.value) == "cannot save optimizer setting 'betas': Tensor is not plain data"
    group["betas"] = (0.9, 0.99)
    trainer.optimizer.state[p]["note"] = {"a": 1}
    with pytest.raises(SessionError) as info:
        trainer_state(trainer)
    assert str(info.value) == "cannot save optimizer state 'note': dict is not plain data"


def test_plain_values():
    assert _plain((1, [2.5, True]), "x") == [1, [2.5, True]]
    assert _plain(math.nan, "x") == "nan" and _plain(-math.inf, "x") == "-inf" and _plain(1.5, "x") == 1.5
    assert _plain(None, "x") is None and _plain("s", "x") == "s" and _plain(False, "x") is False


# ----------------------------------------------------------------------------- restoring
def test_restore_puts_back_exactly_what_was_captured(snapshot):
    tensors, meta = snapshot
    trainer = trained(TINY.replace(lr=0.05, clip=2.0, steps=77), 1)  # later fields may differ
    torch.manual_seed(5)
    restore_trainer_state(trainer, tensors, meta, global_rng=False)
    assert not torch.equal(torch.get_rng_state(), tensors["rng/torch_cpu"])
    assert trainer.experiment.lr == TINY.lr and trainer.experiment.steps == TINY.steps and trainer.experiment.clip == 0
    assert trainer.lesion and len(trainer.interventions) == 1 and trainer.interventions[0].units == (1,)
    assert isinstance(trainer.history, History) and trainer.step_count == 4
    np.testing.assert_array_equal(trainer.history.column("grad_norm"), meta["history"]["grad_norm"][:3] + [math.inf])
    assert math.isnan(trainer.history.column("loss")[3])
    restore_trainer_state(trainer, tensors, meta)
    assert torch.equal(torch.get_rng_state(), tensors["rng/torch_cpu"])
    assert same_state(trainer_state(trainer), snapshot)
    # the trainer owns copies: training on leaves the snapshot as it was
    before = {k: v.clone() for k, v in tensors.items()}
    list(trainer.run(2))
    assert all(torch.equal(before[k], tensors[k]) for k in tensors)


def test_restore_keeps_this_machines_device_and_kernels_and_ignores_unknown_settings(snapshot):
    tensors, meta = snapshot
    meta = json.loads(json.dumps(meta))
    meta["config"]["device"] = "cuda"
    meta["optimizer"]["param_groups"][0].update(foreach=False, differentiable=True, from_the_future=3, lr=1,
                                                betas=[0.5, 0.75], maximize=True)
    trainer = Trainer(TINY)
    restore_trainer_state(trainer, tensors, meta)
    assert trainer.experiment.device == "cpu"
    group = trainer.optimizer.param_groups[0]
    assert group["foreach"] is True and group["differentiable"] is False and "from_the_future" not in group
    assert group["lr"] == 1 and group["betas"] == (0.5, 0.75) and group["maximize"] is True


def test_a_non_tensor_optimizer_value_is_restored(snapshot):
    tensors, meta = snapshot
    tensors = {k: v for k, v in tensors.items() if k != "optimizer/2/step"}
    meta = json.loads(json.dumps(meta))
    meta["optimizer"]["state"] = {"2": {"step": 3.0}}
    trainer = Trainer(TINY)
    restore_trainer_state(trainer, tensors, meta)
    p = list(trainer.model.parameters())[2]
    assert float(trainer.optimizer.state[p]["step"]) == 3.0


def edit(snapshot, tensors=None, **changes):
    """A copy of the snapshot with tensors replaced (None drops one) and meta paths set."""
    base_tensors, base_meta = snapshot
    out = dict(base_tensors)
    for key, value in (tensors or {}).items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    meta = json.loads(json.dumps(base_meta))
    for path, value in changes.items():
        *parents, last = path.split("__")
        table = meta
        for part in parents:
            table = table[int(part)] if isinstance(table, list) else table[part]
        last = int(last) if isinstance(table, list) else last
        if value is DROP:
            table.pop(last)
        else:
            table[last] = value
    return out, meta


DROP = object()
W = "recurrent.weight_hh_l0"
ADAM_KEYS = "['exp_avg', 'exp_avg_sq', 'step']"
REFUSALS = [
    # (tensors, meta changes) -> the message after "S: "
    ({}, {"config__hidden_size": 5}, "the state belongs to another experiment (hidden_size differs)"),
    ({}, {"config__cell": "gru", "config__seed": 2}, "the state belongs to another experiment (cell differs)"),
    ({}, {"config__lr": "fast"}, "config: lr must be a number from 1e-06 to 10; got 'fast'"),
    ({}, {"step_count": "4"}, "step_count must be a whole number; got '4'"),
    ({}, {"step_count": -1}, "step_count must be a whole number; got -1"),
    ({}, {"step_count": True}, "step_count must be a whole number; got True"),
    ({}, {"param_names__0": "x"}, "param_names do not match this experiment's model"),
    ({f"model/{W}": None}, {}, f"model weight '{W}' is missing"),
    ({"model/spy": torch.zeros(1)}, {}, "model weight 'spy' does not belong to this model"),
    ({f"model/{W}": torch.zeros(4, 4)}, {}, f"model weight '{W}' has shape (4, 4); this experiment needs (16, 4)"),
    ({f"model/{W}": torch.zeros(16, 4, dtype=torch.float64)}, {},
     f"model weight '{W}' is torch.float64; expected torch.float32"),
    ({}, {"optimizer": DROP}, "optimizer settings are missing"),
    ({}, {"optimizer__param_groups": []}, "optimizer parameter groups do not match"),
    ({}, {"optimizer__param_groups": {}}, "optimizer parameter groups do not match"),
    ({}, {"optimizer__param_groups__0__params": [0, 1]}, "optimizer parameter groups do not match the model"),
    ({}, {"optimizer__param_groups__0": [1]}, "optimizer parameter groups do not match the model"),
    ({}, {"optimizer__param_groups__0__betas": [0.9]}, "optimizer setting 'betas' is [0.9]"),
    ({}, {"optimizer__param_groups__0__betas": ["a", 1]}, "optimizer setting 'betas' is ['a', 1]"),
    ({}, {"optimizer__param_groups__0__amsgrad": 1}, "optimizer setting 'amsgrad' is 1"),
    ({}, {"optimizer__param_groups__0__lr": None}, "optimizer setting 'lr' is None"),
    ({}, {"optimizer__param_groups__0__lr": True}, "optimizer setting 'lr' is True"),
    ({}, {"optimizer__param_groups__0__eps": -1}, "optimizer settings are invalid (Invalid epsilon value: -1)"),
    ({}, {"optimizer__param_groups__0__amsgrad": True}, "optimizer state of 'recurrent.weight_ih_l0' has "
                                                       f"{ADAM_KEYS}; expected ['exp_avg', 'exp_avg_sq', "
                                                       "'max_exp_avg_sq', 'step']"),
    ({"optimizer/1/exp_avg": None}, {}, f"optimizer state of '{W}' has ['exp_avg_sq', 'step']; expected {ADAM_KEYS}"),
    ({"optimizer/x/step": torch.zeros(())}, {}, "optimizer tensor 'optimizer/x/step' is not named "
                                                "<parameter index>/<key>"),
    ({"optimizer/6/step": torch.zeros(())}, {}, "optimizer tensor 'optimizer/6/step' is not named "
                                                "<parameter index>/<key>"),
    ({"optimizer/1": torch.zeros(())}, {}, "optimizer tensor 'optimizer/1' is not named <parameter index>/<key>"),
    ({"optimizer/\u0663/step": torch.zeros(())}, {}, "optimizer tensor 'optimizer/\u0663/step' is not named "
                                                     "<parameter index>/<key>"),
    ({"optimizer/1/exp_avg": torch.zeros(4, 4)}, {},
     f"optimizer state 'exp_avg' of '{W}' has shape (4, 4) (torch.float32)"),
    ({"optimizer/1/exp_avg": torch.zeros(16, 4, dtype=torch.long)}, {},
     f"optimizer state 'exp_avg' of '{W}' has shape (16, 4) (torch.int64)"),
    ({"optimizer/1/exp_avg/x": torch.zeros(16, 4)}, {}, f"optimizer state of '{W}' has ['exp_avg', 'exp_avg/x', "
                                                        f"'exp_avg_sq', 'step']; expected {ADAM_KEYS}"),
    ({"optimizer/5/step": None, "optimizer/5/exp_avg": None, "optimizer/5/exp_avg_sq": None},
     {"optimizer__state": {"5": {"step": 1.0}}}, f"optimizer state of 'readout.bias' has ['step']; expected {ADAM_KEYS}"),
    ({}, {"optimizer__state": [1]}, "optimizer state must be a table"),
    ({}, {"optimizer__state": {"6": {}}}, "optimizer state '6' is not a parameter index"),
    ({}, {"optimizer__state": {"x": {}}}, "optimizer state 'x' is not a parameter index"),
    ({}, {"optimizer__state": {"\u0663": {}}}, "optimizer state '\u0663' is not a parameter index"),
    ({}, {"optimizer__state": {"1": [1]}}, "optimizer state '1' is not a parameter index"),
    ({}, {"optimizer__state": {"1": {"foo": "bar"}}}, "optimizer state 'foo' is not a number"),
    ({}, {"optimizer__state": {"1": {"foo": 1}}}, f"optimizer state of '{W}' has ['exp_avg', 'exp_avg_sq', "
                                                  f"'foo', 'step']; expected {ADAM_KEYS}"),
    ({"rng/data": None}, {}, "rng/data is missing or not a uint8 generator state"),
    ({"rng/torch_cpu": torch.zeros(5056)}, {}, "rng/torch_cpu is missing or not a uint8 generator state"),
    ({"rng/data": torch.zeros(2, 5056, dtype=torch.uint8)}, {}, "rng/data is missing or not a uint8 generator state"),
    ({"rng/torch_cpu": torch.zeros(3, dtype=torch.uint8)}, {}, "rng/torch_cpu is not a valid generator state ("),
    ({"spy": torch.zeros(1)}, {}, "unexpected tensor 'spy'"),
    ({}, {"history": [1]}, "history must be a table of columns"),
    ({}, {"interventions": {}}, "interventions must be a list (at most 256)"),
    ({}, {"interventions": [{"target": "hidden", "units": [1], "op": "zero"}] * 257},
     "interventions must be a list (at most 256)"),
    ({}, {"lesion": 1}, "lesion must be true or false"),
    ({}, {"interventions": [{"target": "hidden", "units": [9], "op": "zero"}]},
     "intervention 'target=hidden,layer=0,units=9,t=:,op=zero': units: unit 9 is out of range; allowed 0 to 3"),
]


def test_every_wrong_state_is_refused_in_one_line_and_changes_nothing(snapshot):
    trainer = trained(TINY, 1)
    torch.manual_seed(8)
    before = trainer_state(trainer)
    for tensors, changes, message in REFUSALS:
        with pytest.raises(SessionError) as info:
            restore_trainer_state(trainer, *edit(snapshot, tensors, **changes), source="S")
        got = str(info.value)
        assert got.startswith(f"S: {message}") and "\n" not in got, (message, got)
        assert same_state(trainer_state(trainer), before), message
    with pytest.raises(SessionError, match="^trainer state: state metadata must be a table$"):
        restore_trainer_state(trainer, snapshot[0], [])
    with pytest.raises(SessionError, match="^S: config: experiment must be a table of fields; got NoneType$"):
        restore_trainer_state(trainer, snapshot[0], {}, source="S")


def test_optional_parts_may_be_missing(snapshot):
    """Sessions from before interventions (no interventions, no lesion) or with stray data/ tensors."""
    tensors, meta = edit(snapshot, {"data/0": torch.zeros(3, dtype=torch.uint8)}, interventions=DROP, lesion=DROP)
    meta["optimizer"].pop("state")
    trainer = Trainer(TINY)
    restore_trainer_state(trainer, tensors, meta)
    assert trainer.interventions == () and trainer.lesion is False
    # a lesion without an enabled intervention is no lesion; no lesion saved: none
    tensors, meta = edit(snapshot, interventions__0__enabled=False)
    restore_trainer_state(trainer, tensors, meta)
    assert len(trainer.interventions) == 1 and trainer.lesion is False
    restore_trainer_state(trainer, *edit(snapshot, lesion=DROP))
    assert len(trainer.interventions) == 1 and trainer.lesion is False
    restore_trainer_state(trainer, *edit(snapshot, interventions=[{"target": "hidden", "units": [1], "op": "zero"}] * 256))
    assert len(trainer.interventions) == 256 and trainer.lesion is True


def test_the_state_of_a_trainer_that_has_not_stepped_round_trips():
    state = trainer_state(Trainer(TINY))
    assert state[1]["step_count"] == 0
    trainer = trained(TINY, 1)
    restore_trainer_state(trainer, *state)
    assert same_state(trainer_state(trainer), state)


def test_an_encoder_decoders_state_round_trips():
    """No interventions apply to an encoder-decoder: restoring must not ask it about them."""
    exp = Experiment(task="reverse", seq_len=4, cell="gru", hidden_size=4, embed_size=3, attention="dot",
                     batch_size=4, lr=0.01)
    state = trainer_state(trained(exp, 2))
    trainer = Trainer(exp)
    restore_trainer_state(trainer, *state)
    assert same_state(trainer_state(trainer), state)


# ------------------------------------------------------------------------ history columns
RECORDS = [
    StepRecord(step=1, loss=0.5, grad_norm=2.0, grad_norm_clipped=1.0, clipped=True, diverged=False,
               metrics={"accuracy": 0.25}, param_grad_norms={"w": 1.0}, seconds=0.1),
    StepRecord(step=2, loss=math.nan, grad_norm=math.inf, grad_norm_clipped=-math.inf, clipped=False, diverged=True,
               metrics={"bits": 1.5}, param_grad_norms={}, seconds=0.2),
]
COLUMNS = {"step": [1, 2], "clipped": [1, 0], "diverged": [0, 1], "loss": [0.5, "nan"], "grad_norm": [2.0, "inf"],
           "grad_norm_clipped": [1.0, "-inf"], "seconds": [0.1, 0.2],
           "metrics": {"accuracy": [0.25, None], "bits": [None, 1.5]}}


def test_history_columns_of_records_and_of_a_history_are_the_hand_written_ones():
    assert history_columns(RECORDS) == COLUMNS
    history = History()
    for record in RECORDS:
        history.append(record)
    assert history_columns(history) == COLUMNS
    assert history_columns([]) == {"step": [], "clipped": [], "diverged": [], "loss": [], "grad_norm": [],
                                   "grad_norm_clipped": [], "seconds": [], "metrics": {}}


def test_history_from_columns_inverts_them():
    records = history_from_columns(json.loads(json.dumps(COLUMNS)))
    assert len(records) == 2
    for got, want in zip(records, RECORDS, strict=True):
        assert (got.step, got.clipped, got.diverged, got.seconds) == (want.step, want.clipped, want.diverged,
                                                                      want.seconds)
        assert type(got.clipped) is bool and got.param_grad_norms == {} and got.metrics == want.metrics
        for k in ("loss", "grad_norm", "grad_norm_clipped"):
            assert repr(getattr(got, k)) == repr(getattr(want, k))
    history = history_from_columns(COLUMNS, History())
    assert isinstance(history, History) and len(history) == 2
    np.testing.assert_array_equal(history.column("step"), [1, 2])
    np.testing.assert_array_equal(history.column("grad_norm_clipped"), [1.0, -math.inf])
    np.testing.assert_array_equal(history.column("diverged"), [0, 1])
    np.testing.assert_array_equal(history.column("metric/bits"), [math.nan, 1.5])
    assert history_columns(history) == COLUMNS
    assert history_from_columns({**COLUMNS, "metrics": {}}, History()).names == list(History().names)
    no_metrics = {k: v for k, v in COLUMNS.items() if k != "metrics"}
    assert [r.metrics for r in history_from_columns(no_metrics)] == [{}, {}]


@pytest.mark.parametrize("change, message", [
    ({"step": [1, "2"]}, "history.step must list whole numbers"),
    ({"step": [1.0, 2]}, "history.step must list whole numbers"),
    ({"step": None}, "history.step must list whole numbers"),
    ({"loss": [0.5]}, "history.loss must list 2 values"),
    ({"seconds": "fast"}, "history.seconds must list 2 values"),
    ({"grad_norm": [1.0, "big"]}, "history.grad_norm holds a value of the wrong type"),
    ({"grad_norm": [1.0, True]}, "history.grad_norm holds a value of the wrong type"),
    ({"clipped": [1, 2]}, "history.clipped holds a value of the wrong type"),
    ({"diverged": [0, 1.0]}, "history.diverged holds a value of the wrong type"),
    ({"metrics": [1]}, "history.metrics must be a table of columns"),
    ({"metrics": {"acc": [1]}}, "history.metrics.acc must list 2 values"),
    ({"metrics": {"acc": [1, "x"]}}, "history.metrics.acc holds a value of the wrong type"),
])
def test_wrong_history_columns_are_refused(change, message):
    with pytest.raises(Invalid) as info:
        history_from_columns({**COLUMNS, **change})
    assert str(info.value) == message
    with pytest.raises(Invalid, match="^history must be a table of columns$"):
        history_from_columns([COLUMNS])


def test_numbers_and_settings():
    assert number(2) == 2.0 and type(number(2)) is float and number(0.5) == 0.5
    assert number("inf") == math.inf and number("-inf") == -math.inf and math.isnan(number("nan"))
    for bad in (True, "Infinity", None, [1]):
        with pytest.raises(TypeError):
            number(bad)
    assert _setting("lr", 3, 0.1) == 3 and _setting("eps", "inf", 0.1) == math.inf
    assert _setting("betas", [1, "nan"], (0.9, 0.9))[0] == 1.0 and type(_setting("betas", [1, 2], (0, 0))) is tuple
    assert _setting("ids", [1, 2], [0, 0]) == [1.0, 2.0]
    assert _setting("flag", None, False) is None and _setting("flag", True, None) is True
    assert _setting("mode", "fast", "slow") == "fast"
    for key, value, current in (("mode", 1, "slow"), ("flag", "yes", None), ("lr", "x", 0.1), ("ids", (1, 2), [0, 0])):
        with pytest.raises(Invalid, match=f"^optimizer setting '{key}' is "):
            _setting(key, value, current)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_trainers_state_is_captured_on_the_cpu_and_restored_on_the_gpu():
    exp = TINY.replace(device="cuda")
    tensors, meta = trainer_state(trained(exp, 2))
    assert {t.device.type for t in tensors.values()} == {"cpu"} and meta["config"]["device"] == "cuda"
    trainer = Trainer(exp)
    restore_trainer_state(trainer, tensors, meta)
    assert {p.device.type for p in trainer.model.parameters()} == {"cuda"}
    assert same_state(trainer_state(trainer), (tensors, meta))
