"""Instrumented recurrent layers: RNN, LSTM and GRU with every gate and state visible.

Each layer subclasses the matching ``torch.nn`` module, so parameters, their names
(``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``), shapes,
initialisation and ``state_dict`` are exactly torch's, and weights move freely both ways.

Three ways to run the same weights:

* ``net(x, state, lengths)`` – the instrumented Python loop. Returns ``(out, state, trace)``;
  the trace holds every hidden state and gate, and the per-step hidden tensors are the
  real nodes of the autograd graph, so ``core.instruments.bptt`` can take ``dL/dh_t`` through them.
* ``net(x, state, lengths, trace=False)`` – torch's fused kernel, for training.
* ``net.probe(x, state, lengths)`` – no-grad trace for the GUI: fused forward layer by
  layer, then the gates recomputed for all t in one batched matmul.

Bidirectional stacks (Schuster & Paliwal 1997) are torch.nn's: every layer runs a forward
direction over t = 0..T-1 and a backward one over t = T-1..0 with weights of its own
(``weight_ih_l{k}_reverse``, ...), and the next layer (and the output) reads both, concatenated
([T, B, 2H]: forward units first); states are [2L, B, H], layer by layer, forward first.
The trace keeps the forward direction where a unidirectional stack keeps its only one and
the backward direction in ``trace.reverse``.

Equations (torch.nn's documentation; ``*`` is the elementwise product)::

    rnn:   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)          (or relu)
    lstm:  i = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)   input gate
           f = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)   forget gate
           g = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg) cell candidate
           o = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)   output gate
           c_t = f * c_{t-1} + i * g
           h_t = o * tanh(c_t)
    gru:   r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)   reset gate
           z = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)   update gate
           n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))   new gate
           h_t = (1 - z) * n + z * h_{t-1}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from core.names import CELL_KINDS, GATES, NONLINEARITIES

State = Tensor | tuple[Tensor, Tensor]


@dataclass
class Trace:
    """Everything one forward pass computed, per layer.

    hidden[l]: [T, B, H] state h_t after step t (held, not zeroed, at padded steps).
    cell[l]:   [T, B, H] LSTM cell state c_t (``None`` for rnn/gru).
    gates[l]:  dict gate name -> [T, B, H] (empty for rnn).
    steps[l]:  the T graph nodes h_t used by the recurrence (loop mode only), so that
               ``torch.autograd.grad(loss, steps[l])`` is the total derivative dL/dh_t.
    cell_steps[l]: likewise the T nodes c_t (lstm, loop mode only): dL/dc_t.
    reverse:   bidirectional stacks only: the backward direction, a Trace of the same shapes
               whose h_t (indexed by input position t, not by the order it was computed in)
               has read x_{T-1} down to x_t. None for a unidirectional stack, whose one
               direction is the fields above; in a bidirectional one they are its forward
               direction (layer l's output is then [hidden[l]; reverse.hidden[l]]).
    """

    kind: str
    hidden: list[Tensor]
    cell: list[Tensor] | None
    gates: list[dict[str, Tensor]]
    steps: list[list[Tensor]] = field(default_factory=list)
    cell_steps: list[list[Tensor]] = field(default_factory=list)
    reverse: Trace | None = None


def make_recurrent(
    kind: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    nonlinearity: str = "tanh",
    bias: bool = True,
    bidirectional: bool = False,
) -> RNN | LSTM | GRU:
    """Build an instrumented recurrent stack whose state_dict equals torch.nn's
    (``bidirectional``: torch.nn's ``bidirectional=True``, ``*_reverse`` weights included)."""
    if kind not in CELL_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CELL_KINDS)}; got {kind!r}")
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if not isinstance(bidirectional, bool):
        raise ValueError(f"bidirectional must be True or False; got {bidirectional!r}")
    if kind == "rnn":
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of tanh, relu; got {nonlinearity!r}")
        return RNN(input_size, hidden_size, num_layers, nonlinearity=nonlinearity, bias=bias, bidirectional=bidirectional)
    if nonlinearity != "tanh":
        raise ValueError(f"nonlinearity applies to kind 'rnn' only; {kind} uses fixed gate functions")
    return (LSTM if kind == "lstm" else GRU)(input_size, hidden_size, num_layers, bias=bias, bidirectional=bidirectional)


def one_direction(net, what: str) -> None:
    """ValueError, one line, when ``net`` is bidirectional: ``what`` follows a single
    recurrence (its Jacobians, edits or fixed points), which such a layer does not have."""
    if getattr(net, "bidirectional", False):
        raise ValueError(f"{what} is not available for bidirectional layers")


def mask_from(lengths: Tensor | None, mask: Tensor | None, T: int, B: int, device) -> Tensor | None:
    """[T, B, 1] bool mask of real (not padded) steps, or None when every step is real."""
    if mask is not None:
        if mask.shape != (T, B):
            raise ValueError(f"mask must have shape [T, B] = [{T}, {B}]; got {list(mask.shape)}")
        return mask.to(device=device, dtype=torch.bool).unsqueeze(-1)
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape [B] = [{B}]; got {list(lengths.shape)}")
    if int(lengths.min()) < 1 or int(lengths.max()) > T:
        raise ValueError(f"lengths must lie in 1..{T} (the sequence length); got {lengths.tolist()}")
    return (torch.arange(T, device=device).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)


class _Instrumented:
    """Shared forward logic; mixed into subclasses of nn.RNN / nn.LSTM / nn.GRU."""

    kind: str

    def _check_supported(self) -> None:
        if self.batch_first or getattr(self, "proj_size", 0) or self.dropout:
            raise ValueError("only time-major layers without projection or dropout are supported")

    @property
    def directions(self) -> int:
        """2 for a bidirectional stack, else 1."""
        return 2 if self.bidirectional else 1

    def layer_weights(self, layer: int, reverse: bool = False) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer (``reverse``: of its backward
        direction), torch's names and shapes."""
        suffix = f"l{layer}_reverse" if reverse else f"l{layer}"
        w_ih = getattr(self, f"weight_ih_{suffix}")
        w_hh = getattr(self, f"weight_hh_{suffix}")
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, f"bias_ih_{suffix}"), getattr(self, f"bias_hh_{suffix}")

    def _initial(self, state: State | None, B: int, x: Tensor) -> tuple[Tensor, Tensor | None]:
        L, H = self.num_layers * self.directions, self.hidden_size
        if state is None:
            h0 = x.new_zeros(L, B, H)
            return h0, (x.new_zeros(L, B, H) if self.kind == "lstm" else None)
        if self.kind == "lstm":
            if not isinstance(state, tuple) or len(state) != 2:
                raise ValueError("lstm state must be a tuple (h_0, c_0)")
            h0, c0 = state
        else:
            h0, c0 = state, None
        for name, s in (("h_0", h0), ("c_0", c0)):
            if s is not None and s.shape != (L, B, H):
                raise ValueError(f"{name} must have shape [{L}, {B}, {H}]; got {list(s.shape)}")
        return h0, c0

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: Tensor,
        state: State | None = None,
        lengths: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        trace: bool = True,
        detach_every: int | None = None,
    ) -> tuple[Tensor, State, Trace | None]:
        """Run the stack over a time-major sequence.

        Args:
            x: [T, B, input_size].
            state: h_0 [L, B, H] (rnn, gru) or (h_0, c_0) (lstm); zeros when None.
            lengths: [B] real lengths of post-padded sequences; padded steps give zero
                output and leave the state unchanged (as with ``pack_padded_sequence``).
            mask: [T, B] bool, an alternative to ``lengths`` for any padding layout
                (e.g. pre-padding): steps where it is False are skipped in the same way.
            trace: False runs torch's fused kernel and returns ``trace=None``.
            detach_every: truncated BPTT: the recurrent state is detached every k steps
                (unidirectional stacks only: a backward direction needs the whole sequence).
        Returns:
            out [T, B, H] (top layer; [T, B, 2H] when bidirectional), state like the input
            state, trace.
        """
        self._check_supported()
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape [T, B, {self.input_size}]; got {list(x.shape)}")
        if detach_every is not None and detach_every < 1:
            raise ValueError(f"detach_every must be >= 1 or None; got {detach_every}")
        if detach_every is not None and self.bidirectional:
            raise ValueError("truncated BPTT (detach_every) is not available for bidirectional layers: "
                             "the backward direction needs the whole sequence")
        T, B = x.shape[0], x.shape[1]
        m = mask_from(lengths, mask, T, B, x.device)
        if not trace and mask is None and detach_every is None:
            return (*self._fused(x, state, lengths), None)
        return self._loop(x, state, m, detach_every)

    def _fused(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        base = super()  # the torch.nn module this class extends
        if lengths is None:
            return base.forward(x, state)
        T = x.shape[0]
        packed = pack_padded_sequence(x, torch.as_tensor(lengths).cpu(), enforce_sorted=False)
        out, state = base.forward(packed, state)
        out, _ = pad_packed_sequence(out, total_length=T)
        return out, state

    def _loop(self, x: Tensor, state: State | None, m: Tensor | None, detach_every: int | None):
        T, B = x.shape[0], x.shape[1]
        h0, c0 = self._initial(state, B, x)
        steps_m = m.unbind(0) if m is not None else [None] * T
        D = self.directions
        traces = [Trace(self.kind, [], [] if self.kind == "lstm" else None, []) for _ in range(D)]
        inp, h_last, c_last = x, [], []
        for layer in range(self.num_layers):
            for d, tr in enumerate(traces):
                k = layer * D + d
                hs, cs, gs, h, c = self._direction(inp, layer, d == 1, h0[k], None if c0 is None else c0[k],
                                                   steps_m, detach_every)
                tr.steps.append(hs)
                tr.hidden.append(torch.stack(hs))
                if c is not None:
                    tr.cell.append(torch.stack(cs))
                    tr.cell_steps.append(cs)
                    c_last.append(c)
                tr.gates.append(gs)
                h_last.append(h)
            layer_out = torch.cat([tr.hidden[-1] for tr in traces], dim=-1) if D == 2 else traces[0].hidden[-1]
            inp = layer_out if m is None else layer_out * m
        out = inp
        h_n = torch.stack(h_last)
        new_state: State = (h_n, torch.stack(c_last)) if self.kind == "lstm" else h_n
        tr = traces[0]
        if D == 2:
            tr.reverse = traces[1]
        return out, new_state, tr

    def _direction(self, inp: Tensor, layer: int, reverse: bool, h: Tensor, c: Tensor | None,
                   steps_m: list, detach_every: int | None):
        """One direction of one layer: the recurrence over t = 0..T-1 (``reverse``: T-1..0).

        Returns (h_t nodes, c_t nodes, gates {name: [T, B, H]}, final h, final c), the
        per-step values in input order (t), whichever order they were computed in.
        """
        w_ih, w_hh, b_ih, b_hh = self.layer_weights(layer, reverse)
        # One matmul for the input projection of all steps; unbind (not x[t]) keeps
        # backward from allocating a full-size gradient per step.
        xi = F.linear(inp, w_ih, b_ih).unbind(0)
        T = len(xi)
        hs, cs, gs = [], [], {name: [] for name in GATES[self.kind]}
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            if detach_every and t and t % detach_every == 0:
                h = h.detach()
                c = c.detach() if c is not None else None
            h_new, c_new, g = self._cell(xi[t], h, c, w_hh, b_hh)
            mt = steps_m[t]
            if mt is not None:
                if c is not None:
                    c_new = torch.where(mt, c_new, c)
                    # h_t read from the c_t node, so that dL/dc_t includes the h_t path
                    h_new = g["output"] * torch.tanh(c_new)
                h_new = torch.where(mt, h_new, h)
            h, c = h_new, c_new
            hs.append(h)
            if c is not None:
                cs.append(c)
            for name, value in g.items():
                gs[name].append(value)
        if reverse:
            for values in (hs, cs, *gs.values()):
                values.reverse()
        return hs, cs, {name: torch.stack(v) for name, v in gs.items()}, h, c

    # ------------------------------------------------------------------ probe
    @torch.no_grad()
    def probe(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None,
              *, mask: Tensor | None = None) -> Trace:
        """Trace for display (no autograd): fused forward per layer, gates recomputed.

        Equal to ``forward(...)[2]`` within float tolerance, several times cheaper.
        Padded inputs fall back to the loop.
        """
        if lengths is not None or mask is not None:
            return self.forward(x, state, lengths, mask=mask)[2]
        self._check_supported()
        h0, c0 = self._initial(state, x.shape[1], x)
        D = self.directions
        traces = [Trace(self.kind, [], [] if self.kind == "lstm" else None, []) for _ in range(D)]
        inp = x
        for layer in range(self.num_layers):
            for d, tr in enumerate(traces):
                k = layer * D + d
                # the backward direction is the forward recurrence on the time-reversed input
                seq = inp.flip(0) if d else inp
                hs, g, cs = self._probe_direction(seq, layer, d == 1, h0[k:k + 1],
                                                  None if c0 is None else c0[k:k + 1])
                if d:
                    hs, cs = hs.flip(0), (None if cs is None else cs.flip(0))
                    g = {name: v.flip(0) for name, v in g.items()}
                tr.hidden.append(hs)
                tr.gates.append(g)
                if cs is not None:
                    tr.cell.append(cs)
            inp = torch.cat([tr.hidden[-1] for tr in traces], dim=-1) if D == 2 else traces[0].hidden[-1]
        tr = traces[0]
        if D == 2:
            tr.reverse = traces[1]
        return tr

    def _probe_direction(self, inp: Tensor, layer: int, reverse: bool, h0: Tensor, c0: Tensor | None):
        """(h [T, B, H], gates, c [T, B, H] or None) of one direction over ``inp`` in the
        order given; h0, c0 [1, B, H]."""
        w_ih, w_hh, b_ih, b_hh = self.layer_weights(layer, reverse)
        weights = [w for w in (w_ih, w_hh, b_ih, b_hh) if w is not None]
        if self.kind == "lstm":
            hs, _, _ = torch._VF.lstm(inp, (h0, c0), weights, self.bias, 1, 0.0, False, False, False)
        elif self.kind == "gru":
            hs, _ = torch._VF.gru(inp, h0, weights, self.bias, 1, 0.0, False, False, False)
        else:
            fn = torch._VF.rnn_tanh if self.nonlinearity == "tanh" else torch._VF.rnn_relu
            hs, _ = fn(inp, h0, weights, self.bias, 1, 0.0, False, False, False)
        h_prev = torch.cat([h0, hs[:-1]])
        g, cs = self._recompute_gates(inp, h_prev, None if c0 is None else c0[0], w_ih, w_hh, b_ih, b_hh)
        return hs, g, cs

    def _recompute_gates(self, x, h_prev, c0, w_ih, w_hh, b_ih, b_hh):
        """All gates for all t from x_t and h_{t-1} in one batched matmul ([T, B, *])."""
        return {}, None


class RNN(_Instrumented, nn.RNN):
    """Elman RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (or relu)."""

    kind = "rnn"

    def _cell(self, xi, h, c, w_hh, b_hh, edit=None):
        pre = xi + F.linear(h, w_hh, b_hh)
        return (torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)), None, {}


class LSTM(_Instrumented, nn.LSTM):
    """LSTM with gates input, forget, cell (candidate g), output; c_t = f*c + i*g, h_t = o*tanh(c_t)."""

    kind = "lstm"

    def _cell(self, xi, h, c, w_hh, b_hh, edit=None):
        i, f, g, o = (xi + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        if edit is not None:  # interventions: an edited gate feeds the rest of the step
            i, f, g, o = edit("input", i), edit("forget", f), edit("cell", g), edit("output", o)
        c_new = f * c + i * g
        if edit is not None:
            c_new = edit("c", c_new)
        return o * torch.tanh(c_new), c_new, {"input": i, "forget": f, "cell": g, "output": o}

    def _recompute_gates(self, x, h_prev, c0, w_ih, w_hh, b_ih, b_hh):
        i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h_prev, w_hh, b_hh)).chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        return {"input": i, "forget": f, "cell": g, "output": o}, linear_scan(f, i * g, c0)


class GRU(_Instrumented, nn.GRU):
    """GRU with gates reset, update, new; h_t = (1 - z) * n + z * h_{t-1}."""

    kind = "gru"

    def _cell(self, xi, h, c, w_hh, b_hh, edit=None):
        xr, xz, xn = xi.chunk(3, dim=-1)
        hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        if edit is not None:  # interventions: an edited gate feeds the rest of the step
            r, z = edit("reset", r), edit("update", z)
        n = torch.tanh(xn + r * hn)
        if edit is not None:
            n = edit("new", n)
        return (1 - z) * n + z * h, None, {"reset": r, "update": z, "new": n}

    def _recompute_gates(self, x, h_prev, c0, w_ih, w_hh, b_ih, b_hh):
        xr, xz, xn = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)
        hr, hz, hn = F.linear(h_prev, w_hh, b_hh).chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        return {"reset": r, "update": z, "new": torch.tanh(xn + r * hn)}, None


def linear_scan(a: Tensor, b: Tensor, c0: Tensor) -> Tensor:
    """c_t = a_t * c_{t-1} + b_t for all t (a, b [T, ...], c0 [...]), in ceil(log2 T) rounds
    of batched elementwise products (a Hillis-Steele scan over the affine maps), not T small
    kernels: on a GPU the per-step loop was most of a probe's cost. The same terms summed in
    another order: equal to the loop within float rounding."""
    b = torch.cat([(a[:1] * c0 + b[:1]), b[1:]])  # fold c_{-1} into the first step
    a = torch.cat([torch.zeros_like(a[:1]), a[1:]])
    d = 1
    while d < a.shape[0]:
        # (a_t, b_t) o (a_{t-d}, b_{t-d}): c -> a_t (a_{t-d} c + b_{t-d}) + b_t
        b = torch.cat([b[:d], torch.addcmul(b[d:], a[d:], b[:-d])])
        a = torch.cat([a[:d], a[d:] * a[:-d]])
        d *= 2
    return b


def torch_reference(net: RNN | LSTM | GRU) -> nn.RNN | nn.LSTM | nn.GRU:
    """A plain torch.nn module with the same weights (for tests and benchmarks)."""
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[net.kind]
    kwargs = {"nonlinearity": net.nonlinearity} if net.kind == "rnn" else {}
    ref = cls(net.input_size, net.hidden_size, net.num_layers, bias=net.bias,
              bidirectional=net.bidirectional, **kwargs)
    ref.load_state_dict(net.state_dict())
    return ref.to(next(net.parameters()).device)
