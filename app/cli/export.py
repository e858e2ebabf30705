"""The ``export`` command: train offscreen, then write each panel as figures and data.

    python main.py export --preset adding-lstm --steps 300 --out figs
    python main.py export --session run.rnnx --out figs --formats png,csv --panels training,hidden
    python main.py export --preset adding-lstm --steps 200 --out figs --panels hidden --frames
    python main.py export --preset vanishing-rnn --steps 300 --out figs --panels gradients --animate gif --over steps

One file per panel and format, named by panel (``training.png``, ``training.csv``,
``hidden.npz``), plus ``experiment.json`` (config, seed, step, versions) and, with
``--frames``, ``frames/<panel>_000.png`` ... for an animation. ``--animate gif|mp4|apng``
writes ``<panel>.gif`` (``.mp4``, ``.apng``) instead (app.export.animation), swept over the
probe's time steps, the training steps or the beam's expansions (``--over``); with
``--over steps`` training keeps an instrument snapshot every ``steps // frames-max`` steps.
The real window is built offscreen exactly as the ``shot`` command builds it. Every
argument is checked before anything is trained or written, so a mistake costs one line and
leaves no files.
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_FORMATS = "png,svg,csv,npz,json"
DEFAULT_FRAMES_MAX = 100  # app.export.animation's, repeated so --help imports nothing heavy


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
    p.add_argument("--formats", metavar="LIST",
                   help=f"comma-separated, from png,svg,csv,npz,json (default {DEFAULT_FORMATS}, or none with "
                        "--animate); each panel's data goes in the one format that fits it")
    p.add_argument("--size", default="1920x1080", metavar="WxH",
                   help="figure pixels, or slide (1920x1080), 4k (3840x2160), square (1080x1080)")
    p.add_argument("--theme", default="slide", metavar="NAME", help="slide (default), light or dark")
    p.add_argument("--panels", default="all", metavar="LIST", help="comma-separated panel names (default all)")
    p.add_argument("--frames", action="store_true",
                   help="also write frames/<panel>_000.png ... stepping the time cursor through the probe")
    p.add_argument("--scale", type=float, metavar="X",
                   help="text and line size: device pixels per layout pixel (default: by size and theme)")
    p.add_argument("--no-caption", action="store_true", help="leave out the title and settings caption")
    motion = p.add_argument_group("animation (one file per panel: <panel>.gif, .mp4 or .apng)")
    motion.add_argument("--animate", metavar="FORMAT", help="gif, mp4 (H.264) or apng")
    motion.add_argument("--over", metavar="SWEEP",
                        help="t: the time cursor through the probe (default); steps: the training replayed, a "
                             "snapshot every steps/frames-max steps; expansions: the beam tree growing (decoding)")
    motion.add_argument("--fps", type=float, metavar="N", help="frames per second (default 10; 2 for expansions)")
    motion.add_argument("--frames-max", type=int, metavar="N",
                        help=f"at most N frames, evenly spaced (default {DEFAULT_FRAMES_MAX})")
    motion.add_argument("--loop", action="store_true", help="play forever (gif, apng)")
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

    animation = _animation(args)
    formats = parse_formats(args.formats or DEFAULT_FORMATS) if args.formats or not animation else ()
    names = parse_panels(args.panels, panel_names())
    get_theme(args.theme)
    figure = Figure(size=parse_size(args.size), theme=args.theme, scale=args.scale,
                    caption=not args.no_caption).validated()
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be 0 or more; got {args.steps}")
    if animation is not None:
        animation.check_size(figure.size)
    trainer, source = _trainer(args)
    from app.training.engine import history_records, run_info

    notes: list[str] = []
    if animation is not None:
        names = _animated(names, animation, args.panels in (None, "all"), args.theme, run_info(trainer), notes)
    out = check_out_dir(args.out)

    from app.window.offscreen import build_window, ensure_app, quiet_offscreen_notes, train_records

    steps = args.steps if args.steps is not None else (0 if args.session else 100)
    bar = ProgressBar()
    past = history_records(trainer.history)

    def progress(done: int, total: int) -> None:
        bar(done, total, "training")

    if animation is not None and animation.over == "steps":
        records = train_with_snapshots(trainer, steps, animation.frames_max, _instruments(names), progress)
    else:
        records = train_records(trainer, steps, progress=progress)
    bar.end()
    if records and getattr(records[-1], "diverged", False):
        print(f"warning: training diverged at step {trainer.step_count + 1}; exporting the state before it",
              file=sys.stderr)
    ensure_app()
    info = run_info(trainer)
    source = {**source, "steps": steps}
    with quiet_offscreen_notes():
        window = build_window(info, past + records, args.theme, args.preset)
        try:
            for name in names:  # a panel's own work first, as for shot: decoding decodes, compare compares
                prepare = getattr(window.panels[name], "prepare_shot", None)
                if callable(prepare):
                    prepare(trainer)
            panels = [window.panels[n] for n in names]
            written = export_all(panels, out, info, trainer.step_count, formats=formats, figure=figure,
                                 frames=args.frames, source=source, progress=bar,
                                 warn=notes.append) if formats else []
            if animation is not None:
                bar.end()
                written = _animate(panels, out, info, past + records, trainer.step_count, figure, animation,
                                   source, written, bar)
        finally:
            bar.end()
            window.close()
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for path in written:
        print(path)
    return 0


# ------------------------------------------------------------------------------ animation
def _animation(args: argparse.Namespace):
    """The validated Animation for --animate (None without it; its options alone are refused)."""
    options = {"--over": args.over, "--fps": args.fps, "--frames-max": args.frames_max,
               "--loop": args.loop or None}
    if args.animate is None:
        given = [flag for flag, value in options.items() if value is not None]
        if given:
            raise ValueError(f"{given[0]} needs --animate gif|mp4|apng")
        return None
    from app.export.animation import Animation

    return Animation(format=args.animate.strip().lower(), over=(args.over or "t").strip().lower(), fps=args.fps,
                     frames_max=DEFAULT_FRAMES_MAX if args.frames_max is None else args.frames_max,
                     loop=args.loop).validated()


def _animated(names: tuple[str, ...], animation, every: bool, theme: str, info, notes: list[str]) -> tuple[str, ...]:
    """The panels to animate: each named one must support the sweep; 'all' keeps those that do.
    Checked before training, on throwaway panels reset for the run (e.g. the gates panel
    draws its time cursors, and the decoding panel offers expansions only for translation)."""
    from app.export.animation import sweeps_of
    from app.panels import panel_class, panel_names
    from app.theme import get_theme
    from app.window.offscreen import ensure_app

    ensure_app()
    able = {}
    for name in panel_names():
        panel = panel_class(name)(get_theme(theme))
        panel.reset(info)
        able[name] = animation.over in sweeps_of(panel) and getattr(panel, "available", True)
        panel.deleteLater()
    if animation.over == "expansions" and not info.experiment.is_seq2seq:
        from core.presets import translation_presets

        raise ValueError(f"--over expansions needs a translation preset ({', '.join(translation_presets())}); "
                         f"this run's task is {info.experiment.task}")
    fit = ", ".join(n for n in panel_names() if able[n])
    if not every:
        for name in names:
            if not able[name]:
                raise ValueError(f"panel {name!r} cannot be animated over {animation.over}; over {animation.over}: {fit}")
        return names
    kept = tuple(n for n in names if able[n])
    if len(kept) < len(names):
        notes.append(f"over {animation.over}, animated only {', '.join(kept)} (the others have nothing to sweep)")
    return kept


def _instruments(names: tuple[str, ...]) -> set[str]:
    from app.panels import panel_class

    return set().union(*(panel_class(n).instruments for n in names))


def train_with_snapshots(trainer, steps: int, frames: int, instruments: set[str], progress=None) -> list:
    """As app.window.offscreen.train_records (the build snapshot, then ``steps`` StepRecords),
    with ``instruments`` also attached every ``max(steps // frames, 1)`` steps: the records
    an animation over training steps replays. Other instruments keep their usual schedule
    (gradients and spectrum 40 times a run, everything at the last step)."""
    from app.window.offscreen import HISTORY_SNAPSHOTS

    records = [r for r in (trainer.probe(), trainer.gradients(), trainer.spectrum()) if r is not None]
    every, history = max(steps // frames, 1), max(steps // HISTORY_SNAPSHOTS, 1)
    for i in range(1, steps + 1):
        last, frame = i == steps, i % every == 0
        record = trainer.step(probe=last or (frame and "probe" in instruments),
                              gradients=last or i % history == 0 or (frame and "gradients" in instruments),
                              spectrum=last or i % history == 0 or (frame and "spectrum" in instruments))
        records.append(record)
        if progress is not None:
            progress(i, steps)
        if record.diverged:
            if not last:
                records.append(trainer.probe())
            break
    return records


def _animate(panels, out, info, records, step: int, figure, animation, source: dict, written: list, bar) -> list:
    """Write each panel's animation into ``out``, then experiment.json naming every file."""
    from app.export.animation import (
        FrameSweep,
        StepReplay,
        TimeSweep,
        probe_length,
        replay_copy,
        write_animation,
    )
    from app.export.data import experiment_record, write_experiment

    length = probe_length(records)
    files = list(written)
    for panel in panels:
        if animation.over == "t":
            sweep = TimeSweep(panel, length, animation.frames_max)
        elif animation.over == "expansions":
            sweep = FrameSweep(panel, animation.frames_max)
        else:
            sweep = StepReplay(replay_copy(panel), info, records, animation.frames_max)
        path = out / f"{panel.name}{animation.suffix}"
        for done in write_animation(sweep, path, figure, animation, step):
            bar(done, sweep.count, path.name)
        bar.end()
        if animation.over == "steps":
            sweep.panel.deleteLater()
        files.append(path)
    files = [f for f in files if f.name != "experiment.json"]
    record = experiment_record(info, step, figure=figure, panels=[p.name for p in panels],
                               files=[str(f.relative_to(out)) for f in files],
                               source={**source, "animation": {"format": animation.format, "over": animation.over,
                                                               "fps": animation.rate,
                                                               "frames_max": animation.frames_max,
                                                               "loop": animation.loop}})
    return [*files, write_experiment(out / "experiment.json", record)]


def _trainer(args: argparse.Namespace):
    """(trainer, where it came from) for --preset (fresh) or --session (resumed)."""
    if args.session:
        from core.session.format import open_session

        return open_session(args.session), {"session": args.session}
    from app.training.engine import make_trainer
    from core.presets import load_preset

    preset = load_preset(args.preset)
    return make_trainer(preset.experiment), {"preset": preset.name}
