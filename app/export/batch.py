"""Export all: every chosen panel as figures and data, plus ``experiment.json``, in one folder.

Files are named by panel (``training.png``, ``training.csv``, ``hidden.npz``), so a folder
reads like a figure list, and ``experiment.json`` holds the full config, seed, step and
versions needed to regenerate them. With ``frames``, panels that follow the time cursor (or
that offer their own frames, e.g. beam expansions) also get a numbered PNG sequence in
``frames/`` (``frames/hidden_000.png`` ...) for animated slides.

Arguments are checked before the first file is written, and each file is written atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.export.data import (
    DATA_FORMATS,
    choose_format,
    data_kind,
    experiment_record,
    write_data,
    write_experiment,
)
from app.export.figure import (
    DEFAULT_FIGURE,
    FIGURE_FORMATS,
    Figure,
    caption_lines,
    png_bytes,
    save_png,
    save_svg,
    staged,
    write_bytes,
)
from app.panels.base import Panel

FORMATS = FIGURE_FORMATS + DATA_FORMATS
EXPERIMENT_FILE = "experiment.json"
FRAMES_DIR = "frames"

Progress = Callable[[int, int, str], None]  # (done, total, what is being written)


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """'png,svg,csv' -> ('png', 'svg', 'csv'); ValueError naming the unknown one and the allowed."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in items if f.strip()))
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not formats:
        raise ValueError(f"formats must name at least one of {', '.join(FORMATS)}")
    return formats


def parse_panels(text: str | Sequence[str] | None, known: Sequence[str]) -> tuple[str, ...]:
    """'training,hidden' -> the names, in the order given; None or 'all' -> every known panel."""
    if text is None or text == "all":
        return tuple(known)
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(n.strip().lower() for n in items if n.strip()))
    for name in names:
        if name not in known:
            raise ValueError(f"unknown panel {name!r}; choose from {', '.join(known)}")
    if not names:
        raise ValueError(f"panels must name at least one of {', '.join(known)}")
    return names


def check_out_dir(out: str | Path) -> Path:
    """The output folder, created if needed; OSError naming it when it cannot be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder; {str(out)!r} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".rnn-explorer-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OSError(f"cannot write to the folder {str(out)!r}: {err.strerror or err}") from None
    return out


def has_content(panel: Panel) -> bool:
    """Whether ``panel`` has anything to show: some non-empty array among what it plots
    (an empty Compare figure, before any comparison ran, is no figure)."""
    return any(np.size(value) for value in panel.export_data().values())


def frame_count(panel: Panel) -> int:
    """How many animation frames ``panel`` offers: its own ``frame_count()`` (e.g. beam
    expansions), else one per time step of the probe when it follows the time cursor."""
    own = getattr(panel, "frame_count", None)
    if callable(own):
        return int(own())
    probe = getattr(panel, "probe", None)
    steps = int(getattr(probe, "T", 0) or 0) if probe is not None else 0
    follows_time = bool(panel.cursors) or type(panel).on_time_cursor is not Panel.on_time_cursor
    return steps if follows_time else 0


def save_frames(panel: Panel, directory: str | Path, figure: Figure = DEFAULT_FIGURE, step: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """``directory/<panel>_000.png`` ...: one PNG per frame (time step t, or beam expansion)."""
    count = frame_count(panel)
    if count == 0:
        return []
    own_frames = callable(getattr(panel, "show_frame", None))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    before = panel.time_cursor
    try:
        with staged(panel, figure.validated(), caption_lines(panel, step)) as stage:
            for i in range(count):
                panel.show_frame(i) if own_frames else panel.set_time_cursor(i)
                panel.refresh(force=True)
                title, details = caption_lines(panel, step)
                stage.caption = (f"{title} · {'frame' if own_frames else 't ='} {i}", details) \
                    if figure.caption else None
                path = directory / f"{panel.name}_{i:03d}.png"
                paths.append(write_bytes(path, png_bytes(stage.image())))
                if progress is not None:
                    progress(i + 1, count)
    finally:
        if not own_frames:
            panel.set_time_cursor(before)
    return paths


def export_all(panels: Sequence[Panel], out: str | Path, run: Any, step: int, *,
               formats: Sequence[str] = FORMATS, figure: Figure = DEFAULT_FIGURE, frames: bool = False,
               source: dict[str, Any] | None = None, progress: Progress | None = None,
               warn: Callable[[str], None] | None = None) -> list[Path]:
    """Write each panel in each of ``formats`` (data in the one format that fits it, see
    app.export.data) and ``experiment.json`` into ``out``. Returns the files written."""
    formats = parse_formats(formats)
    figure = figure.validated()
    out = check_out_dir(out)
    warn = warn or (lambda message: None)
    figures = [f for f in formats if f in FIGURE_FORMATS]
    data_formats = tuple(f for f in formats if f in DATA_FORMATS)
    total = len(panels) * (len(figures) + (1 if data_formats else 0)) + (len(panels) if frames else 0) + 1
    done = framed = 0
    written: list[Path] = []

    def advance(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, what)

    for panel in panels:
        if not has_content(panel):  # nothing drawn yet: no empty figure, and say so
            warn(f"{panel.name}: nothing to show yet, skipped")
            done += len(figures) + (1 if data_formats else 0) + (1 if frames else 0)
            continue
        lines = caption_lines(panel, step)
        for fmt in figures:
            path = out / f"{panel.name}.{fmt}"
            written.append((save_png if fmt == "png" else save_svg)(panel, path, figure, lines))
            advance(path.name)
        if data_formats:
            written.extend(_write_panel_data(panel, out, data_formats, warn))
            advance(f"{panel.name} data")
        if frames:
            made = save_frames(panel, out / FRAMES_DIR, figure, step)
            framed += bool(made)
            written.extend(made)
            advance(f"{panel.name} frames")
    if frames and not framed:
        warn("no frames: none of these panels follows the time cursor (try hidden, gates or cell)")
    record = experiment_record(run, step, source=source, figure=figure, panels=[p.name for p in panels],
                               files=[str(p.relative_to(out)) for p in written])
    written.append(write_experiment(out / EXPERIMENT_FILE, record))
    advance(EXPERIMENT_FILE)
    return written


def _write_panel_data(panel: Panel, out: Path, formats: tuple[str, ...], warn: Callable[[str], None]) -> list[Path]:
    data = panel.export_data()
    if not data:
        warn(f"{panel.name}: no data yet; nothing written")
        return []
    fmt = choose_format(data, formats, getattr(panel, "data_format", None))
    if fmt is None:
        warn(f"{panel.name}: its data ({data_kind(data)}) cannot be written as {', '.join(formats)}; "
             f"add npz or json to the formats")
        return []
    return [write_data(data, out / f"{panel.name}.{fmt}")]
