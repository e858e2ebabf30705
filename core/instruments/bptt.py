"""Backpropagation through time, made visible: gradients, Jacobians and their rates.

Everything here runs on the model the trainer trains (``core.models.recurrent`` in loop mode,
whose per-step hidden and cell-state tensors are real graph nodes) and never touches
``.grad`` of the parameters, so it can be called between two optimiser steps.

* ``through_time``: ||dL/dh_t|| (and ||dL/dc_t|| for lstm) per layer, the total derivative
  through the whole recurrence (or the truncated one, as chunked training computes it).
* ``jacobian_norms``: ||dh_T/dh_t||_2 along the top layer (the product of per-step
  Jacobians, core.instruments.products) and the Jacobian-product rate.
* ``gradient_record``: all of it for the gradients panel, with the Pascanu bound and the
  mean-field estimate.
(The spectrum of W_hh is core.instruments.spectrum; clipping is core.training.clipping.)

Conventions: t is 0-based here (the docs' t = 1..T); a "factor" or "rate" is a per-step
backward rate, ||dL/dh_{t-1}|| ~ factor * ||dL/dh_t||, so < 1 vanishes and > 1 explodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from core.instruments.jacobians import step_coefficients, top_layer_inputs
from core.instruments.products import jacobian_products, spectral_norms, transient_steps
from core.instruments.spectrum import GAMMA, spectral_radius
from core.models.recurrent import State, Trace, mask_from, one_direction
from core.records import GradientRecord

DEGENERATE = 1e-30  # norms this far below the largest (or underflowed) are not fitted


# ----------------------------------------------------------------- gradients through time
@dataclass(frozen=True)
class ThroughTime:
    """hidden: [L, T] ||dL/dh_t||; cell: [L, T] ||dL/dc_t|| (lstm) or None; trace: the
    loop-mode trace of the forward pass."""

    hidden: np.ndarray
    cell: np.ndarray | None
    trace: Trace


def through_time(net, x: Tensor, loss_fn: Callable[[Tensor, State], Tensor],
                 truncate: int | None = None, lengths: Tensor | None = None,
                 *, mask: Tensor | None = None) -> ThroughTime:
    """||dL/dh_t|| and, for lstm, ||dL/dc_t|| for every layer and step (see grad_through_time).

    Each is autograd's total derivative with respect to that step's graph node: dL/dc_t
    collects every path from c_t to the loss, through c_{t+1} = f c_t + i g (the constant
    error carousel) and through h_t = o tanh(c_t).
    """
    one_direction(net, "gradients through time")
    kwargs = {k: v for k, v in (("lengths", lengths), ("mask", mask)) if v is not None}
    if x.is_floating_point():  # a graph to differentiate even when parameters are frozen
        x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out, state, trace = net(x, detach_every=truncate or None, **kwargs)
        loss = loss_fn(out, state)
        if not (isinstance(loss, Tensor) and loss.dim() == 0):
            raise ValueError("loss_fn(out, state) must return a scalar tensor")
        if not loss.requires_grad:
            raise ValueError("the loss does not depend on the recurrent outputs (no autograd graph)")
        nodes = [h for layer in trace.steps for h in layer]
        nodes += [c for layer in trace.cell_steps for c in layer]
        # autograd.grad (not backward): parameters' .grad stay untouched.
        grads = torch.autograd.grad(loss, nodes, allow_unused=True, materialize_grads=True)
    # One stack and one copy to the host for all of them.
    norms = torch.stack([torch.linalg.vector_norm(g.detach().double()) for g in grads]).cpu().numpy()
    L, T = len(trace.steps), x.shape[0]
    hidden = norms[:L * T].reshape(L, T)
    cell = norms[L * T:].reshape(L, T) if trace.cell_steps else None
    return ThroughTime(hidden, cell, trace)


def grad_through_time(net, x: Tensor, loss_fn: Callable[[Tensor, State], Tensor],
                      truncate: int | None = None, lengths: Tensor | None = None,
                      *, mask: Tensor | None = None) -> np.ndarray:
    """||dL/dh_t|| for every layer and step: the total derivative through the recurrence.

    Args:
        net: a stack from ``core.recurrent.make_recurrent``.
        x: [T, B, I] inputs; lengths [B] or mask [T, B] as for ``net``.
        loss_fn: ``loss_fn(out [T, B, H], state) -> scalar``.
        truncate: truncated BPTT chunk length k (None or 0: full BPTT). The state is
            detached every k steps, as chunked training does, so for a loss on the last
            step the norms are exactly zero before the last chunk.
    Returns:
        [L, T] float64, Frobenius norm over batch and units of dL/dh_t (h_t after step t).
    """
    return through_time(net, x, loss_fn, truncate, lengths, mask=mask).hidden


def fit_rate(norms: np.ndarray, skip_last: int | None = None) -> float:
    """Geometric per-step factor of ``norms`` [T] going back in time (nan if unfittable).

    Least squares of log norm on t over the contiguous run of usable values (finite, not
    zero, not underflowed) that ends just before the last ``skip_last`` steps (default
    min(5, T // 4)), which sit too close to the loss to follow the asymptotic rate.
    """
    norms = np.asarray(norms, dtype=np.float64)
    T = len(norms)
    skip = transient_steps(T) if skip_last is None else skip_last
    head = norms[:max(T - skip, 0)]
    finite = head[np.isfinite(head)]
    if len(finite) == 0 or finite.max() <= 0:
        return float("nan")
    usable = np.isfinite(head) & (head > max(finite.max() * DEGENERATE, 1e-36))
    end = len(head)
    while end > 0 and not usable[end - 1]:
        end -= 1
    start = end
    while start > 0 and usable[start - 1]:
        start -= 1
    if end - start < 2:
        return float("nan")
    t = np.arange(start, end, dtype=np.float64)
    slope = np.polyfit(t, np.log(head[start:end]), 1)[0]
    return float(np.exp(-slope))


# ------------------------------------------------------------------------ Jacobians
@dataclass(frozen=True)
class JacobianNorms:
    """Jacobian norms along one layer's recurrence for one batch element.

    norms:      [T] ||dh_{T-1}/dh_t||_2, spectral norm (largest singular value); 1 at T-1.
                For lstm the cell state c_t is held fixed, as in autograd's dL/dh_t.
    step_norms: [T] ||dh_t/dh_{t-1}||_2 of single steps (t = 0: w.r.t. the initial state;
                nan where not computed).
    factor:     geometric rate fitted to ``norms`` (``fit_rate``).
    rate:       the Jacobian-product rate (finite-time Lyapunov exponent as a factor).
    exact_steps: how many norms were computed exactly (T unless the block sweep ran).
    """

    norms: np.ndarray
    step_norms: np.ndarray
    factor: float
    rate: float = float("nan")
    exact_steps: int = 0


def _jacobian_from_trace(net, x: Tensor, trace: Trace, m: Tensor | None, b: int,
                         per_step: bool = True, exact: bool | None = None) -> JacobianNorms:
    """m: [T, B] bool valid steps or None. The exact path works on the CPU in float64; the
    block sweep on the model's device in its precision."""
    inputs = top_layer_inputs(net, x, trace, m)
    valid = m[:, b] if m is not None else None
    dtype = next(net.parameters()).dtype
    precision = torch.float64 if dtype == torch.float64 else torch.float32
    sweep = exact is False or (exact is None and net.hidden_size > _exact_max_h())
    # float64 throughout: vanishing products are small differences of large terms, and in
    # float32 their norms came out up to 1% off at T = 100 (a GPU's float64 is fast enough).
    device = x.device if sweep else None
    coef = step_coefficients(net, inputs, trace, b, valid, device=device, dtype=torch.float64)
    result = jacobian_products(coef, precision, exact=not sweep)
    step_norms = spectral_norms(coef.dense().hh, precision) if per_step else np.full(coef.T, np.nan)
    return JacobianNorms(result.norms, step_norms, fit_rate(result.norms), result.rate,
                         result.exact_steps)


def _exact_max_h() -> int:
    from core.instruments import products  # read at call time: tests change it

    return products.EXACT_MAX_H


def jacobian_norms(net, x: Tensor, lengths: Tensor | None = None, *, mask: Tensor | None = None,
                   batch_index: int = 0, exact: bool | None = None,
                   per_step: bool = True) -> JacobianNorms:
    """||dh_T/dh_t||_2 of the top layer for one batch element of x [T, B, I].

    The top layer's h_t reaches h_T only through its own recurrence, so this is the exact
    total derivative for the top layer. Computed from a no-grad probe. exact: force the
    exact path (True) or the block sweep (False); by default exact up to H = EXACT_MAX_H.
    """
    one_direction(net, "the Jacobian product")
    T, B = x.shape[0], x.shape[1]
    if not 0 <= batch_index < B:
        raise ValueError(f"batch_index must lie in 0..{B - 1}; got {batch_index}")
    trace = net.probe(x, lengths=lengths, mask=mask)
    m = mask_from(lengths, mask, T, B, x.device)
    return _jacobian_from_trace(net, x, trace, m.squeeze(-1) if m is not None else None, batch_index,
                                per_step, exact)


def lens(net, x: Tensor, loss_fn: Callable[[Tensor, State], Tensor], truncate: int | None = None,
         lengths: Tensor | None = None, *, mask: Tensor | None = None,
         batch_index: int = 0) -> tuple[ThroughTime, JacobianNorms]:
    """The gradients lens in one call: ``through_time`` and, from the same forward pass, the
    top layer's Jacobian-product norms and rate for one batch element (what
    ``gradient_record`` computes, and what ``python main.py bench`` times)."""
    grads = through_time(net, x, loss_fn, truncate, lengths, mask=mask)
    T, B = x.shape[0], x.shape[1]
    m = mask_from(lengths, mask, T, B, x.device)
    jac = _jacobian_from_trace(net, x, grads.trace, m.squeeze(-1) if m is not None else None,
                               batch_index, per_step=False)
    return grads, jac


# ------------------------------------------------------------------ rates from the weights
def pascanu_bound(net) -> float | None:
    """sigma_max(W_hh) * gamma of the top layer (rnn): no step's Jacobian diag(phi') W_hh
    has a norm above it, so neither has any per-step factor. None for gated cells."""
    if net.kind != "rnn":
        return None
    w = net.layer_weights(net.num_layers - 1)[1].detach().double().cpu()
    if not bool(torch.isfinite(w).all()):
        return float("nan")
    return float(torch.linalg.matrix_norm(w, ord=2)) * GAMMA[net.nonlinearity]


def mean_field_estimate(net, trace: Trace, m: Tensor | None = None) -> float | None:
    """rho(W_hh) * rms phi'(a) of the top layer (rnn): the per-step factor a mean-field
    argument gives for random weights (phi' roughly uniform across units, W_hh normal).
    Once training has shaped W_hh it is neither a bound nor a prediction. None for gated
    cells and when the weights are not finite."""
    if net.kind != "rnn":
        return None
    h = trace.hidden[-1].detach().double()
    d2 = (1 - h**2) ** 2 if net.nonlinearity == "tanh" else (h > 0).double()
    if m is not None:
        d2 = d2[m.expand_as(d2)]
    w = net.layer_weights(net.num_layers - 1)[1]
    if not bool(torch.isfinite(w).all()):
        return None
    return float(spectral_radius(w) * torch.sqrt(d2.mean()))


# ------------------------------------------------------------------ the panel's record
def gradient_record(model, batch, step: int, truncate: int = 0) -> GradientRecord:
    """Gradients through time on the probe batch, for the gradient panel.

    ``model.recurrent`` is the stack, ``model.loss_from_outputs(out, state, batch)[0]`` the
    loss; padding is passed as ``model.recurrent_kwargs(batch)`` (the trainer's choice).
    The Jacobian is that of the untruncated dynamics, for batch element 0. Weights that
    training blew up (not finite, or an eigensolver that fails on them) give nan Jacobian
    quantities and a ``note``, never an exception.
    """
    net = model.recurrent
    if hasattr(model, "recurrent_kwargs"):
        kwargs = model.recurrent_kwargs(batch)
    else:
        kwargs = {k: getattr(batch, k) for k in ("lengths", "mask") if getattr(batch, k, None) is not None}
    x = model.inputs(batch) if hasattr(model, "inputs") else batch.x  # embedded, if it embeds

    def loss_fn(out, st):
        return model.loss_from_outputs(out, st, batch)[0]

    grads = through_time(net, x, loss_fn, truncate, **kwargs)
    full = None
    if truncate and truncate < x.shape[0]:
        full = tuple(row.copy() for row in through_time(net, x, loss_fn, None, **kwargs).hidden)
    T, B = x.shape[0], x.shape[1]
    m = mask_from(kwargs.get("lengths"), kwargs.get("mask"), T, B, x.device)
    m2 = m.squeeze(-1) if m is not None else None
    every_step = getattr(model, "readout_kind", "all") != "last"
    note, jac = None, None
    if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
        note = "not available: the weights are not finite"
    else:
        try:
            jac = _jacobian_from_trace(net, x.detach(), grads.trace, m2, 0, per_step=False)
        except torch.linalg.LinAlgError as error:  # spectral_norms falls back; this is the rest
            note = f"not available: {str(error).splitlines()[0]}"
    if jac is not None and not np.isfinite(jac.norms).any():
        note = "not available: the Jacobian products are not finite"
    return GradientRecord(
        step=step,
        norms=tuple(row.copy() for row in grads.hidden),
        jacobian=jac.norms if jac is not None else np.full(T, np.nan),
        factor=float("nan") if every_step else fit_rate(grads.hidden[-1]),
        mean_field=mean_field_estimate(net, grads.trace, m),
        truncate=truncate or None,
        cell_norms=tuple(row.copy() for row in grads.cell) if grads.cell is not None else None,
        full_norms=full,
        pascanu_bound=pascanu_bound(net),
        lyapunov_rate=jac.rate if jac is not None and math.isfinite(jac.rate) else float("nan"),
        loss_every_step=every_step,
        note=note,
    )
