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
import torch.nn.functional as F
from torch import Tensor

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
    with torch.enable_grad():
        out, state, trace = net(x, detach_every=truncate or None, **kwargs)
        loss = loss_fn(out, state)
        if not (isinstance(loss, Tensor) and loss.dim() == 0):
            raise ValueError("loss_fn(out, state) must return a scalar tensor")
        if not loss.requires_grad:
            raise ValueError("the loss does not depend on the recurrent parameters (no autograd graph)")
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


def _top_layer_inputs(net, x: Tensor, trace: Trace, m: Tensor | None) -> Tensor:
    """What the top layer reads at each step: x, or the layer below (zeroed when padded).

    m: [T, B] bool valid steps, or None.
    """
    if net.num_layers == 1:
        return x
    below = trace.hidden[-2]
    return below * m.unsqueeze(-1) if m is not None else below


def _top_layer_states(net, x: Tensor, trace: Trace, b: int):
    """On the CPU in float64: the top layer's W_hh and b_hh, its input projections
    W_ih x_t + b_ih [T, G*H], and the states h_{t-1}, c_{t-1} [T, H] it starts each step from."""
    L, H = net.num_layers, net.hidden_size
    w_ih, w_hh, b_ih, b_hh = (w.detach().cpu().double() if w is not None else None
                              for w in net.layer_weights(L - 1))
    xi = F.linear(x[:, b].detach().cpu().double(), w_ih, b_ih)
    h = trace.hidden[-1][:, b].detach().cpu().double()
    h_prev = torch.cat([h.new_zeros(1, H), h[:-1]])
    c_prev = None
    if net.kind == "lstm":
        c = trace.cell[-1][:, b].detach().cpu().double()
        c_prev = torch.cat([c.new_zeros(1, H), c[:-1]])
    return w_hh, b_hh, xi, h_prev, c_prev


@dataclass
class StepJacobians:
    """d s_t / d s_{t-1} for every t, float64, in blocks (the state s is h, or (h, c) for lstm).

    hh: [T, H, H] dh_t/dh_{t-1}.
    hc: [T, H] dh_t/dc_{t-1} (diagonal), lstm only.
    ch: [T, H, H] dc_t/dh_{t-1}, lstm only.
    cc: [T, H] dc_t/dc_{t-1} (diagonal: the forget gate), lstm only.
    """

    hh: Tensor
    hc: Tensor | None = None
    ch: Tensor | None = None
    cc: Tensor | None = None

    def dense(self) -> Tensor:
        """[T, S, S] with S = H or 2H."""
        if self.hc is None:
            return self.hh
        top = torch.cat([self.hh, torch.diag_embed(self.hc)], dim=-1)
        return torch.cat([top, torch.cat([self.ch, torch.diag_embed(self.cc)], dim=-1)], dim=-2)

    def hold(self, padded: Tensor) -> StepJacobians:
        """A copy where the steps with ``padded`` [T] True are the identity (the state is held)."""
        keep = ~padded.view(-1, 1, 1)
        eye = torch.eye(self.hh.shape[-1], dtype=self.hh.dtype)
        if self.hc is None:
            return StepJacobians(torch.where(keep, self.hh, eye))
        k = keep.view(-1, 1)
        return StepJacobians(torch.where(keep, self.hh, eye), self.hc * k, self.ch * keep,
                             torch.where(k, self.cc, torch.ones_like(self.cc)))


def _step_jacobians(net, x: Tensor, trace: Trace, b: int) -> StepJacobians:
    """Per-step Jacobians of the top layer for batch element b (x: its inputs).

    Closed forms, each a sum of diag(.) @ (block of W_hh), so no dense matmul per step
    (tests check them against autograd); other cell kinds fall back to
    ``_step_jacobians_autograd``.
    """
    w_hh, b_hh, xi, h_prev, c_prev = _top_layer_states(net, x, trace, b)

    def dW(d: Tensor, block: Tensor) -> Tensor:  # diag(d_t) @ block, for every t
        return d.unsqueeze(-1) * block

    pre = F.linear(h_prev, w_hh, b_hh)
    if net.kind == "rnn":
        a = xi + pre
        d = 1 - torch.tanh(a) ** 2 if net.nonlinearity == "tanh" else (a > 0).double()
        return StepJacobians(dW(d, w_hh))
    if net.kind == "lstm":
        W_i, W_f, W_g, W_o = w_hh.chunk(4)
        i, f, g, o = (xi + pre).chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        tc = torch.tanh(f * c_prev + i * g)
        dc_dh = dW(c_prev * f * (1 - f), W_f) + dW(g * i * (1 - i), W_i) + dW(i * (1 - g**2), W_g)
        dh_dh = dW(tc * o * (1 - o), W_o) + dW(o * (1 - tc**2), dc_dh)
        return StepJacobians(dh_dh, o * (1 - tc**2) * f, dc_dh, f)
    if net.kind == "gru":
        W_r, W_z, W_n = w_hh.chunk(3)
        xr, xz, xn = xi.chunk(3, dim=-1)
        hr, hz, hn = pre.chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        dn = (1 - z) * (1 - n**2)
        return StepJacobians(torch.diag_embed(z) + dW((h_prev - n) * z * (1 - z), W_z)
                             + dW(dn * hn * r * (1 - r), W_r) + dW(dn * r, W_n))
    return StepJacobians(_step_jacobians_autograd(net, x, trace, b))  # state h only


def _step_jacobians_autograd(net, x: Tensor, trace: Trace, b: int) -> Tensor:
    """[T, S, S] dense d s_t/d s_{t-1}, by autograd through the model's own one-step ``_cell``."""
    w_hh, b_hh, xi, h_prev, c_prev = _top_layer_states(net, x, trace, b)
    H = h_prev.shape[-1]
    s_prev = h_prev if c_prev is None else torch.cat([h_prev, c_prev], dim=-1)
    T, S = s_prev.shape
    # One batched step on S copies of each state: the sum over copies i of output i has
    # row i of the Jacobian as its gradient, so one backward pass gives all T Jacobians.
    with torch.enable_grad():
        s = s_prev.unsqueeze(1).expand(T, S, S).clone().requires_grad_(True)
        xs = xi.unsqueeze(1).expand(T, S, xi.shape[-1])
        h1, c1, _ = net._cell(xs, s[..., :H], s[..., H:] if c_prev is not None else None, w_hh, b_hh)
        s1 = h1 if c1 is None else torch.cat([h1, c1], dim=-1)
        (J,) = torch.autograd.grad(s1.diagonal(dim1=1, dim2=2).sum(), s)
    return J


def spectral_norms(blocks: Tensor, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """[N] largest singular value of each of [N, H, H], as sqrt(max eigenvalue of A A^T).

    The Gram matrix is formed in float64; its eigenvalues are found in ``dtype`` (float32
    is about three times faster than an SVD and as accurate as a float32 model).
    """
    gram = blocks @ blocks.mT
    top = torch.linalg.eigvalsh(gram.to(dtype))[..., -1].double()
    return top.clamp_min(0).sqrt().numpy()


def _jacobian_from_trace(net, x: Tensor, trace: Trace, m: Tensor | None, b: int,
                         per_step: bool = True) -> JacobianNorms:
    J = _step_jacobians(net, _top_layer_inputs(net, x, trace, m), trace, b)
    if m is not None:  # a padded step copies the state: its Jacobian is the identity
        J = J.hold(~m[:, b].cpu())
    T, H = J.hh.shape[0], net.hidden_size
    precision = torch.float64 if next(net.parameters()).dtype == torch.float64 else torch.float32
    step_norms = spectral_norms(J.hh, precision) if per_step else np.full(T, np.nan)
    # Ph, Pc = dh_{T-1}/dh_t, dh_{T-1}/dc_t; going back one step multiplies by J_t.
    # Rescaled every step (the log of the scale kept) so that long products neither
    # overflow nor underflow.
    Ph, Pc, log_scale = torch.eye(H, dtype=J.hh.dtype), None, 0.0
    if J.hc is not None:
        Pc = torch.zeros_like(Ph)
    blocks, logs = [Ph], [0.0]
    for t in range(T - 1, 0, -1):
        if Pc is None:
            Ph = Ph @ J.hh[t]
        else:  # dc/dc and dh/dc are diagonal: column scalings
            Ph, Pc = Ph @ J.hh[t] + Pc @ J.ch[t], Ph * J.hc[t] + Pc * J.cc[t]
        s = float(Ph.abs().max()) if Pc is None else max(float(Ph.abs().max()), float(Pc.abs().max()))
        if s > 0 and math.isfinite(s):
            log_scale += math.log(s)
            Ph = Ph / s
            Pc = Pc / s if Pc is not None else None
        blocks.append(Ph)
        logs.append(log_scale)
    sigma = spectral_norms(torch.stack(blocks[::-1]), precision)
    with np.errstate(over="ignore"):
        norms = sigma * np.exp(np.array(logs[::-1]))
    return JacobianNorms(norms, step_norms, fit_rate(norms))


def jacobian_norms(net, x: Tensor, lengths: Tensor | None = None, *, mask: Tensor | None = None,
                   batch_index: int = 0) -> JacobianNorms:
    """||dh_T/dh_t||_2 of the top layer for one batch element of x [T, B, I].

    The top layer's h_t reaches h_T only through its own recurrence, so this is the exact
    total derivative for the top layer; computed in float64 from a no-grad probe.
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
    if net.kind != "rnn" or net.nonlinearity not in GAMMA:
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
        norms=tuple(norms),
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
        max_norm: clip threshold; None or <= 0 measures without clipping.
    Returns:
        (total norm before, total norm after, whether clipping changed the gradient,
        {name: gradient norm before clipping}). When the total is not finite (a nan or
        inf gradient) nothing is scaled and both totals are that non-finite value: the
        caller must skip the update.
    """
    named = [(n, p.grad) for n, p in parameters_named if p.grad is not None]
    if not named:
        return 0.0, 0.0, False, {}
    norms = torch.stack([torch.linalg.vector_norm(g.detach().double()) for _, g in named])
    per_param = {n: float(v) for (n, _), v in zip(named, norms.tolist(), strict=True)}
    before = float(torch.linalg.vector_norm(norms))
    if not math.isfinite(before) or not max_norm or max_norm <= 0 or before <= max_norm:
        return before, before, False, per_param
    scale = max_norm / before
    for _, g in named:
        g.mul_(scale)
    after = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for _, g in named])))
    return before, after, True, per_param
