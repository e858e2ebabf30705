"""Headless screenshots: build the real window (or one panel) offscreen, train, save a PNG.

Training here is synchronous, with the same trainer the worker uses: N steps, with
gradients and spectrum attached at evenly spaced steps (so the history plots have
something to show) and every instrument on the last step. The records are then fed to the
panels exactly as the worker's would be, and the widget is rendered at exactly the
requested pixel size.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HISTORY_SNAPSHOTS = 40  # gradient/spectrum snapshots spread over the run
MIN_SIZE = (320, 240)
MAX_SIZE = (7680, 4320)


# Notes Qt's offscreen platform prints for every top-level widget shown or raised: harmless
# here, and three lines of noise after every ``shot`` or ``export``.
QUIET = ("This plugin does not support propagateSizeHints()", "This plugin does not support raise()")


@contextlib.contextmanager
def quiet_offscreen_notes() -> Iterator[None]:
    """Keep the offscreen platform's notes (QUIET) off stderr; any other Qt message passes."""
    from PySide6.QtCore import qInstallMessageHandler

    def handler(mode, context, message):
        if message not in QUIET:
            print(message, file=sys.stderr)

    previous = qInstallMessageHandler(handler)
    try:
        yield
    finally:
        qInstallMessageHandler(previous)


def parse_size(text: str) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080); ValueError naming the value and the allowed form."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"size must look like WIDTHxHEIGHT, e.g. 1920x1080; got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (MIN_SIZE[0] <= w <= MAX_SIZE[0] and MIN_SIZE[1] <= h <= MAX_SIZE[1]):
        raise ValueError(f"size must be from {MIN_SIZE[0]}x{MIN_SIZE[1]} to {MAX_SIZE[0]}x{MAX_SIZE[1]}; "
                         f"got {text!r}")
    return w, h


def ensure_app() -> Any:
    """The QApplication; a new one renders offscreen unless QT_QPA_PLATFORM says otherwise
    (a screenshot needs no display, and nothing flashes on screen when there is one)."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QApplication([sys.argv[0] if sys.argv else "rnn-explorer"])
    return app


def train_records(trainer: Any, steps: int, progress: Callable[[int, int], None] | None = None) -> list[Any]:
    """The build snapshot, then ``steps`` StepRecords with instruments spread over the run.

    ``progress(done, steps)`` is called after each step (the export command's progress bar)."""
    records: list[Any] = [r for r in (trainer.probe(), trainer.gradients(), trainer.spectrum()) if r is not None]
    every = max(steps // HISTORY_SNAPSHOTS, 1)
    for i in range(1, steps + 1):
        last = i == steps
        snapshot = last or i % every == 0
        record = trainer.step(probe=last, gradients=snapshot, spectrum=snapshot)
        records.append(record)
        if progress is not None:
            progress(i, steps)
        if record.diverged:
            if not last:  # show the state it diverged from
                records.append(trainer.probe())
            break
    counterfactual = getattr(trainer, "counterfactual", None)  # a session's interventions, if on
    what_if = counterfactual() if counterfactual is not None else None
    return records if what_if is None else [*records, what_if]


def take_shot(preset: str, steps: int, panel: str, out: str | Path, size: str | tuple[int, int],
              theme: str = "light", make_trainer=None, interventions: tuple = (), rank: int | None = None) -> Path:
    """Train ``steps`` steps of ``preset`` and save the window (or ``panel``) as a PNG.

    ``interventions`` (core.interventions.Intervention) are switched on after training, so the
    panels show the counterfactual beside the factual run; ``rank`` adds the ablation sweep of
    that layer (the What if dock's bar chart)."""
    from app.panels import panel_class
    from app.theme import get_theme
    from app.training.engine import make_trainer as default_make_trainer
    from app.training.engine import run_info
    from core.presets import load_preset

    width, height = parse_size(size) if isinstance(size, str) else size
    if panel != "all":
        panel_class(panel)  # ValueError naming the known panels
    get_theme(theme)
    if steps < 0:
        raise ValueError(f"steps must be 0 or more; got {steps}")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"out must be a .png file; got {str(out)!r}")
    chosen = load_preset(preset)
    app = ensure_app()
    trainer = (make_trainer or default_make_trainer)(chosen.experiment)
    if interventions:
        trainer.set_interventions(interventions)  # a spec that does not fit fails before training
        trainer.set_interventions(())
    layers = chosen.experiment.num_layers
    if rank is not None and (chosen.experiment.is_seq2seq or not 0 <= rank < layers):
        raise ValueError(f"--rank: layer {rank} is not a layer of this model; allowed 0 to {layers - 1}"
                         if not chosen.experiment.is_seq2seq else
                         "--rank applies to sequence tasks (a recurrent stack with a readout), not translation")
    records = train_records(trainer, steps)
    if interventions:
        trainer.set_interventions(interventions)
        records.append(trainer.counterfactual())
    if rank is not None:
        records.extend(trainer.ablation((rank,)))
    info = run_info(trainer)
    with quiet_offscreen_notes():
        widget = build_window(info, records, theme, chosen.name) if panel == "all" \
            else _panel(panel, info, records, theme)
        if panel != "all" and hasattr(widget, "prepare_shot"):
            widget.prepare_shot(trainer)  # a panel's own work first: decoding decodes the probe, compare compares
        image = render(widget, width, height, app)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(out), "PNG"):
            raise OSError(f"could not write {out}")
        widget.close()
    return out


def build_window(info: Any, records: list[Any], theme: str = "light", preset: str | None = None) -> Any:
    """The real main window, not shown and without a worker, showing ``records`` of the run
    ``info`` describes (``preset`` names the preset it came from, if any). Also used by export."""
    from app.window.main_window import MainWindow
    from core.presets import DEFAULT_PRESET, list_presets

    name = preset or DEFAULT_PRESET
    window = MainWindow(preset=name, theme=theme, autostart=False)
    window.form.set_presets(list_presets(), current=name)
    window.form.set_experiment(info.experiment)
    window._on_built(info)
    window._on_records(records)
    window._on_state("diverged" if records and getattr(records[-1], "diverged", False) else "paused")
    steps = [r for r in records if hasattr(r, "seconds")]
    seconds = sum(r.seconds for r in steps)
    window.rate.clear()
    if steps:
        window.last_step = steps[-1]
    window.refresh_all()
    if steps:
        window.status.set_progress(steps[-1].step, steps[-1].loss, len(steps) / seconds if seconds else 0.0)
    return window


def _panel(name: str, info: Any, records: list[Any], theme: str) -> Any:
    from app.panels import panel_class
    from app.theme import apply_theme, get_theme

    apply_theme(get_theme(theme))
    panel = panel_class(name)(get_theme(theme))
    panel.reset(info)
    for record in records:
        panel.update_record(record)
    panel.refresh(force=True)
    return panel


def render(widget: Any, width: int, height: int, app: Any) -> Any:
    """Lay ``widget`` out at width x height and paint it into a QImage of exactly that size."""
    from PySide6.QtGui import QColor, QImage

    widget.setMinimumSize(0, 0)
    widget.resize(width, height)
    widget.show()
    if hasattr(widget, "size_docks"):
        widget.size_docks()
    for _ in range(3):  # layouts settle over a few passes (docks, then plots)
        app.processEvents()
        if hasattr(widget, "refresh_all"):
            widget.refresh_all()
        elif hasattr(widget, "refresh"):
            widget.refresh(force=True)
    if (widget.width(), widget.height()) != (width, height):
        raise ValueError(f"size {width}x{height} is smaller than the window's minimum "
                         f"{widget.minimumSizeHint().width()}x{widget.minimumSizeHint().height()}")
    image = QImage(width, height, QImage.Format_ARGB32)
    image.fill(QColor(widget.palette().window().color()))
    widget.render(image)
    return image
