"""Per-step Jacobians of the recurrent cells, and norms of their products.

For one batch element of the top layer: ``step_jacobians`` gives d s_t / d s_{t-1} for every
t in closed form (s = h, or (h, c) for lstm), and ``product_norms`` multiplies them backwards
into ||dh_{T-1}/dh_t||_2 for every t: one matrix product per step, and each product's norm by
a few warm-started subspace iterations (``top_singular_value``) rather than a full
eigendecomposition, so that the trainer can afford it live at H = 256, T = 200 (about 0.6 s
on one thread). Used by core.instruments.bptt; the closed forms are checked in the
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

from core.models.recurrent import Trace


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

    Closed forms (``cell_jacobians``; tests check them against autograd); other cell kinds
    fall back to ``step_jacobians_autograd``.
    """
    J = cell_jacobians(net, *_top_layer_states(net, x, trace, b))
    return J if J is not None else StepJacobians(step_jacobians_autograd(net, x, trace, b))  # state h only


def cell_jacobians(net, w_hh: Tensor, b_hh: Tensor | None, xi: Tensor, h_prev: Tensor,
                   c_prev: Tensor | None) -> StepJacobians | None:
    """d s'/d s of one layer's cell for a batch of N states, in closed form (None for a kind
    without one).

    xi: [N, G*H] input projections W_ih x + b_ih; h_prev, c_prev: [N, H] the states stepped
    from. Each block is a sum of diag(.) @ (block of W_hh), so no dense matmul per state.
    """

    def dW(d: Tensor, block: Tensor) -> Tensor:  # diag(d_t) @ block, for every t
        return d.unsqueeze(-1) * block

    def plus_dW(acc: Tensor, d: Tensor, block: Tensor) -> Tensor:  # acc += diag(d_t) @ block
        return acc.addcmul_(d.unsqueeze(-1), block)

    # The [T, H, H] sums are accumulated in place: at H = 256, T = 200 each one is 100 MB,
    # so every temporary saved is a pass over memory saved.
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
        dc_dh = plus_dW(plus_dW(dW(c_prev * f * (1 - f), W_f), g * i * (1 - i), W_i), i * (1 - g**2), W_g)
        dh_dh = plus_dW(dW(tc * o * (1 - o), W_o), o * (1 - tc**2), dc_dh)
        return StepJacobians(dh_dh, o * (1 - tc**2) * f, dc_dh, f)
    if net.kind == "gru":
        W_r, W_z, W_n = w_hh.chunk(3)
        xr, xz, xn = xi.chunk(3, dim=-1)
        hr, hz, hn = pre.chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        dn = (1 - z) * (1 - n**2)
        J = plus_dW(plus_dW(dW((h_prev - n) * z * (1 - z), W_z), dn * hn * r * (1 - r), W_r), dn * r, W_n)
        J.diagonal(dim1=-2, dim2=-1).add_(z)
        return StepJacobians(J)
    return None


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


# Up to this width a batched eigendecomposition of every product is as cheap as iterating
# (measured on one thread: equal near H = 64, iteration twice as fast at H = 128), so the
# products' norms are computed exactly, without iterating.
EXACT_MAX_H = 64
# Subspace (block power) iteration for the top singular value of each wider product. A
# block of POWER_BLOCK vectors converges at the rate of the gap to the (POWER_BLOCK+1)-th
# singular value: products of rotating Jacobians often have a near-equal top pair, where a
# single vector would crawl. It stops when the residual ||G x - rho x|| of the top Ritz
# pair of the Gram matrix G = A A^T is below POWER_TOL * rho (the singular value is then
# within POWER_TOL / 2, relatively, of one of A's; in practice it is far closer), by dtype
# of the model; after POWER_MAX_ITER iterations it gives up and the exact value is taken.
POWER_BLOCK = 4
POWER_TOL = {torch.float64: 1e-11, torch.float32: 1e-6}
POWER_MAX_ITER = 30


def top_singular_value(A: Tensor, V: Tensor, tol: float, max_iter: int = POWER_MAX_ITER
                       ) -> tuple[float | None, Tensor]:
    """(sigma_max(A), the iterated block) by subspace iteration on A A^T from the
    orthonormal rows V [k, H]; sigma is None when it has not converged within ``max_iter``
    iterations. The returned rows span A's top left singular vectors (as far as the
    iteration got): the next call's warm start.

    Each iteration is two [k, H] x [H, H] products and a k x k eigenproblem, O(k H^2),
    against O(H^3) for a full eigendecomposition (the block is kept as rows: products
    with a thin right-hand side take a slow path in MKL). Like any power method it could
    settle below sigma_max if V had no component along the top singular vector; two
    cheap lower bounds of sigma_max (the largest row and column norms of A) catch gross
    cases, and sigma is then None too.
    """
    for _ in range(max_iter):
        Z = V @ A  # Z Z^T = V G V^T: the Rayleigh-Ritz matrix
        theta, Y = torch.linalg.eigh(Z @ Z.mT)
        rho = float(theta[-1])
        if rho <= 0.0:
            return (None if A.any() else 0.0), V
        GV = Z @ A.mT  # rows (G v_i)^T
        y = Y[:, -1]
        converged = float(torch.linalg.vector_norm(y @ GV - rho * (y @ V))) <= tol * rho
        V = torch.linalg.qr(GV.mT).Q.mT
        if converged:
            bound = max(float(A.square().sum(0).max()), float(A.square().sum(1).max()))
            return (math.sqrt(rho) if rho >= bound * (1 - tol) else None), V
    return None, V


def product_norms(J: StepJacobians, precision: torch.dtype = torch.float64) -> np.ndarray:
    """[T] ||dh_{T-1}/dh_t||_2 from the per-step Jacobians J (1 at t = T-1).

    For lstm, c_t is held fixed (as autograd's dL/dh_t does). The product is accumulated
    backwards from T-1, one step (one or two matrix products) per t, and only its h rows
    are kept; it is rescaled every step, keeping the log of the scale, so long products
    neither overflow nor underflow (they may still come out as inf or 0).

    The spectral norm of each product is found by subspace iteration
    (``top_singular_value``) warm-started from the previous t's block: the products share
    their left end, so their top left singular vectors change little from one t to the
    next and a few iterations suffice, where a full eigendecomposition per t would cost
    more than the products themselves. The tolerance is ``POWER_TOL[precision]``; the
    products where the iteration does not converge in time, and all of them up to
    H = ``EXACT_MAX_H``, get the exact value (``spectral_norms``).
    """
    T, H = J.hh.shape[0], J.hh.shape[-1]
    tol = POWER_TOL.get(precision, POWER_TOL[torch.float32])
    # Ph, Pc = dh_{T-1}/dh_t, dh_{T-1}/dc_t; going back one step multiplies by J_t.
    Ph, Pc, log_scale = torch.eye(H, dtype=J.hh.dtype), None, 0.0
    if J.hc is not None:
        Pc = torch.zeros_like(Ph)
    sigma, logs = np.ones(T), np.zeros(T)
    k = min(POWER_BLOCK, H)
    V = torch.linalg.qr(torch.randn(H, k, dtype=Ph.dtype, generator=torch.Generator().manual_seed(0))).Q.mT
    exact: dict[int, Tensor] = {}  # t -> product left to spectral_norms
    for t in range(T - 1, 0, -1):
        if Pc is None:
            Ph = Ph @ J.hh[t]
        else:  # dc/dc and dh/dc are diagonal: column scalings
            Ph, Pc = torch.addmm(Ph @ J.hh[t], Pc, J.ch[t]), Ph * J.hc[t] + Pc * J.cc[t]
        s = float(Ph.abs().max()) if Pc is None else max(float(Ph.abs().max()), float(Pc.abs().max()))
        if s > 0 and math.isfinite(s):
            log_scale += math.log(s)
            Ph = Ph / s
            Pc = Pc / s if Pc is not None else None
        logs[t - 1] = log_scale
        if not math.isfinite(s):  # overflowed within one step: nothing left to measure
            sigma[t - 1] = s
            continue
        top, V = top_singular_value(Ph, V, tol) if H > EXACT_MAX_H else (None, V)
        if top is None:
            exact[t - 1] = Ph
        else:
            sigma[t - 1] = top
    if exact:
        sigma[list(exact)] = spectral_norms(torch.stack(list(exact.values())), precision)
    with np.errstate(over="ignore", invalid="ignore"):
        return sigma * np.exp(logs)
