"""What batching buys beam search: one step for all live hypotheses against one per hypothesis.

Both searches find the same hypotheses on a random GRU language model; the ratio of their
best times is the speed-up (``python main.py bench --only beam``).
"""

from __future__ import annotations

import math
import time

import torch

from core.decoding.search import StepFn, beam_search, beam_search_loop
from core.decoding.tree import Hypothesis


def _random_gru_step_fn(vocab_size: int, hidden_size: int, eos: int,
                        seed: int) -> tuple[StepFn, torch.Tensor]:
    """A random GRU language model as a step_fn (state ``h: [K, H]``) and its state ``[1, H]``.

    eos is made very unlikely, so every hypothesis runs to max_len."""
    with torch.random.fork_rng():  # leave the caller's global RNG as it was
        torch.manual_seed(seed)
        embed = torch.nn.Embedding(vocab_size, hidden_size)
        cell = torch.nn.GRUCell(hidden_size, hidden_size)
        head = torch.nn.Linear(hidden_size, vocab_size)
        with torch.no_grad():
            head.bias[eos] -= 30.0
        h0 = torch.randn(1, hidden_size)

    def step_fn(tokens: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = cell(embed(tokens), h)
        return torch.log_softmax(head(h), dim=-1), h

    return step_fn, h0


def bench_beam(vocab_size: int = 40, hidden_size: int = 64, beam_width: int = 8,
               max_len: int = 30, repeats: int = 5, seed: int = 0,
               threads: int | None = 1) -> dict[str, float | bool]:
    """Time batched :func:`beam_search` against :func:`beam_search_loop` on a random GRU.

    Returns ``{"batched_s", "loop_s", "speedup", "same_hypotheses"}``: best wall time of
    ``repeats`` interleaved runs (seconds, ``time.perf_counter``), their ratio, and whether both
    found the same token sequences with scores within 1e-5 (float noise between batch sizes
    inside the GRU). ``threads`` sets torch's intra-op threads while timing (restored after;
    None keeps them): these ops are tiny, and on a busy machine the thread barriers of a batched
    op cost far more than the op itself."""
    if repeats < 1 or (threads is not None and threads < 1):
        raise ValueError(f"repeats and threads must be >= 1; got {repeats}, {threads}")
    bos, eos = 1, 0
    step_fn, h0 = _random_gru_step_fn(vocab_size, hidden_size, eos, seed)

    def batched() -> list[Hypothesis]:
        return beam_search(step_fn, h0, bos, eos, beam_width, max_len).hypotheses

    def loop() -> list[Hypothesis]:
        return beam_search_loop(step_fn, h0, bos, eos, beam_width, max_len).hypotheses

    times = {batched: math.inf, loop: math.inf}
    previous_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads or previous_threads)
        for _ in range(repeats):  # interleaved, so both see the same background load
            for run in times:
                start = time.perf_counter()
                run()
                times[run] = min(times[run], time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
    a, b = batched(), loop()
    same = [h.tokens for h in a] == [h.tokens for h in b] and all(
        abs(x.score - y.score) <= 1e-5 for x, y in zip(a, b, strict=True))
    return {"batched_s": times[batched], "loop_s": times[loop],
            "speedup": times[loop] / times[batched], "same_hypotheses": same}
