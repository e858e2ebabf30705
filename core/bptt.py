"""Backpropagation through time, made visible: gradients, Jacobians and spectra.

Everything here runs on the model the trainer trains (``core.recurrent`` in loop mode,
whose per-step hidden tensors are real graph nodes) and never touches ``.grad`` of the
parameters, so it can be called between two optimiser steps.

* ``grad_through_time``: ||dL/dh_t|| per layer, the total derivative through the whole
  recurrence (or the truncated one, as chunked training computes it).
* ``jacobian_norms``: ||dh_T/dh_t||_2 along the top layer, the product of per-step
  Jacobians accumulated backwards, and its geometric rate.
* ``spectrum_record``: singular values / spectral radius of each W_hh and the
  Pascanu, Mikolov & Bengio (2013) condition: with |f'| <= gamma, sigma_max(W_hh) < 1/gamma
  is sufficient for vanishing gradients, and sigma_max > 1/gamma necessary for exploding.
* ``clip_and_measure``: gradient norms per parameter, before and after clipping.

Conventions: t is 0-based here (the docs' t = 1..T); a "factor" is a per-step backward
rate, ||dL/dh_{t-1}|| ~ factor * ||dL/dh_t||, so factor < 1 vanishes and > 1 explodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .jacobians import product_norms, spectral_norms, step_jacobians, top_layer_inputs
from .records import GradientRecord, SpectrumRecord
from .recurrent import GATES, State, Trace, _mask_from

# sup |f'| of the RNN nonlinearity (Pascanu et al. 2013, section 3.1); relu has no entry:
# its derivative is bounded by 1 but its activations are not, see REGIMES.
GAMMA = {"tanh": 1.0, "sigmoid": 0.25}
# The square block of a gated W_hh whose spectral radius is reported (the candidate).
CANDIDATE = {"lstm": "cell", "gru": "new"}
REGIMES = {
    "vanishing": "largest singular value below 1/gamma: gradients must vanish (sufficient condition)",
    "may explode": "largest singular value above 1/gamma: gradients can explode (necessary condition), "
                   "though they may still vanish",
    "marginal": "largest singular value equals 1/gamma: per-step factors are at most 1",
    "gated": "gated cell: the forget/update gates, not one matrix, set how far gradients reach",
    "not applicable (relu)": "relu RNN: the bound assumes a bounded nonlinearity; relu activations "
                             "are unbounded",
}
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
    m = _mask_from(lengths, mask, T, B, x.device)
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
    norms, trace = _through_time(net, batch.x, lambda out, st: model.loss_from_outputs(out, st, batch)[0],
                                 truncate, kwargs)
    T, B = batch.x.shape[0], batch.x.shape[1]
    m = _mask_from(kwargs.get("lengths"), kwargs.get("mask"), T, B, batch.x.device)
    jac = _jacobian_from_trace(net, batch.x, trace, m.squeeze(-1) if m is not None else None, 0,
                               per_step=False)
    return GradientRecord(
        step=step,
        norms=tuple(row.copy() for row in norms),
        jacobian=jac.norms,
        factor=fit_rate(norms[-1]),
        predicted=predicted_factor(net, trace, m),
        truncate=truncate or None,
    )


# ------------------------------------------------------------------------- spectrum
def spectral_radius(w: Tensor | np.ndarray) -> float:
    """max |eigenvalue| of a square matrix."""
    a = w.detach().cpu().double().numpy() if isinstance(w, Tensor) else np.asarray(w, np.float64)
    return float(np.abs(np.linalg.eigvals(a)).max())


def spectrum_record(net, step: int) -> SpectrumRecord:
    """Singular values and spectral radius of every W_hh, and which side of the bound."""
    gates = GATES[net.kind]
    singular, radius, blocks = [], [], {}
    for layer in range(net.num_layers):
        w = net.layer_weights(layer)[1].detach().cpu().double().numpy()
        singular.append(np.linalg.svd(w, compute_uv=False))
        square = w
        for name, block in zip(gates, np.split(w, len(gates)) if gates else (), strict=True):
            blocks[f"layer{layer}/{name}"] = np.linalg.svd(block, compute_uv=False)
            if name == CANDIDATE[net.kind]:
                square = block
        radius.append(spectral_radius(square))
    bound, regime = None, "gated"
    if net.kind == "rnn":
        gamma = GAMMA.get(net.nonlinearity)
        if gamma is None:
            regime = f"not applicable ({net.nonlinearity})"
        else:
            bound = 1.0 / gamma
            sigma = max(float(s[0]) for s in singular)
            regime = ("marginal" if math.isclose(sigma, bound, rel_tol=1e-6)
                      else "vanishing" if sigma < bound else "may explode")
    return SpectrumRecord(step=step, singular_values=tuple(singular), radius=tuple(radius),
                          bound=bound, regime=regime, blocks=blocks)


# ------------------------------------------------------------------------- clipping
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
