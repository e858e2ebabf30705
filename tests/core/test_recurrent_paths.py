"""Every way of running core.models.recurrent (the loop, the fused kernel, the probe) against
torch.nn built independently, over the configurations a user can build: rnn tanh / relu, lstm,
gru; with and without biases; one direction or two; a given (non-zero) initial state; padding
by lengths or by a mask. Lower layers are checked against a torch.nn stack of that many
layers (the first layers' weights), the gates against torch.nn's documented equations, and
the probe's parallel scan against the loop it replaces, written out by hand.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from core.models.recurrent import (
    GRU,
    LSTM,
    RNN,
    linear_scan,
    make_recurrent,
    mask_from,
    one_direction,
    torch_reference,
)

TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
T, B, I, H, L = 6, 3, 4, 5, 2  # noqa: E741  (time, batch, input, hidden, layers)
LENGTHS = torch.tensor([6, 2, 4])
KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
CONFIGS = [(k, n, bias, bi) for k, n in KINDS for bias in (True, False) for bi in (False, True)]
CLOSE = dict(atol=2e-6, rtol=1e-5)


def config_id(config):
    kind, nonlinearity, bias, bi = config
    return f"{kind}-{nonlinearity}-{'bias' if bias else 'nobias'}-{'bi' if bi else 'uni'}"


def torch_stack(kind, nonlinearity, bias, bi, net, layers):
    """torch.nn's stack of the first ``layers`` layers of ``net`` (its weights, strictly)."""
    kwargs = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    ref = TORCH[kind](I, H, layers, bias=bias, bidirectional=bi, **kwargs)
    wanted = {f"_l{k}" for k in range(layers)}
    state = {name: w for name, w in net.state_dict().items()
             if any(name.endswith(s) or name.endswith(s + "_reverse") for s in wanted)}
    ref.load_state_dict(state, strict=True)
    return ref


def random_state(kind, D, gen):
    h0 = torch.randn(L * D, B, H, generator=gen)
    return (h0, torch.randn(L * D, B, H, generator=gen)) if kind == "lstm" else h0


def first(state, n):
    """The first n layer-directions of a state."""
    return tuple(s[:n] for s in state) if isinstance(state, tuple) else state[:n]


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def run_torch(ref, x, state, lengths=None):
    if lengths is None:
        return ref(x, state)
    out, st = ref(pack_padded_sequence(x, lengths, enforce_sorted=False), state)
    return pad_packed_sequence(out, total_length=x.shape[0])[0], st


def documented_gates(kind, x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """torch.nn's documented gate equations, gate by gate, for all t at once ([T, B, H] each)."""
    b_ih = torch.zeros(w_ih.shape[0]) if b_ih is None else b_ih
    b_hh = torch.zeros(w_hh.shape[0]) if b_hh is None else b_hh
    n = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    xs = [x @ w.T + b for w, b in zip(w_ih.chunk(n), b_ih.chunk(n))]
    hs = [h_prev @ w.T + b for w, b in zip(w_hh.chunk(n), b_hh.chunk(n))]
    sig = torch.sigmoid
    if kind == "lstm":
        return {"input": sig(xs[0] + hs[0]), "forget": sig(xs[1] + hs[1]), "cell": torch.tanh(xs[2] + hs[2]),
                "output": sig(xs[3] + hs[3])}
    if kind == "gru":
        r = sig(xs[0] + hs[0])
        return {"reset": r, "update": sig(xs[1] + hs[1]), "new": torch.tanh(xs[2] + r * hs[2])}
    return {}


def check_trace(tr, config, net, x, state, lengths=None):
    """Layer by layer: each direction's hidden states against the torch.nn stack of that
    many layers, its final cell state against c_n, its gates against the documented
    equations (read from the hidden states before), from the given initial state."""
    kind, nonlinearity, bias, bi = config
    D = 2 if bi else 1
    directions = [tr] + ([tr.reverse] if bi else [])
    assert (tr.reverse is not None) == bi and all(d.kind == kind for d in directions)
    inp = x
    for layer in range(L):
        ref = torch_stack(kind, nonlinearity, bias, bi, net, layer + 1)
        ref_out, ref_st = run_torch(ref, x, first(state, (layer + 1) * D), lengths)
        ours = torch.cat([d.hidden[layer] for d in directions], dim=-1)
        if lengths is not None:  # the trace holds the state at padded steps; the output is zero there
            real = (torch.arange(T)[:, None] < lengths[None]).unsqueeze(-1)
            ours = ours * real
        torch.testing.assert_close(ours, ref_out, **CLOSE)
        for d, direction in enumerate(directions):
            k = layer * D + d
            h_prev_0 = as_tuple(state)[0][k]
            if kind == "lstm":
                last = direction.cell[layer][0 if d else -1] if lengths is None else None
                if last is not None:
                    torch.testing.assert_close(last, ref_st[1][k], **CLOSE)
            if lengths is None:
                w = net.layer_weights(layer, reverse=bool(d))
                hs = direction.hidden[layer]
                h_prev = torch.cat([h_prev_0[None], hs[:-1]]) if not d else torch.cat([hs[1:], h_prev_0[None]])
                gates = documented_gates(kind, inp, h_prev, *w)
                assert set(direction.gates[layer]) == set(gates)
                for name, value in gates.items():
                    torch.testing.assert_close(direction.gates[layer][name], value, **CLOSE)
        inp = ours


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_loop_fused_probe_and_torch_reference_equal_torch_nn_from_a_given_state(config):
    kind, nonlinearity, bias, bi = config
    gen = torch.Generator().manual_seed(len(config_id(config)))
    torch.manual_seed(3)
    net = make_recurrent(kind, I, H, L, nonlinearity, bias=bias, bidirectional=bi)
    assert type(net) is {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind] and net.directions == (2 if bi else 1)
    ref = torch_stack(kind, nonlinearity, bias, bi, net, L)
    x = torch.randn(T, B, I, generator=gen)
    state = random_state(kind, net.directions, gen)
    ref_out, ref_st = ref(x, state)

    out, st, tr = net(x, state)
    fused_out, fused_st, none = net(x, state, trace=False)
    assert none is None
    for o, s in ((out, st), (fused_out, fused_st)):
        torch.testing.assert_close(o, ref_out, **CLOSE)
        assert type(s) is type(ref_st)
        for a, b in zip(as_tuple(s), as_tuple(ref_st), strict=True):
            torch.testing.assert_close(a, b, **CLOSE)
    check_trace(tr, config, net, x, state)
    check_trace(net.probe(x, state), config, net, x, state)

    # the loop's cell-state nodes are its cell states
    if kind == "lstm":
        for direction in [tr] + ([tr.reverse] if bi else []):
            assert len(direction.cell_steps) == L
            for layer in range(L):
                torch.testing.assert_close(torch.stack(direction.cell_steps[layer]), direction.cell[layer])
    else:
        assert tr.cell is None and tr.cell_steps == []

    # torch_reference: a plain torch.nn module of the same configuration and weights
    plain = torch_reference(net)
    assert type(plain) is TORCH[kind]
    assert (plain.bias, plain.bidirectional, plain.num_layers) == (bias, bi, L)
    assert getattr(plain, "nonlinearity", "tanh") == nonlinearity
    plain_out, _ = plain(x, state)
    torch.testing.assert_close(plain_out, ref_out, **CLOSE)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_padding_by_lengths_or_mask_equals_packed_torch_nn_in_every_path(config):
    kind, nonlinearity, bias, bi = config
    gen = torch.Generator().manual_seed(7 + len(config_id(config)))
    torch.manual_seed(4)
    net = make_recurrent(kind, I, H, L, nonlinearity, bias=bias, bidirectional=bi)
    ref = torch_stack(kind, nonlinearity, bias, bi, net, L)
    x = torch.randn(T, B, I, generator=gen)
    state = random_state(kind, net.directions, gen)
    ref_out, ref_st = run_torch(ref, x, state, LENGTHS)
    mask = torch.arange(T)[:, None] < LENGTHS[None]  # the same post-padding as a mask
    runs = {
        "loop": net(x, state, LENGTHS),
        "loop, lengths as a list": net(x, state, LENGTHS.tolist()),
        "fused": net(x, state, LENGTHS, trace=False),
        "loop, mask": net(x, state, mask=mask),
        "loop, mask of 0/1": net(x, state, mask=mask.to(torch.uint8), trace=False),
    }
    for name, (out, st, _) in runs.items():
        torch.testing.assert_close(out, ref_out, **CLOSE, msg=name)
        for a, b in zip(as_tuple(st), as_tuple(ref_st), strict=True):
            torch.testing.assert_close(a, b, **CLOSE, msg=name)
    check_trace(runs["loop"][2], config, net, x, state, LENGTHS)
    for probe in (net.probe(x, state, LENGTHS), net.probe(x, state, mask=mask)):
        check_trace(probe, config, net, x, state, LENGTHS)


@pytest.mark.parametrize("steps", range(1, 10))
def test_linear_scan_equals_the_recurrence_it_replaces(steps):
    gen = torch.Generator().manual_seed(steps)
    a = torch.rand(steps, 2, 3, generator=gen) * 2 - 0.5
    b = torch.randn(steps, 2, 3, generator=gen)
    c0 = torch.randn(2, 3, generator=gen)
    c, expected = c0, []
    for t in range(steps):
        c = a[t] * c + b[t]
        expected.append(c)
    torch.testing.assert_close(linear_scan(a, b, c0), torch.stack(expected), atol=1e-5, rtol=1e-5)


def test_mask_from_reads_lengths_and_masks_and_refuses_bad_ones():
    assert mask_from(None, None, 4, 2, "cpu") is None
    m = mask_from(torch.tensor([4, 1]), None, 4, 2, "cpu")
    assert m.dtype == torch.bool and m.shape == (4, 2, 1)
    assert m[..., 0].T.tolist() == [[True] * 4, [True, False, False, False]]
    pre = torch.tensor([[0, 1], [1, 1]])
    assert mask_from(None, pre, 2, 2, "cpu")[..., 0].tolist() == [[False, True], [True, True]]
    with pytest.raises(ValueError, match=r"^mask must have shape \[T, B\] = \[4, 2\]; got \[2, 4\]$"):
        mask_from(None, torch.ones(2, 4), 4, 2, "cpu")
    with pytest.raises(ValueError, match=r"^lengths must have shape \[B\] = \[2\]; got \[3\]$"):
        mask_from([4, 4, 4], None, 4, 2, "cpu")
    for bad in ([0, 4], [4, 5]):
        with pytest.raises(ValueError, match=rf"^lengths must lie in 1..4 \(the sequence length\); got \{bad}$"):
            mask_from(bad, None, 4, 2, "cpu")


@pytest.mark.parametrize("name", ["input_size", "hidden_size", "num_layers"])
@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_sizes_must_be_integers_of_at_least_one(name, bad):
    sizes = dict(input_size=1, hidden_size=1, num_layers=1) | {name: bad}
    with pytest.raises(ValueError, match=rf"^{name} must be an integer >= 1; got {bad!r}$"):
        make_recurrent("gru", **sizes)


def test_make_recurrent_builds_what_it_is_asked_for_and_refuses_the_rest():
    net = make_recurrent("rnn", 1, 1, 1, "relu")  # size 1 is allowed
    assert (net.nonlinearity, net.bias, net.bidirectional, net.num_layers) == ("relu", True, False, 1)
    for kind in ("lstm", "gru"):
        with pytest.raises(ValueError, match=rf"^nonlinearity applies to kind 'rnn' only; {kind} uses fixed"):
            make_recurrent(kind, 2, 2, nonlinearity="relu")
    with pytest.raises(ValueError, match=r"^bidirectional must be True or False; got 1$"):
        make_recurrent("lstm", 2, 2, bidirectional=1)
    with pytest.raises(ValueError, match=r"^kind must be one of rnn, lstm, gru; got 'LSTM'$"):
        make_recurrent("LSTM", 2, 2)


@pytest.mark.parametrize("kwargs", [dict(batch_first=True), dict(dropout=0.5, num_layers=2), dict(proj_size=2)])
def test_layouts_the_loop_does_not_implement_are_refused(kwargs):
    net = LSTM(3, 4, **kwargs)
    x = torch.randn(5, 2, 3)
    for call in (lambda: net(x), lambda: net(x, trace=False), lambda: net.probe(x)):
        with pytest.raises(ValueError, match="^only time-major layers without projection or dropout are supported$"):
            call()


def test_bad_states_and_truncation_are_refused_in_one_line():
    lstm, gru = make_recurrent("lstm", I, H), make_recurrent("gru", I, H)
    x = torch.randn(T, B, I)
    for bad in ((torch.zeros(1, B, H),) * 3, [torch.zeros(1, B, H)] * 2):
        with pytest.raises(ValueError, match=r"^lstm state must be a tuple \(h_0, c_0\)$"):
            lstm(x, bad)
    with pytest.raises(ValueError, match=r"^c_0 must have shape \[1, 3, 5\]; got \[1, 3, 4\]$"):
        lstm(x, (torch.zeros(1, B, H), torch.zeros(1, B, 4)))
    with pytest.raises(ValueError, match=r"^h_0 must have shape \[1, 3, 5\]; got \[1, 2, 5\]$"):
        gru.probe(x, torch.zeros(1, 2, H))
    with pytest.raises(ValueError, match=r"^x must have shape \[T, B, 4\]; got \[3, 4\]$"):
        gru(x[0])
    for bad in (0, -2):
        with pytest.raises(ValueError, match=rf"^detach_every must be >= 1 or None; got {bad}$"):
            gru(x, detach_every=bad)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_truncation_cuts_the_gradient_at_chunk_starts_and_nowhere_else(kind):
    """Against the untruncated loop: with chunks of k >= T nothing is cut, not even the
    initial state's gradient; with k = 2 (k = 1) the gradient of the last output reaches inputs
    and states back to the start of its chunk, t = 4 (t = 5), and no further."""
    torch.manual_seed(5)
    net = make_recurrent(kind, I, H, L)
    x = torch.randn(T, B, I, requires_grad=True)
    state = random_state(kind, 1, torch.Generator().manual_seed(5))
    leaves = [x, *(s.requires_grad_() for s in as_tuple(state))]

    def grads(detach_every):
        out, _, _ = net(x, state, detach_every=detach_every)
        return torch.autograd.grad(out[-1].sum(), leaves, allow_unused=True, materialize_grads=True)

    for a, b in zip(grads(T), grads(None), strict=True):
        torch.testing.assert_close(a, b)
        assert float(a.abs().sum()) > 0
    for k, start in ((2, 4), (1, T - 1)):  # k = 1, the shortest chunk, is allowed
        gx, *gstate = grads(k)
        assert float(gx[:start].abs().sum()) == 0 and bool((gx[start:].abs().sum((1, 2)) > 0).all())
        assert all(float(g.abs().sum()) == 0 for g in gstate)


def test_one_direction_refuses_bidirectional_layers_only():
    one_direction(make_recurrent("gru", 2, 2), "fixed points")
    one_direction(object(), "fixed points")  # anything without the flag is one recurrence
    with pytest.raises(ValueError, match="^edits is not available for bidirectional layers$"):
        one_direction(make_recurrent("gru", 2, 2, bidirectional=True), "edits")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_edit_hook_feeds_each_edited_value_into_the_rest_of_the_step(kind):
    """Interventions edit a gate inside the cell (``_cell(..., edit=)``): each named value is
    offered once, in the order of the equations, and the edited value is what the rest of the
    step reads (checked against the documented equations with the edits written in)."""
    torch.manual_seed(6)
    net = make_recurrent(kind, I, H)
    x, h = torch.randn(B, I), torch.randn(B, H)
    c = torch.randn(B, H) if kind == "lstm" else None
    w_ih, w_hh, b_ih, b_hh = net.layer_weights(0)
    shift = {name: 0.1 * (k + 1) for k, name in enumerate(("input", "forget", "cell", "output", "c",
                                                          "reset", "update", "new"))}
    offered = []

    def edit(name, value):
        offered.append(name)
        return value * 0.5 + shift[name]

    h_new, c_new, gates = net._cell(x @ w_ih.T + b_ih, h, c, w_hh, b_hh, edit=edit)
    plain = documented_gates(kind, x, h, w_ih, w_hh, b_ih, b_hh)
    if kind == "lstm":
        assert offered == ["input", "forget", "cell", "output", "c"]
        i, f, g, o = (plain[n] * 0.5 + shift[n] for n in ("input", "forget", "cell", "output"))
        c_ref = (f * c + i * g) * 0.5 + shift["c"]
        expected = {"input": i, "forget": f, "cell": g, "output": o}
        torch.testing.assert_close(c_new, c_ref, **CLOSE)
        torch.testing.assert_close(h_new, o * torch.tanh(c_ref), **CLOSE)
    else:
        assert offered == ["reset", "update", "new"]
        n_in, n_h = (x @ w_ih.T + b_ih).chunk(3, -1)[2], (h @ w_hh.T + b_hh).chunk(3, -1)[2]
        r, z = plain["reset"] * 0.5 + shift["reset"], plain["update"] * 0.5 + shift["update"]
        n = torch.tanh(n_in + r * n_h) * 0.5 + shift["new"]
        expected = {"reset": r, "update": z, "new": n}
        assert c_new is None
        torch.testing.assert_close(h_new, (1 - z) * n + z * h, **CLOSE)
    assert set(gates) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(gates[name], value, **CLOSE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CPU is the only other)")
def test_torch_reference_lives_on_the_device_of_the_net():
    """The GPU benchmarks compare the net with its torch_reference on the net's device."""
    net = make_recurrent("lstm", I, H).cuda()
    plain = torch_reference(net)
    assert all(p.is_cuda for p in plain.parameters())
    x = torch.randn(T, B, I, device="cuda")
    torch.testing.assert_close(plain(x)[0], net(x, trace=False)[0])
    # lengths and masks come from the CPU (the tasks make them there); the loop moves them
    mask = torch.arange(T)[:, None] < torch.tensor([6, 2, 4])[None]
    for kwargs in (dict(lengths=torch.tensor([6, 2, 4])), dict(mask=mask)):
        torch.testing.assert_close(net(x, **kwargs)[0], net(x, lengths=torch.tensor([6, 2, 4]), trace=False)[0])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_one_cell_step_takes_leading_dimensions(kind):
    """The intervention sweep runs variants as a leading dimension ([V, B, H] states) and the
    fixed-point search batches of points: one call on the stack equals one call per slice,
    which equals the documented equations."""
    torch.manual_seed(7)
    net = make_recurrent(kind, I, H)
    w_ih, w_hh, b_ih, b_hh = net.layer_weights(0)
    x, h = torch.randn(2, B, I), torch.randn(2, B, H)
    c = torch.randn(2, B, H) if kind == "lstm" else None
    xi = x @ w_ih.T + b_ih
    h_new, c_new, gates = net._cell(xi, h, c, w_hh, b_hh)
    for v in range(2):
        h_v, c_v, g_v = net._cell(xi[v], h[v], None if c is None else c[v], w_hh, b_hh)
        torch.testing.assert_close(h_new[v], h_v)
        if kind == "lstm":
            torch.testing.assert_close(c_new[v], c_v)
        for name, value in documented_gates(kind, x[v], h[v], w_ih, w_hh, b_ih, b_hh).items():
            torch.testing.assert_close(gates[name][v], value, **CLOSE)
            torch.testing.assert_close(g_v[name], value, **CLOSE)
    if kind == "rnn":
        torch.testing.assert_close(h_new, torch.tanh(xi + h @ w_hh.T + b_hh), **CLOSE)
