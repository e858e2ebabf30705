"""What a fixed-point search costs: H = 128, 256 starts, against one probe forward.

The network is a GRU with random weights whose recurrent matrix is scaled up (``gain``), so
that it has several fixed points, saddles among them, and slow regions: a harder search
than a freshly initialised GRU (one attracting point near 0), and no training to wait for.
Its states on a batch of random bit streams are the cloud the starts are drawn from, as the
trainer draws them from the probe and a batch (``python main.py bench --only dynamics``).
"""

from __future__ import annotations

import math
import time

import torch

from core.instruments.dynamics import Settings, analyse, stack_states
from core.models.recurrent import make_recurrent


def bench_dynamics(hidden: int = 128, starts: int = 256, kind: str = "gru", gain: float = 2.0,
                   T: int = 50, batch: int = 32, repeats: int = 3, seed: int = 0,
                   threads: int | None = 1) -> dict[str, float | int]:
    """Best-of-``repeats`` wall time of the search (PCA, starts, Levenberg-Marquardt,
    de-duplication, eigenvalues) and of one probe forward over the same batch [T, batch].

    Returns ``{"search_s", "probe_s", "ratio", "fixed_points", "slow_points", "iterations"}``;
    ``ratio`` = search_s / probe_s. ``threads`` as for core.bench.beam."""
    if repeats < 1 or (threads is not None and threads < 1):
        raise ValueError(f"repeats and threads must be >= 1; got {repeats}, {threads}")
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
        torch.manual_seed(seed)
        net = make_recurrent(kind, 1, hidden)
        with torch.no_grad():
            for name, w in net.named_parameters():
                if name.startswith("weight_hh"):
                    w.mul_(gain * math.sqrt(hidden) / 4)  # torch's init is U(±1/sqrt(H)); this is gain/sqrt(3)-ish per row
        x = torch.randint(0, 2, (T, batch, 1)).float()
    previous_threads = torch.get_num_threads()
    best = {"search": math.inf, "probe": math.inf}
    found = None
    try:
        torch.set_num_threads(threads or previous_threads)
        for _ in range(repeats):
            start = time.perf_counter()
            trace = net.probe(x)
            best["probe"] = min(best["probe"], time.perf_counter() - start)
            states = stack_states(trace.hidden, trace.cell)
            start = time.perf_counter()
            _, found = analyse(net, states, None, torch.zeros(1).numpy(), Settings(starts=starts))
            best["search"] = min(best["search"], time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
    return {"search_s": best["search"], "probe_s": best["probe"], "ratio": best["search"] / best["probe"],
            "fixed_points": int(found.fixed.sum()), "slow_points": int((~found.fixed).sum()),
            "iterations": found.iterations, "hidden": hidden, "starts": starts, "kind": kind}
