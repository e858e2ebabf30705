"""Cheap numpy reductions the panels display, kept out of the widgets so they can be tested.

Nothing here touches Qt or torch; inputs are the arrays of ``core.records``.
"""

from __future__ import annotations

import math

import numpy as np

SATURATION_LOW = 0.1
SATURATION_HIGH = 0.9


def saturation(gate: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the fraction of time steps a [0, 1] gate is nearly shut or nearly open.

    gate: [T, H] gate activations; valid: [T] bool (padded steps are left out).
    Returns (closed, open): two [H] arrays, fractions of steps below 0.1 and above 0.9.
    """
    values = gate if valid is None or valid.all() else gate[valid]
    if values.shape[0] == 0:
        zeros = np.zeros(gate.shape[1])
        return zeros, zeros.copy()
    return (values < SATURATION_LOW).mean(axis=0), (values > SATURATION_HIGH).mean(axis=0)


def most_active_unit(hidden: np.ndarray, valid: np.ndarray | None = None) -> int:
    """The unit whose state varies most over the (unpadded) time steps of a [T, H] array."""
    values = hidden if valid is None or valid.all() else hidden[valid]
    if values.size == 0:
        return 0
    return int(np.argmax(values.var(axis=0)))


def false_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges where a boolean [T] mask is False (e.g. padded steps)."""
    flags = np.concatenate(([False], ~np.asarray(mask, dtype=bool), [False]))
    edges = np.flatnonzero(np.diff(flags.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def chunk_spans(T: int, chunk: int | None) -> list[tuple[int, int]]:
    """Every other truncated-BPTT chunk as [start, stop) ranges (the ones to shade).

    With chunk k the state is detached every k steps, so gradients stop at the boundaries
    k, 2k, ... Shading alternate chunks makes those boundaries visible.
    """
    if not chunk or chunk >= T:
        return []
    return [(s, min(s + chunk, T)) for s in range(chunk, T, 2 * chunk)]


def geometric_line(end_value: float, factor: float | None, T: int) -> np.ndarray | None:
    """[T] values end_value * factor**(T-1-t): a per-step factor projected back from t=T-1.

    This is how a constant per-step gain would shape ||dL/dh_t||; None when undefined.
    """
    if factor is None or not (math.isfinite(factor) and factor > 0) or not end_value > 0:
        return None
    with np.errstate(over="ignore", under="ignore"):
        exponents = np.arange(T - 1, -1, -1, dtype=np.float64)
        line = end_value * np.power(float(factor), exponents)
    line[~np.isfinite(line)] = np.nan
    line[line <= 0] = np.nan
    return line


def positive_for_log(values: np.ndarray) -> np.ndarray:
    """A copy with non-positive and non-finite entries set to nan (a log axis cannot show them)."""
    out = np.array(values, dtype=np.float64, copy=True)
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def log_levels(log_values: np.ndarray, span: float = 12.0) -> tuple[float, float]:
    """Colour levels for a log10 image: the finite max and at most ``span`` decades below it."""
    finite = log_values[np.isfinite(log_values)]
    if finite.size == 0:
        return (-1.0, 0.0)
    hi = float(finite.max())
    lo = max(float(finite.min()), hi - span)
    return (lo, hi) if hi > lo else (hi - 1.0, hi)


def safe_log10(values: np.ndarray) -> np.ndarray:
    """log10 with zeros and non-finite entries turned into nan (not -inf warnings)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(np.asarray(values, dtype=np.float64))
    out[~np.isfinite(out)] = np.nan
    return out


def tick_stride(count: int, pixels: float, label_chars: int, char_pixels: float = 8.0) -> int:
    """How many time steps apart labels must be so ``count`` of them fit in ``pixels``."""
    if count <= 0 or pixels <= 0:
        return 1
    per_label = max(label_chars, 2) * char_pixels + 10.0
    fit = max(int(pixels // per_label), 1)
    raw = math.ceil(count / fit)
    for nice in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if nice >= raw:
            return nice
    return raw


def row_heights(total: float, minimums: list[float], weights: list[float]) -> list[float] | None:
    """Heights for stacked rows sharing ``total`` pixels in proportion to ``weights``, each
    at least its minimum (a row held at its minimum takes it from the others' shares);
    None when the minimums alone do not fit."""
    if sum(minimums) > total + 1e-6:
        return None
    fixed: dict[int, float] = {}
    while True:
        free = total - sum(fixed.values())
        share = sum(w for i, w in enumerate(weights) if i not in fixed)
        heights = [fixed.get(i, free * w / share) for i, w in enumerate(weights)]
        short = [i for i, h in enumerate(heights) if i not in fixed and h < minimums[i]]
        if not short:
            return heights
        for i in short:
            fixed[i] = minimums[i]
