"""Animated figures for slides: one panel as a GIF, MP4 or APNG, frame by frame.

An animation is a *sweep* of one panel through a series of states, each painted exactly
as a still figure is (``app.export.figure.staged``: offscreen, the figure's size and theme,
the caption), converted to RGB and handed to a streaming encoder (``app.export.encoders``).
Only the frame being encoded is held, never the whole animation.

Sweeps (``--over``):
- ``t``: the time cursor steps through the probe sequence (panels with a time cursor:
  hidden state, gates, gradients through time, inside the cell).
- ``steps``: the training history replayed. A fresh copy of the panel is fed the run's
  records in order, and a frame is painted at each step where the panel had something new
  to draw (an instrument snapshot; every step for the training curves). The resolution is
  what the records kept: see ``drawn_steps`` and the README.
- ``expansions``: the beam tree grows one expansion at a time (panels that offer frames of
  their own: ``frame_count()`` and ``show_frame(i)``, i.e. Decoding).
``frames_max`` keeps at most that many frames, evenly spaced.

``write_animation`` is a generator that yields after each frame, so the command line
drives it in a loop and the window in slices (progress and Cancel); closing it early, or
an error, leaves no file behind (the animation is written to a temporary file that
replaces the target only when complete).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtGui import QImage

from app.export.encoders import (
    GIF_FPS_MAX,
    ApngWriter,
    GifWriter,
    Mp4Writer,
    check_even,
    gif_palette,
)
from app.export.figure import Figure, caption_height, caption_lines, staged
from app.panels.base import Panel
from core.atomic import atomic_write
from core.records import ProbeRecord, StepRecord

ANIMATION_FORMATS = ("gif", "mp4", "apng")
SWEEPS = ("t", "steps", "expansions")
SUFFIXES = {"gif": ".gif", "mp4": ".mp4", "apng": ".apng"}
DEFAULT_FPS = {"t": 10.0, "steps": 10.0, "expansions": 2.0}  # a beam step needs time to read
FPS_RANGE = (0.5, 60.0)
FRAMES_RANGE = (2, 1000)
DEFAULT_FRAMES_MAX = 100


@dataclass(frozen=True)
class Animation:
    """How to animate a panel.

    format:     gif, mp4 or apng.
    over:       the sweep: t, steps or expansions (see the module docstring).
    fps:        frames per second (None: 10, or 2 for expansions).
    frames_max: at most this many frames, evenly spaced over the sweep.
    loop:       play forever (GIF, APNG); an MP4 loops where it is played.
    """

    format: str = "gif"
    over: str = "t"
    fps: float | None = None
    frames_max: int = DEFAULT_FRAMES_MAX
    loop: bool = False

    @property
    def rate(self) -> float:
        return float(self.fps) if self.fps else DEFAULT_FPS.get(self.over, 10.0)

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.format]

    def validated(self) -> Animation:
        """This animation, or ValueError naming the bad value and what is allowed."""
        if self.format not in ANIMATION_FORMATS:
            raise ValueError(f"--animate must be one of {', '.join(ANIMATION_FORMATS)}; got {self.format!r}")
        if self.over not in SWEEPS:
            raise ValueError(f"--over must be one of {', '.join(SWEEPS)}; got {self.over!r}")
        top = GIF_FPS_MAX if self.format == "gif" else FPS_RANGE[1]
        if self.fps is not None and not FPS_RANGE[0] <= self.fps <= top:
            raise ValueError(f"--fps must be from {FPS_RANGE[0]:g} to {top:g} for {self.format}"
                             f"{' (GIF delays are whole hundredths of a second)' if self.format == 'gif' else ''}; "
                             f"got {self.fps:g}")
        if not FRAMES_RANGE[0] <= self.frames_max <= FRAMES_RANGE[1]:
            raise ValueError(f"--frames-max must be from {FRAMES_RANGE[0]} to {FRAMES_RANGE[1]}; "
                             f"got {self.frames_max}")
        if self.loop and self.format == "mp4":
            raise ValueError("--loop is for gif and apng; an MP4 loops where it is played "
                             "(PowerPoint: Playback > Loop until Stopped)")
        return self

    def check_size(self, size: tuple[int, int]) -> None:
        if self.format == "mp4":
            check_even(size)


def spread(count: int, most: int) -> list[int]:
    """At most ``most`` of range(count), evenly spaced, first and last included."""
    if count <= most:
        return list(range(count))
    return [int(i) for i in np.round(np.linspace(0, count - 1, most)).astype(int)]


# ------------------------------------------------------------------------------ sweeps
def follows_time(panel: Panel) -> bool:
    return bool(panel.cursors) or type(panel).on_time_cursor is not Panel.on_time_cursor


def own_frames(panel: Panel) -> bool:
    return callable(getattr(panel, "show_frame", None)) and callable(getattr(panel, "frame_count", None))


def sweeps_of(panel: Panel) -> tuple[str, ...]:
    """The sweeps ``panel`` can be animated over."""
    found = []
    if follows_time(panel):
        found.append("t")
    if panel.draws and not own_frames(panel):  # a panel with frames of its own shows its own work
        found.append("steps")
    if own_frames(panel):
        found.append("expansions")
    return tuple(found)


class Sweep:
    """A panel and ``count`` states to show it in; ``show(i)`` -> (caption label, step or None)."""

    panel: Panel
    count: int

    def show(self, i: int) -> tuple[str, int | None]:
        raise NotImplementedError

    def restore(self) -> None:
        """Put the panel back as it was before the sweep."""


class TimeSweep(Sweep):
    """The time cursor through the probe: ``length`` time steps (at most ``most`` shown)."""

    def __init__(self, panel: Panel, length: int, most: int = DEFAULT_FRAMES_MAX):
        if not follows_time(panel):
            raise ValueError(f"{panel.name} has no time cursor to sweep; over t: panels such as hidden, gates, "
                             f"gradients, cell")
        if length < 2:
            raise ValueError(f"{panel.name}: the probe has {length} time step(s); over t needs 2 or more")
        self.panel, self.times = panel, spread(length, most)
        self.count, self.before = len(self.times), panel.time_cursor

    def show(self, i: int) -> tuple[str, int | None]:
        self.panel.set_time_cursor(self.times[i])
        self.panel.refresh(force=True)
        return f"t = {self.times[i]}", None

    def restore(self) -> None:
        self.panel.set_time_cursor(self.before)
        self.panel.refresh(force=True)


class FrameSweep(Sweep):
    """A panel's own frames (the beam tree's expansions): ``frame_count()``, ``show_frame(i)``."""

    def __init__(self, panel: Panel, most: int = DEFAULT_FRAMES_MAX):
        if not own_frames(panel):
            raise ValueError(f"{panel.name} has no expansions to step through; over expansions: decoding")
        total = int(panel.frame_count())
        if total < 1:
            raise ValueError(f"{panel.name} has nothing to step through yet (decode first)")
        self.panel, self.total, self.frames = panel, total, spread(total, most)
        self.count = len(self.frames)
        current = getattr(panel, "current_frame", None)
        self.before = current() if callable(current) else None

    def show(self, i: int) -> tuple[str, int | None]:
        self.panel.show_frame(self.frames[i])
        self.panel.refresh(force=True)
        return f"expansion {self.frames[i] + 1} of {self.total}", None

    def restore(self) -> None:
        if self.before is not None:
            self.panel.show_frame(self.before)
            self.panel.refresh(force=True)


def _items(record: Any) -> tuple[Any, ...]:
    if isinstance(record, StepRecord):
        return record, record.probe, record.gradients, record.spectrum
    return (record,)


def probe_length(records: Sequence[Any]) -> int:
    """T of the last probe among ``records`` (0 if none): the time steps a sweep over t covers."""
    for record in reversed(records):
        for item in _items(record):
            if isinstance(item, ProbeRecord):
                return item.T
    return 0


def drawn_steps(draws: frozenset[type], records: Sequence[Any]) -> list[int]:
    """The steps at which a panel that ``draws`` these record types had something new to show:
    where an instrument it draws was recorded, or every step if it draws only StepRecords."""
    kinds = (draws - {StepRecord}) or draws
    return sorted({r.step for r in records if any(type(item) in kinds for item in _items(r))})


class StepReplay(Sweep):
    """The training history replayed into ``panel``, a fresh panel of its own (it is reset
    and fed ``records`` up to each frame's step; the live panel is not touched)."""

    def __init__(self, panel: Panel, run: Any, records: Sequence[Any], most: int = DEFAULT_FRAMES_MAX,
                 setup: Callable[[Panel], None] | None = None):
        if "steps" not in sweeps_of(panel):
            raise ValueError(f"{panel.name} cannot replay training steps (it shows work of its own); "
                             f"over steps: training, hidden, gates, gradients, spectrum, cell")
        steps = drawn_steps(panel.draws, records)
        if len(steps) < 2:
            raise ValueError(f"{panel.name}: the records hold {len(steps)} step(s) it can show; over steps needs 2 "
                             f"or more (train some steps in this export: --steps N)")
        self.panel, self.run, self.records, self.setup = panel, run, list(records), setup
        self.steps = [steps[i] for i in spread(len(steps), most)]
        self.count = len(self.steps)
        self.fed = 0  # records fed so far
        self.shown: int | None = None

    def show(self, i: int) -> tuple[str, int | None]:
        step = self.steps[i]
        if self.shown is None or step < self.shown:  # back in time: start over
            self.panel.reset(self.run)
            if self.setup is not None:
                self.setup(self.panel)
            self.fed = 0
        while self.fed < len(self.records) and self.records[self.fed].step <= step:
            self.panel.update_record(self.records[self.fed])
            self.fed += 1
        self.shown = step
        self.panel.refresh(force=True)
        return f"step {step:,}", step


# ------------------------------------------------------------------------------ writing
def rgb_array(image: QImage) -> np.ndarray:
    """uint8 [H, W, 3] copy of ``image``."""
    rgb = image.convertToFormat(QImage.Format_RGB888)
    width, height, stride = rgb.width(), rgb.height(), rgb.bytesPerLine()
    rows = np.frombuffer(rgb.constBits(), np.uint8, count=stride * height).reshape(height, stride)
    return rows[:, : 3 * width].reshape(height, width, 3).copy()


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it on success and is removed otherwise
    (for ffmpeg, which writes to a path; see core.atomic for the same with a file object)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_animation(sweep: Sweep, path: str | Path, figure: Figure, animation: Animation,
                    step: int | None = None) -> Iterator[int]:
    """Write ``sweep`` to ``path`` as ``animation`` describes, at ``figure``'s size and theme;
    yields the number of frames written after each one (``sweep.count`` in all).

    ``step`` is the run's step for the caption (a step replay names each frame's own). Close
    the generator to cancel: the file is then not written. The panel is put back after."""
    animation, figure = animation.validated(), figure.validated()
    animation.check_size(figure.size)
    path = Path(path)
    panel, count = sweep.panel, sweep.count

    def caption(i: int) -> tuple[str, str]:
        label, at = sweep.show(i)
        title, details = caption_lines(panel, at if at is not None else step)
        return f"{title} · {label}", details

    try:
        # the caption's height is fixed for the animation (the panel must not jump): the
        # taller of the first and last frames' captions (a step replay's notes grow)
        width = figure.layout_size[0]
        lines = max((caption(count - 1), caption(0)), key=lambda c: caption_height(c, width))
        with staged(panel, figure, lines) as stage:
            def frame(i: int) -> np.ndarray:
                lines = caption(i)
                stage.caption = lines if figure.caption else None
                return rgb_array(stage.image())

            if animation.format == "mp4":
                with _temporary(path) as tmp:
                    writer = Mp4Writer(tmp, figure.size, animation.rate, count)
                    yield from _feed(writer, frame, count)
            else:
                with atomic_write(path) as out:
                    if animation.format == "gif":
                        # one palette for the animation, from its first, middle and last frames
                        samples = [frame(i) for i in sorted({0, count // 2, count - 1})]
                        writer = GifWriter(out, figure.size, animation.rate, count, gif_palette(samples),
                                           animation.loop)
                        del samples
                    else:
                        writer = ApngWriter(out, figure.size, animation.rate, count, animation.loop)
                    yield from _feed(writer, frame, count)
    finally:
        sweep.restore()


def _feed(writer: Any, frame: Callable[[int], np.ndarray], count: int) -> Iterator[int]:
    try:
        for i in range(count):
            writer.add(frame(i))
            yield i + 1
    except BaseException:
        if isinstance(writer, Mp4Writer):
            writer.frames.close()  # stop ffmpeg; the temporary file is removed
        raise
    writer.close()


def save_animation(sweep: Sweep, path: str | Path, figure: Figure, animation: Animation, step: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Path:
    """``write_animation`` run to the end (``progress(done, total)`` after each frame)."""
    for done in write_animation(sweep, path, figure, animation, step):
        if progress is not None:
            progress(done, sweep.count)
    return Path(path)


def replay_copy(panel: Panel) -> Panel:
    """A fresh, parentless panel of ``panel``'s class and theme, at its time cursor (for a step
    replay: the live panel keeps showing the run)."""
    copy = type(panel)(panel.theme)
    copy.set_time_cursor(panel.time_cursor)
    return copy

