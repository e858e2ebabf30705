"""A panel's data as files (CSV, NPZ, JSON) and the ``experiment.json`` that regenerates a figure.

``Panel.export_data()`` returns the plotted values by name. Their shape picks the natural
format: equal-length 1-D columns are a table (CSV; the training curves), other numeric or
string arrays are NPZ (heatmaps and traces), anything else (a beam tree, tokens with an
attention matrix: nested dicts and lists) is JSON. A panel may state its format in a
``data_format`` class attribute. When the natural format was not asked for, the first
asked-for format that can hold the data is used (NPZ holds any table, JSON holds anything).

CSV writes floats with ``repr`` (they read back bit for bit; non-finite as nan/inf), NPZ
never pickles, JSON writes non-finite numbers as null. Files are written atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import atomic_write

DATA_FORMATS = ("csv", "npz", "json")
CAN_HOLD = {"table": ("csv", "npz", "json"), "arrays": ("npz", "json"), "tree": ("json",)}


def data_kind(data: dict[str, Any]) -> str:
    """'table' (equal-length 1-D columns), 'arrays' (numeric/string arrays) or 'tree'."""
    arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray) and v.dtype.kind in "biufUS"}
    if len(arrays) != len(data) or not data:
        return "tree" if data else "table"
    lengths = {len(v) for v in arrays.values() if v.ndim == 1}
    if all(v.ndim == 1 for v in arrays.values()) and len(lengths) == 1:
        return "table"
    return "arrays"


def choose_format(data: dict[str, Any], wanted: tuple[str, ...], preferred: str | None = None) -> str | None:
    """The format to write ``data`` in, of those ``wanted``; None if none of them can hold it."""
    kind = data_kind(data)
    order = CAN_HOLD[kind]
    if preferred in order:
        order = (preferred, *[f for f in order if f != preferred])
    return next((f for f in order if f in wanted), None)


def write_data(data: dict[str, Any], path: str | Path) -> Path:
    """Write ``data`` to ``path`` in the format its suffix names (.csv, .npz, .json)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    writers = {"csv": csv_bytes, "npz": npz_bytes, "json": json_bytes}
    if fmt not in writers:
        raise ValueError(f"data format must be one of {', '.join(DATA_FORMATS)}; got {path.suffix!r}")
    if fmt == "csv" and data_kind(data) != "table":
        raise ValueError(f"{path.name}: this panel's data is not a table of columns; export it as NPZ or JSON")
    if fmt == "npz" and data_kind(data) == "tree":
        raise ValueError(f"{path.name}: this panel's data is not a set of arrays; export it as JSON")
    content = writers[fmt](data)
    with atomic_write(path) as f:
        f.write(content)
    return path


def csv_bytes(columns: dict[str, np.ndarray]) -> bytes:
    """A header row of names, then one row per index; floats as repr (exact round trip)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(list(columns))
    cells = [[_cell(v) for v in np.asarray(col).tolist()] for col in columns.values()]
    writer.writerows(zip(*cells, strict=True))
    return text.getvalue().encode("utf-8")


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return repr(value)
    return value


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def json_bytes(data: Any) -> bytes:
    return json.dumps(plain(data), indent=1, allow_nan=False, ensure_ascii=False).encode("utf-8")


def plain(value: Any) -> Any:
    """``value`` as JSON types: arrays to lists, dataclasses to dicts, non-finite to None."""
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def versions() -> dict[str, str]:
    """Versions of everything that decides the numbers and the pictures."""
    import pyqtgraph
    import PySide6
    import torch

    from core import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pyside6": PySide6.__version__, "pyqtgraph": pyqtgraph.__version__, "app": __version__}


def experiment_record(run: Any, step: int, *, source: dict[str, Any] | None = None,
                      figure: Any = None, panels: list[str] | None = None,
                      files: list[str] | None = None) -> dict[str, Any]:
    """What ``experiment.json`` holds: the full config and seed, the step, versions, and how
    the figures were made (``source`` says where the run came from: preset or session)."""
    experiment = run.experiment
    record = {
        "format": "rnn-explorer-export",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": experiment.seed,
        "step": int(step),
        "config": experiment.to_dict(),
        "task": {"name": run.task_name, "title": run.task_title, "baseline": run.baseline, "target": run.target},
        "param_count": run.param_count,
        "device": run.device,
        "versions": versions(),
        "source": source or {},
    }
    if getattr(run, "interventions", ()):  # what if: the edits the figures show (core.interventions)
        record["interventions"] = [{"text": e.text(), "enabled": e.enabled} for e in run.interventions]
        record["lesion"] = bool(run.lesion)
    if figure is not None:
        record["figure"] = plain(figure)
    if panels is not None:
        record["panels"] = list(panels)
    if files is not None:
        record["files"] = sorted(files)
    return record


def write_experiment(path: str | Path, record: dict[str, Any]) -> Path:
    path = Path(path)
    with atomic_write(path) as f:
        f.write(json_bytes(record) + b"\n")
    return path
