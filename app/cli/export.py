"""The ``export`` command: train offscreen, then write each panel as figures and data.

    python main.py export --preset adding-lstm --steps 300 --out figs
    python main.py export --session run.rnnx --out figs --formats png,csv --panels training,hidden
    python main.py export --preset adding-lstm --steps 200 --out figs --panels hidden --frames

One file per panel and format, named by panel (``training.png``, ``training.csv``,
``hidden.npz``), plus ``experiment.json`` (config, seed, step, versions) and, with
``--frames``, ``frames/<panel>_000.png`` ... for an animation. The real window is built
offscreen exactly as the ``shot`` command builds it. Every argument is checked before
anything is trained or written, so a mistake costs one line and leaves no files.
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_FORMATS = "png,svg,csv,npz,json"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="train offscreen and export panels as figures (PNG, SVG) and data (CSV, NPZ, JSON)",
        description="Build the window offscreen, train, and write each panel as figures and data into --out, "
                    "with experiment.json to regenerate them.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", metavar="NAME", help="train this preset from scratch (see 'presets')")
    source.add_argument("--session", metavar="FILE", help="continue a saved session (.rnnx)")
    p.add_argument("--steps", type=int, metavar="N",
                   help="training steps before exporting (default 100 for a preset, 0 for a session)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if needed)")
    p.add_argument("--formats", default=DEFAULT_FORMATS, metavar="LIST",
                   help=f"comma-separated, from png,svg,csv,npz,json (default {DEFAULT_FORMATS}); "
                        "each panel's data goes in the one format that fits it")
    p.add_argument("--size", default="1920x1080", metavar="WxH",
                   help="figure pixels, or slide (1920x1080), 4k (3840x2160), square (1080x1080)")
    p.add_argument("--theme", default="slide", metavar="NAME", help="slide (default), light or dark")
    p.add_argument("--panels", default="all", metavar="LIST", help="comma-separated panel names (default all)")
    p.add_argument("--frames", action="store_true",
                   help="also write frames/<panel>_000.png ... stepping the time cursor through the probe")
    p.add_argument("--scale", type=float, metavar="X",
                   help="text and line size: device pixels per layout pixel (default: by size and theme)")
    p.add_argument("--no-caption", action="store_true", help="leave out the title and settings caption")
    p.set_defaults(run=run_export)


class ProgressBar:
    """``[#####.....] 12/40 training`` on stderr, redrawn in place when it changes; only on a
    terminal (in a log file or a pipe the redraws would be one enormous line)."""

    def __init__(self, stream=None, minimum: int = 2):
        from core.cli.common import to_terminal

        self.stream, self.minimum = stream or sys.stderr, minimum
        self.shown: tuple | None = None
        self.enabled = to_terminal(self.stream)

    def __call__(self, done: int, total: int, what: str = "") -> None:
        if total < self.minimum or not self.enabled:
            return
        filled = int(30 * done / max(total, 1))
        state = (filled, what) if what != "training" else (filled, int(1000 * done / total), done == total)
        if state == self.shown:
            return
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {what:<24.24}")
        self.stream.flush()
        self.shown = state

    def end(self) -> None:
        if self.shown is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = None


def run_export(args: argparse.Namespace) -> int:
    from app.export.batch import check_out_dir, export_all, parse_formats, parse_panels
    from app.export.figure import Figure, parse_size
    from app.panels import panel_names
    from app.theme import get_theme

    formats = parse_formats(args.formats)
    names = parse_panels(args.panels, panel_names())
    get_theme(args.theme)
    figure = Figure(size=parse_size(args.size), theme=args.theme, scale=args.scale,
                    caption=not args.no_caption).validated()
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be 0 or more; got {args.steps}")
    trainer, source = _trainer(args)
    out = check_out_dir(args.out)

    from app.training.engine import history_records, run_info
    from app.window.offscreen import build_window, ensure_app, quiet_offscreen_notes, train_records

    steps = args.steps if args.steps is not None else (0 if args.session else 100)
    bar = ProgressBar()
    past = history_records(trainer.history)
    records = train_records(trainer, steps, progress=lambda i, n: bar(i, n, "training"))
    bar.end()
    if records and getattr(records[-1], "diverged", False):
        print(f"warning: training diverged at step {trainer.step_count + 1}; exporting the state before it",
              file=sys.stderr)
    ensure_app()
    info = run_info(trainer)
    notes: list[str] = []
    with quiet_offscreen_notes():
        window = build_window(info, past + records, args.theme, args.preset)
        try:
            for name in names:  # a panel's own work first, as for shot: decoding decodes, compare compares
                prepare = getattr(window.panels[name], "prepare_shot", None)
                if callable(prepare):
                    prepare(trainer)
            written = export_all([window.panels[n] for n in names], out, info, trainer.step_count,
                                 formats=formats, figure=figure, frames=args.frames,
                                 source={**source, "steps": steps}, progress=bar, warn=notes.append)
        finally:
            bar.end()
            window.close()
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for path in written:
        print(path)
    return 0


def _trainer(args: argparse.Namespace):
    """(trainer, where it came from) for --preset (fresh) or --session (resumed)."""
    if args.session:
        from core.session.format import open_session

        return open_session(args.session), {"session": args.session}
    from app.training.engine import make_trainer
    from core.presets import load_preset

    preset = load_preset(args.preset)
    return make_trainer(preset.experiment), {"preset": preset.name}
