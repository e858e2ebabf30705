"""What the gradients lens costs: ||dL/dh_t|| through time plus the Jacobian-product norms
and rate (``core.instruments.bptt.lens``), against one plain training step of the same model.

Plain: torch.nn's fused LSTM/GRU/RNN + a linear readout, Adam, forward + backward + step on
a [T, batch, input] batch. Lens: the instrumented loop on a one-sequence probe, autograd to
every h_t (and c_t), and the top layer's Jacobian products (the block sweep above
``EXACT_MAX_H``), as the trainer computes them for the gradients panel. Timed one by one,
interleaved, medians kept (a busy machine slows both alike). The estimate's error against
the exact products is measured once, untimed. ``python -m core.bench.lens`` prints JSON.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.instruments import bptt
from core.models.recurrent import make_recurrent, torch_reference
from core.names import CELL_KINDS


def bench_lens(kind: str = "lstm", hidden: int = 256, T: int = 200, batch: int = 32,
               input_size: int = 32, seconds: float = 15.0, device: str = "cpu", seed: int = 0,
               error: bool = True, train: bool = True) -> dict:
    """Time the gradients lens against a plain training step.

    Returns lens_s, plain_s (None without ``train``), ratio (lens / plain; target <= 3 on
    the CPU), exact_steps (norms computed exactly, the rest by the sweep), max_rel_error of
    the norms against the exact products (None without ``error``), rate, and the sizes.
    """
    if kind not in CELL_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CELL_KINDS)}; got {kind!r}")
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_recurrent(kind, input_size, hidden).to(dev)
        head = nn.Linear(hidden, input_size).to(dev)
    plain = torch_reference(net)
    plain_head = nn.Linear(hidden, input_size).to(dev)
    plain_head.load_state_dict(head.state_dict())
    opt = torch.optim.Adam([*plain.parameters(), *plain_head.parameters()], lr=1e-3)
    x = torch.randn(T, batch, input_size, generator=gen).to(dev)
    y = torch.randn(T, batch, input_size, generator=gen).to(dev)
    x_probe = torch.randn(T, 1, input_size, generator=gen).to(dev)
    y_probe = torch.randn(T, 1, input_size, generator=gen).to(dev)

    def loss_fn(out, state):
        return F.mse_loss(head(out), y_probe)

    def plain_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.mse_loss(plain_head(plain(x)[0]), y).backward()
        opt.step()

    result = {}

    def lens_call() -> None:
        result["lens"] = bptt.lens(net, x_probe, loss_fn)

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    calls = {"lens": lens_call, **({"plain": plain_step} if train else {})}
    for fn in calls.values():  # warm-up
        timed(fn)
    times: dict[str, list[float]] = {name: [] for name in calls}
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline or i < 3:
        for name in (list(calls) if i % 2 == 0 else list(calls)[::-1]):
            times[name].append(timed(calls[name]))
        i += 1
    lens_s = statistics.median(times["lens"])
    plain_s = statistics.median(times["plain"]) if train else None
    _, jac = result["lens"]
    max_rel = None
    if error:
        exact = bptt.jacobian_norms(net, x_probe, exact=True, per_step=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.abs(jac.norms / exact.norms - 1)
        max_rel = float(np.nanmax(rel))
    return {
        "kind": kind, "hidden": hidden, "T": T, "batch": batch, "device": str(dev),
        "threads": torch.get_num_threads(), "lens_s": lens_s, "plain_s": plain_s,
        "ratio": lens_s / plain_s if plain_s else None, "exact_steps": jac.exact_steps,
        "max_rel_error": max_rel, "rate": jac.rate, "calls_timed": len(times["lens"]),
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(bench_lens(), indent=1))
