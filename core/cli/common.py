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


def add_data_flags(p: argparse.ArgumentParser, tasks: str = "charlm|series|pairs|classify") -> None:
    """Flags that train on the user's own file (core.tasks.user)."""
    p.add_argument("--data", metavar="FILE", help="your own data: .txt (charlm), .csv (series), "
                   ".tsv (pairs; with --task classify, text TAB label lines)")
    p.add_argument("--task", metavar="TASK", help=f"what to learn from --data: {tasks} (default: by suffix)")
    p.add_argument("--columns", metavar="A,B", help="series: the CSV columns fed to the network")
    p.add_argument("--target", metavar="C", help="series: the columns predicted (default: the inputs)")
    p.add_argument("--tokens", metavar="KIND", help="pairs and classify: char (default) or word")
    p.add_argument("--seq-len", type=int, metavar="T", help="sequence length (default: fitted to the file)")
    p.add_argument("--hidden-size", type=int, metavar="H", help="units per layer")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Flags that open a trained torch.nn RNN/LSTM/GRU (core.models.io.load_model)."""
    p.add_argument("--model", metavar="FILE", help="a state dict: .safetensors, or .pt/.pth (tensors only)")
    p.add_argument("--vocab", metavar="FILE", help="vocabulary for text: a JSON list or {token: id}")
    p.add_argument("--prefix", metavar="P", help="the recurrent stack's key prefix, e.g. encoder.rnn. "
                   "(default: the only one found)")
    p.add_argument("--embedding", metavar="KEY", default="auto",
                   help="the embedding's key ([V, input]), none, or auto (default)")
    p.add_argument("--head", metavar="KEY", default="auto",
                   help="the linear head's weight key ([O, hidden]), none, or auto (default)")
    p.add_argument("--nonlinearity", metavar="F", help="rnn stacks: tanh (default) or relu")


OVERRIDES = {"steps": "steps", "seed": "seed", "cell": "cell", "lr": "lr", "clip": "clip", "device": "device",
             "columns": "columns", "target": "target", "tokens": "tokens", "seq_len": "seq_len",
             "hidden_size": "hidden_size", "vocab": "vocab", "forget_bias": "forget_bias",
             "teacher_forcing": "teacher_forcing", "tf_schedule": "tf_schedule", "bidirectional": "bidirectional"}


def _applicable(exp, overrides: dict, source: str):
    """``exp``, or UserError when a flag sets a field that does nothing for its model
    (refused, not ignored)."""
    from core.errors import UserError

    if "forget_bias" in overrides and exp.cell != "lstm":
        raise UserError(f"--forget-bias applies to lstm cells; {source!r} trains a {exp.cell}")
    for flag in ("teacher_forcing", "tf_schedule", "bidirectional"):
        if flag in overrides and not exp.is_seq2seq:
            raise UserError(f"--{flag.replace('_', '-')} applies to translation tasks (reverse, sort, dates); "
                            f"{source!r} trains the {exp.task} task")
    return exp


def experiment_from_args(args: argparse.Namespace):
    """The experiment the flags describe (validated): --preset's, or for --data the preset that
    kind of file starts from (charlm-lstm, sine-gru, reverse-attention), with the file, the
    task and every override applied; seq_len is fitted to the file unless given."""
    from core.config import Experiment
    from core.presets import load_preset

    data = getattr(args, "data", None)
    overrides = {field: getattr(args, flag) for flag, field in OVERRIDES.items()
                 if getattr(args, flag, None) is not None}
    if not data:
        if getattr(args, "task", None) is not None:
            raise ValueError("--task applies to --data; a preset sets its own task")
        return _applicable(load_preset(args.preset).experiment.replace(**overrides), overrides, args.preset)
    from core.datafiles import read_file
    from core.tasks.user import BASE_PRESET, CLASSIFY_BASE, fit_sequence_length, task_for_file

    task = task_for_file(data, getattr(args, "task", None))
    if args.preset:
        exp = load_preset(args.preset).experiment
    elif task in BASE_PRESET:
        exp = load_preset(BASE_PRESET[task]).experiment
    else:
        exp = Experiment().replace(**CLASSIFY_BASE)
    exp = exp.replace(task=task, data=data, **overrides)
    if "seq_len" not in overrides:
        exp = exp.replace(seq_len=fit_sequence_length(exp, read_file(data)))
    exp = _applicable(exp, overrides, args.preset or data)
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


def check_steps(steps: int | None) -> None:
    """Refuse a negative ``--steps`` before anything is built (None: the command's default)."""
    if steps is not None and steps < 0:
        raise ValueError(f"--steps must be an integer >= 0; got {steps}")


def to_terminal(stream=None) -> bool:
    """Whether ``stream`` (stderr) is a terminal: a bar redrawn in place with carriage
    returns is one enormous line in a log file or a pipe, so it is drawn only there."""
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def progress(step: int, total: int, loss: float) -> None:
    """Redraw the training progress bar on stderr (a terminal only)."""
    if not to_terminal():
        return
    filled = int(30 * step / total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {step}/{total}  loss {loss:.4g}")
    sys.stderr.flush()


def end_progress() -> None:
    """End the progress bar's line (a terminal only)."""
    if to_terminal():
        sys.stderr.write("\n")
        sys.stderr.flush()


def load_trainer(args: argparse.Namespace):
    """A trainer from --preset (fresh) or --session (resumed); returns (trainer, steps)."""
    from core.training.trainer import Trainer

    if getattr(args, "session", None):
        from core.session.format import open_session

        fixed = [f"--{k.replace('_', '-')}" for k in ("seed", "cell", "device", "data", "task", "columns", "target",
                                                      "tokens", "seq_len", "hidden_size", "model", "vocab",
                                                      "forget_bias", "teacher_forcing", "tf_schedule", "bidirectional")
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
    if getattr(args, "model", None):
        trainer = model_trainer(args)
        default = trainer.experiment.steps if getattr(args, "data", None) else 0
        return trainer, (args.steps if args.steps is not None else default)
    if not getattr(args, "preset", None) and not getattr(args, "data", None):
        raise ValueError("give --preset NAME, --data FILE, --model FILE or --session FILE")
    exp = experiment_from_args(args)
    return Trainer(exp), exp.steps


def model_trainer(args: argparse.Namespace):
    """A trainer holding an opened model (--model): on --data (fine-tuning), else on the
    typed inputs only (task ``inputs``). The experiment's cell, sizes and bias are the model's."""
    from core.config import Experiment
    from core.training.opened import opened_trainer

    if getattr(args, "data", None):
        exp = experiment_from_args(args)
    else:
        if getattr(args, "task", None) not in (None, "inputs"):
            raise ValueError("--task needs --data (the file to fine-tune on)")
        exp = Experiment(task="inputs", seed=args.seed if getattr(args, "seed", None) is not None else 0)
    return opened_trainer(exp, args.model, args.prefix, embedding=none_or(args.embedding),
                          head=none_or(args.head), vocab=args.vocab, nonlinearity=args.nonlinearity)


def none_or(value: str | None) -> str | None:
    return None if value in (None, "none") else value


def check_save_path(path: str | None, flag: str = "--save") -> None:
    """Refuse a --save path that cannot be written, before any training time is spent on it."""
    from core.errors import UserError

    if not path:
        return
    target = Path(path)
    example = "session.rnnx" if flag == "--save" else "model.safetensors"
    if target.is_dir():
        raise UserError(f"{flag} {path}: that is a folder; give a file name, e.g. {target / example}")
    if not target.parent.is_dir():
        raise UserError(f"{flag} {path}: the folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise UserError(f"{flag} {path}: the folder {target.parent} is not writable")
    if flag == "--export-model" and target.suffix.lower() not in (".safetensors", ".pt", ".pth"):
        raise UserError(f"{flag} {path}: expected a .safetensors, .pt or .pth file name")
