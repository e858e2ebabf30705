"""Process-wide torch settings for the headless commands."""

from __future__ import annotations

import os

THREADS_ENV = "RNN_EXPLORER_THREADS"


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else $RNN_EXPLORER_THREADS, else 1.

    One thread is the default because the models here are small: an op is too short to
    share across cores, and on a busy 2-core machine two OpenMP threads waiting on each
    other made training 10-15x slower (measured: `decode --preset beam-vs-greedy` took
    215 s with torch's default of 2 threads, 15 s with 1, on the same loaded machine).
    Returns the number set.
    """
    if threads is None:
        text = os.environ.get(THREADS_ENV, "1")
        try:
            threads = int(text)
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a whole number >= 1; got {text!r}") from None
    if threads < 1:
        raise ValueError(f"--threads must be a whole number >= 1; got {threads}")
    import torch

    torch.set_num_threads(threads)
    return threads
