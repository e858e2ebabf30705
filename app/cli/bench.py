"""``python main.py bench``: speed and memory targets as ratios measured in one run.

Each benchmark compares two things measured in the same process (or back to back), so
the ratio means something on a shared, noisy machine where absolute times do not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial


def _training(kind: str) -> dict:
    from core.bench.training import bench_training

    return bench_training(kind=kind)


def _memory() -> dict:
    from core.bench.memory import bench_memory

    return bench_memory()


def _beam() -> dict:
    from core.bench.beam import bench_beam

    return bench_beam()


def _redraw() -> dict:
    from app.bench.window import bench_redraw

    return bench_redraw()


def _window_training() -> dict:
    from app.bench.window import bench_window_training

    return bench_window_training()


def _startup() -> dict:
    from app.bench.window import bench_startup

    return bench_startup()


def _time_to_interactive() -> dict:
    from app.bench.window import bench_time_to_interactive

    return bench_time_to_interactive()


@dataclass(frozen=True)
class Benchmark:
    """One target: ``run()`` returns a dict whose ``key`` entry is compared with ``target``."""

    run: Callable[[], dict]
    key: str
    op: str  # "<=" or ">="
    target: float
    meaning: str


BENCHMARKS = {
    "training-lstm": Benchmark(partial(_training, "lstm"), "ratio", "<=", 1.25,
                               "instrumented / plain torch.nn training step (LSTM, probe traces at 30/s)"),
    "training-gru": Benchmark(partial(_training, "gru"), "ratio", "<=", 1.25,
                              "instrumented / plain torch.nn training step (GRU, probe traces at 30/s)"),
    "memory": Benchmark(_memory, "growth_ratio", "<=", 1.1,
                        "resident memory after / before a long run with the bounded trace history"),
    "beam": Benchmark(_beam, "speedup", ">=", 5.0,
                      "per-hypothesis loop / batched beam search time (width 8, vocab 40, max_len 30)"),
    "redraw": Benchmark(_redraw, "redraws_per_s", ">=", 30.0,
                        "full-window redraws per second while training (1600x900, hidden 256, T 200)"),
    "window-training": Benchmark(_window_training, "ratio", ">=", 0.8,
                                 "training steps/s with the window open / headless"),
    "startup": Benchmark(_startup, "ratio", "<=", 0.6,
                         "time to first paint of the window / time to import torch"),
    "time-to-interactive": Benchmark(_time_to_interactive, "ratio", "<=", 1.5,
                                     "launch to the first trained frame drawn / time to import torch"),
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
    results = {}
    for name in _select(args.only):
        bench = BENCHMARKS[name]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        measured = bench.run()
        ratio = float(measured[bench.key])
        op, target = bench.op, bench.target
        met = ratio <= target if op == "<=" else ratio >= target
        results[name] = {"value": ratio, "target": f"{op} {target:g}", "met": met, "meaning": bench.meaning,
                         "details": {k: v for k, v in measured.items() if k != bench.key}}
        if not args.json:
            print(f"{name:16s} {ratio:8.3f}  (target {op} {target:g}: {'met' if met else 'NOT met'})  "
                  f"{bench.meaning}", flush=True)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0
