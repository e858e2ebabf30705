"""Backpropagation through time, made visible: gradients, Jacobians and spectra.

Everything here runs on the model the trainer trains (``core.models.recurrent`` in loop mode,
whose per-step hidden tensors are real graph nodes) and never touches ``.grad`` of the
parameters, so it can be called between two optimiser steps.

* ``grad_through_time``: ||dL/dh_t|| per layer, the total derivative through the whole
  recurrence (or the truncated one, as chunked training computes it).
* ``jacobian_norms``: ||dh_T/dh_t||_2 along the top layer, the product of per-step
  Jacobians accumulated backwards, and its geometric rate.
(The spectrum of W_hh is core.instruments.spectrum; clipping is core.training.clipping.)

Conventions: t is 0-based here (the docs' t = 1..T); a "factor" is a per-step backward
rate, ||dL/dh_{t-1}|| ~ factor * ||dL/dh_t||, so factor < 1 vanishes and > 1 explodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from core.instruments.jacobians import (
    product_norms,
    spectral_norms,
    step_jacobians,
    top_layer_inputs,
)
from core.instruments.spectrum import spectral_radius
from core.models.recurrent import State, Trace, mask_from
from core.records import GradientRecord

DEGENERATE = 1e-30  # norms this far below the largest (or underflowed) are not fitted


# ----------------------------------------------------------------- gradients through time
def _through_time(net, x: Tensor, loss_fn: Callable[[Tensor, State], Tensor],
                  truncate: int | None, kwargs: dict) -> tuple[np.ndarray, Trace]:
    """(norms [L, T] float64, loop-mode trace) for ``loss_fn`` on ``net(x)``."""
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
        # autograd.grad (not backward): parameters' .grad stay untouched.
        grads = torch.autograd.grad(loss, nodes, allow_unused=True, materialize_grads=True)
    norms = torch.stack([torch.linalg.vector_norm(g.detach().double()) for g in grads])
    return norms.view(len(trace.steps), -1).cpu().numpy(), trace


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
    kwargs = {k: v for k, v in (("lengths", lengths), ("mask", mask)) if v is not None}
    return _through_time(net, x, loss_fn, truncate, kwargs)[0]


def fit_rate(norms: np.ndarray, skip_last: int | None = None) -> float:
    """Geometric per-step factor of ``norms`` [T] going back in time (nan if unfittable).

    Least squares of log norm on t over the contiguous run of usable values (finite, not
    zero, not underflowed) that ends just before the last ``skip_last`` steps (default
    min(5, T // 4)), which sit too close to the loss to follow the asymptotic rate.
    """
    norms = np.asarray(norms, dtype=np.float64)
    T = len(norms)
    skip = min(5, T // 4) if skip_last is None else skip_last
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
    """

    norms: np.ndarray
    step_norms: np.ndarray
    factor: float


def _jacobian_from_trace(net, x: Tensor, trace: Trace, m: Tensor | None, b: int,
                         per_step: bool = True) -> JacobianNorms:
    J = step_jacobians(net, top_layer_inputs(net, x, trace, m), trace, b)
    if m is not None:  # a padded step copies the state: its Jacobian is the identity
        J = J.hold(~m[:, b].cpu())
    precision = torch.float64 if next(net.parameters()).dtype == torch.float64 else torch.float32
    step_norms = spectral_norms(J.hh, precision) if per_step else np.full(J.hh.shape[0], np.nan)
    norms = product_norms(J, precision)
    return JacobianNorms(norms, step_norms, fit_rate(norms))


def jacobian_norms(net, x: Tensor, lengths: Tensor | None = None, *, mask: Tensor | None = None,
                   batch_index: int = 0) -> JacobianNorms:
    """||dh_T/dh_t||_2 of the top layer for one batch element of x [T, B, I].

    The top layer's h_t reaches h_T only through its own recurrence, so this is the exact
    total derivative for the top layer. Computed from a no-grad probe; products in float64,
    the final singular values in the model's precision.
    """
    T, B = x.shape[0], x.shape[1]
    if not 0 <= batch_index < B:
        raise ValueError(f"batch_index must lie in 0..{B - 1}; got {batch_index}")
    trace = net.probe(x, lengths=lengths, mask=mask)
    m = mask_from(lengths, mask, T, B, x.device)
    return _jacobian_from_trace(net, x, trace, m.squeeze(-1) if m is not None else None, batch_index)


def predicted_factor(net, trace: Trace, m: Tensor | None = None) -> float | None:
    """Per-step factor predicted from the spectrum: rho(W_hh) * rms f'(a) (top layer).

    Mean-field estimate for a tanh RNN: with f' roughly uniform across units, the
    backward product diag(f') W_hh shrinks a vector by rho(W_hh) times the root mean square
    of f' per step (exact for normal W_hh and constant f'). None for relu and gated cells.
    """
    if net.kind != "rnn" or net.nonlinearity != "tanh":
        return None
    h = trace.hidden[-1].detach().double()
    d2 = (1 - h**2) ** 2
    if m is not None:
        d2 = d2[m.expand_as(d2)]
    rho = spectral_radius(net.layer_weights(net.num_layers - 1)[1])
    return float(rho * torch.sqrt(d2.mean()))


def gradient_record(model, batch, step: int, truncate: int = 0) -> GradientRecord:
    """Gradients through time on the probe batch, for the gradient panel.

    ``model.recurrent`` is the stack, ``model.loss_from_outputs(out, state, batch)[0]`` the
    loss; padding is passed as ``model.recurrent_kwargs(batch)`` (the trainer's choice).
    The Jacobian is that of the untruncated dynamics, for batch element 0.
    """
    net = model.recurrent
    if hasattr(model, "recurrent_kwargs"):
        kwargs = model.recurrent_kwargs(batch)
    else:
        kwargs = {k: getattr(batch, k) for k in ("lengths", "mask") if getattr(batch, k, None) is not None}
    x = model.inputs(batch) if hasattr(model, "inputs") else batch.x  # embedded, if it embeds
    norms, trace = _through_time(net, x, lambda out, st: model.loss_from_outputs(out, st, batch)[0],
                                 truncate, kwargs)
    T, B = x.shape[0], x.shape[1]
    m = mask_from(kwargs.get("lengths"), kwargs.get("mask"), T, B, x.device)
    jac = _jacobian_from_trace(net, x.detach(), trace, m.squeeze(-1) if m is not None else None, 0,
                               per_step=False)
    return GradientRecord(
        step=step,
        norms=tuple(row.copy() for row in norms),
        jacobian=jac.norms,
        factor=fit_rate(norms[-1]),
        predicted=predicted_factor(net, trace, m),
        truncate=truncate or None,
    )
