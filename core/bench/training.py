"""What instrumentation costs: plain torch.nn training against our instrumented training.

Plain:        nn.LSTM / nn.GRU / nn.RNN + Linear, Adam, forward + backward + step.
Instrumented: the same step through ``core.models.recurrent``'s fused path (``net(x, trace=False)``),
              plus, whenever 1/probe_hz seconds of wall time have passed, a probe trace
              (``net.probe`` on a batch-1 probe sequence, copied to numpy), as the GUI does.
Loop:         the same step through the instrumented Python loop (``net(x)``), which
              ``core.instruments.bptt`` uses for gradients through time; reported for information.

Steps are timed one by one, plain and instrumented interleaved, and medians kept, so that
a busy machine slows both alike; the instrumented cost is the median fused step plus the
probes' median cost times the probes per step (the probe clock runs on the instrumented
steps' own time, as if it trained alone). Run as
``python -m core.bench.training [kind]`` to print the result as JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.models.recurrent import make_recurrent, torch_reference
from core.names import CELL_KINDS


def _trainer_step(rnn: Callable, head: nn.Linear, opt: torch.optim.Optimizer, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    out = rnn(x)[0]
    F.mse_loss(head(out), y).backward()
    opt.step()


def bench_training(kind: str = "lstm", hidden: int = 128, T: int = 100, batch: int = 32,
                   input_size: int = 32, probe_hz: float = 30.0, seconds: float = 20.0,
                   device: str = "cpu", seed: int = 0) -> dict:
    """Time plain against instrumented training steps of one recurrent layer.

    Args:
        kind: rnn, lstm or gru; hidden, T, batch, input_size: the sizes trained.
        probe_hz: how often (per second of wall time) the instrumented run takes a probe.
        seconds: about how long the timed part runs (warm-up: two steps of each kind).
    Returns:
        plain_s_per_step, instrumented_s_per_step (fused step + probes), ratio
        (instrumented / plain; target <= 1.25), fused_ratio (without probes),
        loop_s_per_step and loop_ratio (the loop against plain), probe_s (one probe) and
        probes_per_step, steps_timed, the sizes, threads and device.
    """
    if kind not in CELL_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CELL_KINDS)}; got {kind!r}")
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_recurrent(kind, input_size, hidden).to(dev)
        plain = torch_reference(net)  # same weights
        head = nn.Linear(hidden, input_size).to(dev)
    heads = {name: nn.Linear(hidden, input_size).to(dev) for name in ("plain", "instrumented", "loop")}
    for h in heads.values():
        h.load_state_dict(head.state_dict())
    x = torch.randn(T, batch, input_size, generator=gen).to(dev)
    y = torch.randn(T, batch, input_size, generator=gen).to(dev)
    x_probe = torch.randn(T, 1, input_size, generator=gen).to(dev)
    opt_plain = torch.optim.Adam([*plain.parameters(), *heads["plain"].parameters()], lr=1e-3)
    opt_inst = torch.optim.Adam([*net.parameters(), *heads["instrumented"].parameters()], lr=1e-3)
    # The loop trains a copy, so both instrumented paths start from the same weights.
    loop_net = make_recurrent(kind, input_size, hidden).to(dev)
    loop_net.load_state_dict(net.state_dict())
    opt_loop = torch.optim.Adam([*loop_net.parameters(), *heads["loop"].parameters()], lr=1e-3)

    def take_probe() -> None:  # as Trainer.probe: every array in one copy to the host
        trace = net.probe(x_probe)
        parts = [h[:, 0] for h in trace.hidden] + [v[:, 0] for g in trace.gates for v in g.values()]
        _ = torch.cat(parts, dim=1).to("cpu", torch.float32).numpy().copy()

    steps = {
        "plain": lambda: _trainer_step(plain, heads["plain"], opt_plain, x, y),
        "instrumented": lambda: _trainer_step(lambda v: net(v, trace=False), heads["instrumented"],
                                              opt_inst, x, y),
        "loop": lambda: _trainer_step(loop_net, heads["loop"], opt_loop, x, y),
        "probe": take_probe,
    }

    def timed(name: str) -> float:
        sync()
        start = time.perf_counter()
        steps[name]()
        sync()
        return time.perf_counter() - start

    for name in steps:  # warm-up
        timed(name)
        timed(name)
    times: dict[str, list[float]] = {name: [] for name in steps}
    since_probe, i = 0.0, 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or i < 3:
        # Interleaved (and in alternating order), so load on the machine hits both alike.
        for name in ("plain", "instrumented") if i % 2 == 0 else ("instrumented", "plain"):
            times[name].append(timed(name))
        # The probe clock runs on the instrumented run's own time, as if it ran alone.
        since_probe += times["instrumented"][-1]
        if since_probe >= 1.0 / probe_hz:
            times["probe"].append(timed("probe"))
            since_probe = 0.0
        if i % 4 == 0:
            times["loop"].append(timed("loop"))
        i += 1
    med = {name: statistics.median(v) if v else 0.0 for name, v in times.items()}
    probes_per_step = len(times["probe"]) / len(times["instrumented"])
    instrumented = med["instrumented"] + probes_per_step * med["probe"]
    return {
        "kind": kind, "hidden": hidden, "T": T, "batch": batch, "input_size": input_size,
        "probe_hz": probe_hz, "device": str(dev), "threads": torch.get_num_threads(),
        "plain_s_per_step": med["plain"],
        "instrumented_s_per_step": instrumented,
        "ratio": instrumented / med["plain"],
        "fused_ratio": med["instrumented"] / med["plain"],
        "loop_s_per_step": med["loop"],
        "loop_ratio": med["loop"] / med["plain"],
        "probe_s": med["probe"],
        "probes_per_step": probes_per_step,
        "steps_timed": len(times["plain"]),
    }


if __name__ == "__main__":
    kinds = sys.argv[1:] or ["lstm"]
    for k in kinds:
        print(json.dumps(bench_training(k), indent=1))
