"""Headless commands: ``presets`` and ``train`` (exit codes: core.cli.common)."""

from __future__ import annotations

import argparse
import json
import sys

from core.cli.common import (
    EXIT_DIVERGED,
    add_data_flags,
    add_model_flags,
    add_overrides,
    check_save_path,
    end_progress,
    load_trainer,
    progress,
    strict_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the presets")
    p.add_argument("--json", action="store_true", help="one JSON array with every preset")
    p.set_defaults(run=run_presets)

    p = sub.add_parser("train", help="train without a display")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", metavar="NAME", help="preset to train (see 'presets'); with --data, "
                        "its settings on your file")
    source.add_argument("--session", metavar="FILE", help="continue a saved session")
    add_overrides(p)
    add_data_flags(p)
    add_model_flags(p)
    p.add_argument("--save", metavar="FILE", help="save the session here when done")
    p.add_argument("--export-model", metavar="FILE", help="write the trained weights under torch.nn's names "
                   "(.safetensors or .pt; a vocab.json beside it for text)")
    p.add_argument("--json", action="store_true", help="one JSON object a line, then a summary")
    p.set_defaults(run=run_train)


def run_presets(args: argparse.Namespace) -> int:
    from core.presets import list_presets

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


def run_train(args: argparse.Namespace) -> int:
    check_save_path(args.save)
    check_save_path(args.export_model, "--export-model")
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
            progress(min(record.step - first, steps), steps, record.loss)
    if not args.json:
        end_progress()
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
    from core.tasks.user import describe_task

    if describe_task(trainer.task):
        summary["data"] = describe_task(trainer.task)
    if args.save:
        from core.session.format import save_session

        save_session(trainer, args.save)
        summary["saved"] = args.save
    if args.export_model:
        from core.models.io import export_model
        from core.tasks.typed import task_vocabulary

        summary["exported"] = export_model(trainer.model, args.export_model, task_vocabulary(trainer.task))
    if args.json:
        print(strict_json({"summary": summary}))
    else:
        print(f"{status}: {summary['steps']} steps, final loss {summary['final_loss']:.4g}"
              + (f" (baseline {summary['baseline']:.4g})" if summary["baseline"] is not None else ""))
        held = {k: v for k, v in trainer.evaluate().items()}
        if held:
            print("held out: " + ", ".join(f"{k.removeprefix('heldout_').replace('_', ' ')} {v:.3g}"
                                           for k, v in held.items()))
        for key, value in summary.get("data", {}).items():
            print(f"{key.replace('_', ' ')}: {value}")
        for path in summary.get("exported", []):
            print(f"exported {path}")
        if last.diverged:
            print(f"diverged at step {summary['diverged_at_step']}: {summary['message']}", file=sys.stderr)
    return EXIT_DIVERGED if last.diverged else 0
