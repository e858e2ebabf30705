"""Hidden-state dynamics: trajectories in PC space, fixed points and their linearisation.

The recurrence under a constant input x* is a map of the state, s -> F(s, x*): one step of
the whole stack, the network's own update (``StepMap`` calls the model's ``_cell`` with its
weights; s = h, or (h, c) for lstm, all layers stacked). Following Sussillo & Barak (2013)
and Golub & Sussillo (2018), the fixed and slow points are the minima of

    q(s) = 1/2 ||F(s, x*) - s||^2,

searched from many states sampled on the network's trajectories, half of them first run
forward under x* (``relax``: cheap, it lands them near the attractors), all starts together
(``find_fixed_points``: batched Levenberg-Marquardt on G(s) = F(s) - s with the exact
Jacobian, so true fixed points converge quadratically, to float64 precision). Minima with
q at most ``tol`` are fixed points; those with q above it are slow points. The Jacobian
dF/ds at each, and its eigenvalues, say which directions the state keeps (|lambda| near 1),
which decay (|lambda| < 1, at rate |lambda| per step), and which rotate (complex lambda).

Shapes: N starts, S = state size (L*H, or 2*L*H for lstm: every layer's h, then every
layer's c), M states in the PCA cloud, B sequences of T steps, K components. The inputs x*
a task offers and the record the trainer sends are core.instruments.dynamics_record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.instruments.jacobians import cell_jacobians

# Levenberg-Marquardt: damping lam * I added to J^T J, per start; divided by LAM_DOWN after
# a step that lowers q, multiplied by LAM_UP (up to TRIALS times per Jacobian) after one that
# does not. A start stops when q < Q_STOP (converged as far as float64 goes), when its
# damping passes LAM_MAX or q stops falling (a slow point: a local minimum with q > 0), or
# after max_iter Jacobians.
LAM_START, LAM_UP, LAM_DOWN, LAM_MAX = 1e-3, 10.0, 10.0, 1e8
TRIALS = 4
Q_STOP = 1e-24
# A largest |eigenvalue| within MARGIN of 1 is "marginal": that direction changes by less
# than a factor e in 1/MARGIN steps (saturated update or forget gates hold the state so).
MARGIN = 1e-3
STALL = 1e-3  # relative fall of q in one iteration below which a start has stopped moving
PATIENCE, LATE_PROGRESS = 5, 0.5  # see find_fixed_points
MAX_SLOW = 64  # slow points reported at most (the lowest q)


def state_size(net) -> int:
    return net.num_layers * net.hidden_size * (2 if net.kind == "lstm" else 1)


def stack_states(hidden: list[Tensor], cell: list[Tensor] | None) -> Tensor:
    """[T, B, S] full states from a trace's per-layer hidden [T, B, H] (and cell for lstm)."""
    return torch.cat(list(hidden) + list(cell or ()), dim=-1)


class StepMap:
    """F(s) = one step of ``net`` from state s under the constant input ``x`` [I], in float64.

    Calls the model's own ``_cell`` with (copies of) its own weights, layer by layer, each
    layer reading the new h of the layer below: exactly ``net``'s update. ``jacobian(s)`` is
    dF/ds [N, S, S]: in closed form for one layer (core.instruments.jacobians.cell_jacobians,
    checked against autograd in the tests), by autograd through ``__call__`` for stacks.
    """

    def __init__(self, net, x: Tensor):
        self.net = net
        self.kind, self.L, self.H = net.kind, net.num_layers, net.hidden_size
        self.S = state_size(net)
        self.weights = [tuple(w.detach().to("cpu", torch.float64) if w is not None else None
                              for w in net.layer_weights(layer)) for layer in range(self.L)]
        x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
        if x.shape[0] != net.input_size:
            raise ValueError(f"the input x* must have {net.input_size} values; got {x.shape[0]}")
        w_ih, _, b_ih, _ = self.weights[0]
        self.x = x
        self.xi0 = F.linear(x, w_ih, b_ih)  # [G*H], the same at every step

    def split(self, s: Tensor) -> tuple[list[Tensor], list[Tensor] | None]:
        """Per-layer h (and c) [N, H] of states s [N, S]."""
        H, LH = self.H, self.L * self.H
        if self.L == 1:  # plain slices: split() costs more than the cell at small H
            return [s[:, :H]], ([s[:, H:]] if self.kind == "lstm" else None)
        hs = list(s[:, :LH].split(H, dim=-1))
        cs = list(s[:, LH:].split(H, dim=-1)) if self.kind == "lstm" else None
        return hs, cs

    def __call__(self, s: Tensor) -> Tensor:
        """[N, S] -> [N, S]."""
        hs, cs = self.split(s)
        new_h, new_c = [], []
        below = None
        for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.weights):
            xi = self.xi0.expand(s.shape[0], -1) if layer == 0 else F.linear(below, w_ih, b_ih)
            h, c, _ = self.net._cell(xi, hs[layer], cs[layer] if cs is not None else None, w_hh, b_hh)
            new_h.append(h)
            if c is not None:
                new_c.append(c)
            below = h
        return torch.cat(new_h + new_c, dim=-1)

    def jacobian(self, s: Tensor) -> Tensor:
        """[N, S, S] dF/ds at states s [N, S]."""
        if self.L == 1:
            w_ih, w_hh, b_ih, b_hh = self.weights[0]
            hs, cs = self.split(s)
            J = cell_jacobians(self.net, w_hh, b_hh, self.xi0.expand(s.shape[0], -1), hs[0],
                               cs[0] if cs is not None else None)
            if J is not None:
                return _dense(J)
        return self.jacobian_autograd(s)

    def jacobian_autograd(self, s: Tensor) -> Tensor:
        """[N, S, S] dF/ds by autograd (torch.func) through ``__call__``."""
        def one(state: Tensor) -> Tensor:
            return self(state.unsqueeze(0)).squeeze(0)

        with torch.enable_grad():
            return torch.func.vmap(torch.func.jacrev(one))(s)

    def q(self, s: Tensor) -> Tensor:
        """[N] q(s) = 1/2 ||F(s) - s||^2."""
        return 0.5 * (self(s) - s).square().sum(-1)


def _dense(J) -> Tensor:
    """[N, S, S] from core.instruments.jacobians.StepJacobians blocks (written in place: at
    H = 128 and 256 states, assembling with cat and diag_embed costs as much as the blocks)."""
    if J.hc is None:
        return J.hh
    N, H = J.hh.shape[0], J.hh.shape[-1]
    out = J.hh.new_zeros(N, 2 * H, 2 * H)
    out[:, :H, :H] = J.hh
    out[:, H:, :H] = J.ch
    out[:, :H, H:].diagonal(dim1=-2, dim2=-1).copy_(J.hc)
    out[:, H:, H:].diagonal(dim1=-2, dim2=-1).copy_(J.cc)
    return out


# ------------------------------------------------------------------------------------ PCA
@dataclass(frozen=True)
class PCA:
    """Principal components of a cloud of states.

    mean: [S]; components: [K, S] orthonormal rows, each signed so that its largest loading
    is positive (the picture does not flip when training changes little); explained: [K]
    the fraction of the total variance along each.
    """

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray

    def project(self, states: np.ndarray) -> np.ndarray:
        """[..., S] -> [..., K]."""
        return (np.asarray(states, np.float64) - self.mean) @ self.components.T


def pca(states: np.ndarray, k: int) -> PCA:
    """The first ``k`` principal components of ``states`` [M, S].

    From the eigendecomposition of the S x S scatter matrix (torch, on the thread torch is
    given): numpy's SVD of the M x S cloud took 0.4 s on a busy 2-core machine where this
    takes a millisecond.
    """
    X = torch.as_tensor(np.asarray(states, np.float64))
    mean = X.mean(0)
    Xc = X - mean
    values, vectors = torch.linalg.eigh(Xc.T @ Xc)  # ascending
    values, vectors = values.flip(0).clamp_min(0).numpy(), vectors.flip(1).T.numpy()
    total = float(values.sum())
    k = min(k, len(values))
    comps = vectors[:k].copy()
    big = np.abs(comps).argmax(1)
    comps *= np.sign(comps[np.arange(k), big])[:, None]
    explained = values[:k] / total if total > 0 else np.zeros(k)
    return PCA(mean.numpy(), comps, explained)


# ----------------------------------------------------------------------------- fixed points
@dataclass(frozen=True)
class Search:
    """Where each start ended. states: [N, S]; q: [N]; iterations: Jacobians evaluated."""

    states: Tensor
    q: Tensor
    iterations: int


def find_fixed_points(step: StepMap, starts: Tensor, max_iter: int = 30, merge: float = 0.0,
                      keep: float = math.inf) -> Search:
    """Minimise q from every start [N, S] at once (Levenberg-Marquardt on G = F(s) - s).

    Each iteration evaluates J_G = dF/ds - I at the starts still moving and tries the step
    (J_G^T J_G + lam I) d = -J_G^T G with each start's own damping lam, retrying with more
    damping (up to TRIALS times) where q did not fall. Near a fixed point lam -> 0 and this
    is Newton's method (quadratic convergence); far from one it is a short gradient step.
    A moving start that comes within ``merge`` of one with a lower q stops there: both would
    end at the same point, and most starts on trained networks fall into a few basins, so
    the batch (and the cost of each iteration, a dense solve per start) shrinks quickly.
    After PATIENCE iterations a start goes on only while its q is at most ``keep`` (the
    largest q reported) and still falls by a factor 1 / LATE_PROGRESS an iteration: a fixed
    point is approached quadratically by then, while in chaotic or saturated regions (where
    q is small everywhere) most starts would crawl on for every remaining iteration.
    """
    s = starts.detach().to("cpu", torch.float64).clone()
    N, S = s.shape
    G = step(s) - s
    q = 0.5 * G.square().sum(-1)
    lam = torch.full((N,), LAM_START, dtype=torch.float64)
    moving = torch.isfinite(q) & (q > Q_STOP)
    eye = torch.eye(S, dtype=torch.float64)
    iterations = 0
    while iterations < max_iter:
        if merge > 0 and int(moving.sum()) > 0:
            finite = torch.isfinite(q).nonzero().squeeze(1)
            leader = torch.zeros(N, dtype=torch.bool)
            leader[finite[_leaders(s[finite], q[finite], merge)]] = True
            moving &= leader
        idx = moving.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        iterations += 1
        J = step.jacobian(s[idx]) - eye
        JT = J.mT
        A = JT @ J
        g = (JT @ G[idx].unsqueeze(-1)).squeeze(-1)
        scale = A.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-30)  # lam is relative to it
        q_before = q[idx]
        todo = torch.arange(len(idx))
        for _ in range(TRIALS):
            rows = idx[todo]
            damped = A[todo] + (lam[rows] * scale[todo]).view(-1, 1, 1) * eye
            L, info = torch.linalg.cholesky_ex(damped)
            d = torch.cholesky_solve(-g[todo].unsqueeze(-1), L).squeeze(-1)
            trial = s[rows] + d
            G_new = step(trial) - trial
            q_new = 0.5 * G_new.square().sum(-1)
            better = (info == 0) & torch.isfinite(q_new) & (q_new < q[rows])
            good = rows[better]
            s[good], G[good], q[good] = trial[better], G_new[better], q_new[better]
            lam[good] = (lam[good] / LAM_DOWN).clamp_min(1e-15)
            lam[rows[~better]] *= LAM_UP
            todo = todo[~better]
            if len(todo) == 0:
                break
        if iterations < PATIENCE:  # stop only what no longer moves
            slow = q[idx] > (1 - STALL) * q_before
        else:  # then only what still converges fast, and could be reported, goes on
            slow = (q[idx] > keep) | (q[idx] > LATE_PROGRESS * q_before)
        done = (q[idx] <= Q_STOP) | (lam[idx] > LAM_MAX) | slow
        moving[idx[done]] = False
    return Search(s, q, iterations)


def _leaders(s: Tensor, q: Tensor, merge: float) -> Tensor:
    """Indices of the states [n, S] that have no state with a lower q (ties: a lower
    index) within ``merge`` of them."""
    n = len(q)
    rank = torch.empty(n, dtype=torch.long)
    rank[torch.argsort(q, stable=True)] = torch.arange(n)
    close = torch.cdist(s, s) < merge
    ahead = rank.view(1, n) < rank.view(n, 1)  # [i, j]: j comes before i
    return (~(close & ahead).any(1)).nonzero().squeeze(1)


def unique_points(states: Tensor, q: Tensor, distance: float) -> Tensor:
    """Indices of representatives, lowest q first: a point closer than ``distance`` to one
    already kept is the same point (states [N, S], q [N])."""
    order = torch.argsort(q)
    kept: list[int] = []
    reps = states.new_zeros((0, states.shape[1]))
    for i in order.tolist():
        if len(kept) and float(torch.linalg.vector_norm(reps - states[i], dim=-1).min()) < distance:
            continue
        kept.append(i)
        reps = torch.cat([reps, states[i:i + 1]])
    return torch.tensor(kept, dtype=torch.long)


@dataclass(frozen=True)
class FixedPoints:
    """Unique fixed and slow points, fixed points first, then by q.

    states: [P, S]; q: [P]; fixed: [P] bool (q <= tol); jacobians: [P, S, S] dF/ds;
    eigenvalues: [P, S] complex, by decreasing modulus; stable: [P] bool, nothing grows
    (every |lambda| < 1 + MARGIN); marginal: [P] bool, something is held (the largest
    |lambda| within MARGIN of 1: a memory, as on a line attractor).
    """

    states: np.ndarray
    q: np.ndarray
    fixed: np.ndarray
    jacobians: np.ndarray
    eigenvalues: np.ndarray
    stable: np.ndarray
    marginal: np.ndarray
    iterations: int


def linearise(step: StepMap, states: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(dF/ds [P, S, S], eigenvalues [P, S] complex by decreasing modulus) at ``states``."""
    if len(states) == 0:
        S = step.S
        return np.zeros((0, S, S)), np.zeros((0, S), np.complex128)
    J = step.jacobian(states)
    ev = torch.linalg.eigvals(J).numpy()  # torch, not numpy: see pca
    J = J.numpy()
    order = np.argsort(-np.abs(ev), axis=-1, kind="stable")
    return J, np.take_along_axis(ev, order, -1)


def fixed_points(step: StepMap, starts: Tensor, *, tol: float = 1e-12, slow: float = 0.0,
                 distance: float = 1e-3, max_iter: int = 30) -> FixedPoints:
    """The distinct fixed points (q <= tol) and slow points (tol < q <= slow; the MAX_SLOW
    lowest) found from ``starts`` [N, S], each with its Jacobian and eigenvalues.

    distance: points closer than this are one (a converged fixed point is found to ~1e-10).
    """
    search = find_fixed_points(step, starts, max_iter, merge=distance, keep=max(tol, slow))
    keep = torch.isfinite(search.q) & (search.q <= max(tol, slow))
    idx = keep.nonzero().squeeze(1)
    rep = idx[unique_points(search.states[idx], search.q[idx], distance)]
    rep = torch.cat([rep[search.q[rep] <= tol], rep[search.q[rep] > tol][:MAX_SLOW]])
    states, q = search.states[rep], search.q[rep]
    J, ev = linearise(step, states)
    radius = np.abs(ev[:, 0]) if len(ev) else np.zeros(0)
    return FixedPoints(states.numpy(), q.numpy(), q.numpy() <= tol, J, ev, radius < 1 + MARGIN,
                       np.abs(radius - 1) <= MARGIN, search.iterations)


def sample_starts(states: Tensor, n: int, noise: float, generator: torch.Generator) -> Tensor:
    """``n`` of the states [M, S] (with replacement only when M < n), each moved by Gaussian
    noise of about ``noise`` in length, so that starts also fall between trajectories."""
    M, S = states.shape
    pick = torch.randperm(M, generator=generator)[:n] if M >= n else torch.randint(0, M, (n,), generator=generator)
    chosen = states[pick].to(torch.float64)
    if noise > 0:
        chosen = chosen + (noise / math.sqrt(S)) * torch.randn(chosen.shape, generator=generator, dtype=torch.float64)
    return chosen


def relax(step: StepMap, s: Tensor, steps: int) -> Tensor:
    """``steps`` steps of the autonomous dynamics s <- F(s) from s [N, S]: cheap, and it
    brings starts close to the attractors (stable points and slow manifolds), where the
    search then converges in a few iterations; unstable points need starts elsewhere."""
    start = s
    for _ in range(steps):
        s = step(s)
    return torch.where(torch.isfinite(s).all(-1, keepdim=True), s, start)  # what blew up starts where it was


def spread(states: np.ndarray) -> float:
    """RMS distance of states [M, S] from their mean (the scale of the cloud)."""
    X = np.asarray(states, np.float64)
    return float(math.sqrt(((X - X.mean(0)) ** 2).sum(-1).mean())) if len(X) else 0.0
