"""Sessions: a whole experiment in one ``.rnnx`` file that continues exactly, never a pickle.

A session is a zip (schema 1)::

    session.json           format "rnn-explorer-session", schema, app_version, torch_version,
                           saved_at, config (Experiment.to_dict()), step_count, param_names,
                           optimizer {param_groups, state: non-tensor entries}, history
                           (StepRecord columns, see history_columns), traces (array names),
                           interventions and lesion (core.interventions; optional)
    model.safetensors      model.state_dict(), named as in torch.nn (recurrent.weight_ih_l0 ...)
    optimizer.safetensors  optimizer tensors as "<parameter index>/<key>" (exp_avg, step ...)
    rng.safetensors        "data": the trainer's batch generator, "torch_cpu": torch's global
                           CPU generator, both uint8 state tensors
    traces.npz             optional: named numpy arrays (no object dtypes; read without pickle)
    data.safetensors       optional: the user's data files, stored whole up to a size limit
                           (session.json "data_files" lists them; core.session.data)

Opening never runs code from the file: JSON, safetensors and .npy headers are parsed and
every value is checked against the experiment the config describes. Anything wrong raises
SessionError naming the file. ``.pt``/``.pth`` checkpoints are refused, not loaded,
because unpickling them can run code. Older schemas are upgraded by MIGRATIONS.

The in-memory state (capture, checks, restore) lives in core.session.snapshot, the
defensive readers of zip members in core.session.readers, autosave in core.session.autosave.
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

from core.atomic import atomic_write
from core.config import ConfigError, Experiment
from core.errors import SessionError, UserError
from core.logs import LOGGER
from core.session import SUFFIX  # noqa: F401 (the format's suffix, still importable from here)
from core.session.checks import Invalid, need, one_line, short
from core.session.data import MEMBER as DATA_MEMBER
from core.session.data import read_files
from core.session.readers import (
    MAX_JSON_BYTES,
    MAX_TRACE_BYTES,
    MiB,
    member_limits,
    open_zip,
    os_reason,
    parse_npz,
    read_member,
    read_safetensors,
)
from core.session.snapshot import number, restore_trainer_state, trainer_state
from core.training.trainer import Trainer

FORMAT = "rnn-explorer-session"
SCHEMA = 1
TENSOR_FILES = {"model.safetensors": "model/", "optimizer.safetensors": "optimizer/",
                "rng.safetensors": "rng/"}
MAX_INPUTS_MODEL = 2 * 1024 * MiB  # model.safetensors of an opened model, read before its trainer exists
_log = logging.getLogger(LOGGER)



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
    stored = {k: v for k, v in tensors.items() if k.startswith("data/")}
    if stored:  # the user's data files (core.session.data)
        members[DATA_MEMBER] = safetensors.torch.save(stored, metadata={"format": FORMAT})
    try:
        with atomic_write(path) as f, zipfile.ZipFile(f, "w") as zf:
            for name, data in members.items():
                if name.endswith(".json"):  # level 1: 5x faster than 6, barely larger
                    zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
                else:  # float tensors hardly compress
                    zf.writestr(name, data, compress_type=zipfile.ZIP_STORED)
    except OSError as err:
        raise SessionError(f"{path}: cannot save the session ({os_reason(err)})") from err


def _npz_bytes(traces: dict[str, np.ndarray], path: Path) -> bytes:
    """An .npz of plain arrays, written member by member so nothing can be pickled."""
    buffer, total = io.BytesIO(), 0
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, value in traces.items():
            array = np.asarray(value)
            if not isinstance(name, str) or not name or array.dtype.kind not in "biufcUS":
                raise SessionError(f"{path}: trace {short(name)} must be a named numeric, bool or "
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
        with open_zip(path) as zf:
            header = _read_header(zf)
            experiment = _experiment(header)
            if experiment.device == "cuda" and not torch.cuda.is_available():
                _log.warning("%s was saved on cuda; opening it on cpu", source)
                experiment = experiment.replace(device="cpu")
            files = read_files(zf, header)
            weights = None
            if experiment.task == "inputs":  # an opened model: its sizes come from its weights
                weights = {k: v for k, v in read_safetensors(zf, "model.safetensors", MAX_INPUTS_MODEL).items()}
            try:
                trainer = Trainer(experiment, files=files, weights=weights)
            except UserError as err:
                raise Invalid(str(err)) from None
            limits = member_limits(trainer.model)
            tensors = {}
            for member, prefix in TENSOR_FILES.items():
                for name, tensor in read_safetensors(zf, member, limits[member]).items():
                    tensors[prefix + name] = tensor
    except Invalid as err:
        raise SessionError(f"{source}: {err}") from None
    restore_trainer_state(trainer, tensors, header, global_rng=global_rng, source=source)
    return trainer


def read_session_info(path: str | os.PathLike) -> dict[str, Any]:
    """What a session holds, from session.json only (no tensors, no trainer built).

    Keys: path, schema (as written), app_version, torch_version, saved_at, config
    (validated Experiment.to_dict()), step_count, history_length, last_loss, traces.
    """
    try:
        with open_zip(path) as zf:
            header = _read_header(zf)
        experiment = _experiment(header)
        history = header.get("history")
        losses = history.get("loss") if isinstance(history, dict) else None
        need(isinstance(losses, list), "history.loss is missing")
        return {
            "path": str(path), "schema": header["_schema_written"],
            "app_version": header.get("app_version"), "torch_version": header.get("torch_version"),
            "saved_at": header.get("saved_at"), "config": experiment.to_dict(),
            "step_count": header["step_count"], "history_length": len(losses),
            "last_loss": _number_or_none(losses[-1]) if losses else None,
            "traces": header["traces"],
        }
    except Invalid as err:
        raise SessionError(f"{path}: {err}") from None


def read_traces(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The named trace arrays saved with the session ({} when it has none)."""
    try:
        with open_zip(path) as zf:
            header = _read_header(zf)
            if not header["traces"]:
                return {}
            arrays = parse_npz(read_member(zf, "traces.npz", MAX_TRACE_BYTES))
        need(sorted(arrays) == header["traces"], "traces.npz does not hold the traces listed in session.json")
        return arrays
    except Invalid as err:
        raise SessionError(f"{path}: {err}") from None


def _read_header(zf: zipfile.ZipFile) -> dict:
    """session.json parsed, checked for format and schema, migrated to SCHEMA."""
    raw = read_member(zf, "session.json", MAX_JSON_BYTES)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise Invalid(f"session.json is not valid JSON ({one_line(err)})") from None
    need(isinstance(header, dict), "session.json must hold a JSON object")
    need(header.get("format") == FORMAT,
         f"not an RNN Explorer session (format {short(header.get('format'))}; expected {FORMAT!r})")
    schema = header.get("schema")
    need(type(schema) is int and schema >= 0, f"schema must be a whole number; got {short(schema)}")
    if schema > SCHEMA:
        raise Invalid(f"was written by a newer RNN Explorer (schema {schema}; this version reads "
                      f"up to {SCHEMA})")
    header["_schema_written"] = schema
    while schema < SCHEMA:
        need(schema in MIGRATIONS, f"schema {schema} is too old to open (this version reads "
                                   f"{min(MIGRATIONS)} to {SCHEMA})")
        header = MIGRATIONS[schema](header)
        schema += 1
        header["schema"] = schema
    step_count = header.get("step_count")
    need(type(step_count) is int and step_count >= 0, f"step_count must be a whole number; got {short(step_count)}")
    traces = header.get("traces", [])
    need(isinstance(traces, list) and all(isinstance(t, str) for t in traces),
         "traces must be a list of names")
    header["traces"] = sorted(traces)
    return header


def _experiment(header: dict) -> Experiment:
    config = header.get("config")
    need(isinstance(config, dict), "config is missing or not a table of experiment fields")
    try:
        return Experiment.from_dict(config)
    except ConfigError as err:
        raise Invalid(f"config: {err}") from None


def _number_or_none(value: Any) -> float | None:
    try:
        return number(value)
    except TypeError:
        return None
