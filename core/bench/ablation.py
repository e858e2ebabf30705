"""What the ablation sweep costs: every hidden unit zeroed in turn, against one probe forward.

The sweep (core.training.counterfactual.ablation_records) runs the probe once with the H + 1
variants as a batch dimension; it is timed against ``Trainer.probe()``, the probe forward the
panels draw, on the same model (``python main.py bench --only ablation``). The details say
what the batching buys: the sweep against H + 1 separate edited runs (timed for a few units
and scaled), and whether the batched effects equal the separate runs'.

A floor on the ratio: the sweep multiplies a [H + 1, H] state by W_hh at every step where the
probe multiplies one [1, H] row, so it does H + 1 times the probe's arithmetic; the probe's
one-row products are bound by memory, the sweep's by arithmetic, which is why the ratio is far
below H + 1 but cannot come near 1 on a CPU (torch.nn.LSTM itself takes about 60 times as
long for 257 sequences as for one at H 256, T 200 on our 2-core machine). The first-order
estimate (core.models.interventions.ablation_estimates) is one forward and one backward of
the probe (for this LSTM on torch's fused kernel), so it is timed against the same probe forward (``estimate_ratio``), and the
details say how well it ranks the units as the sweep does (Spearman's rho on this model).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from core.config import Experiment
from core.interventions import Intervention
from core.models.interventions import edited_trace, model_plan
from core.training.trainer import Trainer


def bench_ablation(hidden_size: int = 256, seq_len: int = 200, kind: str = "lstm", repeats: int = 3,
                   sampled_units: int = 3, threads: int | None = 1, device: str = "cpu") -> dict[str, float | bool]:
    """Best-of-``repeats`` times (interleaved) of the sweep and of one probe forward.

    Returns {"ratio": sweep / probe, "sweep_s", "probe_s", "separate_s" (H + 1 single edited
    runs, from the best of ``sampled_units`` timed), "batching_speedup": separate_s / sweep_s,
    "same_effects": batched effects equal the single runs' within 1e-5, "estimate_ratio":
    first-order estimate / probe, "estimate_s", "estimate_rank_rho": Spearman's rho between
    the estimated and the swept effects}."""
    if repeats < 1 or sampled_units < 1:
        raise ValueError(f"repeats and sampled_units must be >= 1; got {repeats}, {sampled_units}")
    exp = Experiment(task="adding", cell=kind, hidden_size=hidden_size, seq_len=seq_len, batch_size=8, seed=0,
                     device=device)
    trainer = Trainer(exp)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads or previous)
        sweep = probe = estimate_s = math.inf
        trainer.probe()  # warm-up: allocator, kernels
        for _ in range(repeats):  # interleaved, so both see the same background load
            start = time.perf_counter()
            trainer.probe()  # ends with copies to numpy, so the device is done when it returns
            probe = min(probe, time.perf_counter() - start)
            start = time.perf_counter()
            record = trainer.ablation((0,))[0]
            sweep = min(sweep, time.perf_counter() - start)
            start = time.perf_counter()
            estimate = trainer.ablation((0,), "first-order")[0]
            estimate_s = min(estimate_s, time.perf_counter() - start)
        units = [round(i * (hidden_size - 1) / max(sampled_units - 1, 1)) for i in range(sampled_units)]
        single, same = math.inf, True
        model, batch = trainer.model.eval(), trainer.probe_batch()
        for unit in units:
            plan = model_plan(model, batch, [Intervention("hidden", 0, (unit,), None, 0, None, "zero")])
            start = time.perf_counter()
            loss = float(edited_trace(model, batch, plan)[1])
            single = min(single, time.perf_counter() - start)
            same = same and abs((loss - record.base_loss) - record.effects[unit]) <= 1e-5
    finally:
        torch.set_num_threads(previous)
    separate = single * (hidden_size + 1)
    return {"ratio": sweep / probe, "sweep_s": sweep, "probe_s": probe, "separate_s": separate,
            "batching_speedup": separate / sweep, "same_effects": bool(same),
            "estimate_ratio": estimate_s / probe, "estimate_s": estimate_s,
            "estimate_rank_rho": spearman(record.effects, estimate.effects)}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two 1-D arrays without ties (Pearson's r of the ranks)."""
    ra, rb = np.argsort(np.argsort(a)).astype(float), np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])
