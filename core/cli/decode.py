"""The ``decode`` command: train a translation preset (or open a session), then decode one
input with greedy decoding and beam search.

    python main.py decode --preset dates-attention --input "3 March 2021" --beam 4 --json

Progress goes to stderr; stdout gets a readable summary or, with --json, ONE JSON object:
``source``, ``source_tokens``, ``notice``, ``hypotheses`` (best first: ``tokens``, ``text``,
``score`` = sum of log-probs / len ** length_penalty), ``greedy`` (one such object), ``tree``
(nodes: id, parent, token, text, log_prob, cum_log_prob = the unnormalised sum of log-probs
from the root, step, status), ``attention`` (rows = tokens of the best hypothesis, columns = source
positions; null without attention), and ``steps``, ``evaluation``, ``beam``,
``length_penalty``, ``max_len``. Exit codes as for ``train`` (core.cli.common).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from core.cli.common import (
    EXIT_DIVERGED,
    add_overrides,
    check_steps,
    end_progress,
    load_trainer,
    progress,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="train a translation preset or your pairs, then decode text "
                       "(greedy and beam search)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", metavar="NAME",
                        help="a translation preset, e.g. dates-attention (see 'presets')")
    source.add_argument("--session", metavar="FILE",
                        help="decode with a saved session's model (trains only with --steps)")
    source.add_argument("--data", metavar="FILE.tsv", help="train on your own 'source TAB target' pairs")
    add_overrides(p)
    p.add_argument("--tokens", metavar="KIND", help="with --data: char (default) or word")
    p.add_argument("--input", metavar="TEXT", help="text to translate (default: the task's probe example)")
    p.add_argument("--beam", type=int, default=4, metavar="K", help="beam width (default 4)")
    p.add_argument("--length-penalty", type=float, default=1.0, metavar="A",
                   help="beam scores are sum(log p) / length ** A (default 1.0; 0 = raw sum)")
    p.add_argument("--max-len", type=int, metavar="N",
                   help="most output tokens, eos included (default: the longest target + 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_decode)


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad decoding settings before any training (one line naming value and range)."""
    from core.decoding.text import MAX_BEAM, MAX_OUTPUT

    check_steps(args.steps)
    if not 1 <= args.beam <= MAX_BEAM:
        raise ValueError(f"--beam must be an integer from 1 to {MAX_BEAM}; got {args.beam}")
    if args.max_len is not None and not 1 <= args.max_len <= MAX_OUTPUT:
        raise ValueError(f"--max-len must be an integer from 1 to {MAX_OUTPUT}; got {args.max_len}")
    if not math.isfinite(args.length_penalty):
        raise ValueError(f"--length-penalty must be a finite number; got {args.length_penalty}")


def build_trainer(args: argparse.Namespace):
    """(trainer, steps to train): a preset's fresh trainer, or a session's (0 steps unless --steps)."""
    from core.errors import UserError
    from core.presets import load_preset, translation_presets

    if args.data is not None:
        args = argparse.Namespace(**{**vars(args), "task": "pairs", "preset": None})
    if args.preset is not None:
        exp = load_preset(args.preset).experiment
        if not exp.is_seq2seq:
            raise UserError(f"preset {args.preset!r} trains the {exp.task} task, not a translation task; "
                            f"decode works with: {', '.join(translation_presets())}")
    zero = args.steps == 0  # Experiment.steps is >= 1: train nothing, decode the fresh model
    trainer, steps = load_trainer(argparse.Namespace(**{**vars(args), "steps": None if zero else args.steps}))
    if not trainer.experiment.is_seq2seq:
        raise UserError(f"{args.session}: the session's task {trainer.experiment.task!r} is not a "
                        "translation task; decode needs reverse, sort, dates or pairs")
    if zero or (args.session and args.steps is None):
        steps = 0
    return trainer, steps


def _number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None  # JSON has no inf/nan


def _hypothesis(h) -> dict:
    return {"tokens": list(h.tokens), "text": h.text, "score": _number(h.score)}


def result_json(result, trainer, evaluation: dict) -> dict:
    """The decode result as JSON-ready data (see the module docstring)."""
    texts = result.token_texts
    return {
        "source": result.source, "source_tokens": list(result.source_tokens), "notice": result.notice,
        "hypotheses": [_hypothesis(h) for h in result.hypotheses],
        "greedy": _hypothesis(result.greedy),
        "tree": [{"id": n.id, "parent": n.parent, "token": n.token, "text": texts[n.token],
                  "log_prob": _number(n.log_prob), "cum_log_prob": _number(n.cum_log_prob), "step": n.step,
                  "status": n.status} for n in result.tree],
        "attention": None if result.attention is None else [[float(w) for w in row] for row in result.attention],
        "steps": trainer.step_count, "evaluation": evaluation, "beam": result.beam,
        "length_penalty": result.length_penalty, "max_len": result.max_len,
    }


def summary_text(result, trainer, evaluation: dict) -> str:
    """A readable account of the result, a few lines."""
    lines = [f"{trainer.task.title}: {trainer.step_count} steps"
             + (f", held-out exact match {evaluation['exact_match']:.3f} (token accuracy "
                f"{evaluation['token_accuracy']:.3f})" if evaluation else "")]
    if "token_accuracy_teacher_forced" in evaluation:  # what exposure bias costs: core.training.schedules
        lines.append(f"token accuracy teacher-forced {evaluation['token_accuracy_teacher_forced']:.3f}, "
                     f"free running {evaluation['token_accuracy']:.3f}")
    lines.append(f"input:   {result.source}")
    if result.notice:
        lines.append(f"notice:  {result.notice}")
    lines.append(f"greedy:  {result.greedy.text!r:<16} score {result.greedy.score:.4f}")
    lines.append(f"beam search (width {result.beam}, length penalty {result.length_penalty:g}):")
    for rank, h in enumerate(result.hypotheses, 1):
        lines.append(f"  {rank}. {h.text!r:<16} score {h.score:.4f}")
    if result.attention is not None:
        best = result.hypotheses[0]
        pairs = [f"{out}<-{result.source_tokens[int(row.argmax())]} {row.max():.2f}"
                 for out, row in zip(best.tokens, result.attention, strict=True)]
        lines.append("attention (each output token <- its most attended source character):")
        lines.append("  " + "  ".join(pairs))
    else:
        lines.append("attention: none (this model has no attention)")
    return "\n".join(lines)


def run_decode(args: argparse.Namespace) -> int:
    check_arguments(args)
    trainer, steps = build_trainer(args)
    from core.decoding.text import decode_text, prepare_text

    text = args.input if args.input is not None else trainer.task.probe_text
    prepare_text(trainer.task, text)  # a bad input fails now, not after training
    last, first = None, trainer.step_count  # a session starts where it was saved
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
              "decoding with the last finite weights", file=sys.stderr)
    result = decode_text(trainer, text, beam=args.beam, length_penalty=args.length_penalty,
                         max_len=args.max_len)
    evaluation = trainer.evaluate()
    if args.json:
        print(json.dumps(result_json(result, trainer, evaluation)))
    else:
        print(summary_text(result, trainer, evaluation))
    return EXIT_DIVERGED if diverged else 0
