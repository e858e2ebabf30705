"""Per-step Jacobians of the recurrent cells, in closed form, along a traced trajectory.

For one batch element of the top layer, the step Jacobian J_t = d s_t / d s_{t-1} (s = h, or
(h, c) for lstm) is a sum of diag(.) @ (block of W_hh) terms. ``step_coefficients`` computes
the diagonals for every t at once ([T, H] tensors, no [T, H, H]); from them:

* ``StepCoefficients.dense(ts)``: the dense blocks of J_t for some t (``StepJacobians``);
* ``StepCoefficients.vjp(t, a, b)``: rows times J_t, (a, b) J_t, for a block of k rows,
  O(k H^2): what backpropagation through time does to a vector;
* ``StepCoefficients.jvp(t, xh, xc)``: J_t times columns, O(k H^2).

core.instruments.products multiplies them into ||dh_{T-1}/dh_t||_2 and the Jacobian-product
rate. The closed forms are checked in the tests against autograd through the model's own
one-step cell (``step_jacobians_autograd``) and against torch.autograd.functional.jacobian on
torch.nn cells.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _top_layer_states(net, x: Tensor, trace: Trace, b: int, device=None, dtype=torch.float64):
    """The top layer's W_hh and b_hh, its input projections W_ih x_t + b_ih [T, G*H], and the
    states h_{t-1}, c_{t-1} [T, H] it starts each step from; on ``device`` (default: the
    CPU) in ``dtype``."""
    device = torch.device("cpu") if device is None else device
    L, H = net.num_layers, net.hidden_size

    def cast(w: Tensor | None) -> Tensor | None:
        return None if w is None else w.detach().to(device, dtype)

    w_ih, w_hh, b_ih, b_hh = (cast(w) for w in net.layer_weights(L - 1))
    xi = F.linear(cast(x[:, b]), w_ih, b_ih)
    h = cast(trace.hidden[-1][:, b])
    h_prev = torch.cat([h.new_zeros(1, H), h[:-1]])
    c_prev = None
    if net.kind == "lstm":
        c = cast(trace.cell[-1][:, b])
        c_prev = torch.cat([c.new_zeros(1, H), c[:-1]])
    return w_hh, b_hh, xi, h_prev, c_prev


@dataclass
class StepJacobians:
    """d s_t / d s_{t-1} for every t, in blocks (the state s is h, or (h, c) for lstm).

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
        padded = padded.to(self.hh.device)
        keep = ~padded.view(-1, 1, 1)
        eye = torch.eye(self.hh.shape[-1], dtype=self.hh.dtype, device=self.hh.device)
        if self.hc is None:
            return StepJacobians(torch.where(keep, self.hh, eye))
        k = keep.view(-1, 1)
        return StepJacobians(torch.where(keep, self.hh, eye), self.hc * k, self.ch * keep,
                             torch.where(k, self.cc, torch.ones_like(self.cc)))


@dataclass
class StepCoefficients:
    """The diagonals of every step Jacobian of the top layer, [T, H] each, and W_hh.

    kind rnn:  J_t = diag(d) W_hh.
    kind gru:  J_t = diag(z) + diag(dr) W_hr + diag(dz) W_hz + diag(dn) W_hn.
    kind lstm: with e the coefficient of dc_t, dc_t/dh_{t-1} = diag(di) W_hi + diag(df) W_hf
               + diag(dg) W_hg, dh_t/dh_{t-1} = diag(do) W_ho + diag(oc) dc_t/dh_{t-1},
               dh_t/dc_{t-1} = diag(oc * f), dc_t/dc_{t-1} = diag(f).
    ``coef`` holds them by name; ``valid`` [T] bool: False where the step is padded (J_t = I).
    """

    kind: str
    w_hh: Tensor
    coef: dict[str, Tensor]
    valid: Tensor | None = None

    @property
    def T(self) -> int:
        return next(iter(self.coef.values())).shape[0]

    @property
    def H(self) -> int:
        return self.w_hh.shape[-1]

    def held(self, t: int) -> bool:
        return self.valid is not None and not bool(self.valid_cpu[t])

    def __post_init__(self) -> None:
        self.valid_cpu = None if self.valid is None else self.valid.detach().cpu()

    # -------------------------------------------------------------- dense blocks
    def dense(self, ts: slice | None = None) -> StepJacobians:
        """The dense step Jacobians for the steps ``ts`` (all by default)."""
        ts = slice(None) if ts is None else ts
        c = {k: v[ts] for k, v in self.coef.items()}
        W = self.w_hh

        def dW(d: Tensor, block: Tensor) -> Tensor:  # diag(d_t) @ block, for every t
            return d.unsqueeze(-1) * block

        def plus_dW(acc: Tensor, d: Tensor, block: Tensor) -> Tensor:  # acc += diag(d_t) @ block
            return acc.addcmul_(d.unsqueeze(-1), block)

        # The [T, H, H] sums are accumulated in place: at H = 256, T = 200 each one is 100 MB.
        if self.kind == "rnn":
            J = StepJacobians(dW(c["d"], W))
        elif self.kind == "lstm":
            W_i, W_f, W_g, W_o = W.chunk(4)
            dc_dh = plus_dW(plus_dW(dW(c["df"], W_f), c["di"], W_i), c["dg"], W_g)
            dh_dh = plus_dW(dW(c["do"], W_o), c["oc"], dc_dh)
            J = StepJacobians(dh_dh, c["oc"] * c["f"], dc_dh, c["f"].clone())
        else:
            W_r, W_z, W_n = W.chunk(3)
            J = plus_dW(plus_dW(dW(c["dz"], W_z), c["dr"], W_r), c["dn"], W_n)
            J.diagonal(dim1=-2, dim2=-1).add_(c["z"])
            J = StepJacobians(J)
        if self.valid is not None:
            J = J.hold(~self.valid[ts])
        return J

    # -------------------------------------------------- products with a block
    def vjp(self, t: int, a: Tensor, b: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """(a, b) J_t for rows a [k, H] (on h_t) and b [k, H] (on c_t, lstm; else None):
        the rows on (h_{t-1}, c_{t-1})."""
        if self.held(t):
            return a, b
        c, W = self.coef, self.w_hh
        if self.kind == "rnn":
            return (a * c["d"][t]) @ W, None
        if self.kind == "gru":
            coef = torch.cat([a * c["dr"][t], a * c["dz"][t], a * c["dn"][t]], dim=-1)
            return torch.addmm(a * c["z"][t], coef, W), None
        e = a * c["oc"][t] + b  # everything that reaches c_t
        coef = torch.cat([e * c["di"][t], e * c["df"][t], e * c["dg"][t], a * c["do"][t]], dim=-1)
        return coef @ W, e * c["f"][t]

    def jvp(self, t: int, xh: Tensor, xc: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """J_t (xh, xc) for columns xh [H, k] (on h_{t-1}) and xc [H, k] (on c_{t-1}, lstm)."""
        if self.held(t):
            return xh, xc
        c, W = self.coef, self.w_hh
        pre = W @ xh  # [G*H, k]
        col = {k: v[t].unsqueeze(-1) for k, v in c.items()}
        if self.kind == "rnn":
            return col["d"] * pre, None
        if self.kind == "gru":
            pr, pz, pn = pre.chunk(3)
            return col["z"] * xh + col["dr"] * pr + col["dz"] * pz + col["dn"] * pn, None
        pi, pf, pg, po = pre.chunk(4)
        dc = col["di"] * pi + col["df"] * pf + col["dg"] * pg + col["f"] * xc
        return col["do"] * po + col["oc"] * dc, dc


def step_coefficients(net, x: Tensor, trace: Trace, b: int, valid: Tensor | None = None,
                      device=None, dtype=torch.float64) -> StepCoefficients:
    """The diagonals of the top layer's step Jacobians for batch element b (x: its inputs).

    valid: [T] bool, False at padded steps (their Jacobian is the identity). Computed on
    ``device`` (default CPU) in ``dtype``. Other cell kinds than rnn, lstm, gru are not
    supported (``step_jacobians_autograd`` works for any cell with a ``_cell``).
    """
    w_hh, b_hh, xi, h_prev, c_prev = _top_layer_states(net, x, trace, b, device, dtype)
    return cell_coefficients(net, w_hh, b_hh, xi, h_prev, c_prev, valid)


def cell_coefficients(net, w_hh: Tensor, b_hh: Tensor | None, xi: Tensor, h_prev: Tensor,
                      c_prev: Tensor | None, valid: Tensor | None = None) -> StepCoefficients:
    """The Jacobian diagonals of one layer's cell stepped from N states (see StepCoefficients).

    xi: [N, G*H] input projections W_ih x + b_ih; h_prev, c_prev: [N, H] the states stepped
    from (N = T along a trajectory, or any batch of states, e.g. candidate fixed points).
    """
    pre = F.linear(h_prev, w_hh, b_hh)
    if net.kind == "rnn":
        a = xi + pre
        d = 1 - torch.tanh(a) ** 2 if net.nonlinearity == "tanh" else (a > 0).to(pre.dtype)
        coef = {"d": d}
    elif net.kind == "lstm":
        i, f, g, o = (xi + pre).chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        tc = torch.tanh(f * c_prev + i * g)
        coef = {"di": g * i * (1 - i), "df": c_prev * f * (1 - f), "dg": i * (1 - g**2),
                "do": tc * o * (1 - o), "oc": o * (1 - tc**2), "f": f}
    elif net.kind == "gru":
        xr, xz, xn = xi.chunk(3, dim=-1)
        hr, hz, hn = pre.chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        dn = (1 - z) * (1 - n**2)
        coef = {"z": z, "dz": (h_prev - n) * z * (1 - z), "dr": dn * hn * r * (1 - r), "dn": dn * r}
    else:
        raise ValueError(f"no closed-form Jacobian for cell kind {net.kind!r}")
    return StepCoefficients(net.kind, w_hh, coef, None if valid is None else valid.to(w_hh.device))


def cell_jacobians(net, w_hh: Tensor, b_hh: Tensor | None, xi: Tensor, h_prev: Tensor,
                   c_prev: Tensor | None) -> StepJacobians | None:
    """Dense d s'/d s [N, S, S] blocks of one layer's cell for a batch of N states, in closed
    form (None for a cell kind without one); used by core.instruments.dynamics."""
    if net.kind not in ("rnn", "lstm", "gru"):
        return None
    return cell_coefficients(net, w_hh, b_hh, xi, h_prev, c_prev).dense()


def step_jacobians(net, x: Tensor, trace: Trace, b: int) -> StepJacobians:
    """Dense per-step Jacobians of the top layer for batch element b (x: its inputs), CPU
    float64; ``step_jacobians_autograd`` for other cell kinds (state h only)."""
    if net.kind not in ("rnn", "lstm", "gru"):
        return StepJacobians(step_jacobians_autograd(net, x, trace, b))
    return step_coefficients(net, x, trace, b).dense()


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
