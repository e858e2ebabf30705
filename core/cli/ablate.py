"""The ``ablate`` command: rank the hidden units by what zeroing each costs on the probe.

    python main.py ablate --preset adding-lstm --steps 1500 --json

Each unit of each layer is zeroed in turn over the whole probe (all of a layer's units in
one batched forward) and the task's loss on the probe compared with the unedited one;
``--first-order`` estimates every unit's effect from one forward and backward instead
(-sum_t dL/dh_t[v] h_t[v]: fast on big models, only the linear part of the change).
``--json`` prints ONE object: ``steps``, ``method`` ("exact" or "first-order"), ``layers``
(per layer: ``layer``, ``base_loss``, ``effects`` [H] = loss with the unit zeroed minus
base_loss, ``ranking``: units by effect, largest first). Without it, the top units of each
layer. Exit codes as for ``train``.
"""

from __future__ import annotations

import argparse
import json

from core.cli.common import (
    EXIT_DIVERGED,
    add_overrides,
    check_steps,
    end_progress,
    load_trainer,
    progress,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="rank hidden units by the probe loss lost when each is zeroed")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", metavar="NAME", help="preset to train (see 'presets')")
    source.add_argument("--session", metavar="FILE", help="a saved session's model (trains only with --steps)")
    add_overrides(p)
    p.add_argument("--layer", type=int, metavar="K", help="one layer (default: every layer)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="units listed per layer without --json (default 10)")
    p.add_argument("--first-order", action="store_true",
                   help="estimate the effects from one forward and backward (fast, linear part only)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_ablate)


def run_ablate(args: argparse.Namespace) -> int:
    check_steps(args.steps)
    if args.top < 1:
        raise ValueError(f"--top must be an integer >= 1; got {args.top}")
    zero = args.steps == 0
    trainer, steps = load_trainer(argparse.Namespace(**{**vars(args), "steps": None if zero else args.steps}))
    if zero or (args.session and args.steps is None):
        steps = 0
    from core.training.counterfactual import ablation_layers

    layers = ablation_layers(trainer.model, None if args.layer is None else (args.layer,))  # before training
    last, first = None, trainer.step_count
    every = max(1, steps // 200)
    for record in trainer.run(steps):
        last = record
        if (record.step - first) % every == 0 or record.diverged:
            progress(min(record.step - first, steps), steps, record.loss)
    if steps:
        end_progress()
    method = "first-order" if args.first_order else "exact"
    records = trainer.ablation(layers, method)
    if args.json:
        print(json.dumps({"steps": trainer.step_count, "method": method, "layers": [
            {"layer": r.layer, "base_loss": r.base_loss, "effects": r.effects.tolist(),
             "ranking": r.order.tolist()} for r in records]}))
    else:
        for r in records:
            how = "by about (first order)" if args.first_order else "by"
            print(f"layer {r.layer}: probe loss {r.base_loss:.4g} as it is; zeroing a unit changes it {how}")
            for rank, unit in enumerate(r.order[:args.top], 1):
                print(f"  {rank:>3}. unit {int(unit):<5} {r.effects[unit]:+.4g}")
            print(f"  median unit {float(sorted(r.effects)[len(r.effects) // 2]):+.4g}")
    return EXIT_DIVERGED if last is not None and last.diverged else 0
