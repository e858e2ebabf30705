"""The Dynamics panel's record: which constant inputs x* a task offers, and PCA, trajectories
and fixed points (core.instruments.dynamics) assembled as a plain core.records.DynamicsRecord.

Shapes as in core.instruments.dynamics: S = state size, B sequences of T steps, I inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from core.instruments.dynamics import (
    PCA,
    FixedPoints,
    StepMap,
    fixed_points,
    pca,
    relax,
    sample_starts,
    spread,
)
from core.models.recurrent import one_direction
from core.records import DynamicsRecord

# ------------------------------------------------------------------------- inputs x*
ZERO = "zero"
MAX_SYMBOLS = 40  # more distinct input rows than this: the inputs are continuous, not symbols


def input_symbols(labels: tuple[str, ...], x: np.ndarray) -> dict[str, np.ndarray]:
    """The task's input symbols as seen in one sequence: label -> input vector [I], in order
    of first appearance; empty when the inputs are continuous (a label with two different
    vectors, or more than MAX_SYMBOLS of them). x: [T, I], labels: T strings."""
    x = np.asarray(x, np.float64)
    table: dict[str, np.ndarray] = {}
    for label, row in zip(labels, x, strict=False):
        if not label:  # padding
            continue
        seen = table.setdefault(label, row)
        if seen is not row and not np.array_equal(seen, row):
            return {}
        if len(table) > MAX_SYMBOLS:
            return {}
    return table


def input_choices(symbols: dict[str, np.ndarray]) -> tuple[str, ...]:
    """What x* can be: "zero", then each symbol whose input is not all zeros."""
    return (ZERO, *[name for name, v in symbols.items() if np.any(v)])


def parse_input(text: str, symbols: dict[str, np.ndarray], size: int) -> tuple[str, np.ndarray]:
    """(name, x* [size]) for "zero", a symbol of the task, or ``size`` numbers separated by
    commas; ValueError naming the value and what is allowed otherwise."""
    text = str(text).strip()
    if text == ZERO:
        return ZERO, np.zeros(size)
    if text in symbols:
        vector = np.asarray(symbols[text], np.float64)
        return (ZERO if not np.any(vector) else text), vector
    try:
        values = np.array([float(v) for v in text.split(",")], np.float64)
    except ValueError:
        values = None
    if values is not None and len(values) == size and np.isfinite(values).all():
        return text, values
    named = ", ".join(repr(s) for s in input_choices(symbols)[1:])
    allowed = f"zero, {named} or " if named else "zero or "
    raise ValueError(f"input {text!r} is not an input of this task; give {allowed}{size} number"
                     f"{'s' if size > 1 else ''} separated by commas")


# ------------------------------------------------------------------------------ the record
TRAJECTORIES = 8  # sequences drawn (the probe and 7 more); all of them go into the PCA
COMPONENTS = 3  # kept for drawing
EXPLAINED = 10  # explained-variance fractions reported


@dataclass(frozen=True)
class Settings:
    """How hard to look: ``starts`` initial states (sampled on the trajectories, moved by
    ``noise`` times the cloud's spread; the first ``relax`` of them then run ``relax_steps``
    steps under x*), fixed when q <= ``tol``, slow points kept up to q <= ``slow`` times the
    spread squared, one point per ``distance`` times the spread."""

    starts: int = 128
    noise: float = 0.05
    relax: float = 0.5
    relax_steps: int = 50
    tol: float = 1e-12
    slow: float = 1e-6
    distance: float = 0.01
    max_iter: int = 30
    seed: int = 0


def analyse(net, states: Tensor, valid: Tensor | None, x: np.ndarray,
            settings: Settings = Settings()) -> tuple[PCA, FixedPoints]:
    """PCA of the states [T, B, S] (where ``valid`` [T, B] says so) and the fixed and slow
    points of ``net`` under the constant input x [I], searched from starts on them."""
    cloud = states.reshape(-1, states.shape[-1]) if valid is None else states[valid]
    cloud = cloud.detach().to("cpu", torch.float64)
    cloud = cloud[torch.isfinite(cloud).all(-1)]  # an exploding network's inf states say nothing here
    if len(cloud) == 0:
        cloud = cloud.new_zeros(1, states.shape[-1])
    components = pca(cloud.numpy(), max(EXPLAINED, COMPONENTS))
    scale = spread(cloud.numpy()) or 1.0
    generator = torch.Generator().manual_seed(settings.seed)
    starts = sample_starts(cloud, settings.starts, settings.noise * scale, generator)
    step = StepMap(net, torch.as_tensor(x))
    relaxed = int(round(settings.relax * len(starts)))
    if relaxed:
        starts[:relaxed] = relax(step, starts[:relaxed], settings.relax_steps)
    found = fixed_points(step, starts, tol=settings.tol,
                         slow=settings.slow * scale ** 2, distance=settings.distance * scale,
                         max_iter=settings.max_iter)
    return components, found


def dynamics_record(net, states: Tensor, valid: Tensor | None, inputs: Tensor, labels: tuple[str, ...],
                    step: int, input_name: str, symbols: dict[str, np.ndarray],
                    settings: Settings = Settings()) -> DynamicsRecord:
    """Trajectories, PCA and fixed points as a plain record (core.records.DynamicsRecord).

    states: [T, B, S] (sequence 0 the probe, whose ``labels`` name its steps); valid: [T, B]
    or None; inputs: [T, B, I]; input_name: "zero", a symbol or numbers (``parse_input``).
    """
    one_direction(net, "fixed points")
    start = time.perf_counter()
    name, x = parse_input(input_name, symbols, net.input_size)
    components, found = analyse(net, states, valid, x, settings)
    T, B = states.shape[:2]
    shown = min(B, TRAJECTORIES)
    shown_states = states[:, :shown].detach().to("cpu", torch.float64).numpy()
    finite = np.isfinite(shown_states).all(-1)  # [T, B']
    traj = components.project(np.where(finite[..., None], shown_states, components.mean))
    choices = input_choices(symbols)
    raw = inputs[:, :shown].detach().to("cpu", torch.float64).numpy()  # [T, B', I]
    codes = np.full((T, shown), -1, dtype=np.int64)
    for i, choice in enumerate(choices):
        vector = np.zeros(raw.shape[-1]) if choice == ZERO else symbols[choice]
        codes[(raw == vector).all(-1)] = i
    if not symbols:
        codes[:] = -1
    ok = np.ones((T, B), bool) if valid is None else valid.cpu().numpy().copy()
    ok[:, :shown] &= finite
    k = min(COMPONENTS, len(components.explained))
    return DynamicsRecord(
        step=step, kind=net.kind, hidden_size=net.hidden_size, num_layers=net.num_layers,
        input_name=name, input=np.asarray(x, np.float64), inputs=choices,
        explained=components.explained.copy(), mean=components.mean,
        components=components.components[:k].copy(),
        trajectories=traj[..., :k].transpose(1, 0, 2).copy(), valid=ok[:, :shown].T.copy(),
        symbols=codes.T.copy(), input_values=raw[..., 0].T.copy(), labels=tuple(labels),
        points=found.states, projected=components.project(found.states)[:, :k], q=found.q,
        fixed=found.fixed, stable=found.stable, marginal=found.marginal, eigenvalues=found.eigenvalues,
        tolerance=settings.tol, starts=settings.starts, elapsed=time.perf_counter() - start,
    )
