"""``python main.py bench``: speed and memory targets as ratios measured in one run.

Each benchmark compares two things measured in the same process (or back to back), so
the ratio means something on a shared, noisy machine where absolute times do not.
``--markdown`` prints the README's performance table, with the machine it ran on.

To add a benchmark: write a function that returns a dict (its headline number under one
key), and add one ``Benchmark`` row to ``BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial


def _training(kind: str) -> dict:
    from app.training.loop import INSTRUMENT_SHARE
    from app.window.schedule import RATES
    from core.bench.training import bench_training

    return bench_training(kind=kind, rates=RATES, shares=INSTRUMENT_SHARE)  # the worker's budgets


def _memory() -> dict:
    from core.bench.memory import bench_memory

    return bench_memory()


def _beam() -> dict:
    from core.bench.beam import bench_beam

    return bench_beam()


@cache  # one measurement for both ablation rows
def _ablation() -> dict:
    from core.bench.ablation import bench_ablation

    return bench_ablation()

def _dynamics() -> dict:
    from core.bench.dynamics import bench_dynamics

    return bench_dynamics()


def _redraw() -> dict:
    from app.bench.window import bench_redraw

    return bench_redraw()


def _window_training() -> dict:
    from app.bench.window import bench_window_training

    return bench_window_training()


def _lens() -> dict:
    from core.bench.lens import bench_lens

    return bench_lens()


def _startup() -> dict:
    from app.bench.startup import bench_startup

    return bench_startup()


def _time_to_interactive() -> dict:
    from app.bench.window import bench_time_to_interactive

    return bench_time_to_interactive()


@dataclass(frozen=True)
class Benchmark:
    """One target: ``run()`` returns a dict whose ``key`` entry is compared with ``target``;
    ``details`` names other entries the markdown table shows beside it."""

    run: Callable[[], dict]
    key: str
    op: str  # "<=" or ">="
    target: float
    meaning: str
    details: tuple[str, ...] = ()


BENCHMARKS = {
    "training-lstm": Benchmark(partial(_training, "lstm"), "ratio", "<=", 1.25,
                               "Trainer.step with the instruments at the training process's budgets / plain "
                               "torch.nn step (LSTM, hidden 128, T 100, batch 32)", ("fused_ratio",)),
    "training-gru": Benchmark(partial(_training, "gru"), "ratio", "<=", 1.25,
                              "the same for the GRU", ("fused_ratio",)),
    "memory": Benchmark(_memory, "growth_ratio", "<=", 1.1,
                        "resident memory at the end / a quarter into a 6,000-step run with live traces"),
    "beam": Benchmark(_beam, "speedup", ">=", 5.0,
                      "per-hypothesis loop / batched beam search time (width 8, vocab 40, max_len 30)"),
    "ablation": Benchmark(_ablation, "ratio", "<=", 3.0,
                          "ablation sweep (every unit zeroed in turn, one batched forward) / one probe forward "
                          "(LSTM, hidden 256, T 200)", ("estimate_ratio",)),
    "ablation-first-order": Benchmark(_ablation, "estimate_ratio", "<=", 3.0,
                                      "first-order ablation estimate (one forward and backward) / one probe "
                                      "forward (LSTM, hidden 256, T 200); rho: its rank agreement with the sweep",
                                      ("estimate_rank_rho",)),
    # 2 s (the target) is ~118 probe forwards of 32 sequences at H = 128: 17 ms, the fastest
    # measured on our 2-core machine (always busy then, so idle is not slower than that)
    "dynamics": Benchmark(_dynamics, "ratio", "<=", 118.0,
                          "fixed-point search (GRU, H 128, 256 starts) / one probe forward of its 32 sequences"),
    "redraw": Benchmark(_redraw, "redraws_per_s", ">=", 30.0,
                        "paints per second of the slowest visible panel, all redrawn as fast as possible "
                        "while training (1600x900, hidden 256, T 200)", ("slowest_panel", "ticks_per_s")),
    "window-training": Benchmark(_window_training, "ratio", ">=", 0.8,
                                 "training steps/s with the window open / headless (adding-lstm)",
                                 ("ticks_per_s", "panel_paints_per_s", "training_process_rss_mb")),
    "startup": Benchmark(_startup, "ratio", "<=", 0.6,
                         "launch to the end of every visible panel's first paint / launch to import torch",
                         ("window_ratio",)),
    "gradients-lens": Benchmark(_lens, "ratio", "<=", 3.0,
                                "gradients lens (||dL/dh_t|| + Jacobian norms and rate) / plain training "
                                "step (LSTM, hidden 256, T 200)"),
    "time-to-interactive": Benchmark(_time_to_interactive, "ratio", "<=", 1.5,
                                     "launch to the first trained frame drawn / time to import torch"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure the speed and memory targets (ratios)")
    p.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object")
    output.add_argument("--markdown", action="store_true",
                        help="print the README's performance table, with the machine it ran on")
    p.set_defaults(run=run_bench)


def _select(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    return names


def machine() -> dict:
    """CPU model, cores, load averages and versions: what a figure depends on."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": model, "cores": os.cpu_count(), "load_1min": load[0], "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def _shown(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_shown(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def markdown(results: dict, before: dict, after: dict) -> str:
    """The performance table: one row per benchmark, the machine and its load under it."""
    rows = ["| benchmark | measured | target | met | also measured | what is compared |",
            "|---|---|---|---|---|---|"]
    for name, r in results.items():
        also = "; ".join(f"{k} {_shown(r['details'][k])}" for k in BENCHMARKS[name].details if k in r["details"])
        met = "yes" if r["met"] else "**not met**"
        rows.append(f"| {name} | {r['value']:.3g} | {r['target']} | {met} | {also} | {r['meaning']} |")
    rows.append("")
    rows.append(f"*{before['cpu']}, {before['cores']} cores, torch {before['torch']} "
                f"({before['torch_threads']} thread), Python {before['python']}; load average (1 min) "
                f"{before['load_1min']:.2f} before, {after['load_1min']:.2f} after.*")
    return "\n".join(rows)


def run_bench(args: argparse.Namespace) -> int:
    names = _select(args.only)
    before = machine()
    results = {}
    for name in names:
        bench = BENCHMARKS[name]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        measured = bench.run()
        ratio = float(measured[bench.key])
        op, target = bench.op, bench.target
        met = ratio <= target if op == "<=" else ratio >= target
        results[name] = {"value": ratio, "target": f"{op} {target:g}", "met": met, "meaning": bench.meaning,
                         "details": {k: v for k, v in measured.items() if k != bench.key}}
        if not (args.json or args.markdown):
            print(f"{name:16s} {ratio:8.3f}  (target {op} {target:g}: {'met' if met else 'NOT met'})  "
                  f"{bench.meaning}", flush=True)
    after = machine()
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    elif args.markdown:
        print(markdown(results, before, after))
    return 0
