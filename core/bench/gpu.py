"""The GPU set of benchmarks (issue 20): run where CUDA is, with torch and numpy alone.

    python -m core.bench.gpu --json            # on the GPU machine (no Qt, no platformdirs needed)
    python -m core.bench.gpu --device cpu --quick --json   # the same logic, small, anywhere

* ``lens``: the gradients lens for a tanh RNN, hidden 1024, T 1000 (target <= 1 s);
* ``training``: instrumented / plain training step for an LSTM, hidden 512, T 200, batch 128
  (target <= 1.15; ``core.bench.training``);
* ``crossover``: plain training step time on the CPU (one thread, as the app trains) and on
  the device, for hidden sizes x batch sizes: where a GPU starts to pay.
Only torch, numpy and the engine's models and instruments are imported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from core.bench.lens import bench_lens
from core.bench.training import bench_training

TARGETS = {"lens_s": ("<=", 1.0), "training_ratio": ("<=", 1.15)}
FULL = {"lens": dict(kind="rnn", hidden=1024, T=1000), "training": dict(kind="lstm", hidden=512, T=200, batch=128),
        "hidden": (32, 64, 128, 256, 512, 1024), "batch": (8, 32, 128), "T": 50}
QUICK = {"lens": dict(kind="rnn", hidden=48, T=40), "training": dict(kind="lstm", hidden=16, T=10, batch=4),
         "hidden": (16, 32), "batch": (4,), "T": 10}
CPU_BUDGET_MAC = 4e10  # crossover cells whose CPU step would take longer (one thread) are skipped


def step_time(kind: str, hidden: int, batch: int, T: int, device: str, repeats: int = 3) -> float:
    """Median seconds of one plain torch.nn training step (forward, backward, Adam)."""
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](32, hidden).to(dev)
    head = nn.Linear(hidden, 32).to(dev)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(T, batch, 32, generator=gen).to(dev)
    y = torch.randn(T, batch, 32, generator=gen).to(dev)
    times = []
    for i in range(repeats + 1):
        sync()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.mse_loss(head(rnn(x)[0]), y).backward()
        opt.step()
        sync()
        if i:  # the first is a warm-up
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def crossover(device: str, sizes: dict, kind: str = "lstm") -> list[dict]:
    """Per (hidden, batch): CPU (one thread) and device step times and their ratio."""
    rows = []
    threads = torch.get_num_threads()
    for hidden in sizes["hidden"]:
        for batch in sizes["batch"]:
            gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
            mac = 3 * sizes["T"] * batch * hidden * gates * (hidden + 32)
            cpu = None
            if mac <= CPU_BUDGET_MAC:
                torch.set_num_threads(1)
                try:
                    cpu = step_time(kind, hidden, batch, sizes["T"], "cpu")
                finally:
                    torch.set_num_threads(threads)
            dev = step_time(kind, hidden, batch, sizes["T"], device)
            rows.append({"kind": kind, "hidden": hidden, "batch": batch, "T": sizes["T"], "cpu_s": cpu,
                         "device_s": dev, "speedup": cpu / dev if cpu else None})
    return rows


def run(device: str = "cuda", quick: bool = False, seconds: float = 10.0) -> dict:
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here: run this on the GPU machine (or --device cpu --quick)")
    sizes = QUICK if quick else FULL
    out: dict = {"device": device, "torch": torch.__version__,
                 "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}
    lens = bench_lens(**sizes["lens"], device=device, seconds=seconds / 2, train=False, error=quick)
    out["lens"] = lens
    out["lens_s"] = lens["lens_s"]
    training = bench_training(**sizes["training"], device=device, seconds=seconds)
    out["training"] = training
    out["training_ratio"] = training["ratio"]
    out["crossover"] = crossover(device, sizes)
    out["targets"] = {key: {"value": out[key], "target": f"{op} {value:g}",
                            "met": out[key] <= value if op == "<=" else out[key] >= value}
                      for key, (op, value) in TARGETS.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="small sizes: check the logic anywhere")
    parser.add_argument("--seconds", type=float, default=10.0, help="about how long each timed part runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.device == "cpu":  # as the app trains on a CPU (two waiting threads are 10x slower)
        torch.set_num_threads(1)
    result = run(args.device, args.quick, args.seconds)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        for key, t in result["targets"].items():
            print(f"{key:16s} {t['value']:8.3f}  (target {t['target']}: {'met' if t['met'] else 'NOT met'})")
        for row in result["crossover"]:
            print(f"crossover {row['kind']} H {row['hidden']:5d} B {row['batch']:4d}: cpu {row['cpu_s']} "
                  f"device {row['device_s']:.4f} speedup {row['speedup']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
