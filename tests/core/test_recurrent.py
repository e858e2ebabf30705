"""core.models.recurrent against torch.nn: same weights, same outputs, states, gradients and gates."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from core.models.recurrent import make_recurrent
from core.names import GATES

TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
T, B, I, H = 7, 4, 5, 6  # noqa: E741  (time, batch, input, hidden as in the docs)
LENGTHS = torch.tensor([7, 3, 5, 1])


def reference(kind, net, nonlinearity="tanh"):
    """A torch.nn module built independently, loaded with our weights (strict)."""
    kwargs = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    ref = TORCH[kind](I, H, net.num_layers, bidirectional=net.bidirectional, **kwargs)
    ref.load_state_dict(net.state_dict(), strict=True)
    return ref


def run_reference(ref, x, lengths, state=None):
    if lengths is None:
        return ref(x, state)
    packed, st = ref(pack_padded_sequence(x, lengths, enforce_sorted=False), state)
    out, _ = pad_packed_sequence(packed, total_length=x.shape[0])
    return out, st


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_state_dict_keys_and_shapes_equal_torch(kind, bidirectional):
    for layers in (1, 2, 3):
        ours = make_recurrent(kind, I, H, layers, bidirectional=bidirectional).state_dict()
        theirs = TORCH[kind](I, H, layers, bidirectional=bidirectional).state_dict()
        assert list(ours) == list(theirs)
        assert any(k.endswith("_reverse") for k in ours) == bidirectional
        assert all(ours[k].shape == theirs[k].shape for k in ours)
        # the reverse direction loads strictly too
        make_recurrent(kind, I, H, layers, bidirectional=bidirectional).load_state_dict(theirs, strict=True)


@pytest.mark.parametrize("kind,nonlinearity", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("use_lengths", [False, True])
@pytest.mark.parametrize("trace", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_outputs_states_and_gradients_match_torch(kind, nonlinearity, layers, use_lengths, trace, bidirectional):
    torch.manual_seed(layers)
    net = make_recurrent(kind, I, H, layers, nonlinearity, bidirectional=bidirectional)
    ref = reference(kind, net, nonlinearity)
    x = torch.randn(T, B, I)
    lengths = LENGTHS if use_lengths else None
    n = layers * (2 if bidirectional else 1)
    h0 = torch.randn(n, B, H)
    state = (h0, torch.randn(n, B, H)) if kind == "lstm" else h0

    out, st, tr = net(x, state, lengths, trace=trace)
    ref_out, ref_st = run_reference(ref, x, lengths, state)
    assert (tr is not None) == trace
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    for a, b in zip(as_tuple(st), as_tuple(ref_st)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    # gradients of the same scalar w.r.t. every parameter
    w = torch.randn_like(out)
    loss = (out * w).sum() + sum(s.pow(2).sum() for s in as_tuple(st))
    ref_loss = (ref_out * w).sum() + sum(s.pow(2).sum() for s in as_tuple(ref_st))
    grads = torch.autograd.grad(loss, list(net.parameters()))
    ref_grads = torch.autograd.grad(ref_loss, list(ref.parameters()))
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, atol=1e-5, rtol=1e-4)


def documented_gates(kind, x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh):
    """The equations of torch.nn's documentation, written out gate by gate."""
    def split(w, n):
        return w.chunk(n, 0)

    sig, tanh = torch.sigmoid, torch.tanh
    if kind == "lstm":
        (Wii, Wif, Wig, Wio), (Whi, Whf, Whg, Who) = split(w_ih, 4), split(w_hh, 4)
        (bii, bif, big, bio), (bhi, bhf, bhg, bho) = split(b_ih, 4), split(b_hh, 4)
        i = sig(x @ Wii.T + bii + h_prev @ Whi.T + bhi)
        f = sig(x @ Wif.T + bif + h_prev @ Whf.T + bhf)
        g = tanh(x @ Wig.T + big + h_prev @ Whg.T + bhg)
        o = sig(x @ Wio.T + bio + h_prev @ Who.T + bho)
        c = f * c_prev + i * g
        return {"input": i, "forget": f, "cell": g, "output": o}, o * tanh(c), c
    (Wir, Wiz, Win), (Whr, Whz, Whn) = split(w_ih, 3), split(w_hh, 3)
    (bir, biz, bin_), (bhr, bhz, bhn) = split(b_ih, 3), split(b_hh, 3)
    r = sig(x @ Wir.T + bir + h_prev @ Whr.T + bhr)
    z = sig(x @ Wiz.T + biz + h_prev @ Whz.T + bhz)
    n = tanh(x @ Win.T + bin_ + r * (h_prev @ Whn.T + bhn))
    return {"reset": r, "update": z, "new": n}, (1 - z) * n + z * h_prev, None


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_gates_follow_the_documented_equations(kind, layers):
    torch.manual_seed(0)
    net = make_recurrent(kind, I, H, layers)
    x = torch.randn(T, B, I)
    _, _, tr = net(x)
    assert set(tr.gates[0]) == set(GATES[kind])
    inp = x
    for layer in range(layers):
        w_ih, w_hh, b_ih, b_hh = (getattr(net, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        h, c = torch.zeros(B, H), torch.zeros(B, H)
        for t in range(T):
            gates, h, c = documented_gates(kind, inp[t], h, c, w_ih, w_hh, b_ih, b_hh)
            for name, value in gates.items():
                torch.testing.assert_close(tr.gates[layer][name][t], value, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(tr.hidden[layer][t], h, atol=1e-6, rtol=1e-5)
            if kind == "lstm":
                torch.testing.assert_close(tr.cell[layer][t], c, atol=1e-6, rtol=1e-5)
        inp = tr.hidden[layer]


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 3])
def test_probe_trace_equals_loop_trace(kind, layers):
    torch.manual_seed(1)
    net = make_recurrent(kind, I, H, layers)
    x = torch.randn(T, B, I)
    _, _, loop = net(x)
    fast = net.probe(x)
    for a, b in zip(fast.hidden, loop.hidden):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    for ga, gb in zip(fast.gates, loop.gates):
        assert set(ga) == set(gb)
        for name in ga:
            torch.testing.assert_close(ga[name], gb[name], atol=1e-6, rtol=1e-5)
    if kind == "lstm":
        for a, b in zip(fast.cell, loop.cell):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_padding_holds_state_and_zeroes_output(kind):
    torch.manual_seed(2)
    net = make_recurrent(kind, I, H, 2)
    x = torch.randn(T, B, I)
    out, state, tr = net(x, lengths=LENGTHS)
    h_n = as_tuple(state)[0]
    for b, n in enumerate(LENGTHS.tolist()):
        assert torch.all(out[n:, b] == 0)
        torch.testing.assert_close(h_n[-1, b], tr.hidden[-1][n - 1, b])
        # the final state equals running the unpadded sequence alone
        alone, alone_state, _ = net(x[:n, b:b + 1])
        torch.testing.assert_close(as_tuple(alone_state)[0][:, 0], h_n[:, b], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_pre_padding_mask_equals_unpadded_run(kind):
    torch.manual_seed(3)
    net = make_recurrent(kind, I, H)
    x = torch.randn(T, B, I)
    mask = torch.arange(T).unsqueeze(1) >= (T - LENGTHS).unsqueeze(0)  # real steps at the end
    _, state, _ = net(x, mask=mask)
    for b, n in enumerate(LENGTHS.tolist()):
        _, alone, _ = net(x[T - n:, b:b + 1])
        torch.testing.assert_close(as_tuple(alone)[0][:, 0], as_tuple(state)[0][:, b], atol=1e-6, rtol=1e-5)


def test_detach_every_cuts_the_gradient():
    torch.manual_seed(4)
    net = make_recurrent("rnn", I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    out, _, _ = net(x, detach_every=3)
    (grad,) = torch.autograd.grad(out[-1].sum(), x)
    # last chunk starts at t = 6: earlier inputs get no gradient from the last output
    assert torch.all(grad[:6] == 0) and torch.any(grad[6] != 0)


@pytest.mark.parametrize("bad,match", [
    (dict(kind="transformer"), "kind must be one of rnn, lstm, gru"),
    (dict(hidden_size=0), "hidden_size must be an integer >= 1"),
    (dict(num_layers=0), "num_layers must be an integer >= 1"),
    (dict(nonlinearity="sigmoid"), "nonlinearity must be one of tanh, relu"),
])
def test_bad_arguments_name_the_value(bad, match):
    args = dict(kind="rnn", input_size=I, hidden_size=H, num_layers=1, nonlinearity="tanh") | bad
    with pytest.raises(ValueError, match=match):
        make_recurrent(**args)


def test_bad_shapes_and_lengths_are_refused():
    net = make_recurrent("lstm", I, H)
    with pytest.raises(ValueError, match=r"x must have shape \[T, B, 5\]"):
        net(torch.randn(T, B, I + 1))
    with pytest.raises(ValueError, match="lengths must lie in 1..7"):
        net(torch.randn(T, B, I), lengths=torch.tensor([8, 1, 1, 1]))
    with pytest.raises(ValueError, match="lstm state must be a tuple"):
        net(torch.randn(T, B, I), torch.zeros(1, B, H))


# ------------------------------------------------------------------ bidirectional stacks
def gates_one_way(kind, net, layer, inp, reverse):
    """Gates, h and c of one direction of one layer, by the documented equations, stepping
    t = 0..T-1 or (reverse) T-1..0 from zero state; results indexed by input position."""
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    weights = [getattr(net, f"{n}_l{layer}{'_reverse' if reverse else ''}") for n in names]
    h, c = torch.zeros(B, H), torch.zeros(B, H)
    gates, hs, cs = {}, {}, {}
    for t in (reversed(range(T)) if reverse else range(T)):
        g, h, c = documented_gates(kind, inp[t], h, c, *weights)
        gates[t], hs[t], cs[t] = g, h, c
    return gates, hs, cs


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("fast", [False, True])
def test_bidirectional_gates_of_both_directions_follow_the_documented_equations(kind, fast):
    """The loop's trace and the probe's: forward in ``trace``, backward in ``trace.reverse``,
    and layer 1 reads both directions of layer 0."""
    torch.manual_seed(5)
    net = make_recurrent(kind, I, H, 2, bidirectional=True)
    x = torch.randn(T, B, I)
    tr = net.probe(x) if fast else net(x)[2]
    assert tr.reverse is not None and tr.reverse.reverse is None
    inp = x
    for layer in range(2):
        for reverse, direction in ((False, tr), (True, tr.reverse)):
            gates, hs, cs = gates_one_way(kind, net, layer, inp, reverse)
            for t in range(T):
                for name, value in gates[t].items():
                    torch.testing.assert_close(direction.gates[layer][name][t], value, atol=1e-6, rtol=1e-5)
                torch.testing.assert_close(direction.hidden[layer][t], hs[t], atol=1e-6, rtol=1e-5)
                if kind == "lstm":
                    torch.testing.assert_close(direction.cell[layer][t], cs[t], atol=1e-6, rtol=1e-5)
        inp = torch.cat([tr.hidden[layer], tr.reverse.hidden[layer]], dim=-1)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bidirectional_backward_direction_with_pre_padding_equals_unpadded_run(kind):
    """A mask (any padding layout) holds both directions through padded steps: with the real
    steps at the end, each direction's state equals that of the unpadded sequence alone."""
    torch.manual_seed(6)
    net = make_recurrent(kind, I, H, 2, bidirectional=True)
    x = torch.randn(T, B, I)
    mask = torch.arange(T).unsqueeze(1) >= (T - LENGTHS).unsqueeze(0)
    out, state, _ = net(x, mask=mask)
    for b, n in enumerate(LENGTHS.tolist()):
        alone_out, alone, _ = net(x[T - n:, b:b + 1])
        torch.testing.assert_close(as_tuple(alone)[0][:, 0], as_tuple(state)[0][:, b], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(alone_out[:, 0], out[T - n:, b], atol=1e-6, rtol=1e-5)
        assert torch.all(out[:T - n, b] == 0)


def test_bidirectional_trace_steps_are_the_graph_nodes_of_both_directions():
    """dL/dh_t through the trace's nodes equals the gradient of the output the loss reads:
    for a loss on out[t] only, the forward node at t gets it and later forward nodes none;
    the backward node at t gets it and later backward nodes (computed earlier) do too."""
    torch.manual_seed(7)
    net = make_recurrent("gru", I, H, bidirectional=True)
    out, _, tr = net(torch.randn(T, B, I))
    t = 3
    w = torch.randn(B, 2 * H)
    loss = (out[t] * w).sum()
    forward = torch.autograd.grad(loss, tr.steps[0], retain_graph=True, allow_unused=True, materialize_grads=True)
    backward = torch.autograd.grad(loss, tr.reverse.steps[0], allow_unused=True, materialize_grads=True)
    torch.testing.assert_close(forward[t], w[:, :H])
    torch.testing.assert_close(backward[t], w[:, H:])
    assert all(float(g.abs().sum()) == 0 for g in forward[t + 1:])
    assert all(float(g.abs().sum()) == 0 for g in backward[:t])
    assert all(float(g.abs().sum()) > 0 for g in backward[t + 1:])


def test_unidirectional_trace_has_no_reverse():
    _, _, tr = make_recurrent("lstm", I, H)(torch.randn(T, B, I))
    assert tr.reverse is None and make_recurrent("lstm", I, H).probe(torch.randn(T, B, I)).reverse is None


def test_bidirectional_refuses_truncated_bptt_and_bad_flags():
    net = make_recurrent("rnn", I, H, bidirectional=True)
    with pytest.raises(ValueError, match="not available for bidirectional layers"):
        net(torch.randn(T, B, I), detach_every=3)
    with pytest.raises(ValueError, match="bidirectional must be True or False; got 'yes'"):
        make_recurrent("rnn", I, H, bidirectional="yes")
    with pytest.raises(ValueError, match=r"h_0 must have shape \[2, 4, 6\]"):
        net(torch.randn(T, B, I), torch.zeros(1, B, H))


def test_one_direction_instruments_refuse_a_bidirectional_stack_in_one_line():
    """Gradients through time, Jacobian products, interventions and fixed points follow one
    recurrence; a bidirectional stack gets a one-line refusal (the same calls on the
    unidirectional stack of the same size run)."""
    from core.instruments.bptt import jacobian_norms, through_time
    from core.instruments.dynamics_record import dynamics_record
    from core.models.interventions import compile_plan, run_edited

    x = torch.randn(5, 2, 3)
    for bidirectional in (False, True):
        net = make_recurrent("lstm", 3, 4, bidirectional=bidirectional)
        calls = {
            "gradients through time": lambda net=net: through_time(net, x, lambda out, st: out[-1].sum()),
            "the Jacobian product": lambda net=net: jacobian_norms(net, x),
            "interventions": lambda net=net: run_edited(net, x, compile_plan((), 4, 5, x.device)),
        }
        for what, call in calls.items():
            if bidirectional:
                with pytest.raises(ValueError, match=f"^{what} is not available for bidirectional layers$"):
                    call()
            else:
                call()
        if bidirectional:
            with pytest.raises(ValueError, match="^fixed points is not available for bidirectional layers$"):
                dynamics_record(net, torch.zeros(5, 2, 8), None, x, ("a",) * 5, 0, "zero", {})
