"""Teacher forcing and scheduled sampling for the encoder-decoder (Bengio et al. 2015).

Trained teacher-forced, a decoder always sees the true previous token; decoding, it sees its
own. The mismatch is exposure bias: it has never learned to recover from its own mistakes,
so one wrong token can derail the rest. Scheduled sampling feeds the decoder, at each step
of each training sequence, the true previous token with probability ``p`` and its own
previous prediction otherwise, with ``p`` decaying over training:

    constant:         p_i = r
    linear:           p_i = 1 - (1 - r) * i / N
    inverse-sigmoid:  p_i = r + (1 - r) * k / (k + exp(i / k)),  k > 1 with k ln k = N / 2

where r is the experiment's ``teacher_forcing`` (the ratio it ends at), i the training step
(0 for the first update) and N the step budget (``steps``). The inverse sigmoid is the
paper's ``k / (k + exp(i / k))`` rescaled to end at r; its k puts the midpoint of the decay
at N / 2, so it starts at k / (k + 1) (0.99 for a budget of 1,000 steps) and is within a
percent of r at the end. Past the budget p stays at r.

The model's own token is its argmax (Bengio et al. sample from the model's distribution;
the argmax is what greedy decoding, the evaluation here, feeds back). The coin flips come
from a generator seeded by (seed, step), so a run is reproducible from its experiment and
resumes exactly from a saved session without any state of its own.
"""

from __future__ import annotations

import math

import torch

from core.config import Experiment

SALT = 0x7EAC4  # keeps the coin-flip seeds apart from the batch generator's


def teacher_forcing_ratio(exp: Experiment, step: int) -> float:
    """The probability of feeding the true previous token at 0-based training step ``step``."""
    r, n = exp.teacher_forcing, exp.steps
    if exp.tf_schedule == "constant" or r >= 1.0:
        return r
    progress = min(step / n, 1.0)
    if exp.tf_schedule == "linear":
        return 1.0 - (1.0 - r) * progress
    if exp.tf_schedule == "inverse-sigmoid":
        k = sigmoid_k(n)
        return r + (1.0 - r) * k / (k + math.exp(min(step, n) / k))
    raise ValueError(f"tf_schedule must be one of constant, linear, inverse-sigmoid; got {exp.tf_schedule!r}")


def sigmoid_k(budget: int) -> float:
    """k > 1 with k ln k = budget / 2: the inverse sigmoid's midpoint at half the budget."""
    target = budget / 2
    lo, hi = 1.0, max(2.0, target + 2.0)  # k ln k is increasing on k > 1, and > target at hi
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid * math.log(mid) < target else (lo, mid)
    return (lo + hi) / 2


def coin_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step``'s coin flips: a function of (seed, step) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + SALT) % 2**63)
