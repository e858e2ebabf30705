"""Memory bench: a long run with live instrumentation stays flat in memory."""

from __future__ import annotations

import resource
import time

from core.config import Experiment
from core.training.history import RingBuffer
from core.training.trainer import Trainer


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; falls back to the peak on other systems)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bench_memory(steps: int = 6000, capacity: int = 256) -> dict:
    """Train ``steps`` small steps, attaching a probe trace and gradients every 4th step
    into a ring buffer of ``capacity`` (as the GUI does); compare memory after the buffer
    has filled (a quarter of the way) with memory at the end."""
    exp = Experiment(task="adding", cell="lstm", hidden_size=32, seq_len=50, batch_size=16)
    trainer = Trainer(exp)
    traces = RingBuffer(capacity)
    start = time.perf_counter()
    warm = None
    for i in range(steps):
        record = trainer.step(probe=i % 4 == 0, gradients=i % 4 == 0)
        if record.probe is not None:
            traces.append((record.probe, record.gradients))
        if i == steps // 4:
            warm = _rss_bytes()
    end = _rss_bytes()
    return {
        "growth_ratio": end / warm,
        "rss_warm_mb": warm / 2**20,
        "rss_end_mb": end / 2**20,
        "steps": steps,
        "history_kb": sum(c.nbytes for c in trainer.history.to_columns().values()) / 1024,
        "seconds": time.perf_counter() - start,
    }
