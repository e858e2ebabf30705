"""The ``dynamics`` command: train a preset (or open a session), then find the fixed points
of its hidden-state update under a constant input and linearise there.

    python main.py dynamics --preset parity-gru --input 1 --json

Progress goes to stderr; stdout gets a readable summary or, with --json, ONE JSON object:
``pca`` (``explained_variance``: the fraction of the states' variance along each principal
component), ``fixed_points`` and ``slow_points`` (each ``state`` [S], ``q``, ``eigenvalues``
as [re, im] pairs by decreasing modulus, ``stable``: nothing grows, ``marginal``: the
largest |λ| is within 1e-3 of 1), and ``input``, ``input_name``, ``inputs`` (the choices),
``step``, ``kind``, ``hidden_size``, ``num_layers``, ``state_layout``, ``starts``,
``tolerance``, ``seconds``. Exit codes as for ``train`` (core.cli.common).
"""

from __future__ import annotations

import argparse
import sys

from core.cli.common import (
    EXIT_DIVERGED,
    add_model_flags,
    add_overrides,
    check_steps,
    end_progress,
    load_trainer,
    progress,
    strict_json,
)

MAX_STARTS = 4096


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dynamics", help="train a preset, then find the fixed points of its hidden-state update")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", metavar="NAME", help="a sequence preset, e.g. parity-gru (see 'presets')")
    source.add_argument("--session", metavar="FILE",
                        help="analyse a saved session's model (trains only with --steps)")
    add_model_flags(p)  # --model FILE: a user's torch.nn RNN/LSTM/GRU state dict, analysed as it is
    add_overrides(p)
    p.add_argument("--input", default="zero", metavar="SYMBOL",
                   help="the constant input x*: zero (default), an input symbol of the task (e.g. 1 for "
                        "parity), or numbers separated by commas, one per input channel")
    p.add_argument("--starts", type=int, default=256, metavar="N",
                   help="initial states sampled on the trajectories (default 256)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_dynamics)


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad settings before any training (one line naming value and range)."""
    check_steps(args.steps)
    if not 1 <= args.starts <= MAX_STARTS:
        raise ValueError(f"--starts must be an integer from 1 to {MAX_STARTS}; got {args.starts}")


def build_trainer(args: argparse.Namespace):
    """(trainer, steps to train): a preset's fresh trainer, or a session's (0 steps unless --steps)."""
    from core.errors import UserError
    from core.presets import load_preset

    if args.model:
        if args.preset or args.session:
            raise ValueError("give one of --model, --preset and --session")
        if args.steps:
            raise ValueError("--steps trains a preset or a session; an opened --model is analysed as it is")
        from core.cli.common import model_trainer

        opened = argparse.Namespace(**{**vars(args), "data": None, "task": None})
        return model_trainer(opened), 0
    if not args.preset and not args.session:
        raise ValueError("give the model to analyse: --preset NAME, --session FILE or --model FILE")
    if args.vocab:
        raise ValueError("--vocab applies to --model; a preset or session has its own inputs")
    if args.preset is not None and load_preset(args.preset).experiment.is_seq2seq:
        raise UserError(f"preset {args.preset!r} is an encoder-decoder (translation) task; dynamics "
                        "works with sequence tasks, e.g. parity-gru, sine-gru, adding-lstm")
    zero = args.steps == 0  # Experiment.steps is >= 1: train nothing, analyse the fresh model
    trainer, steps = load_trainer(argparse.Namespace(**{**vars(args), "steps": None if zero else args.steps}))
    if trainer.experiment.is_seq2seq:
        raise UserError(f"{args.session}: the session's task {trainer.experiment.task!r} is an "
                        "encoder-decoder task; dynamics works with sequence tasks")
    if zero or (args.session and args.steps is None):
        steps = 0
    return trainer, steps


def point_json(record, i: int) -> dict:
    return {"state": record.points[i].tolist(), "q": float(record.q[i]),
            "eigenvalues": [[float(v.real), float(v.imag)] for v in record.eigenvalues[i]],
            "stable": bool(record.stable[i]), "marginal": bool(record.marginal[i])}


def result_json(record) -> dict:
    """A DynamicsRecord as JSON-ready data (see the module docstring)."""
    layers = record.num_layers
    layout = [f"h{i}" for i in range(layers)] + ([f"c{i}" for i in range(layers)] if record.kind == "lstm" else [])
    return {
        "pca": {"explained_variance": [float(v) for v in record.explained]},
        "fixed_points": [point_json(record, i) for i in range(len(record.q)) if record.fixed[i]],
        "slow_points": [point_json(record, i) for i in range(len(record.q)) if not record.fixed[i]],
        "input_name": record.input_name, "input": [float(v) for v in record.input], "inputs": list(record.inputs),
        "step": record.step, "kind": record.kind, "hidden_size": record.hidden_size, "num_layers": layers,
        "state_layout": layout, "starts": record.starts, "tolerance": record.tolerance,
        "seconds": record.elapsed,
    }


def summary_text(record, title: str) -> str:
    """A readable account: one line per fixed point, a count of slow points."""
    r = record
    share = ", ".join(f"PC{i + 1} {100 * v:.0f}%" for i, v in enumerate(r.explained[:3]))
    lines = [f"{title}: {r.kind}, step {r.step}, input x* = {r.input_name} "
             f"(choices: {', '.join(r.inputs)})",
             f"states: {share} of the variance on the first principal components",
             f"{_count(int(r.fixed.sum()), 'fixed point')} (q <= {r.tolerance:g}) and "
             f"{_count(int((~r.fixed).sum()), 'slow point')} from {r.starts} starts in {r.elapsed:.2f} s"]
    for i in range(len(r.q)):
        if not r.fixed[i]:
            continue
        kind = "marginal" if r.marginal[i] else "stable" if r.stable[i] else "unstable"
        top = ", ".join(_complex(v) for v in r.eigenvalues[i][:3])
        pc = ", ".join(f"{v:+.2f}" for v in r.projected[i])
        lines.append(f"  {i + 1:3d}. {kind:<9s} q {r.q[i]:.1e}  |λ|max {abs(r.eigenvalues[i][0]):.4f}  "
                     f"top λ {top}  at PC ({pc})")
    return "\n".join(lines)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _complex(v: complex) -> str:
    return f"{v.real:+.3f}" if abs(v.imag) < 5e-4 else f"{v.real:+.3f}{v.imag:+.3f}i"


def run_dynamics(args: argparse.Namespace) -> int:
    check_arguments(args)
    trainer, steps = build_trainer(args)
    trainer.choose_dynamics_input(args.input)  # a bad input fails now, not after training
    from core.instruments.dynamics_record import Settings

    last, first = None, trainer.step_count
    every = max(1, steps // 200)
    for record in trainer.run(steps):
        last = record
        if (record.step - first) % every == 0 or record.diverged:
            progress(min(record.step - first, steps), steps, record.loss)
    if steps:
        end_progress()
    diverged = last is not None and last.diverged
    if diverged:
        print("training diverged (non-finite loss or gradient; the update was not applied); "
              "analysing the last finite weights", file=sys.stderr)
    record = trainer.dynamics(Settings(starts=args.starts))
    if args.json:
        print(strict_json(result_json(record)))
    else:
        print(summary_text(record, trainer.task.title))
    return EXIT_DIVERGED if diverged else 0
