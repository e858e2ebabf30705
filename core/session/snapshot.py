"""Snapshots: a Trainer's whole state in memory, to capture and to restore exactly.

``trainer_state`` copies what continuing a run needs (weights, optimizer state, both random
generators, the history) into CPU tensors and JSON-ready data; ``restore_trainer_state``
checks every part against a trainer built from the same experiment before loading any of
it. core.session.format writes and reads these snapshots as files; nothing here touches a file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from core.config import FIELDS, ConfigError, Experiment
from core.errors import SessionError
from core.interventions import InterventionError, intervention_from_dict
from core.records import StepRecord
from core.session.checks import Invalid, need, one_line, short
from core.session.data import capture_files
from core.training.counterfactual import checked
from core.training.trainer import Trainer

__all__ = ["trainer_state", "restore_trainer_state", "history_columns", "history_from_columns",
           "HISTORY_FLOATS", "HISTORY_FLAGS"]


HISTORY_FLOATS = ("loss", "grad_norm", "grad_norm_clipped", "seconds")
HISTORY_FLAGS = ("clipped", "diverged")
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_IGNORED_FIELDS = ("lr", "clip", "steps", "device")  # may differ between state and trainer
_MACHINE_SETTINGS = {"foreach", "fused", "capturable", "differentiable"}  # optimizer kernels


def trainer_state(trainer: Trainer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything needed to continue ``trainer`` exactly, as CPU tensors and JSON-ready data.

    tensors: "model/<state_dict name>", "optimizer/<parameter index>/<key>",
             "rng/data" (the batch generator), "rng/torch_cpu" (torch's global generator).
             "data/<index>" (the user's data files, core.session.data).
    meta:    config, step_count, data_files, param_names, optimizer {param_groups, state}, history,
             interventions (Intervention.to_dict() each) and lesion (they apply in training).
    """
    copy = (lambda t: t.detach().to("cpu", copy=True).contiguous())  # noqa: E731
    tensors = {f"model/{k}": copy(v) for k, v in trainer.model.state_dict().items()}
    saved = trainer.optimizer.state_dict()
    extra: dict[str, dict[str, Any]] = {}
    for index, entries in saved["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = copy(value)
            else:
                extra.setdefault(str(index), {})[key] = _plain(value, f"optimizer state {key!r}")
    groups = [{k: _plain(v, f"optimizer setting {k!r}") for k, v in g.items()} for g in saved["param_groups"]]
    tensors["rng/data"] = trainer.generator.get_state()
    tensors["rng/torch_cpu"] = torch.get_rng_state()
    data_tensors, data_files = capture_files(getattr(trainer, "files", {}))
    tensors.update(data_tensors)
    meta = {"config": trainer.experiment.to_dict(), "step_count": trainer.step_count,
            "data_files": data_files,
            "param_names": [name for name, _ in trainer.model.named_parameters()],
            "optimizer": {"param_groups": groups, "state": extra},
            "history": history_columns(trainer.history),
            "interventions": [e.to_dict() for e in trainer.interventions], "lesion": trainer.lesion}
    return tensors, meta


def _plain(value: Any, what: str) -> Any:
    """A JSON-ready copy of an optimizer value (numbers, flags, None, lists of numbers)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v, what) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    raise SessionError(f"cannot save {what}: {type(value).__name__} is not plain data")


def restore_trainer_state(trainer: Trainer, tensors: dict[str, torch.Tensor], meta: dict, *,
                          global_rng: bool = True, source: str = "trainer state") -> None:
    """Load what ``trainer_state`` captured into ``trainer`` (built from the same experiment).

    Everything is checked before anything changes: on SessionError the trainer is as it was.
    """
    try:
        _restore(trainer, tensors, meta, global_rng=global_rng)
    except Invalid as err:
        raise SessionError(f"{source}: {err}") from None


def _restore(trainer, tensors: dict[str, torch.Tensor], meta: dict, *, global_rng: bool = True) -> None:
    """Check every tensor and value against ``trainer``, then load them (raises Invalid)."""
    need(isinstance(meta, dict), "state metadata must be a table")
    try:
        experiment = Experiment.from_dict(meta.get("config"))
    except ConfigError as err:
        raise Invalid(f"config: {err}") from None
    mine = trainer.experiment
    differs = [f for f in FIELDS if f not in _IGNORED_FIELDS and getattr(experiment, f) != getattr(mine, f)]
    need(not differs, f"the state belongs to another experiment ({differs[0] if differs else ''} differs)")
    step_count = meta.get("step_count")
    need(type(step_count) is int and step_count >= 0, f"step_count must be a whole number; got {short(step_count)}")
    names = [name for name, _ in trainer.model.named_parameters()]
    need(meta.get("param_names") == names, "param_names do not match this experiment's model")
    weights = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    model_state = _checked_model_state(trainer.model, weights)
    optimizer_state = _checked_optimizer_state(trainer, tensors, meta.get("optimizer"))
    data_rng = _checked_rng(tensors.get("rng/data"), "rng/data")
    global_state = _checked_rng(tensors.get("rng/torch_cpu"), "rng/torch_cpu")
    known = {f"model/{k}" for k in model_state} | {"rng/data", "rng/torch_cpu"}
    stray = sorted(k for k in tensors if k not in known and not k.startswith(("optimizer/", "data/")))
    need(not stray, f"unexpected tensor {short(stray[0]) if stray else ''}")
    history = history_from_columns(meta.get("history"), trainer.history)
    interventions, lesion = _checked_interventions(trainer, meta)
    try:
        trainer.optimizer.load_state_dict(optimizer_state)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise Invalid(f"optimizer state does not fit this optimizer ({err})") from None
    with torch.no_grad():
        trainer.model.load_state_dict(model_state, strict=True)
    trainer.generator.set_state(data_rng)
    trainer.step_count = step_count
    trainer.history = history
    trainer.experiment = experiment.replace(device=mine.device)
    trainer.interventions, trainer.lesion = interventions, lesion
    if global_rng:
        torch.set_rng_state(global_state)


def _checked_interventions(trainer, meta: dict) -> tuple[tuple, bool]:
    """The saved interventions (none in sessions from before them), checked against the model."""
    saved, lesion = meta.get("interventions", []), meta.get("lesion", False)
    need(isinstance(saved, list) and len(saved) <= 256, "interventions must be a list (at most 256)")
    need(type(lesion) is bool, "lesion must be true or false")
    try:
        edits = checked(trainer.model, trainer.probe_batch(), [intervention_from_dict(d) for d in saved]) if saved else ()
    except InterventionError as err:
        raise Invalid(str(err)) from None
    return edits, lesion and any(e.enabled for e in edits)


def _checked_model_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    need(not missing, f"model weight {short(missing[0]) if missing else ''} is missing")
    extra = [k for k in tensors if k not in expected]
    need(not extra, f"model weight {short(extra[0]) if extra else ''} does not belong to this model")
    for name, ref in expected.items():
        t = tensors[name]
        need(tuple(t.shape) == tuple(ref.shape), f"model weight {name!r} has shape {tuple(t.shape)}; "
                                                 f"this experiment needs {tuple(ref.shape)}")
        need(t.dtype == ref.dtype, f"model weight {name!r} is {t.dtype}; expected {ref.dtype}")
    return tensors


def _checked_optimizer_state(trainer, tensors: dict[str, torch.Tensor], meta: Any) -> dict:
    """A state_dict for trainer.optimizer, each entry checked against its parameter."""
    need(isinstance(meta, dict), "optimizer settings are missing")
    params = list(trainer.model.parameters())
    names = [name for name, _ in trainer.model.named_parameters()]
    fresh = trainer.optimizer.state_dict()["param_groups"]
    saved = meta.get("param_groups")
    need(isinstance(saved, list) and len(saved) == len(fresh), "optimizer parameter groups do not match")
    groups = []
    for mine, theirs in zip(fresh, saved, strict=True):
        need(isinstance(theirs, dict) and theirs.get("params") == mine["params"],
             "optimizer parameter groups do not match the model")
        group = dict(mine)
        for key, value in theirs.items():
            # settings this torch lacks, and how (not what) this machine computes, stay as built
            if key in mine and key not in _MACHINE_SETTINGS and key != "params":
                group[key] = _setting(key, value, mine[key])
        groups.append(group)
    expected = _expected_state_keys(type(trainer.optimizer), groups[0])
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if not key.startswith("optimizer/"):
            continue
        index_text, _, name = key[len("optimizer/"):].partition("/")
        need(index_text.isascii() and index_text.isdigit() and int(index_text) < len(params) and name,
             f"optimizer tensor {short(key)} is not named <parameter index>/<key>")
        index = int(index_text)
        need(t.is_floating_point() and (t.dim() == 0 or t.shape == params[index].shape),
             f"optimizer state {name!r} of {names[index]!r} has shape {tuple(t.shape)} ({t.dtype})")
        state.setdefault(index, {})[name] = t.clone()  # load_state_dict would alias it; steps mutate it
    extra = meta.get("state", {})
    need(isinstance(extra, dict), "optimizer state must be a table")
    for index_text, entries in extra.items():
        need(index_text.isascii() and index_text.isdigit() and int(index_text) < len(params)
             and isinstance(entries, dict), f"optimizer state {short(index_text)} is not a parameter index")
        for name, value in entries.items():
            need(value is None or type(value) in (bool, int, float), f"optimizer state {short(name)} is not a number")
            state.setdefault(int(index_text), {}).setdefault(name, value)
    for index, entries in state.items():
        need(set(entries) == expected, f"optimizer state of {names[index]!r} has {sorted(entries)}; "
                                       f"expected {sorted(expected)}")
    return {"state": state, "param_groups": groups}


def _setting(key: str, value: Any, current: Any) -> Any:
    """A saved optimizer setting, if it is the kind of value this torch keeps there."""
    try:
        if current is None or isinstance(current, bool):
            if value is None or isinstance(value, bool):
                return value
        elif isinstance(current, (int, float)):
            return value if type(value) in (int, float) else number(value)
        elif isinstance(current, (tuple, list)) and isinstance(value, list) and len(value) == len(current):
            return type(current)(number(v) for v in value)
        elif isinstance(current, str) and isinstance(value, str):
            return value
    except TypeError:
        pass
    raise Invalid(f"optimizer setting {key!r} is {short(value)}")


def _expected_state_keys(cls: type, group: dict) -> set[str]:
    """The per-parameter state keys ``cls`` keeps with these settings (one scratch step)."""
    probe = torch.zeros(1, requires_grad=True)
    try:
        scratch = cls([probe], **{k: v for k, v in group.items() if k != "params"})
        probe.grad = torch.ones(1)
        scratch.step()
    except (ValueError, TypeError, RuntimeError, AssertionError) as err:  # torch asserts some
        raise Invalid(f"optimizer settings are invalid ({one_line(err)})") from None
    return set(scratch.state[probe]) if probe in scratch.state else set()


def _checked_rng(state: Any, name: str) -> torch.Tensor:
    need(isinstance(state, torch.Tensor) and state.dtype == torch.uint8 and state.dim() == 1,
         f"{name} is missing or not a uint8 generator state")
    try:
        torch.Generator().set_state(state)  # on a scratch generator: refuse before changing anything
    except RuntimeError as err:
        raise Invalid(f"{name} is not a valid generator state ({one_line(err)})") from None
    return state


def history_columns(history) -> dict[str, Any]:
    """Per-step scalars as JSON columns: step, loss, ..., and metrics {name: column}.

    Non-finite numbers are written "nan"/"inf"/"-inf", flags 0/1, and a metric a step lacks
    null. ``history`` is a core.history.History or a list of StepRecords.
    """
    if hasattr(history, "to_columns"):
        raw = history.to_columns()
        metrics = {k[len("metric/"):]: v for k, v in raw.items() if k.startswith("metric/")}
    else:
        raw = {k: [getattr(r, k) for r in history] for k in ("step", *HISTORY_FLOATS, *HISTORY_FLAGS)}
        names = sorted({k for r in history for k in r.metrics})
        metrics = {k: [r.metrics.get(k, math.nan) for r in history] for k in names}
    columns: dict[str, Any] = {k: np.asarray(raw[k], dtype=np.int64).tolist() for k in ("step", *HISTORY_FLAGS)}
    columns.update({k: _json_numbers(raw[k]) for k in HISTORY_FLOATS})
    columns["metrics"] = {k: _json_numbers(col, nan=None) for k, col in metrics.items()}
    return columns


def history_from_columns(columns: Any, like: Any = ()) -> Any:
    """The inverse of history_columns, as the same kind of history as ``like``
    (a core.history.History, or a list of StepRecords with param_grad_norms {})."""
    need(isinstance(columns, dict), "history must be a table of columns")
    steps = columns.get("step")
    need(isinstance(steps, list) and all(type(s) is int for s in steps), "history.step must list whole numbers")
    n = len(steps)

    def column(table: dict, name: str, parse: Callable[[Any], Any], label: str = "history") -> list:
        values = table.get(name)
        need(isinstance(values, list) and len(values) == n, f"{label}.{name} must list {n} values")
        try:
            return [parse(v) for v in values]
        except TypeError:
            raise Invalid(f"{label}.{name} holds a value of the wrong type") from None

    cols = {k: column(columns, k, number) for k in HISTORY_FLOATS}
    cols.update({k: column(columns, k, _flag) for k in HISTORY_FLAGS})
    table = columns.get("metrics", {})
    need(isinstance(table, dict), "history.metrics must be a table of columns")
    metrics = {k: column(table, k, lambda v: math.nan if v is None else number(v), "history.metrics")
               for k in table}
    if hasattr(type(like), "from_columns"):
        arrays = {"step": np.array(steps, dtype=np.float64)}
        arrays.update({k: np.array(v, dtype=np.float64) for k, v in cols.items()})
        arrays.update({f"metric/{k}": np.array(v, dtype=np.float64) for k, v in metrics.items()})
        return type(like).from_columns(arrays)
    return [StepRecord(step=steps[i], **{k: v[i] for k, v in cols.items()}, param_grad_norms={},
                       metrics={k: v[i] for k, v in metrics.items() if not math.isnan(v[i])})
            for i in range(n)]


def _json_numbers(values: Any, nan: Any = "nan") -> list:
    """Floats for JSON (strict: no NaN literals): non-finite ones as "inf"/"-inf" and ``nan``."""
    array = np.asarray(values, dtype=np.float64)
    out = array.tolist()
    for i in np.flatnonzero(~np.isfinite(array)).tolist():
        out[i] = nan if math.isnan(out[i]) else str(out[i])
    return out


def number(value: Any) -> float:
    """A JSON number, or "nan"/"inf"/"-inf"; TypeError for anything else."""
    if type(value) in (int, float):
        return float(value)
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    raise TypeError(value)


def _flag(value: Any) -> bool:
    if type(value) in (int, bool) and value in (0, 1):
        return bool(value)
    raise TypeError(value)
