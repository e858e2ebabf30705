"""What the headless commands share: experiment flags, loading a trainer, progress, JSON.

Exit codes: 0 success, 2 bad arguments or input, 3 training diverged (non-finite loss or
gradient; the update was not applied).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

EXIT_DIVERGED = 3


def add_overrides(p: argparse.ArgumentParser) -> None:
    """Flags shared by commands that build an experiment from a preset."""
    p.add_argument("--steps", type=int, metavar="N", help="training steps (default: the preset's budget)")
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--cell", metavar="KIND", help="rnn, lstm or gru")
    p.add_argument("--lr", type=float, metavar="X", help="learning rate")
    p.add_argument("--clip", type=float, metavar="X", help="clip the gradient norm (0 = off)")
    p.add_argument("--device", metavar="DEV", help="cpu or cuda")
    p.add_argument("--forget-bias", type=float, metavar="X",
                   help="lstm: b_if + b_hf at initialisation (0 = torch's random init; 1 is the usual advice)")
    p.add_argument("--teacher-forcing", type=float, metavar="P",
                   help="translation: chance of feeding the true previous token in training (1 = always, "
                        "0 = free running)")
    p.add_argument("--tf-schedule", metavar="NAME",
                   help="translation: constant, linear or inverse-sigmoid (from 1 down to --teacher-forcing)")
    p.add_argument("--bidirectional", metavar="on|off", help="translation: a bidirectional encoder")


# Flags that set an experiment field, and the field; the last four apply to some models only.
OVERRIDES = {"steps": "steps", "seed": "seed", "cell": "cell", "lr": "lr", "clip": "clip", "device": "device",
             "forget_bias": "forget_bias", "teacher_forcing": "teacher_forcing", "tf_schedule": "tf_schedule",
             "bidirectional": "bidirectional"}


def experiment_from_args(args: argparse.Namespace):
    """The preset's experiment with command-line overrides applied (validated); a flag for a
    field that does nothing for this model is refused, not ignored."""
    from core.errors import UserError
    from core.presets import load_preset

    exp = load_preset(args.preset).experiment
    overrides = {field: getattr(args, flag) for flag, field in OVERRIDES.items()
                 if getattr(args, flag, None) is not None}
    exp = exp.replace(**overrides)
    if "forget_bias" in overrides and exp.cell != "lstm":
        raise UserError(f"--forget-bias applies to lstm cells; preset {args.preset!r} trains a {exp.cell}")
    for flag in ("teacher_forcing", "tf_schedule", "bidirectional"):
        if flag in overrides and not exp.is_seq2seq:
            raise UserError(f"--{flag.replace('_', '-')} applies to translation tasks (reverse, sort, dates); "
                            f"preset {args.preset!r} trains the {exp.task} task")
    return exp


def strict_json(data) -> str:
    """JSON that any parser reads: a non-finite number (a diverged step's loss) becomes null."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), allow_nan=False)


def progress(step: int, total: int, loss: float) -> None:
    filled = int(30 * step / total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {step}/{total}  loss {loss:.4g}")
    sys.stderr.flush()


def load_trainer(args: argparse.Namespace):
    """A trainer from --preset (fresh) or --session (resumed); returns (trainer, steps)."""
    from core.training.trainer import Trainer

    if getattr(args, "session", None):
        from core.session.format import open_session

        fixed = [f"--{k.replace('_', '-')}" for k in ("seed", "cell", "device", "forget_bias", "teacher_forcing",
                                                         "tf_schedule", "bidirectional")
                 if getattr(args, k, None) is not None]
        if fixed:
            raise ValueError(f"{', '.join(fixed)} cannot change a saved session (it continues exactly); "
                             "only --steps, --lr and --clip apply with --session")
        trainer = open_session(args.session)
        overrides = {k: getattr(args, k) for k in ("lr", "clip") if getattr(args, k, None) is not None}
        if "lr" in overrides:
            trainer.set_learning_rate(overrides["lr"])
        if "clip" in overrides:
            trainer.set_clip(overrides["clip"])
        steps = args.steps if args.steps is not None else trainer.experiment.steps
        return trainer, steps
    exp = experiment_from_args(args)
    return Trainer(exp), exp.steps


def check_save_path(path: str | None) -> None:
    """Refuse a --save path that cannot be written, before any training time is spent on it."""
    from core.errors import UserError

    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"--save {path}: that is a folder; give a file name, e.g. {target / 'session.rnnx'}")
    if not target.parent.is_dir():
        raise UserError(f"--save {path}: the folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise UserError(f"--save {path}: the folder {target.parent} is not writable")
