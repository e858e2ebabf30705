"""Interventions: the spec (text, JSON, checks) and the edited recurrence against references.

The reference recurrence below is written from torch.nn's equations with the module's own
weights, block by block, and applies each edit by its definition (set, add, scale, zero on
the chosen units and steps, in list order) where the equations compute the value; it is
first checked against torch.nn itself.
"""

from __future__ import annotations

import pytest
import torch

from core.interventions import (
    Intervention,
    InterventionError,
    check_interventions,
    intervention_from_dict,
    parse_intervention,
)
from core.models.interventions import Plan, ablation_plan, compile_plan, run_edited, variant_losses
from core.models.recurrent import make_recurrent, torch_reference

# ------------------------------------------------------------------------------ the spec


@pytest.mark.parametrize("text, expected", [
    ("gate=forget,layer=0,units=3,t=10:,op=set,value=0",
     Intervention("gate", 0, (3,), "forget", 10, None, "set", 0.0)),
    ("units=3,5,7,op=zero", Intervention("hidden", 0, (3, 5, 7), None, 0, None, "zero", 0.0)),
    ("target=cell,layer=1,units=0-3;9,t=4:8,op=scale,value=0.5",
     Intervention("cell", 1, (0, 1, 2, 3, 9), None, 4, 8, "scale", 0.5)),
    ("target=hidden,units=all,t=7,op=add,value=-1.5", Intervention("hidden", 0, None, None, 7, 8, "add", -1.5)),
    (" Gate = update , unit=2 , t=:5 , op=SET , value=1 ", Intervention("gate", 0, (2,), "update", 0, 5, "set", 1.0)),
])
def test_parse_reads_every_form_and_text_reads_back(text, expected):
    edit = parse_intervention(text)
    assert edit == expected
    assert parse_intervention(edit.text()) == edit
    assert intervention_from_dict(edit.to_dict()) == edit


@pytest.mark.parametrize("text, field, says", [
    ("gate=forget,units=3,t=10:", "op", "allowed: set, add, scale, zero"),
    ("gate=forget,units=3,op=set", "value", "needs value"),
    ("units=3,op=zero,value=2", "value", "takes no value"),
    ("units=3,op=push,value=2", "op", "allowed: set, add, scale, zero"),
    ("units=3,colour=red,op=zero", "colour", "allowed: target, layer, units, gate, t, op, value"),
    ("target=gate,units=3,op=zero", "gate", "needs gate="),
    ("target=hidden,gate=forget,op=zero", "gate", "target gate only"),
    ("target=memory,op=zero", "target", "allowed: hidden, cell, gate"),
    ("units=3-1,op=zero", "units", "backwards"),
    ("units=x,op=zero", "units", "not a whole number"),
    ("t=9:3,op=zero", "t", "selects no step"),
    ("op=set,value=nan", "value", "not a finite number"),
    ("op=zero,layer=-1", "layer", "not a whole number"),
])
def test_bad_text_is_refused_in_one_line_naming_the_field(text, field, says):
    with pytest.raises(InterventionError) as info:
        parse_intervention(text)
    message = str(info.value)
    assert info.value.field == field and f": {field}: " in message and says in message
    assert "\n" not in message


@pytest.mark.parametrize("text, kind, field, says", [
    ("gate=reset,units=3,op=zero", "lstm", "gate", "allowed: input, forget, cell, output"),
    ("gate=forget,units=3,op=zero", "gru", "gate", "allowed: reset, update, new"),
    ("gate=input,op=zero", "rnn", "gate", "a plain RNN has no gates"),
    ("target=cell,op=zero", "gru", "target", "lstm only"),
    ("units=8,op=zero", "lstm", "units", "allowed 0 to 7 or all"),
    ("layer=2,op=zero", "lstm", "layer", "allowed 0 to 1"),
    ("t=20:,op=zero", "lstm", "t", "beyond the sequence (T = 20"),
    ("t=5:21,op=zero", "lstm", "t", "beyond the sequence (T = 20"),
])
def test_edits_that_do_not_fit_the_model_are_refused(text, kind, field, says):
    with pytest.raises(InterventionError) as info:
        check_interventions([parse_intervention(text)], kind, 2, 8, 20)
    assert info.value.field == field and says in str(info.value)


@pytest.mark.parametrize("data", [
    [], {"target": "hidden", "op": "zero", "layer": True}, {"target": "hidden", "op": "zero", "units": [1.5]},
    {"target": "hidden", "op": "set", "value": "1"}, {"target": "gate", "op": "zero"},
    {"target": "hidden", "op": "zero", "enabled": 1}, {"target": "hidden", "op": "zero", "code": "x"},
    {"target": "hidden", "op": "zero", "start": 5, "stop": 5}, {"target": "hidden", "op": "zero", "units": []},
])
def test_untrusted_tables_are_checked(data):
    with pytest.raises(InterventionError):
        intervention_from_dict(data)


# ------------------------------------------------------------------------- the reference
def _edited(value, edits, layer, key, t):
    """Apply ``edits`` to ``value`` [B, H] by their definition, in list order."""
    for e in edits:
        if not (e.enabled and e.layer == layer and e.key == key and e.applies_at(t)):
            continue
        units = list(range(value.shape[-1])) if e.units is None else list(e.units)
        value = value.clone()
        x = value[:, units]
        value[:, units] = {"set": torch.full_like(x, e.value), "zero": torch.zeros_like(x),
                           "add": x + e.value, "scale": x * e.value}[e.op]
    return value


def reference(net, x, edits=()):
    """The recurrence written out from torch.nn's equations: (hidden, cell, gates) per layer."""
    T, B = x.shape[:2]
    H = net.hidden_size
    inp, hidden, cells, gates = x, [], [], []
    for layer in range(net.num_layers):
        W_ih, W_hh = getattr(net, f"weight_ih_l{layer}"), getattr(net, f"weight_hh_l{layer}")
        b_ih, b_hh = getattr(net, f"bias_ih_l{layer}"), getattr(net, f"bias_hh_l{layer}")

        def pre(k, x_t, h, W_ih=W_ih, W_hh=W_hh, b_ih=b_ih, b_hh=b_hh):
            rows = slice(k * H, (k + 1) * H)
            return x_t @ W_ih[rows].T + b_ih[rows] + h @ W_hh[rows].T + b_hh[rows]

        h, c = torch.zeros(B, H), torch.zeros(B, H)
        hs, cs, gs = [], [], {}
        for t in range(T):
            x_t = inp[t]

            def e(key, value, t=t, layer=layer, gs=gs):
                gs.setdefault(key, []).append(_edited(value, edits, layer, key, t))
                return gs[key][-1]

            if net.kind == "lstm":
                i, f = e("input", torch.sigmoid(pre(0, x_t, h))), e("forget", torch.sigmoid(pre(1, x_t, h)))
                g, o = e("cell", torch.tanh(pre(2, x_t, h))), e("output", torch.sigmoid(pre(3, x_t, h)))
                c = _edited(f * c + i * g, edits, layer, "c", t)
                cs.append(c)
                h = o * torch.tanh(c)
            elif net.kind == "gru":
                r, z = e("reset", torch.sigmoid(pre(0, x_t, h))), e("update", torch.sigmoid(pre(1, x_t, h)))
                rows = slice(2 * H, 3 * H)
                n = e("new", torch.tanh(x_t @ W_ih[rows].T + b_ih[rows] + r * (h @ W_hh[rows].T + b_hh[rows])))
                h = (1 - z) * n + z * h
            else:
                h = torch.tanh(pre(0, x_t, h))
            h = _edited(h, edits, layer, "h", t)
            hs.append(h)
        inp = torch.stack(hs)
        hidden.append(inp)
        cells.append(torch.stack(cs) if cs else None)
        gates.append({k: torch.stack(v) for k, v in gs.items()})
    return hidden, cells, gates


@pytest.fixture(scope="module", params=["rnn", "lstm", "gru"])
def net(request):
    with torch.random.fork_rng():
        torch.manual_seed(3)
        return make_recurrent(request.param, 3, 6, num_layers=2)


X = torch.randn(16, 2, 3, generator=torch.Generator().manual_seed(0))


def test_the_reference_is_torch_nn(net):
    hidden, _, _ = reference(net, X)
    with torch.no_grad():
        out, _ = torch_reference(net)(X)
    torch.testing.assert_close(hidden[-1], out, rtol=0, atol=1e-6)


def test_an_empty_list_is_bit_identical_to_no_intervention(net):
    lengths = torch.tensor([16, 9])
    for kwargs in ({}, {"lengths": lengths}):
        out, state, trace = net(X, **kwargs)
        plan = compile_plan([], net.hidden_size, 16, "cpu")
        assert plan.edits == {}
        e_out, e_state, e_trace = run_edited(net, X, plan, **kwargs)
        assert torch.equal(out, e_out)
        for a, b in zip(trace.hidden, e_trace.hidden, strict=True):
            assert torch.equal(a, b)
        for a, b in zip(trace.gates, e_trace.gates, strict=True):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        for a, b in zip(state if isinstance(state, tuple) else (state,),
                        e_state if isinstance(e_state, tuple) else (e_state,), strict=True):
            assert torch.equal(a, b)
    disabled = Intervention("hidden", 0, (1,), None, 0, None, "set", 5.0, enabled=False)
    assert compile_plan([disabled], net.hidden_size, 16, "cpu").edits == {}


EDITS = {
    "rnn": [["target=hidden,units=1;4,t=5:,op=zero"], ["target=hidden,layer=1,units=all,t=3:9,op=scale,value=0.5"],
            ["target=hidden,units=2,t=6,op=set,value=0.9", "target=hidden,units=2,t=6,op=add,value=-0.3"]],
    "lstm": [["gate=forget,units=0;2,t=10:,op=set,value=0"], ["gate=input,layer=1,t=4:12,op=scale,value=2"],
             ["target=cell,units=5,t=3,op=add,value=1.5"], ["gate=output,units=all,t=8:,op=zero"],
             ["gate=cell,units=1,op=set,value=-1", "target=hidden,layer=1,units=3,t=2:,op=zero"]],
    "gru": [["gate=update,units=0-2,t=7:,op=set,value=1"], ["gate=reset,layer=1,t=2:,op=zero"],
            ["gate=new,units=4,t=5:9,op=scale,value=-1", "gate=new,units=4,t=5:9,op=add,value=0.25"]],
}


def test_each_op_matches_the_hand_written_recurrence(net):
    for texts in EDITS[net.kind]:
        edits = [parse_intervention(t) for t in texts]
        check_interventions(edits, net.kind, 2, 6, 16)
        hidden, cells, gates = reference(net, X, edits)
        with torch.no_grad():
            _, _, trace = run_edited(net, X, compile_plan(edits, 6, 16, "cpu"))
        for layer in range(2):
            torch.testing.assert_close(trace.hidden[layer], hidden[layer], rtol=0, atol=2e-6, msg=str(texts))
            for gate, values in trace.gates[layer].items():
                torch.testing.assert_close(values, gates[layer][gate], rtol=0, atol=2e-6, msg=f"{texts} {gate}")
            if net.kind == "lstm":
                torch.testing.assert_close(trace.cell[layer], cells[layer], rtol=0, atol=2e-6)


def test_forget_gate_shut_from_t10_leaves_c_equal_to_i_times_g(net):
    if net.kind != "lstm":
        pytest.skip("the cell state is the LSTM's")
    edit = parse_intervention("gate=forget,units=0;2,t=10:,op=set,value=0")
    with torch.no_grad():
        _, _, factual = net(X)
        _, _, trace = run_edited(net, X, compile_plan([edit], 6, 16, "cpu"))
    c, i, g = trace.cell[0], trace.gates[0]["input"], trace.gates[0]["cell"]
    assert torch.equal(c[10:, :, [0, 2]], (i * g)[10:, :, [0, 2]])  # exactly: f = 0 drops c_{t-1}
    assert torch.equal(trace.hidden[0][:10], factual.hidden[0][:10])  # untouched before t = 10
    assert not torch.allclose(c[10:, :, [0, 2]], factual.cell[0][10:, :, [0, 2]])
    assert torch.equal(c[:, :, [1, 3, 4, 5]][:11], factual.cell[0][:, :, [1, 3, 4, 5]][:11])


def test_edits_compose_in_list_order(net):
    a = parse_intervention("target=hidden,units=1,t=4,op=scale,value=2")
    b = parse_intervention("target=hidden,units=1,t=4,op=add,value=1")
    with torch.no_grad():
        _, _, ab = run_edited(net, X, compile_plan([a, b], 6, 16, "cpu"))
        _, _, ba = run_edited(net, X, compile_plan([b, a], 6, 16, "cpu"))
        _, _, plain = net(X)
    h = plain.hidden[0][4, :, 1]
    torch.testing.assert_close(ab.hidden[0][4, :, 1], 2 * h + 1)
    torch.testing.assert_close(ba.hidden[0][4, :, 1], 2 * (h + 1))


def test_a_padded_step_holds_the_edited_state(net):
    lengths = torch.tensor([16, 9])
    edit = parse_intervention("target=hidden,units=0,t=5:,op=set,value=0.5")
    with torch.no_grad():
        _, _, trace = run_edited(net, X, compile_plan([edit], 6, 16, "cpu"), lengths=lengths)
    h = trace.hidden[0][:, 1]
    assert torch.all(h[8:] == h[8])  # padded from t = 9: held
    assert torch.all(h[5:9, 0] == 0.5)


# ------------------------------------------------------------------------ ablation sweep
def test_the_batched_sweep_equals_one_run_per_unit(net):
    for layer in range(2):
        plan = ablation_plan(6, 16, layer, "cpu")
        assert plan.variants == 7
        with torch.no_grad():
            out, state, _ = run_edited(net, X, plan, trace=False)  # [T, 7, B, H]
            torch.testing.assert_close(out[:, 0], reference(net, X)[0][-1], rtol=0, atol=2e-6)
            for unit in range(6):
                zero = Intervention("hidden", layer, (unit,), None, 0, None, "zero")
                torch.testing.assert_close(out[:, unit + 1], reference(net, X, [zero])[0][-1], rtol=0, atol=2e-6)
                if layer == 1:  # the top layer: the zeroed unit is zero at every step
                    assert torch.all(out[:, unit + 1, :, unit] == 0)
        h_n = state[0] if isinstance(state, tuple) else state
        assert h_n.shape == (2, 7, 2, 6)


def test_the_sweep_holds_padded_steps_like_single_runs(net):
    lengths = torch.tensor([16, 11])
    plan = ablation_plan(6, 16, 0, "cpu")
    with torch.no_grad():
        out, _, _ = run_edited(net, X, plan, lengths=lengths, trace=False)
        for unit in (0, 5):
            zero = Intervention("hidden", 0, (unit,), None, 0, None, "zero")
            one, _, _ = run_edited(net, X, compile_plan([zero], 6, 16, "cpu"), lengths=lengths)
            torch.testing.assert_close(out[:, unit + 1], one, rtol=0, atol=1e-6)


@pytest.mark.parametrize("preset", ["adding-lstm", "parity-gru", "sine-gru", "padding-gru", "charlm-lstm"])
def test_variant_losses_are_the_models_loss_of_each_variant(preset):
    from core.presets import load_preset
    from core.training.trainer import Trainer

    exp = load_preset(preset).experiment.replace(hidden_size=5, num_layers=2, seq_len=12)
    trainer = Trainer(exp)
    batch = trainer.task.sample(3, torch.Generator().manual_seed(1))
    model = trainer.model.eval()
    plan = ablation_plan(5, batch.x.shape[0], 1, "cpu")
    with torch.no_grad():
        out, state, _ = run_edited(model.recurrent, batch.x, plan, trace=False, **model.recurrent_kwargs(batch))
        losses = variant_losses(model, out, state, batch)
        assert losses.shape == (6,)
        for v in range(6):
            one_state = tuple(s[:, v] for s in state) if isinstance(state, tuple) else state[:, v]
            expected, _ = model.loss_from_outputs(out[:, v], one_state, batch)
            torch.testing.assert_close(losses[v], expected, rtol=1e-6, atol=1e-7)
        base, _ = model.loss(batch)
        torch.testing.assert_close(losses[0], base, rtol=1e-5, atol=1e-6)


def test_an_edit_beyond_a_shorter_batch_is_left_out():
    edit = parse_intervention("target=hidden,t=30:,op=zero")
    assert compile_plan([edit], 4, 20, "cpu").edits == {}
    assert Plan().at(0, "h", 3) is None
