"""What instrumentation costs: a plain torch.nn training step against the real ``Trainer.step``.

Plain:  torch.nn's LSTM / GRU / RNN with the trainer's weights + the same Linear readout,
        Adam, forward + backward + step on one fixed adding-problem batch.
Fused:  ``Trainer.step()`` itself, as the training process runs it: a fresh batch from the
        task, the fused forward, backward, gradient norms and clipping, the last-good state
        for rollback, the history row.
Full:   the fused step plus the instruments the window asks for (probe, gradients through
        time, spectrum), each at the rate the training process allows it: at most as often
        as the window asks (``rates``, requests per second) and at most its share of wall
        time (``shares``). Both budgets belong to the app (app.window.schedule.RATES,
        app.training.loop.INSTRUMENT_SHARE); ``python main.py bench`` passes them in.

Steps are timed one by one, plain and fused interleaved (in alternating order) so that a
busy machine slows both alike, and medians kept; each instrument is timed every few steps.
With instrument i costing c_i seconds and run n_i = min(rate_i, share_i / c_i) times a
second, the instruments take F = sum(n_i c_i) of wall time and a step costs step / (1 - F).
Run as ``python -m core.bench.training [kind]`` to print the fused-only result as JSON.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import time
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from core.config import Experiment
from core.models.recurrent import torch_reference
from core.names import CELL_KINDS
from core.training.trainer import Trainer

INSTRUMENTS = ("probe", "gradients", "spectrum")


def _plain_step(trainer: Trainer, seed: int):
    """A torch.nn training step with the trainer's weights and readout on one fixed batch."""
    net = torch_reference(trainer.model.recurrent)
    head = copy.deepcopy(trainer.model.readout)
    optimizer = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=trainer.experiment.lr)
    batch = trainer.task.sample(trainer.experiment.batch_size,
                                torch.Generator().manual_seed(seed + 1)).to(trainer.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        _, state = net(batch.x)
        h_n = state[0] if isinstance(state, tuple) else state
        F.mse_loss(head(h_n[-1]), batch.y).backward()
        optimizer.step()

    return step


def instrument_share(costs: Mapping[str, float], rates: Mapping[str, float],
                     shares: Mapping[str, float]) -> tuple[dict[str, float], float]:
    """(runs per second of each instrument, share of wall time they take together)."""
    runs = {name: min(rates[name], shares[name] / cost) if cost > 0 else rates[name]
            for name, cost in costs.items() if name in rates}
    return runs, sum(runs[name] * costs[name] for name in runs)


def bench_training(kind: str = "lstm", hidden: int = 128, T: int = 100, batch: int = 32,
                   seconds: float = 20.0, seed: int = 0, rates: Mapping[str, float] | None = None,
                   shares: Mapping[str, float] | None = None, device: str = "cpu") -> dict:
    """Time plain torch.nn steps against ``Trainer.step`` on the adding problem.

    Args:
        kind: rnn, lstm or gru; hidden, T, batch: the sizes trained (one layer).
        seconds: about how long the timed part runs (after a warm-up of two of each).
        rates, shares: the instruments' budgets (see the module docstring); without them
            the full cost is the fused cost.
        device: where both models train ("cuda" for the GPU set, core.bench.gpu).
    Returns:
        plain_s_per_step, fused_s_per_step (Trainer.step), fused_ratio (fused / plain),
        instrument_s (median cost of each), instrument_runs_per_s, instrument_wall_share,
        full_s_per_step, ratio (full / plain; target <= 1.25), steps_timed, sizes, threads.
    """
    if kind not in CELL_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CELL_KINDS)}; got {kind!r}")
    exp = Experiment(task="adding", cell=kind, hidden_size=hidden, seq_len=T, batch_size=batch,
                     lr=1e-3, seed=seed, steps=1_000_000, device=device)
    trainer = Trainer(exp)
    sync = torch.cuda.synchronize if trainer.device.startswith("cuda") else (lambda: None)
    calls = {"plain": _plain_step(trainer, seed), "fused": trainer.step,
             **{name: getattr(trainer, name) for name in INSTRUMENTS}}

    def timed(name: str) -> float:
        sync()
        start = time.perf_counter()
        calls[name]()
        sync()
        return time.perf_counter() - start

    for name in calls:  # warm-up
        timed(name)
        timed(name)
    times: dict[str, list[float]] = {name: [] for name in calls}
    i, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline or i < 3:
        for name in ("plain", "fused") if i % 2 == 0 else ("fused", "plain"):
            times[name].append(timed(name))
        if i % 4 == 0:  # one instrument every fourth step, in turn
            name = INSTRUMENTS[(i // 4) % len(INSTRUMENTS)]
            times[name].append(timed(name))
        i += 1
    med = {name: statistics.median(v) for name, v in times.items() if v}
    costs = {name: med[name] for name in INSTRUMENTS if name in med}
    runs, wall_share = instrument_share(costs, rates or {}, shares or {})
    full = med["fused"] / (1.0 - min(wall_share, 0.99))
    return {
        "kind": kind, "hidden": hidden, "T": T, "batch": batch, "threads": torch.get_num_threads(),
        "device": trainer.device,
        "plain_s_per_step": med["plain"],
        "fused_s_per_step": med["fused"],
        "fused_ratio": med["fused"] / med["plain"],
        "instrument_s": costs,
        "instrument_runs_per_s": runs,
        "instrument_wall_share": wall_share,
        "full_s_per_step": full,
        "ratio": full / med["plain"],
        "steps_timed": len(times["plain"]),
    }


if __name__ == "__main__":
    for k in sys.argv[1:] or ["lstm"]:
        print(json.dumps(bench_training(k), indent=1))
