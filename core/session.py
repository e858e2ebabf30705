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

The in-memory state (capture, checks, restore) lives in core.snapshot, the defensive
readers of zip members in core.session_checks; their public names are re-exported here
(``from .x import name as name``), so callers keep importing them from core.session.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from .atomic import atomic_write
from .config import ConfigError, Experiment
from .errors import SessionError, UserError
from .logs import LOGGER, data_dir
from .session_checks import MAX_JSON_BYTES as MAX_JSON_BYTES
from .session_checks import MAX_RNG_BYTES as MAX_RNG_BYTES
from .session_checks import MAX_TRACE_BYTES as MAX_TRACE_BYTES
from .session_checks import MiB as MiB
from .session_checks import _limits, _open_zip, _parse_npz, _read_member, _read_safetensors, _reason
from .snapshot import HISTORY_FLAGS as HISTORY_FLAGS
from .snapshot import HISTORY_FLOATS as HISTORY_FLOATS
from .snapshot import (
    _Invalid,
    _need,
    _number,
    _one_line,
    _short,
    restore_trainer_state,
    trainer_state,
)
from .snapshot import history_columns as history_columns
from .snapshot import history_from_columns as history_from_columns
from .trainer import Trainer

FORMAT = "rnn-explorer-session"
SCHEMA = 1
SUFFIX = ".rnnx"
TENSOR_FILES = {"model.safetensors": "model/", "optimizer.safetensors": "optimizer/",
                "rng.safetensors": "rng/"}
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
    where the model trains and write (compress, fsync) elsewhere, off the training path.
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
    except _Invalid as err:
        raise SessionError(f"{source}: {err}") from None
    restore_trainer_state(trainer, tensors, header, global_rng=global_rng, source=source)
    return trainer


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


def _number_or_none(value: Any) -> float | None:
    try:
        return _number(value)
    except TypeError:
        return None


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
