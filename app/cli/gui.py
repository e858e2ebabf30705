"""Commands of the desktop app: ``gui`` (the default) and ``shot`` (a headless screenshot).

Imports nothing heavy at module level: ``python main.py --help`` stays instant, and the
window paints before torch is imported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli.intervene import add_intervention_flags
from core.presets import DEFAULT_PRESET

THEMES = ("light", "dark")


def register(subparsers: argparse._SubParsersAction) -> None:
    gui = subparsers.add_parser("gui", help="open the desktop app (the default command)",
                                description="Open the RNN Explorer window, on a saved session if one is given.")
    gui.add_argument("session", nargs="?", metavar="FILE.rnnx", help="a saved session to open")
    gui.add_argument("--preset", metavar="NAME",
                     help=f"preset to open with (default: the last one used, at first {DEFAULT_PRESET})")
    gui.add_argument("--theme", choices=THEMES, help="colour theme (default: the last one used, at first light)")
    gui.set_defaults(run=run_gui)

    shot = subparsers.add_parser(
        "shot", help="train offscreen and save a screenshot of the window or one panel",
        description="Build the real window offscreen, train N steps, save a PNG of exactly --size pixels.")
    shot.add_argument("--preset", default=DEFAULT_PRESET, metavar="NAME", help="preset to train")
    shot.add_argument("--steps", type=int, default=100, metavar="N", help="training steps first (default 100)")
    shot.add_argument("--panel", default="all", metavar="NAME",
                      help="one panel (training, hidden, gates, gradients, spectrum) or all (default)")
    shot.add_argument("--out", required=True, metavar="FILE.png", help="where to write the PNG")
    shot.add_argument("--size", default="1920x1080", metavar="WxH", help="pixel size (default 1920x1080)")
    shot.add_argument("--theme", default="light", metavar="NAME", help="light or dark (default light)")
    from core.cli.common import add_data_flags, add_model_flags

    add_data_flags(shot)
    add_model_flags(shot)
    shot.add_argument("--probe", metavar="TEXT", help="the input the panels show (text or numbers)")
    add_intervention_flags(shot)
    shot.add_argument("--rank", type=int, metavar="LAYER",
                      help="also rank the units of LAYER by effect (the What if dock's chart)")
    shot.set_defaults(run=run_shot)


def run_gui(args: argparse.Namespace) -> int:
    from core.presets import load_preset

    if args.preset is not None:
        load_preset(args.preset)  # an unknown name fails here, with the known names, before Qt starts
    session = getattr(args, "session", None)
    if session is not None and not Path(session).is_file():  # (a damaged one is refused in the window)
        raise ValueError(f"no session file {session!r}; give the path of a saved .rnnx session")
    import signal

    from app.training.child import spawn
    from app.training.loop import TRAINING_PROCESS, training_loop

    # The training process first: its torch import (seconds) runs while this process imports
    # Qt and makes the window.
    engine = spawn(training_loop(), TRAINING_PROCESS)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.window.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("RNN Explorer")
    app.setOrganizationName("rnn-explorer")
    window = MainWindow(preset=args.preset, theme=args.theme, session=session, engine=engine)
    window.show()
    # Ctrl+C in the terminal, or a plain kill, closes the window cleanly, training process
    # included (the timer lets Python see the signal).
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: window.close())
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(200)
    code = int(app.exec())
    # Delete the window (its panels' pyqtgraph items with it) while Qt is whole: left to the
    # interpreter's teardown, destruction in no set order crashed now and then (SIGSEGV).
    import shiboken6

    shiboken6.delete(window)
    return code


def run_shot(args: argparse.Namespace) -> int:
    from app.window.offscreen import take_shot
    from core.cli.intervene import parse_flags

    make_trainer = None
    if args.data or args.model or args.probe:  # your own file or model (core.cli.common's flags)
        trainer = own_trainer(args)
        make_trainer = lambda _experiment: trainer  # noqa: E731
    path = take_shot(args.preset, args.steps, args.panel, args.out, args.size, args.theme, make_trainer,
                     interventions=parse_flags(args.intervene), rank=args.rank)
    print(path)
    return 0


def own_trainer(args: argparse.Namespace):
    """The trainer --data / --model describe (as ``train`` builds it), showing --probe."""
    from core.cli.common import experiment_from_args, model_trainer
    from core.presets import load_preset
    from core.training.trainer import Trainer

    args.seed = getattr(args, "seed", None)
    for name in ("steps", "cell", "lr", "clip", "device"):
        if name != "steps":
            setattr(args, name, getattr(args, name, None))
    if args.model:
        trainer = model_trainer(args)
    elif args.data:
        trainer = Trainer(experiment_from_args(argparse.Namespace(**{**vars(args), "steps": None, "preset": None})))
    else:
        trainer = Trainer(load_preset(args.preset).experiment)
    if args.probe:
        trainer.use_probe(args.probe)
    return trainer
