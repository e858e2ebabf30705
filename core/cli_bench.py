"""``python main.py bench``: speed and memory targets as ratios measured in one run.

Each benchmark compares two things measured in the same process (or back to back), so
the ratio means something on a shared, noisy machine where absolute times do not.
"""

from __future__ import annotations

import argparse
import json
import sys

# name -> (module, function, kwargs, ratio key, comparison, target, what the ratio is)
BENCHMARKS = {
    "training-lstm": ("core.bench_training", "bench_training", {"kind": "lstm"}, "ratio", "<=", 1.25,
                      "instrumented / plain torch.nn training step (LSTM, probe traces at 30/s)"),
    "training-gru": ("core.bench_training", "bench_training", {"kind": "gru"}, "ratio", "<=", 1.25,
                     "instrumented / plain torch.nn training step (GRU, probe traces at 30/s)"),
    "memory": ("core.bench_memory", "bench_memory", {}, "growth_ratio", "<=", 1.1,
               "resident memory after / before a long run with the bounded trace history"),
    "beam": ("core.decoding", "bench_beam", {}, "speedup", ">=", 5.0,
             "per-hypothesis loop / batched beam search time (width 8, vocab 40, max_len 30)"),
    "redraw": ("app.bench", "bench_redraw", {}, "redraws_per_s", ">=", 30.0,
               "full-window redraws per second while training (1600x900, hidden 256, T 200)"),
    "window-training": ("app.bench", "bench_window_training", {}, "ratio", ">=", 0.8,
                        "training steps/s with the window open / headless"),
    "startup": ("app.bench", "bench_startup", {}, "ratio", "<=", 0.6,
                "time to first paint of the window / time to import torch"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure the speed and memory targets (ratios)")
    p.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_bench)


def _select(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    return names


def run_bench(args: argparse.Namespace) -> int:
    import importlib

    results = {}
    for name in _select(args.only):
        module, function, kwargs, key, op, target, meaning = BENCHMARKS[name]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        measured = getattr(importlib.import_module(module), function)(**kwargs)
        ratio = float(measured[key])
        met = ratio <= target if op == "<=" else ratio >= target
        results[name] = {"value": ratio, "target": f"{op} {target:g}", "met": met, "meaning": meaning,
                         "details": {k: v for k, v in measured.items() if k != key}}
        if not args.json:
            print(f"{name:16s} {ratio:8.3f}  (target {op} {target:g}: {'met' if met else 'NOT met'})  {meaning}",
                  flush=True)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0
