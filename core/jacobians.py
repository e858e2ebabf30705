"""Per-step Jacobians of the recurrent cells, and norms of their products.

For one batch element of the top layer: ``step_jacobians`` gives d s_t / d s_{t-1} for every
t in closed form (s = h, or (h, c) for lstm), and ``product_norms`` multiplies them backwards
into ||dh_{T-1}/dh_t||_2 for every t. Used by core.bptt; the closed forms are checked in the
tests against autograd through the model's own one-step cell (``step_jacobians_autograd``)
and against torch.autograd.functional.jacobian on torch.nn cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .recurrent import Trace


def top_layer_inputs(net, x: Tensor, trace: Trace, m: Tensor | None) -> Tensor:
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


def step_jacobians(net, x: Tensor, trace: Trace, b: int) -> StepJacobians:
    """Per-step Jacobians of the top layer for batch element b (x: its inputs).

    Closed forms, each a sum of diag(.) @ (block of W_hh), so no dense matmul per step
    (tests check them against autograd); other cell kinds fall back to
    ``step_jacobians_autograd``.
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
    return StepJacobians(step_jacobians_autograd(net, x, trace, b))  # state h only


def step_jacobians_autograd(net, x: Tensor, trace: Trace, b: int) -> Tensor:
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


def product_norms(J: StepJacobians, precision: torch.dtype = torch.float64) -> np.ndarray:
    """[T] ||dh_{T-1}/dh_t||_2 from the per-step Jacobians J (1 at t = T-1).

    For lstm, c_t is held fixed (as autograd's dL/dh_t does). Only the h rows of the
    product are kept; the product is rescaled every step, keeping the log of the scale,
    so long products neither overflow nor underflow (they may still come out as inf or 0).
    """
    T, H = J.hh.shape[0], J.hh.shape[-1]
    # Ph, Pc = dh_{T-1}/dh_t, dh_{T-1}/dc_t; going back one step multiplies by J_t.
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
        return sigma * np.exp(np.array(logs[::-1]))
