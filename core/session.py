"""Sessions: a whole experiment in one ``.rnnx`` file that continues exactly, never a pickle.

A session is a zip (schema 1)::

    session.json           format "rnn-explorer-session", schema, app_version, torch_version,
                           saved_at, config (Experiment.to_dict()), step_count, param_names,
                           optimizer {param_groups, state: non-tensor entries}, history
                           (StepRecord columns, see history_columns), traces (array names)
    model.safetensors      model.state_dict(), named as in torch.nn (recurrent.weight_ih_l0 ...)
    optimizer.safetensors  optimizer tensors as "<parameter index>/<key>" (exp_avg, step ...)
    rng.safetensors        "data": the trainer's batch generator, "torch_cpu": torch's global
                           CPU generator, both uint8 state tensors
    traces.npz             optional: named numpy arrays (no object dtypes; read without pickle)

Opening never runs code from the file: JSON, safetensors and .npy headers are parsed and
every value is checked against the experiment the config describes. Anything wrong raises
SessionError naming the file. ``.pt``/``.pth`` checkpoints are refused, not loaded,
because unpickling them can run code. Older schemas are upgraded by MIGRATIONS.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

from .atomic import atomic_write
from .config import FIELDS, ConfigError, Experiment
from .errors import SessionError, UserError
from .logs import LOGGER, data_dir
from .records import StepRecord
from .trainer import Trainer

FORMAT = "rnn-explorer-session"
SCHEMA = 1
SUFFIX = ".rnnx"
MiB = 2**20
MAX_JSON_BYTES = 256 * MiB      # session.json (history of a million steps is ~150 MiB)
MAX_TRACE_BYTES = 1024 * MiB    # traces.npz
MAX_RNG_BYTES = 1 * MiB         # rng.safetensors
TENSOR_FILES = {"model.safetensors": "model/", "optimizer.safetensors": "optimizer/",
                "rng.safetensors": "rng/"}
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
               ValueError, RuntimeError, NotImplementedError, struct.error)
_log = logging.getLogger(LOGGER)

__all__ = ["save_session", "write_session", "open_session", "read_session_info", "read_traces", "trainer_state",
           "restore_trainer_state", "autosave_path", "find_recovery", "mark_clean_exit",
           "discard_autosave", "MIGRATIONS", "SCHEMA", "FORMAT", "SUFFIX"]


def _from_schema_0(header: dict) -> dict:
    """Schema 0 (pre-release) kept the config under "experiment"; schema 1 calls it "config"."""
    if "experiment" in header and "config" not in header:
        header["config"] = header.pop("experiment")
    return header


# MIGRATIONS[v] turns a schema-v session.json into schema v+1 (binary members are unchanged so
# far). To change the layout: bump SCHEMA, write the step from the old version here, test it.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _from_schema_0}


# ------------------------------------------------------------------- trainer state
class _Invalid(Exception):
    """Something read is wrong; the public functions turn it into SessionError naming the file."""


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise _Invalid(message)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


HISTORY_FLOATS = ("loss", "grad_norm", "grad_norm_clipped", "seconds")
HISTORY_FLAGS = ("clipped", "diverged")
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_IGNORED_FIELDS = ("lr", "clip", "steps", "device")  # may differ between state and trainer
_MACHINE_SETTINGS = {"foreach", "fused", "capturable", "differentiable"}  # optimizer kernels


def trainer_state(trainer: Trainer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything needed to continue ``trainer`` exactly, as CPU tensors and JSON-ready data.

    tensors: "model/<state_dict name>", "optimizer/<parameter index>/<key>",
             "rng/data" (the batch generator), "rng/torch_cpu" (torch's global generator).
    meta:    config, step_count, param_names, optimizer {param_groups, state}, history.
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
    meta = {"config": trainer.experiment.to_dict(), "step_count": trainer.step_count,
            "param_names": [name for name, _ in trainer.model.named_parameters()],
            "optimizer": {"param_groups": groups, "state": extra},
            "history": history_columns(trainer.history)}
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
    _need(isinstance(columns, dict), "history must be a table of columns")
    steps = columns.get("step")
    _need(isinstance(steps, list) and all(type(s) is int for s in steps), "history.step must list whole numbers")
    n = len(steps)

    def column(table: dict, name: str, parse: Callable[[Any], Any], label: str = "history") -> list:
        values = table.get(name)
        _need(isinstance(values, list) and len(values) == n, f"{label}.{name} must list {n} values")
        try:
            return [parse(v) for v in values]
        except TypeError:
            raise _Invalid(f"{label}.{name} holds a value of the wrong type") from None

    cols = {k: column(columns, k, _number) for k in HISTORY_FLOATS}
    cols.update({k: column(columns, k, _flag) for k in HISTORY_FLAGS})
    table = columns.get("metrics", {})
    _need(isinstance(table, dict), "history.metrics must be a table of columns")
    metrics = {k: column(table, k, lambda v: math.nan if v is None else _number(v), "history.metrics")
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


def _number(value: Any) -> float:
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


def _restore(trainer, tensors: dict[str, torch.Tensor], meta: dict, *, global_rng: bool = True) -> None:
    """Check every tensor and value against ``trainer``, then load them (raises _Invalid)."""
    _need(isinstance(meta, dict), "state metadata must be a table")
    try:
        experiment = Experiment.from_dict(meta.get("config"))
    except ConfigError as err:
        raise _Invalid(f"config: {err}") from None
    mine = trainer.experiment
    differs = [f for f in FIELDS if f not in _IGNORED_FIELDS and getattr(experiment, f) != getattr(mine, f)]
    _need(not differs, f"the state belongs to another experiment ({differs[0] if differs else ''} differs)")
    step_count = meta.get("step_count")
    _need(type(step_count) is int and step_count >= 0, f"step_count must be a whole number; got {_short(step_count)}")
    names = [name for name, _ in trainer.model.named_parameters()]
    _need(meta.get("param_names") == names, "param_names do not match this experiment's model")
    weights = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    model_state = _checked_model_state(trainer.model, weights)
    optimizer_state = _checked_optimizer_state(trainer, tensors, meta.get("optimizer"))
    data_rng = _checked_rng(tensors.get("rng/data"), "rng/data")
    global_state = _checked_rng(tensors.get("rng/torch_cpu"), "rng/torch_cpu")
    known = {f"model/{k}" for k in model_state} | {"rng/data", "rng/torch_cpu"}
    stray = sorted(k for k in tensors if k not in known and not k.startswith("optimizer/"))
    _need(not stray, f"unexpected tensor {_short(stray[0]) if stray else ''}")
    history = history_from_columns(meta.get("history"), trainer.history)
    try:
        trainer.optimizer.load_state_dict(optimizer_state)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise _Invalid(f"optimizer state does not fit this optimizer ({err})") from None
    with torch.no_grad():
        trainer.model.load_state_dict(model_state, strict=True)
    trainer.generator.set_state(data_rng)
    trainer.step_count = step_count
    trainer.history = history
    trainer.experiment = experiment.replace(device=mine.device)
    if global_rng:
        torch.set_rng_state(global_state)


def _checked_model_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    _need(not missing, f"model weight {_short(missing[0]) if missing else ''} is missing")
    extra = [k for k in tensors if k not in expected]
    _need(not extra, f"model weight {_short(extra[0]) if extra else ''} does not belong to this model")
    for name, ref in expected.items():
        t = tensors[name]
        _need(tuple(t.shape) == tuple(ref.shape), f"model weight {name!r} has shape {tuple(t.shape)}; "
                                                 f"this experiment needs {tuple(ref.shape)}")
        _need(t.dtype == ref.dtype, f"model weight {name!r} is {t.dtype}; expected {ref.dtype}")
    return tensors


def _checked_optimizer_state(trainer, tensors: dict[str, torch.Tensor], meta: Any) -> dict:
    """A state_dict for trainer.optimizer, each entry checked against its parameter."""
    _need(isinstance(meta, dict), "optimizer settings are missing")
    params = list(trainer.model.parameters())
    names = [name for name, _ in trainer.model.named_parameters()]
    fresh = trainer.optimizer.state_dict()["param_groups"]
    saved = meta.get("param_groups")
    _need(isinstance(saved, list) and len(saved) == len(fresh), "optimizer parameter groups do not match")
    groups = []
    for mine, theirs in zip(fresh, saved, strict=True):
        _need(isinstance(theirs, dict) and theirs.get("params") == mine["params"],
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
        _need(index_text.isascii() and index_text.isdigit() and int(index_text) < len(params) and name,
             f"optimizer tensor {_short(key)} is not named <parameter index>/<key>")
        index = int(index_text)
        _need(t.is_floating_point() and (t.dim() == 0 or t.shape == params[index].shape),
             f"optimizer state {name!r} of {names[index]!r} has shape {tuple(t.shape)} ({t.dtype})")
        state.setdefault(index, {})[name] = t.clone()  # load_state_dict would alias it; steps mutate it
    extra = meta.get("state", {})
    _need(isinstance(extra, dict), "optimizer state must be a table")
    for index_text, entries in extra.items():
        _need(index_text.isascii() and index_text.isdigit() and int(index_text) < len(params)
             and isinstance(entries, dict), f"optimizer state {_short(index_text)} is not a parameter index")
        for name, value in entries.items():
            _need(value is None or type(value) in (bool, int, float), f"optimizer state {_short(name)} is not a number")
            state.setdefault(int(index_text), {}).setdefault(name, value)
    for index, entries in state.items():
        _need(set(entries) == expected, f"optimizer state of {names[index]!r} has {sorted(entries)}; "
                                       f"expected {sorted(expected)}")
    return {"state": state, "param_groups": groups}


def _setting(key: str, value: Any, current: Any) -> Any:
    """A saved optimizer setting, if it is the kind of value this torch keeps there."""
    try:
        if current is None or isinstance(current, bool):
            if value is None or isinstance(value, bool):
                return value
        elif isinstance(current, (int, float)):
            return value if type(value) in (int, float) else _number(value)
        elif isinstance(current, (tuple, list)) and isinstance(value, list) and len(value) == len(current):
            return type(current)(_number(v) for v in value)
        elif isinstance(current, str) and isinstance(value, str):
            return value
    except TypeError:
        pass
    raise _Invalid(f"optimizer setting {key!r} is {_short(value)}")


def _expected_state_keys(cls: type, group: dict) -> set[str]:
    """The per-parameter state keys ``cls`` keeps with these settings (one scratch step)."""
    probe = torch.zeros(1, requires_grad=True)
    try:
        scratch = cls([probe], **{k: v for k, v in group.items() if k != "params"})
        probe.grad = torch.ones(1)
        scratch.step()
    except (ValueError, TypeError, RuntimeError, AssertionError) as err:  # torch asserts some
        raise _Invalid(f"optimizer settings are invalid ({_one_line(err)})") from None
    return set(scratch.state[probe]) if probe in scratch.state else set()


def _checked_rng(state: Any, name: str) -> torch.Tensor:
    _need(isinstance(state, torch.Tensor) and state.dtype == torch.uint8 and state.dim() == 1,
         f"{name} is missing or not a uint8 generator state")
    try:
        torch.Generator().set_state(state)  # on a scratch generator: refuse before changing anything
    except RuntimeError as err:
        raise _Invalid(f"{name} is not a valid generator state ({_one_line(err)})") from None
    return state


# ------------------------------------------------------------------------------- saving
def save_session(trainer: Trainer, path: str | os.PathLike, traces: dict[str, np.ndarray] | None = None) -> None:
    """Write ``trainer`` (and optional named trace arrays) to ``path`` atomically.

    Call it between steps (from the thread that drives the trainer, or while training is
    paused). The previous file at ``path`` survives any failure (crash, full disk)
    unchanged. Raises SessionError naming the file when it cannot be written.
    """
    try:
        tensors, meta = trainer_state(trainer)
    except SessionError as err:
        raise SessionError(f"{path}: {err}") from None
    write_session(path, tensors, meta, traces)


def write_session(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                  traces: dict[str, np.ndarray] | None = None) -> None:
    """Write a state captured by ``trainer_state`` to ``path`` atomically.

    Split from save_session so an autosave can capture between steps (a copy, milliseconds)
    on the training thread and write (compress, fsync) on another.
    """
    path = Path(path)
    members = {"traces.npz": _npz_bytes(traces, path)} if traces else {}
    header = {"format": FORMAT, "schema": SCHEMA, "app_version": app_version(),
              "torch_version": torch.__version__,
              "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
              **meta, "traces": sorted(traces) if traces else []}
    members = {"session.json": json.dumps(header, allow_nan=False, separators=(",", ":")).encode(),
               **members}
    for member, prefix in TENSOR_FILES.items():
        part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        members[member] = safetensors.torch.save(part, metadata={"format": FORMAT})
    try:
        with atomic_write(path) as f, zipfile.ZipFile(f, "w") as zf:
            for name, data in members.items():
                if name.endswith(".json"):  # level 1: 5x faster than 6, barely larger
                    zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
                else:  # float tensors hardly compress
                    zf.writestr(name, data, compress_type=zipfile.ZIP_STORED)
    except OSError as err:
        raise SessionError(f"{path}: cannot save the session ({_reason(err)})") from err


def _npz_bytes(traces: dict[str, np.ndarray], path: Path) -> bytes:
    """An .npz of plain arrays, written member by member so nothing can be pickled."""
    buffer, total = io.BytesIO(), 0
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, value in traces.items():
            array = np.asarray(value)
            if not isinstance(name, str) or not name or array.dtype.kind not in "biufcUS":
                raise SessionError(f"{path}: trace {_short(name)} must be a named numeric, bool or "
                                   f"string array; got dtype {array.dtype}")
            total += array.nbytes
            if total > MAX_TRACE_BYTES:
                raise SessionError(f"{path}: traces exceed {MAX_TRACE_BYTES // MiB} MiB; keep fewer")
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


def app_version() -> str:
    """This program's version (core.__version__, also the package version)."""
    from core import __version__

    return __version__


# ------------------------------------------------------------------------------ opening
def open_session(path: str | os.PathLike, *, global_rng: bool = True) -> Trainer:
    """A new Trainer that continues the saved one exactly (same losses, same batches).

    Nothing existing is touched: a fresh ``Trainer(experiment)`` is built and loaded. When
    ``global_rng`` is true, torch's global CPU generator is set to the saved state as the
    very last step (only after everything was read and checked). A session saved on
    ``cuda`` opens on ``cpu`` when CUDA is absent. Raises SessionError naming the file.
    """
    source = str(path)
    try:
        with _open_zip(path) as zf:
            header = _read_header(zf)
            experiment = _experiment(header)
            if experiment.device == "cuda" and not torch.cuda.is_available():
                _log.warning("%s was saved on cuda; opening it on cpu", source)
                experiment = experiment.replace(device="cpu")
            try:
                trainer = Trainer(experiment)
            except UserError as err:
                raise _Invalid(str(err)) from None
            limits = _limits(trainer.model)
            tensors = {}
            for member, prefix in TENSOR_FILES.items():
                for name, tensor in _read_safetensors(zf, member, limits[member]).items():
                    tensors[prefix + name] = tensor
        _restore(trainer, tensors, header, global_rng=global_rng)
    except _Invalid as err:
        raise SessionError(f"{source}: {err}") from None
    return trainer


def restore_trainer_state(trainer: Trainer, tensors: dict[str, torch.Tensor], meta: dict, *,
                          global_rng: bool = True, source: str = "trainer state") -> None:
    """Load what ``trainer_state`` captured into ``trainer`` (built from the same experiment).

    Everything is checked before anything changes: on SessionError the trainer is as it was.
    """
    try:
        _restore(trainer, tensors, meta, global_rng=global_rng)
    except _Invalid as err:
        raise SessionError(f"{source}: {err}") from None


def read_session_info(path: str | os.PathLike) -> dict[str, Any]:
    """What a session holds, from session.json only (no tensors, no trainer built).

    Keys: path, schema (as written), app_version, torch_version, saved_at, config
    (validated Experiment.to_dict()), step_count, history_length, last_loss, traces.
    """
    try:
        with _open_zip(path) as zf:
            header = _read_header(zf)
        experiment = _experiment(header)
        history = header.get("history")
        losses = history.get("loss") if isinstance(history, dict) else None
        _need(isinstance(losses, list), "history.loss is missing")
        return {
            "path": str(path), "schema": header["_schema_written"],
            "app_version": header.get("app_version"), "torch_version": header.get("torch_version"),
            "saved_at": header.get("saved_at"), "config": experiment.to_dict(),
            "step_count": header["step_count"], "history_length": len(losses),
            "last_loss": _number_or_none(losses[-1]) if losses else None,
            "traces": header["traces"],
        }
    except _Invalid as err:
        raise SessionError(f"{path}: {err}") from None


def read_traces(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The named trace arrays saved with the session ({} when it has none)."""
    try:
        with _open_zip(path) as zf:
            header = _read_header(zf)
            if not header["traces"]:
                return {}
            arrays = _parse_npz(_read_member(zf, "traces.npz", MAX_TRACE_BYTES))
        _need(sorted(arrays) == header["traces"], "traces.npz does not hold the traces listed in session.json")
        return arrays
    except _Invalid as err:
        raise SessionError(f"{path}: {err}") from None


def _open_zip(path) -> zipfile.ZipFile:
    """The session zip, or _Invalid saying what the file is instead."""
    if os.path.exists(path) and not os.path.isfile(path):  # a folder, or a pipe that would block
        raise _Invalid("not a regular file")
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise _Invalid("no such file") from None
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error, OSError) as err:
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError:
            raise _Invalid(f"cannot read the file ({_reason(err)})") from None
        raise _Invalid(_not_a_zip(head)) from None
    names = zf.namelist()
    if "session.json" not in names:
        zf.close()
        if any(n.endswith(".pkl") or n.endswith("/data/0") for n in names):
            raise _Invalid("this is a PyTorch checkpoint (.pt/.pth), not an RNN Explorer session; "
                          "it is not opened because loading it can run code")
        raise _Invalid("not an RNN Explorer session (the zip holds no session.json)")
    return zf


def _not_a_zip(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "the file is damaged or truncated (its zip directory cannot be read)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return ("this is a pickle (an old-style .pt/.pth checkpoint), not an RNN Explorer session; "
                "it is not opened because loading it can run code")
    return ("not an RNN Explorer session (a zip file); .pt/.pth checkpoints are not opened "
            "because they can run code")


def _read_member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A member's bytes; refuses missing, encrypted, oddly compressed or oversized members."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _Invalid(f"{name} is missing") from None
    _need(not info.flag_bits & 0x1, f"{name} is encrypted")
    _need(info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED),
         f"{name} uses an unsupported compression method ({info.compress_type})")
    _need(info.file_size <= limit, f"{name} declares {info.file_size} bytes; at most {limit} are "
                                  "expected for this experiment (damaged file or zip bomb)")
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except _ZIP_ERRORS as err:
        raise _Invalid(f"{name} is damaged ({_one_line(err)})") from None
    _need(len(data) <= limit, f"{name} is larger than the {limit} bytes allowed")
    return data


def _read_header(zf: zipfile.ZipFile) -> dict:
    """session.json parsed, checked for format and schema, migrated to SCHEMA."""
    raw = _read_member(zf, "session.json", MAX_JSON_BYTES)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise _Invalid(f"session.json is not valid JSON ({_one_line(err)})") from None
    _need(isinstance(header, dict), "session.json must hold a JSON object")
    _need(header.get("format") == FORMAT,
         f"not an RNN Explorer session (format {_short(header.get('format'))}; expected {FORMAT!r})")
    schema = header.get("schema")
    _need(type(schema) is int and schema >= 0, f"schema must be a whole number; got {_short(schema)}")
    if schema > SCHEMA:
        raise _Invalid(f"was written by a newer RNN Explorer (schema {schema}; this version reads "
                      f"up to {SCHEMA})")
    header["_schema_written"] = schema
    while schema < SCHEMA:
        _need(schema in MIGRATIONS, f"schema {schema} is too old to open (this version reads "
                                   f"{min(MIGRATIONS)} to {SCHEMA})")
        header = MIGRATIONS[schema](header)
        schema += 1
        header["schema"] = schema
    step_count = header.get("step_count")
    _need(type(step_count) is int and step_count >= 0, f"step_count must be a whole number; got {_short(step_count)}")
    traces = header.get("traces", [])
    _need(isinstance(traces, list) and all(isinstance(t, str) for t in traces),
         "traces must be a list of names")
    header["traces"] = sorted(traces)
    return header


def _experiment(header: dict) -> Experiment:
    config = header.get("config")
    _need(isinstance(config, dict), "config is missing or not a table of experiment fields")
    try:
        return Experiment.from_dict(config)
    except ConfigError as err:
        raise _Invalid(f"config: {err}") from None


def _limits(model: torch.nn.Module) -> dict[str, int]:
    """Largest believable size of each tensor member for this model (headers included)."""
    state = model.state_dict()
    weights = sum(t.numel() * t.element_size() for t in state.values())
    slack = MiB + 4096 * len(state)
    return {"model.safetensors": weights + slack, "optimizer.safetensors": 4 * weights + 2 * slack,
            "rng.safetensors": MAX_RNG_BYTES}


def _read_safetensors(zf: zipfile.ZipFile, name: str, limit: int) -> dict[str, torch.Tensor]:
    data = _read_member(zf, name, limit)
    try:
        return safetensors.torch.load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError, OverflowError) as err:
        raise _Invalid(f"{name} is not a valid safetensors file ({_one_line(err)})") from None


def _parse_npz(data: bytes) -> dict[str, np.ndarray]:
    """Arrays of an .npz, each .npy header checked before any data is allocated."""
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            _need(sum(i.file_size for i in infos) <= MAX_TRACE_BYTES, "traces.npz is too large")
            for info in infos:
                _need(info.filename.endswith(".npy"), f"traces.npz holds {_short(info.filename)}, not an array")
                _need(info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) and not info.flag_bits & 1,
                     f"traces.npz member {_short(info.filename)} is encrypted or oddly compressed")
                arrays[info.filename[:-4]] = _parse_npy(zf.read(info), info.filename)
    except _ZIP_ERRORS as err:
        raise _Invalid(f"traces.npz is damaged ({_one_line(err)})") from None
    return arrays


def _parse_npy(raw: bytes, name: str) -> np.ndarray:
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        _need(read_header is not None, f"trace {_short(name)} has unsupported .npy version {version}")
        shape, fortran, dtype = read_header(f)
    except _Invalid:
        raise
    except Exception as err:  # numpy evaluates the header text (ast, tokenize): any failure = damage
        raise _Invalid(f"trace {_short(name)} has a damaged header ({_one_line(err)})") from None
    _need(not dtype.hasobject and dtype.kind in "biufcUS", f"trace {_short(name)} has dtype {dtype}, not plain data")
    _need(all(type(d) is int and d >= 0 for d in shape), f"trace {_short(name)} has an invalid shape")
    offset = f.tell()
    _need(math.prod(shape) * dtype.itemsize == len(raw) - offset, f"trace {_short(name)}: data size does not match its shape")
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def _number_or_none(value: Any) -> float | None:
    try:
        return _number(value)
    except TypeError:
        return None


def _reason(err: OSError) -> str:
    return err.strerror or _one_line(err)


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return " ".join(text.split())[:300]


# ----------------------------------------------------------------------------- autosave
# The app saves to autosave_path() on a timer and calls mark_clean_exit() when it quits
# normally. At start, find_recovery() returns the autosave if it is newer than the last
# clean exit (the previous run crashed); after offering it, the app calls discard_autosave()
# or mark_clean_exit(). One autosave per user: two app instances share it.
AUTOSAVE_NAME = "autosave" + SUFFIX
CLEAN_EXIT_NAME = "clean-exit"


def _autosave_dir() -> Path:
    directory = data_dir() / "autosave"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def autosave_path() -> Path:
    """Where the app autosaves (``<data dir>/autosave/autosave.rnnx``); creates the folder."""
    return _autosave_dir() / AUTOSAVE_NAME


def mark_clean_exit() -> None:
    """Record that the app quit normally, after its last autosave."""
    marker = _autosave_dir() / CLEAN_EXIT_NAME
    marker.write_text(datetime.now(UTC).isoformat() + "\n", encoding="utf-8")


def find_recovery() -> Path | None:
    """The autosave, when one exists and is newer than the last clean exit; else None."""
    directory = data_dir() / "autosave"
    autosave, marker = directory / AUTOSAVE_NAME, directory / CLEAN_EXIT_NAME
    try:
        saved = autosave.stat().st_mtime_ns
    except OSError:
        return None
    try:
        clean = marker.stat().st_mtime_ns
    except OSError:
        return autosave
    return autosave if saved > clean else None


def discard_autosave() -> None:
    """Remove the autosave (the user declined recovery, or started afresh)."""
    try:
        (data_dir() / "autosave" / AUTOSAVE_NAME).unlink()
    except FileNotFoundError:
        pass
