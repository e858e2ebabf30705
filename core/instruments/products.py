"""Norms of the backward Jacobian products, and the rate at which they grow or shrink.

P_t = dh_{T-1}/dh_t = J_{T-1} ... J_{t+1} (J_t = d s_t/d s_{t-1}, core.instruments.jacobians;
for lstm the product runs through the (h, c) state and c_t is held fixed, as in autograd's
dL/dh_t). Two quantities for the gradients panel:

* ``norms[t] = ||P_t||_2`` for every t (1 at t = T-1);
* ``rate``: the Jacobian-product rate, the finite-time Lyapunov exponent of the backward
  product as a per-step factor: a vector u is propagated back, u^T P_t, renormalised at each
  step, and ``rate`` is the geometric rate of its growth fitted over t = 0 .. T-1-skip (the
  last ``skip`` steps are transient, as in ``fit_rate``). u is the top left singular vector
  of the longest product, the direction that grows fastest. Unlike the mean of
  log ||J_t|| (an upper bound) or rho(W_hh) * rms(phi') (a mean-field estimate for random
  weights), this is the rate the theory gives for the trajectory the network actually runs.

Two ways to get the norms (``jacobian_products``):

* exact (H <= ``EXACT_MAX_H``, and in the tests): the products are multiplied out, O(T H^3),
  and each norm found by a full eigendecomposition or a converged subspace iteration;
* a block sweep (wider models): the products share their left end, so their top left
  singular vectors settle on those of the longer products. One forward sweep of the step
  Jacobians carries a block of ``BLOCK`` random vectors from t = 0 and another from T/2 (a
  block power iteration): their spans approximate the top left singular subspaces of P_0 and
  P_{T/2}, the anchors. The last ``TAIL_MAX`` products, too short for their singular vectors
  to have settled, are multiplied out (exact); one backward sweep then carries B^T P_t for
  every earlier t, B = the anchors and the last exact product's top left vectors, and
  ||B^T P_t||_2 estimates ||P_t||_2 from below. O(T H^2 k) in all, no [H, H] product outside
  the tail. The rate's vector u is taken in the first anchor, so u^T P_t comes out of the
  same sweep. The estimate's error against the exact norms is measured in the tests
  (relative <= 1e-3 on the presets' models; measured at most 5e-5). It runs on the model's
  device in float64 (in float32, vanishing products came out up to 1% off), without a host
  synchronisation per step outside the short exact tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from core.instruments.jacobians import StepCoefficients, StepJacobians

# Up to this width the products are multiplied out (exact); above, the block sweep.
EXACT_MAX_H = 64
BLOCK = 16         # vectors in the sweep's block
TAIL_MAX = 32      # the last products multiplied out (exact), counting unpadded steps
ORTHO_EVERY = 4    # forward sweep: steps between re-orthonormalisations (a QR is slow on a GPU)
TAIL_CHUNK = 16    # dense step Jacobians for the exact tail, built this many steps at a time

# Within the exact path: up to this width a batched eigendecomposition of every product is
# as cheap as iterating (measured on one thread: equal near H = 64, iteration twice as fast
# at H = 128). Wider products get a subspace (block power) iteration, warm-started from the
# previous t's block; it stops when the residual ||G x - rho x|| of the top Ritz pair of the
# Gram matrix G = A A^T is below POWER_TOL * rho, and after POWER_MAX_ITER iterations gives
# up and the exact value is taken.
ITERATE_ABOVE_H = 64
POWER_BLOCK = 4
POWER_TOL = {torch.float64: 1e-11, torch.float32: 1e-6}
POWER_MAX_ITER = 30


@dataclass(frozen=True)
class ProductNorms:
    """norms [T] ||dh_{T-1}/dh_t||_2; rate: the Jacobian-product rate (nan if undefined);
    exact_steps: how many of the norms were computed exactly (T on the exact path)."""

    norms: np.ndarray
    rate: float
    exact_steps: int


def transient_steps(T: int) -> int:
    """Steps next to the loss left out of rate fits (they have not settled): min(5, T // 4)."""
    return min(5, T // 4)


# ------------------------------------------------------------------------ singular values
def spectral_norms(blocks: Tensor, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """[N] largest singular value of each of [N, H, H], as sqrt(max eigenvalue of A A^T).

    The Gram matrix is formed in float64; its eigenvalues are found in ``dtype`` (float32
    is about three times faster than an SVD and as accurate as a float32 model). Where the
    eigensolver fails to converge (badly scaled products of weights training blew up), the
    SVD is taken instead, and where that fails too the value is nan: an instrument never
    stops training.
    """
    blocks = blocks.double()
    try:
        top = torch.linalg.eigvalsh((blocks @ blocks.mT).to(dtype))[..., -1].double()
        return top.clamp_min(0).sqrt().cpu().numpy()
    except torch.linalg.LinAlgError:
        pass
    out = np.full(blocks.shape[0], np.nan)
    for i, block in enumerate(blocks):
        finite = bool(torch.isfinite(block).all())
        if finite:
            try:
                out[i] = float(torch.linalg.svdvals(block)[0])
            except torch.linalg.LinAlgError:
                pass
    return out


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
        try:
            theta, Y = torch.linalg.eigh(Z @ Z.mT)
        except torch.linalg.LinAlgError:
            return None, V
        rho = float(theta[-1])
        if not rho > 0.0:
            return (None if A.any() or not math.isfinite(rho) else 0.0), V
        GV = Z @ A.mT  # rows (G v_i)^T
        y = Y[:, -1]
        converged = float(torch.linalg.vector_norm(y @ GV - rho * (y @ V))) <= tol * rho
        V = torch.linalg.qr(GV.mT).Q.mT
        if converged:
            bound = max(float(A.square().sum(0).max()), float(A.square().sum(1).max()))
            return (math.sqrt(rho) if rho >= bound * (1 - tol) else None), V
    return None, V


# ------------------------------------------------------------------------ exact products
def product_norms(J: StepJacobians, precision: torch.dtype = torch.float64) -> np.ndarray:
    """[T] ||dh_{T-1}/dh_t||_2 from the per-step Jacobians J (1 at t = T-1), multiplied out.

    The product is accumulated backwards from T-1, one step (one or two matrix products) per
    t, and only its h rows are kept; it is rescaled every step, keeping the log of the
    scale, so long products neither overflow nor underflow (they may still come out as inf
    or 0). Each product's spectral norm: exact eigendecompositions up to
    ``ITERATE_ABOVE_H``, above it a subspace iteration (``top_singular_value``) warm-started
    from the previous t's block (the products share their left end, so their top left
    singular vectors change little from one t to the next), with the exact value where it
    does not converge in time.
    """
    return _ExactTail(J.hh.shape[-1], J.hc is not None, J.hh.dtype, J.hh.device, precision).run(J)[0]


class _ExactTail:
    """Multiplies the products out from t = T-1 backwards, one step at a time."""

    def __init__(self, H: int, lstm: bool, dtype: torch.dtype, device, precision: torch.dtype):
        self.H, self.precision = H, precision
        self.tol = POWER_TOL.get(precision, POWER_TOL[torch.float32])
        # Ph, Pc = dh_{T-1}/dh_t, dh_{T-1}/dc_t; going back one step multiplies by J_t.
        self.Ph = torch.eye(H, dtype=dtype, device=device)
        self.Pc = torch.zeros_like(self.Ph) if lstm else None
        self.log_scale = 0.0
        self.iterate = True  # subspace iteration above ITERATE_ABOVE_H (else left to the caller)
        k = min(POWER_BLOCK, H)
        start = torch.randn(H, k, dtype=dtype, generator=torch.Generator().manual_seed(0))
        self.V = torch.linalg.qr(start.to(device)).Q.mT

    def step(self, J: StepJacobians, i: int) -> float | None:
        """Multiply by J[i]; the new product's norm over exp(log_scale), None if left to
        ``spectral_norms`` (inf if it overflowed)."""
        if self.Pc is None:
            self.Ph = self.Ph @ J.hh[i]
        else:  # dc/dc and dh/dc are diagonal: column scalings
            self.Ph, self.Pc = (torch.addmm(self.Ph @ J.hh[i], self.Pc, J.ch[i]),
                                self.Ph * J.hc[i] + self.Pc * J.cc[i])
        s = float(self.Ph.abs().max())
        if self.Pc is not None:
            s = max(s, float(self.Pc.abs().max()))
        if not math.isfinite(s):  # overflowed (or nan) within one step: nothing left to measure
            return s if s == math.inf else math.nan
        if s > 0:
            self.log_scale += math.log(s)
            self.Ph = self.Ph / s
            self.Pc = self.Pc / s if self.Pc is not None else None
        if self.H <= ITERATE_ABOVE_H or not self.iterate:
            return None
        top, self.V = top_singular_value(self.Ph, self.V, self.tol)
        return top

    def run(self, J: StepJacobians) -> tuple[np.ndarray, Tensor]:
        T = J.hh.shape[0]
        sigma, logs = np.ones(T), np.zeros(T)
        exact: dict[int, Tensor] = {}  # t -> product left to spectral_norms
        for t in range(T - 1, 0, -1):
            top = self.step(J, t)
            logs[t - 1] = self.log_scale
            if top is None:
                exact[t - 1] = self.Ph
            else:
                sigma[t - 1] = top
        if exact:
            sigma[list(exact)] = spectral_norms(torch.stack(list(exact.values())), self.precision)
        with np.errstate(over="ignore", invalid="ignore"):
            return sigma * np.exp(logs), self.Ph


# ------------------------------------------------------------------------ the block sweep
def _orthonormal(*parts: Tensor) -> tuple[Tensor, ...]:
    """The column blocks ``parts`` (stacked) orthonormalised together, split again."""
    stacked = torch.cat(parts) if len(parts) > 1 else parts[0]
    stacked = torch.nan_to_num(stacked)
    Q = torch.linalg.qr(stacked).Q
    return tuple(Q.split([p.shape[0] for p in parts]))


def _forward(coef: StepCoefficients, X: Tensor, X_mid: Tensor) -> Tensor:
    """Orthonormal columns whose first k span P_0 X and all 2k span that and P_mid X_mid
    (X, X_mid [H, k] on h_0 and on h_mid, mid = T // 2; the c parts held): one forward
    sweep, the second block joining it halfway. Re-orthonormalised every ORTHO_EVERY steps
    (in float64 the weaker directions survive that long); a Householder QR keeps the first
    k columns' span, so the anchors stay apart."""
    T, mid = coef.T, coef.T // 2
    Xh, Xc = X, (torch.zeros_like(X) if coef.kind == "lstm" else None)
    for t in range(1, T):
        if t == mid + 1:
            Xh = torch.cat([Xh, X_mid], dim=1)
            Xc = torch.cat([Xc, torch.zeros_like(X_mid)], dim=1) if Xc is not None else None
        Xh, Xc = coef.jvp(t, Xh, Xc)
        if t % ORTHO_EVERY == 0 or t == mid:
            Xh, Xc = _orthonormal(Xh, Xc) if Xc is not None else (_orthonormal(Xh)[0], None)
    if Xh.shape[1] == X.shape[1]:  # T too short for a second anchor
        Xh = torch.cat([Xh, X_mid], dim=1)
    return _orthonormal(Xh)[0]


def _fitted_rate(log_norms: np.ndarray, T: int) -> float:
    """exp(-slope) of log ||u^T P_t|| [T] on t by least squares over t = 0 .. T-1-skip."""
    values = log_norms[:T - transient_steps(T)]
    if len(values) < 2:
        return float("nan")
    if np.isneginf(values).any():
        return 0.0
    if not np.isfinite(values).all():
        return float("nan")
    return float(np.exp(-np.polyfit(np.arange(len(values), dtype=np.float64), values, 1)[0]))


def _backward_rows(coef: StepCoefficients, a: Tensor, b: Tensor | None, t_from: int,
                   keep: bool = False):
    """Carry the rows (a, b) on (h_{t_from}, c_{t_from}) back to t = 0.

    Returns a at t = 0 (rescaled), and with ``keep`` also the Gram matrices a_t a_t^T
    [t_from, k, k] and the log scales [t_from] of every t < t_from; rows are rescaled by
    their largest entry at every step, on the device, without synchronising with the host.
    """
    grams, logs = [], []
    log_scale = torch.zeros((), dtype=a.dtype, device=a.device)
    for t in range(t_from, 0, -1):
        a, b = coef.vjp(t, a, b)
        s = a.abs().amax() if b is None else torch.maximum(a.abs().amax(), b.abs().amax())
        s = torch.where(torch.isfinite(s) & (s > 0), s, torch.ones_like(s))
        a = a / s
        b = b / s if b is not None else None
        log_scale = log_scale + torch.log(s)
        if keep:
            grams.append(a @ a.mT)
            logs.append(log_scale)
    if keep:
        return a, torch.stack(grams[::-1]), torch.stack(logs[::-1])
    return a


def _block_norms(coef: StepCoefficients, precision: torch.dtype) -> tuple[np.ndarray, float, int]:
    """(norms [T], the Jacobian-product rate, exact steps) by the block sweep with an exact
    tail. The rate's vector u is the top left singular vector of P_0 within the first
    anchor Q0, so u^T P_t = y^T Q0^T P_t comes out of the same sweep (no sweep of its own)."""
    T, H = coef.T, coef.H
    k = min(BLOCK, H)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(H, 2 * k, dtype=coef.w_hh.dtype, generator=gen).to(coef.w_hh.device)
    # Two anchors: the top left subspaces of P_0 (right for the longest products) and of
    # P_{T/2} (for the middle ones), from one forward sweep.
    Q = _forward(coef, X[:, :k], X[:, k:])
    Q0 = Q[:, :k]
    lstm = coef.kind == "lstm"
    # The exact tail: the last TAIL_MAX (unpadded) products, too short for their singular
    # vectors to have settled on the anchors', are multiplied out.
    tail = _ExactTail(H, lstm, coef.w_hh.dtype, coef.w_hh.device, precision)
    norms = np.ones(T)
    q_grams = [torch.eye(k, dtype=Q.dtype, device=Q.device)]  # (Q0^T P_t)(Q0^T P_t)^T, t = T-1 down
    q_logs = [0.0]
    done, t = 0, T - 1
    # Their norms: on a GPU by the warm-started subspace iteration as they come (a batched
    # eigendecomposition of [32, H, H] took 0.3 s there at H = 1024), elsewhere by one
    # batched eigendecomposition at the end (faster than iterating on a CPU).
    tail.iterate = coef.w_hh.device.type == "cuda"
    products: dict[int, tuple[Tensor, float]] = {}
    while t > 0 and done < TAIL_MAX:
        start = max(t - TAIL_CHUNK + 1, 1)
        J = coef.dense(slice(start, t + 1))
        for i in range(t - start, -1, -1):  # J[i] is J_{start + i}
            top = tail.step(J, i)
            done += not coef.held(t)
            t -= 1
            if top is None:
                products[t] = (tail.Ph, tail.log_scale)
            else:
                norms[t] = top * math.exp(tail.log_scale) if math.isfinite(top) else top
            rows = Q0.mT @ tail.Ph
            q_grams.append(rows @ rows.mT)
            q_logs.append(tail.log_scale)
            if done >= TAIL_MAX or t == 0:
                break
    if products:
        ts = list(products)
        tops = spectral_norms(torch.stack([products[i][0] for i in ts]), precision)
        with np.errstate(over="ignore", invalid="ignore"):
            norms[ts] = tops * np.exp([products[i][1] for i in ts])
    exact_steps = T - t
    q_grams, q_logs = q_grams[::-1], q_logs[::-1]  # index t - t_star for t >= t_star
    if t > 0:  # the sweep: B^T P_t for every earlier t, B = the anchors and the tail's block
        # The last tail product's top left singular vectors, roughly (two block power
        # steps; an SVD of an [H, H] matrix is slow on a GPU): the block for t just below.
        P = torch.nan_to_num(tail.Ph)
        V = torch.randn(H, POWER_BLOCK, dtype=P.dtype, generator=gen).to(P.device)
        for _ in range(2):
            V = _orthonormal(P @ (P.mT @ V))[0]
        basis = _orthonormal(torch.cat([Q, V], dim=1))[0]
        basis[:, :Q.shape[1]] = Q  # the same span; Q0's rows exactly, for u
        a = basis.mT @ tail.Ph
        b = basis.mT @ tail.Pc if lstm else None
        _, grams, logs = _backward_rows(coef, a, b, t, keep=True)
        try:
            top = torch.linalg.eigvalsh(grams)[..., -1]
        except torch.linalg.LinAlgError:
            top = torch.linalg.svdvals(grams)[..., 0]
        with np.errstate(over="ignore", invalid="ignore"):
            values = (top.clamp_min(0).sqrt().double() * torch.exp(logs.double())).cpu().numpy()
            norms[:t] = values * math.exp(tail.log_scale)
        gq = torch.cat([grams[:, :k, :k], torch.stack(q_grams)])
        lq = np.concatenate([logs.double().cpu().numpy() + tail.log_scale, np.array(q_logs)])
    else:
        gq, lq = torch.stack(q_grams), np.array(q_logs)
    gq = torch.nan_to_num(gq)
    y = torch.linalg.eigh(gq[0])[1][:, -1]  # the top left singular vector of Q0^T P_0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_norms = 0.5 * np.log((y @ gq @ y).clamp_min(0).double().cpu().numpy()) + lq
    if norms[0] == 0.0:
        return norms, 0.0, exact_steps
    return norms, _fitted_rate(log_norms, T), exact_steps


# ------------------------------------------------------------------------ the rate
def lyapunov_rate(coef: StepCoefficients, u: Tensor) -> float:
    """The Jacobian-product rate: the row u^T P_t carried back from t = T-1 (u [H], on
    h_{T-1}), renormalised every step, and the geometric per-step rate of its h part
    ||u^T P_t|| fitted by least squares over t = 0 .. T-1-skip (as ``fit_rate`` fits the
    measured curve). 0 when the vector dies; nan when T is too short or it is not finite."""
    T = coef.T
    skip = transient_steps(T)
    if T - skip < 2 or not bool(torch.isfinite(u).all()) or not bool(u.any()):
        return float("nan")
    a = (u / torch.linalg.vector_norm(u)).unsqueeze(0)
    b = torch.zeros_like(a) if coef.kind == "lstm" else None
    log_scale = torch.zeros((), dtype=torch.float64, device=a.device)
    logs = []  # log ||u^T P_t|| for t = T-2 .. 0, on the device
    for t in range(T - 1, 0, -1):
        a, b = coef.vjp(t, a, b)
        n = torch.linalg.vector_norm(torch.cat([a, b], dim=-1) if b is not None else a)
        logs.append(log_scale + torch.log(torch.linalg.vector_norm(a).double()))
        safe = torch.where(n > 0, n, torch.ones_like(n))
        log_scale = log_scale + torch.log(safe.double())
        a, b = a / safe, (b / safe if b is not None else None)
    values = torch.stack(logs[::-1]).cpu().numpy()  # index t, one copy to the host
    return _fitted_rate(np.concatenate([values, [0.0]]), T)


def jacobian_products(coef: StepCoefficients, precision: torch.dtype | None = None,
                      exact: bool | None = None) -> ProductNorms:
    """||dh_{T-1}/dh_t||_2 for every t and the Jacobian-product rate (see the module doc).

    exact: force the exact path (True) or the sweep (False); by default exact up to
    H = EXACT_MAX_H. precision: of the final singular values (default: coef's dtype).
    """
    precision = precision or coef.w_hh.dtype
    T, H = coef.T, coef.H
    if exact if exact is not None else H <= EXACT_MAX_H:
        tail = _ExactTail(H, coef.kind == "lstm", coef.w_hh.dtype, coef.w_hh.device, precision)
        norms, P0 = tail.run(coef.dense())
        U = torch.linalg.svd(torch.nan_to_num(P0)) if T > 1 else None
        u = U[0][:, 0] if U is not None else P0[0]
        return ProductNorms(norms, _rate(coef, u, norms), T)
    norms, rate, exact_steps = _block_norms(coef, precision)
    return ProductNorms(norms, rate, exact_steps)


def _rate(coef: StepCoefficients, u: Tensor, norms: np.ndarray) -> float:
    if coef.T < 2:
        return float("nan")
    if norms[0] == 0.0:  # the product vanished exactly (e.g. every unit saturated): so does the rate
        return 0.0
    return lyapunov_rate(coef, u)
