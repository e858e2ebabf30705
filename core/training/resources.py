"""Memory estimates: refuse a configuration before allocating what the machine lacks."""

from __future__ import annotations

import os

from core.config import Experiment
from core.errors import ResourceError

SAFE_SHARE = 0.5          # of the memory available when the experiment is built
TRACE_HISTORY = 256       # probe traces the GUI keeps (ring buffer)
GATE_COUNT = {"rnn": 1, "lstm": 4, "gru": 3}


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux, else total physical)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def estimate_memory(exp: Experiment, input_size: int = 64) -> dict[str, int]:
    """Rough upper estimate in bytes of what training ``exp`` holds at once.

    weights: parameters, gradients and two optimizer moments, and the last good state's copy
        of parameters and moments (core.training.rollback), float32.
    activations: what BPTT keeps for backward over T steps (gates, states, inputs),
    doubled for the loop used by truncated or padded training.
    traces: the GUI's bounded history of probe traces.
    """
    G, H, L = GATE_COUNT[exp.cell], exp.hidden_size, exp.num_layers
    T = exp.seq_len + 20 if exp.task == "copy" else exp.seq_len
    params = L * G * H * (max(input_size, H) + H + 2) + H * input_size
    per_step = exp.batch_size * L * H * (G + 3)
    return {
        "weights": 4 * 7 * params,
        "activations": 4 * 2 * T * per_step,
        "traces": 4 * TRACE_HISTORY * T * L * H * (G + 2),
    }


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_resources(exp: Experiment, available: int | None = None) -> dict[str, int]:
    """Raise ResourceError naming the estimate when it exceeds a safe share of memory."""
    parts = estimate_memory(exp)
    total = sum(parts.values())
    limit = SAFE_SHARE * (available_memory() if available is None else available)
    if total > limit:
        detail = ", ".join(f"{k} {_gib(v)}" for k, v in parts.items())
        raise ResourceError(
            f"this configuration needs about {_gib(total)} ({detail}), more than the safe "
            f"{_gib(limit)} of this machine; reduce hidden_size ({exp.hidden_size}), "
            f"batch_size ({exp.batch_size}) or seq_len ({exp.seq_len})"
        )
    return parts
