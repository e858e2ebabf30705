"""Gradient clipping, measured: per-parameter norms and the total before and after."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


def clip_and_measure(parameters_named: Iterable[tuple[str, Tensor]], max_norm: float | None
                     ) -> tuple[float, float, bool, dict[str, float]]:
    """Measure gradient norms and clip the total L2 norm to ``max_norm`` in place.

    Args:
        parameters_named: (name, parameter) pairs, e.g. ``model.named_parameters()``;
            parameters without a gradient are skipped.
        max_norm: clip threshold; None, 0 or less (or nan) measures without clipping.
    Returns:
        (total norm before, total norm after, whether clipping changed the gradient,
        {name: gradient norm before clipping}). When the total is not finite (a nan or
        inf gradient) nothing is scaled and both totals are that non-finite value: the
        caller must skip the update.
    """
    named = [(n, p.grad) for n, p in parameters_named if p.grad is not None]
    if not named:
        return 0.0, 0.0, False, {}
    norms = torch.stack(torch._foreach_norm([g.detach() for _, g in named], 2, dtype=torch.float64))
    per_param = {n: float(v) for (n, _), v in zip(named, norms.tolist(), strict=True)}
    before = float(torch.linalg.vector_norm(norms))
    if not math.isfinite(before) or max_norm is None or not max_norm > 0 or before <= max_norm:
        return before, before, False, per_param
    grads = [g for _, g in named]
    torch._foreach_mul_(grads, max_norm / before)
    after = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float64))))
    return before, after, True, per_param
