"""Interventions applied inside the recurrence: the counterfactual run and the ablation sweep.

``run_edited`` is the instrumented loop of core.models.recurrent with edits: the same
weights (``layer_weights``), the same per-step cell (``_cell``, whose ``edit`` hook edits a
gate or the cell state where the cell computes it) and the hidden state edited after each
step, so an edited value feeds the rest of its step and every later step. The edits
(core.interventions) compile into a ``Plan``: per layer and value, for each t, either
nothing or a pair (a, b) with edited = a * x + b. With an empty plan the loop is the same
sequence of operations as ``net(x)``'s, so its results are bit-identical.

The ablation sweep zeroes each hidden unit in turn over the whole sequence, all units in
one forward: the state carries a leading variant dimension, [V, B, H], where variant 0 is
the unedited run and variant v + 1 has unit v zeroed (the input projection of the first
edited layer is computed once and broadcast over the variants). It does H + 1 times the
probe's arithmetic; ``ablation_estimates`` gives the first-order effects of all units from
one forward and one backward (attribution patching): the change in loss when unit v is
zeroed is about -sum_t dL/dh_t[v] * h_t[v], where dL/dh_t is the gradient with respect to
the hidden state at the point where the edit would act (the same point as the sweep's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from core.batch import Batch
from core.interventions import Intervention
from core.models.recurrent import State, Trace, mask_from, one_direction
from core.names import GATES

Edit = tuple[Tensor | None, Tensor | None]  # (a, b): x -> a * x + b; None = leave out that op


@dataclass
class Plan:
    """edits[(layer, key)][t]: an Edit or None; key is a gate name, "h" or "c".

    ``variants`` > 0: the run carries a leading variant dimension from ``variant_layer`` on.
    """

    edits: dict[tuple[int, str], list[Edit | None]] = field(default_factory=dict)
    variants: int = 0
    variant_layer: int = 0

    def at(self, layer: int, key: str, t: int) -> Edit | None:
        steps = self.edits.get((layer, key))
        return steps[t] if steps is not None and t < len(steps) else None

    def inside_cell(self, layer: int) -> bool:
        """Whether this layer edits a gate or c (which the cell's ``edit`` hook applies)."""
        return any(lay == layer and key != "h" for lay, key in self.edits)


def apply(edit: Edit | None, x: Tensor) -> Tensor:
    if edit is None:
        return x
    a, b = edit
    if a is not None:
        x = x * a
    return x + b if b is not None else x


def compile_plan(edits: Iterable[Intervention], hidden_size: int, T: int, device, dtype=torch.float32) -> Plan:
    """The enabled ``edits`` for a sequence of T steps (steps past T are left out).

    Edits of the same value compose in list order; steps with the same active edits share
    one (a, b) pair. The edits must have been checked (core.interventions.check_interventions).
    """
    plan = Plan()
    grouped: dict[tuple[int, str], list[Intervention]] = {}
    for edit in edits:
        if edit.enabled:
            grouped.setdefault((edit.layer, edit.key), []).append(edit)
    for where, group in grouped.items():
        steps: list[Edit | None] = []
        made: dict[tuple[int, ...], Edit] = {}
        for t in range(T):
            active = tuple(i for i, e in enumerate(group) if e.applies_at(t))
            if not active:
                steps.append(None)
                continue
            if active not in made:
                a = torch.ones(hidden_size, dtype=torch.float64)
                b = torch.zeros(hidden_size, dtype=torch.float64)
                for i in active:
                    ea, eb = group[i].affine()
                    units = slice(None) if group[i].units is None else list(group[i].units)
                    a[units], b[units] = ea * a[units], ea * b[units] + eb
                made[active] = (a.to(device, dtype), b.to(device, dtype))
            steps.append(made[active])
        if any(s is not None for s in steps):
            plan.edits[where] = steps
    return plan


def ablation_plan(hidden_size: int, T: int, layer: int, device, dtype=torch.float32) -> Plan:
    """H + 1 variants: 0 unedited, v + 1 with unit v of ``layer``'s h zeroed at every step."""
    keep = torch.ones(hidden_size + 1, 1, hidden_size, device=device, dtype=dtype)
    units = torch.arange(hidden_size, device=device)
    keep[units + 1, 0, units] = 0.0
    return Plan({(layer, "h"): [(keep, None)] * T}, variants=hidden_size + 1, variant_layer=layer)


def run_edited(net, x: Tensor, plan: Plan, state: State | None = None, lengths: Tensor | None = None, *,
               mask: Tensor | None = None, detach_every: int | None = None,
               trace: bool = True) -> tuple[Tensor, State, Trace | None]:
    """``net(x, state, lengths, mask=mask)`` with ``plan``'s edits inside the recurrence.

    Args as for the stack's forward (x [T, B, I]); padded steps hold the state, edits
    included. With ``plan.variants`` = V the outputs and states from ``plan.variant_layer``
    up are [.., V, B, H] (layers below run once and are broadcast). ``trace`` False keeps
    only what the loss needs.
    Returns (out [T, (V,) B, H] of the top layer, state like the input state, Trace or None).
    """
    one_direction(net, "interventions")
    if x.dim() != 3 or x.shape[-1] != net.input_size:
        raise ValueError(f"x must have shape [T, B, {net.input_size}]; got {list(x.shape)}")
    T, B = x.shape[0], x.shape[1]
    m = mask_from(lengths, mask, T, B, x.device)
    h0, c0 = net._initial(state, B, x)
    steps_m = m.unbind(0) if m is not None else [None] * T
    gates_of = GATES[net.kind]
    inp = x
    hidden, cells, gates, steps, h_last, c_last = [], [], [], [], [], []
    for layer in range(net.num_layers):
        w_ih, w_hh, b_ih, b_hh = net.layer_weights(layer)
        xi = F.linear(inp, w_ih, b_ih).unbind(0)
        h = h0[layer]
        c = c0[layer] if c0 is not None else None
        if plan.variants and layer == plan.variant_layer:  # the variants part here (and stay apart)
            h = h.expand(plan.variants, *h.shape)
            c = c.expand(plan.variants, *c.shape) if c is not None else None
        inside = plan.inside_cell(layer)
        hs, cs, gs = [], [], {name: [] for name in gates_of}
        for t in range(T):
            if detach_every and t and t % detach_every == 0:
                h = h.detach()
                c = c.detach() if c is not None else None
            edit = (lambda key, value, _l=layer, _t=t: apply(plan.at(_l, key, _t), value)) if inside else None
            h_new, c_new, g = net._cell(xi[t], h, c, w_hh, b_hh, edit=edit)
            h_new = apply(plan.at(layer, "h", t), h_new)
            mt = steps_m[t]
            if mt is not None:
                h_new = torch.where(mt, h_new, h)
                if c is not None:
                    c_new = torch.where(mt, c_new, c)
            h, c = h_new, c_new
            hs.append(h)
            if trace:
                if c is not None:
                    cs.append(c)
                for name, value in g.items():
                    gs[name].append(value)
        layer_out = torch.stack(hs)
        steps.append(hs)
        hidden.append(layer_out)
        if trace:
            if c is not None:
                cells.append(torch.stack(cs))
            gates.append({name: torch.stack(v) for name, v in gs.items()})
        h_last.append(h)
        if c is not None:
            c_last.append(c)
        if m is not None:  # [T, B, 1], or [T, 1, B, 1] against [T, V, B, H]
            layer_out = layer_out * (m if layer_out.dim() == 3 else m.unsqueeze(1))
        inp = layer_out
    out = inp
    if plan.variants:  # layers below the variants: the same state for every variant
        h_last = [s.expand_as(h_last[-1]) for s in h_last]
        c_last = [s.expand_as(c_last[-1]) for s in c_last]
    h_n = torch.stack(h_last)
    new_state: State = (h_n, torch.stack(c_last)) if net.kind == "lstm" else h_n
    if not trace:
        return out, new_state, None
    tr = Trace(net.kind, hidden, cells if net.kind == "lstm" else None, gates, steps)
    return out, new_state, tr


class EditedStack:
    """``net`` called as ``net(x, detach_every=..., lengths=..., mask=...)`` with ``plan``
    applied, so core.instruments.bptt can take dL/dh_t of the edited run."""

    def __init__(self, net, plan: Plan):
        self.net, self.plan = net, plan
        self.kind, self.num_layers = net.kind, net.num_layers

    def __call__(self, x: Tensor, state: State | None = None, lengths: Tensor | None = None, *,
                 mask: Tensor | None = None, detach_every: int | None = None):
        return run_edited(self.net, x, self.plan, state, lengths, mask=mask, detach_every=detach_every)


def model_plan(model, batch: Batch, edits: Iterable[Intervention]) -> Plan:
    """The plan of ``edits`` for ``model`` (a core.models.sequence.SequenceModel) on ``batch``."""
    weight = next(model.parameters())
    return compile_plan(edits, model.recurrent.hidden_size, batch.x.shape[0], weight.device, weight.dtype)


def edited_loss(model, batch: Batch, plan: Plan, detach_every: int = 0) -> tuple[Tensor, dict[str, float]]:
    """The task loss and metrics of ``model`` on ``batch`` with ``plan`` applied (with autograd:
    training with a lesion). ``detach_every``: truncated BPTT, as ``model.loss``."""
    out, state, _ = run_edited(model.recurrent, model.inputs(batch), plan, detach_every=detach_every or None,
                               trace=False, **model.recurrent_kwargs(batch))
    return model.loss_from_outputs(out, state, batch)


@torch.no_grad()
def edited_trace(model, batch: Batch, plan: Plan, masking: bool = True) -> tuple[Trace, Tensor, Tensor]:
    """(trace, loss, prediction) of ``model`` on ``batch`` with ``plan``, no autograd.

    prediction: the readout of batch element 0 ([O] when the model reads out once, [T, O] otherwise).
    """
    kwargs = model.recurrent_kwargs(batch) if masking else {}
    out, state, tr = run_edited(model.recurrent, model.inputs(batch), plan, **kwargs)
    loss, _ = model.loss_from_outputs(out, state, batch)
    pred = model.predict(out, state)
    return tr, loss, (pred[0] if model.readout_kind == "last" else pred[:, 0])


def variant_losses(model, out: Tensor, state: State, batch: Batch) -> Tensor:
    """[V] the task loss of each variant, as ``model.loss_from_outputs`` computes it for one.

    out: [T, V, B, H]; state: h_n (or (h_n, c_n)) [L, V, B, H].
    """
    pred = model.predict(out, state)
    y = batch.y
    if model.readout_kind == "last":  # pred [V, B, O], y [B, O]
        return ((pred - y) ** 2).mean(dim=(1, 2))
    T, V, B = pred.shape[:3]
    weight = batch.valid.float() if batch.valid is not None else torch.ones(T, B, device=pred.device)
    if model.loss_kind == "ce":
        per_step = F.cross_entropy(pred.reshape(T * V * B, -1), y.unsqueeze(1).expand(T, V, B).reshape(-1),
                                   reduction="none").view(T, V, B)
    else:
        per_step = ((pred - y.unsqueeze(1)) ** 2).mean(-1)
    return (per_step * weight.unsqueeze(1)).sum(dim=(0, 2)) / weight.sum().clamp_min(1.0)


@torch.no_grad()
def ablation_losses(model, batch: Batch, layer: int) -> Tensor:
    """[H + 1]: the probe loss unedited (0), then with each unit v of ``layer``'s hidden state
    zeroed at every step (v + 1), all in one forward with the units as a batch dimension."""
    net = model.recurrent
    if not 0 <= layer < net.num_layers:
        raise ValueError(f"layer must lie in 0..{net.num_layers - 1}; got {layer}")
    weight = next(model.parameters())
    plan = ablation_plan(net.hidden_size, batch.x.shape[0], layer, weight.device, weight.dtype)
    out, state, _ = run_edited(net, model.inputs(batch), plan, trace=False, **model.recurrent_kwargs(batch))
    return variant_losses(model, out, state, batch)


def ablation_estimates(model, batch: Batch, layer: int) -> tuple[float, Tensor]:
    """(probe loss, [H] first-order effects): for each unit v of ``layer``'s hidden state,
    -sum_{t, b} dL/dh_t[b, v] * h_t[b, v], the linear estimate of ``ablation_losses``'s
    loss with v zeroed minus the unedited loss, from one forward and one backward.

    Exact where the loss is linear in the zeroed unit's values; for a unit that saturates
    a gate, or with large effects, it can be far from the sweep's, so it ranks units rather
    than measuring them (tests compare it with the sweep and with a finite difference).
    """
    net = model.recurrent
    if not 0 <= layer < net.num_layers:
        raise ValueError(f"layer must lie in 0..{net.num_layers - 1}; got {layer}")
    x, kwargs = model.inputs(batch), model.recurrent_kwargs(batch)
    with torch.enable_grad():
        if net.kind in ("rnn", "lstm") and not kwargs:
            return _fused_estimates(model, net, x, batch, layer)
        return _loop_estimates(model, net, x, batch, layer, kwargs)


def _fused_estimates(model, net, x: Tensor, batch: Batch, layer: int) -> tuple[float, Tensor]:
    """``ablation_estimates`` on torch's fused kernels (several times faster than the loop),
    for an RNN or LSTM on an unpadded batch.

    A scale s [H] (ones) multiplies ``layer``'s h_t where it leaves the cell; dL/ds_v is
    sum_t dL/dh_t[v] h_t[v]. These cells read h_{t-1} only through W_hh (the LSTM's direct
    path runs through c), and h_0 = 0, so scaling h_t in the recurrence is scaling W_hh's
    columns: the kernel runs with W_hh diag(s), and its outputs (the next layer's input or
    the readout's) and final h are scaled by s. (A GRU mixes h_{t-1} in directly: the loop.)
    """
    B, H = x.shape[1], net.hidden_size
    scale = torch.ones(H, device=x.device, dtype=x.dtype, requires_grad=True)
    zeros = x.new_zeros(1, B, H)
    inp, h_last, c_last = x, [], []
    for k in range(net.num_layers):
        w_ih, w_hh, b_ih, b_hh = net.layer_weights(k)
        if k == layer:
            w_hh = w_hh * scale
        weights = [w for w in (w_ih, w_hh, b_ih, b_hh) if w is not None]
        if net.kind == "lstm":
            out, h_n, c_n = torch._VF.lstm(inp, (zeros, zeros), weights, net.bias, 1, 0.0, False, False, False)
            c_last.append(c_n[0])
        else:
            run = torch._VF.rnn_tanh if net.nonlinearity == "tanh" else torch._VF.rnn_relu
            out, h_n = run(inp, zeros, weights, net.bias, 1, 0.0, False, False, False)
        h_n = h_n[0]
        if k == layer:
            out, h_n = out * scale, h_n * scale
        h_last.append(h_n)
        inp = out
    state: State = (torch.stack(h_last), torch.stack(c_last)) if net.kind == "lstm" else torch.stack(h_last)
    loss, _ = model.loss_from_outputs(inp, state, batch)
    # A loss read at the last step sends back a gradient that vanishes into denormal floats
    # (below 1e-38), on which the fused backward ran 7x slower (H 256, T 200: 75 ms against
    # 10 ms). Flushed to zero they change no effect: they are 1e-35 of the sums they join.
    # torch leaves flushing off, and nothing else here turns it on, so off is restored.
    torch.set_flush_denormal(True)
    try:
        (grad,) = torch.autograd.grad(loss, scale)
    finally:
        torch.set_flush_denormal(False)
    return float(loss.detach()), -grad.detach()


def _loop_estimates(model, net, x: Tensor, batch: Batch, layer: int, kwargs: dict) -> tuple[float, Tensor]:
    """``ablation_estimates`` through the instrumented loop (any cell, padded batches)."""
    weight = next(model.parameters())
    T, B = x.shape[0], x.shape[1]
    # a zero offset added to h_t where the sweep's edit acts: its gradient is dL/dh_t there
    offsets = [torch.zeros(B, net.hidden_size, device=weight.device, dtype=weight.dtype, requires_grad=True)
               for _ in range(T)]
    plan = Plan({(layer, "h"): [(None, b) for b in offsets]})
    out, state, tr = run_edited(net, x, plan, **kwargs)
    loss, _ = model.loss_from_outputs(out, state, batch)
    grads = torch.autograd.grad(loss, offsets, allow_unused=True)
    # padded steps hold the state (their edits act on nothing: grad None or 0), so the
    # traced h_t, which holds the last valid state there, is multiplied by zero
    g = torch.stack([torch.zeros_like(o) if d is None else d for d, o in zip(grads, offsets)])  # [T, B, H]
    h = tr.hidden[layer].detach()  # [T, B, H]
    return float(loss.detach()), -(g * h).sum(dim=(0, 1))
