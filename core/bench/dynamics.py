"""What a fixed-point search costs: H = 128, 256 starts, against one probe forward.

The network is the parity-gru preset widened to H = 128 and trained for a few hundred
steps (seed 1), so the search meets what it meets in use: an attracting point, an unstable
one under input 1, saturated units whose slow regions keep many starts busy. The starts
are drawn from its states on the probe and 31 more sequences, as the trainer draws them;
the reference is the probe forward over those same 32 sequences
(``python main.py bench --only dynamics``).
"""

from __future__ import annotations

import math
import time

import torch

from core.instruments.dynamics import stack_states
from core.instruments.dynamics_record import Settings, analyse
from core.presets import load_preset
from core.training.trainer import Trainer


def bench_dynamics(hidden: int = 128, starts: int = 256, train_steps: int = 300, input_name: str = "zero",
                   repeats: int = 3, seed: int = 1, threads: int | None = 1) -> dict[str, float | int]:
    """Best-of-``repeats`` wall time of the search (PCA, starts, relaxation, Levenberg-Marquardt,
    de-duplication, eigenvalues) and of one probe forward of the same 32 sequences.

    Returns ``{"search_s", "probe_s", "ratio", "fixed_points", "slow_points", "iterations",
    "train_s", ...}``; ``ratio`` = search_s / probe_s. ``threads`` as for core.bench.beam."""
    if repeats < 1 or (threads is not None and threads < 1):
        raise ValueError(f"repeats and threads must be >= 1; got {repeats}, {threads}")
    previous_threads = torch.get_num_threads()
    best = {"search": math.inf, "probe": math.inf}
    try:
        torch.set_num_threads(threads or previous_threads)
        exp = load_preset("parity-gru").experiment.replace(hidden_size=hidden, seed=seed)
        trainer = Trainer(exp)
        start = time.perf_counter()
        for _ in trainer.run(train_steps):
            pass
        train_s = time.perf_counter() - start
        trainer.choose_dynamics_input(input_name)
        batch = trainer.dynamics_batch()
        net = trainer.model.recurrent
        x = trainer.input_symbols().get(input_name, torch.zeros(net.input_size).numpy())
        trainer.model.eval()
        found = None
        for _ in range(repeats):  # interleaved, so both see the same background load
            start = time.perf_counter()
            trace = trainer.model.trace(batch)
            best["probe"] = min(best["probe"], time.perf_counter() - start)
            states = stack_states(trace.hidden, trace.cell)
            start = time.perf_counter()
            _, found = analyse(net, states, batch.valid, x, Settings(starts=starts))
            best["search"] = min(best["search"], time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
    return {"search_s": best["search"], "probe_s": best["probe"], "ratio": best["search"] / best["probe"],
            "fixed_points": int(found.fixed.sum()), "slow_points": int((~found.fixed).sum()),
            "iterations": found.iterations, "hidden": hidden, "starts": starts, "train_steps": train_steps,
            "train_s": train_s}
