"""Headless commands: ``presets`` and ``train``.

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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the presets")
    p.add_argument("--json", action="store_true", help="one JSON array with every preset")
    p.set_defaults(run=run_presets)

    p = sub.add_parser("train", help="train without a display")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", metavar="NAME", help="preset to train (see 'presets')")
    source.add_argument("--session", metavar="FILE", help="continue a saved session")
    add_overrides(p)
    p.add_argument("--save", metavar="FILE", help="save the session here when done")
    p.add_argument("--json", action="store_true", help="one JSON object a line, then a summary")
    p.set_defaults(run=run_train)


def add_overrides(p: argparse.ArgumentParser) -> None:
    """Flags shared by commands that build an experiment from a preset."""
    p.add_argument("--steps", type=int, metavar="N", help="training steps (default: the preset's budget)")
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--cell", metavar="KIND", help="rnn, lstm or gru")
    p.add_argument("--lr", type=float, metavar="X", help="learning rate")
    p.add_argument("--clip", type=float, metavar="X", help="clip the gradient norm (0 = off)")
    p.add_argument("--device", metavar="DEV", help="cpu or cuda")


def experiment_from_args(args: argparse.Namespace):
    """The preset's experiment with command-line overrides applied (validated)."""
    from .presets import load_preset

    exp = load_preset(args.preset).experiment
    overrides = {k: getattr(args, k) for k in ("steps", "seed", "cell", "lr", "clip", "device")
                 if getattr(args, k, None) is not None}
    return exp.replace(**overrides)


def run_presets(args: argparse.Namespace) -> int:
    from .presets import list_presets

    presets = list_presets()
    if args.json:
        print(json.dumps([{"name": p.name, "title": p.title, "group": p.group,
                           "description": p.description, "experiment": p.experiment.to_dict()}
                          for p in presets], indent=2))
        return 0
    width = max(len(p.name) for p in presets)
    group = None
    for p in presets:
        if p.group != group:
            group = p.group
            print(f"{group}:")
        print(f"  {p.name:<{width}}  {p.title}")
    return 0


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


def _progress(step: int, total: int, loss: float) -> None:
    filled = int(30 * step / total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {step}/{total}  loss {loss:.4g}")
    sys.stderr.flush()


def load_trainer(args: argparse.Namespace):
    """A trainer from --preset (fresh) or --session (resumed); returns (trainer, steps)."""
    from .trainer import Trainer

    if getattr(args, "session", None):
        from .session import open_session

        fixed = [f"--{k}" for k in ("seed", "cell", "device") if getattr(args, k, None) is not None]
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
    from .errors import UserError

    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"--save {path}: that is a folder; give a file name, e.g. {target / 'session.rnnx'}")
    if not target.parent.is_dir():
        raise UserError(f"--save {path}: the folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise UserError(f"--save {path}: the folder {target.parent} is not writable")


def run_train(args: argparse.Namespace) -> int:
    check_save_path(args.save)
    trainer, steps = load_trainer(args)
    if steps < 1:
        raise ValueError(f"--steps must be >= 1; got {steps}")
    last = None
    every = max(1, steps // 200)
    first = trainer.step_count
    for record in trainer.run(steps):
        last = record
        if args.json:
            print(strict_json({"step": record.step, "loss": record.loss, "grad_norm": record.grad_norm,
                               "clipped": record.clipped, "diverged": record.diverged, **record.metrics}),
                  flush=True)
        elif record.step % every == 0 or record.diverged:
            _progress(min(record.step - first, steps), steps, record.loss)
    if not args.json:
        sys.stderr.write("\n")
    status = "diverged" if last.diverged else "ok"
    losses = trainer.history.column("loss")[trainer.history.column("diverged") == 0]
    tail = losses[-50:] if len(losses) else [float("nan")]
    summary = {
        "status": status,
        "steps": trainer.step_count,
        "final_loss": float(sum(tail) / len(tail)),
        "baseline": trainer.task.baseline,
        "steps_run": trainer.step_count - first,
        "experiment": trainer.experiment.to_dict(),
        **trainer.evaluate(),
    }
    if last.diverged:
        summary["diverged_at_step"] = trainer.step_count + 1
        summary["restored_step"] = last.restored_step
        back = ("" if last.restored_step is None else
                f" and the weights went back to those of step {last.restored_step}, the last with a sane loss")
        summary["message"] = (f"loss or gradient became non-finite; the update was not applied{back}. "
                              "Lower the learning rate or enable clipping (--clip); with --save, continue "
                              "from there with --session.")
    if args.save:
        from .session import save_session

        save_session(trainer, args.save)
        summary["saved"] = args.save
    if args.json:
        print(strict_json({"summary": summary}))
    else:
        print(f"{status}: {summary['steps']} steps, final loss {summary['final_loss']:.4g}"
              + (f" (baseline {summary['baseline']:.4g})" if summary["baseline"] is not None else ""))
        if last.diverged:
            print(f"diverged at step {summary['diverged_at_step']}: {summary['message']}", file=sys.stderr)
    return EXIT_DIVERGED if last.diverged else 0
