"""core.instruments.bptt against independent references.

The references are written here: explicit per-step loops of torch.nn.RNNCell / LSTMCell /
GRUCell carrying the same weights, run time-outer and layer-inner, chunk by chunk for
truncated BPTT (as chunked training does), with ``retain_grad()`` on every h_t; Jacobians
by torch.autograd.functional.jacobian; spectra by numpy.linalg. Everything in float64, so
tolerances are near machine precision unless stated.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.instruments import bptt, jacobians, products, spectrum
from core.models.init import initialise
from core.models.recurrent import make_recurrent
from core.names import GATES
from core.presets import load_preset
from core.training.clipping import clip_and_measure
from core.training.trainer import Trainer
from tests.outcomes import first_step_below, lowest_mean, more, outcome, seeded, train

KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def make(kind, nonlinearity="tanh", layers=1, input_size=3, hidden=5, seed=0):
    torch.manual_seed(seed)
    return make_recurrent(kind, input_size, hidden, layers, nonlinearity).double()


def reference_cells(net):
    cells = []
    for layer in range(net.num_layers):
        n_in = net.input_size if layer == 0 else net.hidden_size
        if net.kind == "rnn":
            cell = nn.RNNCell(n_in, net.hidden_size, nonlinearity=net.nonlinearity)
        else:
            cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[net.kind](n_in, net.hidden_size)
        w_ih, w_hh, b_ih, b_hh = (w.detach().clone() for w in net.layer_weights(layer))
        cell.load_state_dict({"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh})
        cells.append(cell.double())
    return cells


def reference_norms(net, x, loss_fn, truncate=None, lengths=None, valid=None):
    """[L, T] ||dL/dh_t|| from an explicit loop of torch.nn cells with retain_grad.
    valid: [T, B] bool real steps (e.g. a pre-padding mask), else from lengths."""
    T, B, _ = x.shape
    L, H = net.num_layers, net.hidden_size
    cells = reference_cells(net)
    if valid is not None:
        valid = valid.unsqueeze(-1)
    elif lengths is not None:
        valid = (torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)
    else:
        valid = torch.ones(T, B, 1, dtype=torch.bool)
    h = [x.new_zeros(B, H) for _ in range(L)]
    c = [x.new_zeros(B, H) for _ in range(L)]
    nodes = [[None] * T for _ in range(L)]
    outs = []
    k = truncate or T
    for start in range(0, T, k):
        h, c = [s.detach() for s in h], [s.detach() for s in c]  # a new chunk
        for t in range(start, min(start + k, T)):
            inp, m = x[t], valid[t]
            for layer, cell in enumerate(cells):
                if net.kind == "lstm":
                    h_new, c_new = cell(inp, (h[layer], c[layer]))
                    c[layer] = torch.where(m, c_new, c[layer])
                else:
                    h_new = cell(inp, h[layer])
                h[layer] = torch.where(m, h_new, h[layer])  # padded steps hold the state
                h[layer].retain_grad()
                nodes[layer][t] = h[layer]
                inp = h[layer] * m  # padded steps give zero output
            outs.append(inp)
    state = torch.stack(h)
    if net.kind == "lstm":
        state = (state, torch.stack(c))
    loss_fn(torch.stack(outs), state).backward()
    return np.array([[float(n.grad.norm()) if n.grad is not None else 0.0 for n in row] for row in nodes])


def rich_loss(T, B, H, seed=1):
    """A loss on every output and on the final state, with random weights."""
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(T, B, H, generator=g, dtype=torch.float64)
    w_state = torch.randn(B, H, generator=g, dtype=torch.float64)

    def loss_fn(out, state):
        h_n = state[0] if isinstance(state, tuple) else state
        return (torch.tanh(out) * w_out).sum() + (h_n[-1] ** 2 * w_state).sum()

    return loss_fn


# ------------------------------------------------------------------ gradients through time
@pytest.mark.parametrize("kind,nonlinearity", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("padded", [False, True])
def test_grad_through_time_matches_explicit_cell_loop(kind, nonlinearity, layers, truncate, padded):
    T, B, H = 8, 3, 5
    net = make(kind, nonlinearity, layers, hidden=H)
    x = torch.randn(T, B, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([8, 5, 2]) if padded else None
    loss_fn = rich_loss(T, B, H)
    got = bptt.grad_through_time(net, x, loss_fn, truncate=truncate, lengths=lengths)
    want = reference_norms(net, x, loss_fn, truncate=truncate, lengths=lengths)
    assert got.shape == (layers, T)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind,nonlinearity", KINDS)
def test_truncation_zeroes_gradients_before_the_last_chunk(kind, nonlinearity):
    T, k = 10, 4  # chunks [0, 4), [4, 8), [8, 10)
    net = make(kind, nonlinearity, layers=2)
    x = torch.randn(T, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    full = bptt.grad_through_time(net, x, lambda out, st: out[-1].sum())
    cut = bptt.grad_through_time(net, x, lambda out, st: out[-1].sum(), truncate=k)
    assert np.all(cut[:, :8] == 0.0)
    assert np.all(cut[:, 8:] > 0) and np.all(full > 0)
    np.testing.assert_allclose(cut[:, 8:], full[:, 8:], rtol=1e-12)  # same inside the chunk


def test_grad_through_time_leaves_parameter_grads_alone():
    net = make("lstm", layers=2)
    for p in net.parameters():
        p.grad = torch.full_like(p, 7.0)
    bptt.grad_through_time(net, torch.randn(6, 2, 3, dtype=torch.float64), lambda o, s: o.sum())
    assert all(bool((p.grad == 7.0).all()) for p in net.parameters())


def test_grad_through_time_works_with_frozen_parameters():
    net = make("gru", layers=2)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    want = bptt.grad_through_time(net, x, lambda o, s: o[-1].sum())
    net.requires_grad_(False)
    np.testing.assert_array_equal(bptt.grad_through_time(net, x, lambda o, s: o[-1].sum()), want)


def test_grad_through_time_rejects_a_non_scalar_loss():
    net = make("rnn")
    with pytest.raises(ValueError, match="scalar"):
        bptt.grad_through_time(net, torch.randn(4, 2, 3, dtype=torch.float64), lambda o, s: o)


# ------------------------------------------------------------------------ Jacobians
def reference_jacobian(net, x, b, t_from, lengths=None, valid=None):
    """dh_{T-1}/dh_t (top layer, batch element b) by autograd.functional.jacobian over a
    loop of torch.nn cells that restarts the top layer at step t_from + 1 (c held fixed).
    valid: [T] bools for element b (padded steps hold the state), or from lengths."""
    T = x.shape[0]
    cells = reference_cells(net)
    if valid is None:
        valid = [True] * T if lengths is None else [t < int(lengths[b]) for t in range(T)]
    # Run once to get the top layer's inputs and states for element b.
    inp_seq, states = x[:, b:b + 1], None
    for layer, cell in enumerate(cells):
        h = c = x.new_zeros(1, net.hidden_size)
        hs, cs = [], []
        for t in range(T):
            if valid[t]:
                if net.kind == "lstm":
                    h, c = cell(inp_seq[t], (h, c))
                else:
                    h = cell(inp_seq[t], h)
            hs.append(h)
            cs.append(c)
        if layer < len(cells) - 1:
            inp_seq = torch.stack([hh * float(v) for hh, v in zip(hs, valid, strict=True)])
        states = (hs, cs)
    top = cells[-1]
    c_fixed = states[1][t_from]

    def h_last(h):
        c = c_fixed
        for t in range(t_from + 1, T):
            if not valid[t]:
                continue
            if net.kind == "lstm":
                h, c = top(inp_seq[t], (h, c))
            else:
                h = top(inp_seq[t], h)
        return h

    with torch.no_grad():
        return torch.autograd.functional.jacobian(h_last, states[0][t_from].detach())[0, :, 0, :]


@pytest.mark.parametrize("kind,nonlinearity", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
def test_jacobian_norms_match_autograd_functional_jacobian(kind, nonlinearity, layers):
    T = 7
    net = make(kind, nonlinearity, layers, hidden=4, seed=4)
    x = torch.randn(T, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    lengths = torch.tensor([7, 5])
    for b, lens in ((1, None), (1, lengths)):
        got = bptt.jacobian_norms(net, x, lens, batch_index=b)
        want = [np.linalg.norm(reference_jacobian(net, x, b, t, lens).numpy(), 2) for t in range(T)]
        np.testing.assert_allclose(got.norms, want, rtol=1e-9, atol=1e-14)
        # single steps: dh_t/dh_{t-1} is the two-step product's first factor
        assert got.step_norms.shape == (T,)
        if lens is None:
            np.testing.assert_allclose(got.step_norms[-1], want[-2], rtol=1e-9)


@pytest.mark.parametrize("kind,nonlinearity", KINDS)
def test_closed_form_step_jacobians_equal_autograd_on_the_models_own_cell(kind, nonlinearity):
    net = make(kind, nonlinearity, layers=2, hidden=6, seed=6)
    x = torch.randn(9, 3, 3, dtype=torch.float64)
    trace = net.probe(x)
    inputs = jacobians.top_layer_inputs(net, x, trace, None)
    closed = jacobians.step_jacobians(net, inputs, trace, 2).dense()
    auto = jacobians.step_jacobians_autograd(net, inputs, trace, 2)
    torch.testing.assert_close(closed, auto, rtol=1e-10, atol=1e-12)


def test_jacobian_products_do_not_overflow():
    net = make("rnn", hidden=8, seed=7)
    initialise(net, "identity", spectral_radius=10.0)  # factor ~10 per step; 10^400 overflows
    with torch.no_grad():
        net.weight_ih_l0.zero_()
    x = torch.zeros(400, 1, 3, dtype=torch.float64)  # h stays 0: tanh' = 1 everywhere
    jac = bptt.jacobian_norms(net, x)
    finite = jac.norms[np.isfinite(jac.norms)]
    assert not np.isnan(jac.norms).any() and len(finite) > 300
    assert jac.factor == pytest.approx(10.0, rel=1e-9)


@pytest.fixture
def iterate_always(monkeypatch):
    """Take the subspace-iteration path of the exact products at every width (by default
    widths up to ITERATE_ABOVE_H get exact eigendecompositions, and the exact path runs up
    to EXACT_MAX_H, raised here so that it runs at every width); yields a counter of the
    products whose norm the iteration itself settled, so a test can see it was used."""
    monkeypatch.setattr(products, "ITERATE_ABOVE_H", 0)
    monkeypatch.setattr(products, "EXACT_MAX_H", 10**6)
    settled = {"n": 0}
    iterate = products.top_singular_value

    def counted(*args, **kwargs):
        sigma, V = iterate(*args, **kwargs)
        settled["n"] += sigma is not None
        return sigma, V

    monkeypatch.setattr(products, "top_singular_value", counted)
    return settled


@pytest.mark.parametrize("kind,nonlinearity", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
def test_iterated_jacobian_norms_match_autograd_functional_jacobian(kind, nonlinearity, layers,
                                                                    iterate_always):
    """The fast path against autograd at every t, wider than the iteration's block."""
    T, H = 20, 12
    net = make(kind, nonlinearity, layers, hidden=H, seed=11)
    x = torch.randn(T, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    lengths = torch.tensor([20, 13])
    for lens in (None, lengths):
        settled = iterate_always["n"]
        got = bptt.jacobian_norms(net, x, lens, batch_index=1)
        want = [np.linalg.norm(reference_jacobian(net, x, 1, t, lens).numpy(), 2) for t in range(T)]
        np.testing.assert_allclose(got.norms, want, rtol=1e-9, atol=1e-14)
        assert iterate_always["n"] - settled >= T // 2  # not all left to the exact fallback


def naive_product_norms(net, x, b=0):
    """||dh_{T-1}/dh_t||_2 for every t from dense step Jacobians (autograd through the
    model's own cell), multiplied out in full and measured with matrix_norm(ord=2)."""
    trace = net.probe(x)
    J = jacobians.step_jacobians_autograd(net, jacobians.top_layer_inputs(net, x, trace, None), trace, b)
    H, P, norms = net.hidden_size, torch.eye(J.shape[-1], dtype=torch.float64), [1.0]
    for t in range(x.shape[0] - 1, 0, -1):
        P = P @ J[t]  # the h, c state product; its h block holds c_t fixed
        norms.append(float(torch.linalg.matrix_norm(P[:H, :H], ord=2)))
    return np.array(norms[::-1])


@pytest.mark.parametrize("kind,nonlinearity", KINDS)
def test_wide_models_take_the_iterated_path_and_match_the_naive_product(kind, nonlinearity, monkeypatch):
    """The exact path at H > ITERATE_ABOVE_H, in float64 and float32 (tolerance 1e-6)."""
    T, H = 40, products.ITERATE_ABOVE_H + 16
    net = make(kind, nonlinearity, hidden=H, seed=13)
    x = torch.randn(T, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(14))
    calls = []
    iterate = products.top_singular_value
    monkeypatch.setattr(products, "top_singular_value", lambda *a, **k: calls.append(1) or iterate(*a, **k))
    want = naive_product_norms(net, x)
    np.testing.assert_allclose(bptt.jacobian_norms(net, x, exact=True).norms, want, rtol=1e-9, atol=1e-14)
    assert len(calls) == T - 1
    net32 = net.float()
    want32 = naive_product_norms(net32, x.float())  # the float32 model's own Jacobians, in float64
    np.testing.assert_allclose(bptt.jacobian_norms(net32, x.float(), exact=True).norms, want32,
                               rtol=1e-5, atol=1e-14)


def test_iterated_products_that_vanish_or_overflow(iterate_always):
    net = make("rnn", hidden=8, seed=7)
    initialise(net, "identity", spectral_radius=10.0)  # as test_jacobian_products_do_not_overflow
    with torch.no_grad():
        net.weight_ih_l0.zero_()
    jac = bptt.jacobian_norms(net, torch.zeros(400, 1, 3, dtype=torch.float64))
    assert not np.isnan(jac.norms).any() and jac.factor == pytest.approx(10.0, rel=1e-9)
    with torch.no_grad():
        net.weight_hh_l0.zero_()  # every step Jacobian is zero
    jac = bptt.jacobian_norms(net, torch.randn(10, 1, 3, dtype=torch.float64))
    assert np.all(jac.norms[:-1] == 0.0) and jac.norms[-1] == 1.0


# ------------------------------------------------------------------------ rate fits
def test_fit_rate_recovers_a_geometric_rate_and_ignores_zeros_and_the_tail():
    t = np.arange(60)
    norms = 3.0 * 0.8 ** (59 - t)
    norms[-3:] = [100.0, 0.0, 5.0]  # near the loss: excluded (skip_last = 5)
    assert bptt.fit_rate(norms) == pytest.approx(0.8, rel=1e-12)
    norms[:40] = 0.0  # truncated: only the last chunk counts
    assert bptt.fit_rate(norms) == pytest.approx(0.8, rel=1e-12)
    assert math.isnan(bptt.fit_rate(np.zeros(20)))
    assert math.isnan(bptt.fit_rate(np.array([1.0, 2.0]), skip_last=1))  # one point left
    assert bptt.fit_rate(np.array([1.0, 2.0])) == pytest.approx(0.5)  # T // 4 = 0 skipped


# ------------------------------------------------------------------------ spectrum
@pytest.mark.parametrize("kind,nonlinearity", KINDS)
def test_spectrum_matches_numpy(kind, nonlinearity):
    net = make(kind, nonlinearity, layers=2, hidden=6, seed=8)
    rec = spectrum.spectrum_record(net, step=3)
    assert rec.step == 3
    for layer in range(2):
        w = net.layer_weights(layer)[1].detach().numpy()
        np.testing.assert_allclose(rec.singular_values[layer], np.linalg.svd(w, compute_uv=False), rtol=1e-12)
        square = w if kind == "rnn" else np.split(w, 4 if kind == "lstm" else 3)[2]
        assert rec.radius[layer] == pytest.approx(np.abs(np.linalg.eigvals(square)).max(), rel=1e-12)
        for name, block in zip(GATES[kind], np.split(w, len(GATES[kind])) if kind != "rnn" else (),
                               strict=True):
            np.testing.assert_allclose(rec.blocks[f"layer{layer}/{name}"],
                                       np.linalg.svd(block, compute_uv=False), rtol=1e-12)
    if kind == "rnn":
        assert rec.blocks == {}


@pytest.mark.parametrize("kind,nonlinearity,scheme,radius,regime,bound", [
    ("rnn", "tanh", "identity", 0.5, "vanishing", 1.0),
    ("rnn", "tanh", "identity", 1.0, "marginal", 1.0),
    ("rnn", "tanh", "orthogonal", 1.0, "marginal", 1.0),
    ("rnn", "tanh", "spectral", 0.9, "explosion possible", 1.0),  # sigma_max ~ 2 rho for torch's init
    ("rnn", "relu", "identity", 0.5, "vanishing", 1.0),  # |relu'| <= 1: gamma = 1
    ("rnn", "relu", "identity", 1.0, "marginal", 1.0),   # IRNN
    ("lstm", "tanh", "default", 1.0, "gated", None),
    ("gru", "tanh", "default", 1.0, "gated", None),
])
def test_spectrum_regime(kind, nonlinearity, scheme, radius, regime, bound):
    net = make(kind, nonlinearity, layers=2, hidden=32, seed=9)
    initialise(net, scheme, spectral_radius=radius)
    rec = spectrum.spectrum_record(net, 0)
    assert rec.regime == regime and rec.bound == bound
    assert regime in spectrum.REGIMES


# ------------------------------------------------------------------------ clipping
def grads(*values):
    params = []
    for i, v in enumerate(values):
        p = nn.Parameter(torch.zeros(len(v)))
        p.grad = torch.tensor(v, dtype=torch.float32)
        params.append((f"p{i}", p))
    return params


def total(named):
    return math.sqrt(sum(float(p.grad.double().norm()) ** 2 for _, p in named))


def test_clip_scales_to_max_norm():
    named = grads([3.0, 4.0], [12.0])  # total 13
    before, after, clipped, per = clip_and_measure(named, 1.0)
    assert before == pytest.approx(13.0) and clipped
    assert after == pytest.approx(1.0, rel=1e-6) and total(named) == pytest.approx(1.0, rel=1e-6)
    assert per == pytest.approx({"p0": 5.0, "p1": 12.0})  # before clipping
    assert named[0][1].grad.tolist() == pytest.approx([3 / 13, 4 / 13], rel=1e-6)  # direction kept


@pytest.mark.parametrize("max_norm", [20.0, 0.0, None, float("nan"), float("inf")])
def test_unclipped_gradients_are_unchanged(max_norm):
    named = grads([3.0, 4.0], [12.0])
    before, after, clipped, _ = clip_and_measure(named, max_norm)
    assert (before, after, clipped) == (pytest.approx(13.0), pytest.approx(13.0), False)
    assert named[1][1].grad.tolist() == [12.0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradients_are_flagged_and_not_scaled(bad):
    named = grads([3.0, bad], [12.0])
    before, after, clipped, per = clip_and_measure(named, 1.0)
    assert not math.isfinite(before) and not math.isfinite(after) and not clipped
    assert not math.isfinite(per["p0"]) and per["p1"] == 12.0
    assert named[1][1].grad.tolist() == [12.0]


def test_parameters_without_gradients_are_skipped():
    named = grads([1.0]) + [("frozen", nn.Parameter(torch.ones(2)))]
    assert clip_and_measure(named, 0.5)[3].keys() == {"p0"}
    assert clip_and_measure([("x", nn.Parameter(torch.ones(1)))], 1.0) == (0.0, 0.0, False, {})


def test_float32_models_get_float32_accurate_jacobian_norms():
    net = make("gru", hidden=16, seed=10)
    x = torch.randn(30, 1, 3, dtype=torch.float64)
    exact = bptt.jacobian_norms(net, x)
    fast = bptt.jacobian_norms(net.float(), x.float())
    np.testing.assert_allclose(fast.norms, exact.norms, rtol=1e-4)


# ------------------------------------------------------------------ records for the trainer
def trainer(name=None, **fields):
    from core.config import Experiment
    from core.presets import load_preset
    from core.training.trainer import Trainer

    exp = load_preset(name).experiment if name else Experiment()
    return Trainer(exp.replace(**fields) if fields else exp)


@pytest.mark.parametrize("fields", [
    dict(task="adding", cell="lstm", num_layers=2, seq_len=12, hidden_size=8),
    dict(task="padding", cell="gru", seq_len=12, hidden_size=8),                  # lengths
    dict(task="padding", cell="rnn", seq_len=12, hidden_size=8, padding="pre"),  # mask
    dict(task="charlm", cell="lstm", seq_len=12, hidden_size=8, tbptt=5),
])
def test_gradient_record_fields_and_parameter_grads_untouched(fields):
    tr = trainer(**fields)
    for p in tr.model.parameters():
        p.grad = torch.full_like(p, 3.0)
    batch = tr.probe_batch()
    rec = bptt.gradient_record(tr.model, batch, step=5, truncate=fields.get("tbptt", 0))
    assert all(bool((p.grad == 3.0).all()) for p in tr.model.parameters())
    T = batch.x.shape[0]
    assert rec.step == 5 and len(rec.norms) == fields.get("num_layers", 1)
    assert all(n.shape == (T,) for n in rec.norms) and rec.jacobian.shape == (T,)
    assert rec.jacobian[-1] == pytest.approx(1.0)
    assert rec.truncate == (fields.get("tbptt") or None)
    assert (rec.mean_field is None) == (fields["cell"] != "rnn")
    assert (rec.pascanu_bound is None) == (fields["cell"] != "rnn")
    assert (rec.cell_norms is None) == (fields["cell"] != "lstm")
    assert (rec.full_norms is None) == (not fields.get("tbptt"))
    assert rec.loss_every_step == (fields["task"] == "charlm") and rec.note is None
    assert math.isnan(rec.factor) == rec.loss_every_step and math.isfinite(rec.lyapunov_rate)
    want = bptt.grad_through_time(tr.model.recurrent, batch.x,
                                  lambda o, s: tr.model.loss_from_outputs(o, s, batch)[0],
                                  truncate=fields.get("tbptt"), **tr.model.recurrent_kwargs(batch))
    np.testing.assert_allclose(np.stack(rec.norms), want)


# --------------------------------------------------------------------- the gradient presets
RATE_TOLERANCE = 0.05  # relative; see test_vanishing_rate_agrees_with_the_jacobian_factor


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_vanishing_rate_agrees_with_the_jacobian_factor(seed):
    """The fitted rate of ||dL/dh_t|| (a vector) and of ||dh_T/dh_t||_2 (the product's top
    singular value) agree within 5%: at T = 100 the gradient's alignment with the top
    singular direction is still settling (measured gaps: 0.2-1.5% at H = 64, up to 2.6% at
    H = 128)."""
    rec = trainer("vanishing-rnn", seed=seed).gradients()
    assert rec.factor < 0.95
    assert rec.factor == pytest.approx(bptt.fit_rate(rec.jacobian), rel=RATE_TOLERANCE)


def test_vanishing_preset():
    tr = trainer("vanishing-rnn")
    rec, spec = tr.gradients(), tr.spectrum()
    assert rec.norms[0][0] / rec.norms[0][-1] < 1e-4  # the first steps get almost nothing
    assert rec.mean_field == pytest.approx(bptt.fit_rate(rec.jacobian), rel=RATE_TOLERANCE)  # untrained
    assert spec.radius[0] == pytest.approx(0.9, rel=1e-5)
    assert spec.singular_values[0][0] > 1 and spec.regime == "explosion possible"  # only sufficient


def test_exploding_preset_grows_and_clipping_keeps_training_finite():
    tr = trainer("exploding-rnn")
    rec = tr.gradients()
    assert rec.factor > 1.03 and bptt.fit_rate(rec.jacobian) > 1.03
    assert rec.norms[0][0] / rec.norms[0][-1] > 1e3
    assert tr.spectrum().regime == "explosion possible"
    step = tr.step()
    assert step.clipped and not step.diverged and step.grad_norm > 1e3
    assert step.grad_norm_clipped == pytest.approx(tr.experiment.clip, rel=1e-5)


def reach(rec):
    """How much of the gradient at the last step reaches the first: ||dL/dh_1|| / ||dL/dh_T||."""
    return rec.norms[-1][0] / rec.norms[-1][-1]


def test_lstm_at_torchs_init_vanishes_faster_than_the_rnn():
    """As the vanishing-lstm preset says: forget gates near 0.5 before training."""
    lstm, rnn = trainer("vanishing-lstm").gradients(), trainer("vanishing-rnn").gradients()
    assert lstm.factor < rnn.factor and reach(lstm) < reach(rnn)


def test_open_forget_gates_carry_the_gradient_orders_of_magnitude_further():
    tr = trainer("vanishing-lstm")
    H = tr.experiment.hidden_size
    with torch.no_grad():  # forget gate ~ sigmoid(5) = 0.993, what training learns to do
        tr.model.recurrent.bias_ih_l0[H:2 * H] = 5.0
    lstm, rnn = tr.gradients(), trainer("vanishing-rnn").gradients()
    assert reach(lstm) > 1e3 * reach(rnn)
    assert lstm.factor > 0.97


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.timeout(1200)  # trains minutes of CPU; a busy machine takes longer
def test_trained_lstm_reaches_early_steps_orders_of_magnitude_further_than_the_rnn():
    """The vanishing-rnn and vanishing-lstm presets' claims (about 40 s). The RNN, trained for
    its budget, stays near the 0.167 baseline and its factor well below 1; the LSTM finds the
    task within its budget (its 10-step mean loss falls below the target, 0.01), and 250
    steps later the gradient reaches the first steps orders of magnitude further than the
    trained RNN's. Measured over seeds 0-1, 1 thread (50-90 CPU-seconds): the RNN's lowest
    100-step mean 0.160-0.163; the LSTM below the target at step 1585-2657 (seeds 0-4 in an
    earlier run on this branch: 1,300-2,700, within the 4000-step budget); 250 steps later
    its factor 0.997-1.001 against the RNN's 0.875-0.888, its gradient reaching the first
    step 10^5.0-10^5.3 times further, and ||dL/dc_t|| keeping 12.6-22 times more than
    ||dL/dh_t|| (seed 2, with RNN_EXPLORER_TEST_SEED=2: 1.54 times, at step 2250, when the
    LSTM had only just found the task; the description's 7-22 is at step 3000). Asserted:
    the cell state keeps more than the hidden state, > 1."""
    rnn, losses = train(load_preset("vanishing-rnn").experiment)
    lowest = outcome("vanishing-rnn/lowest_100_step_mean", lowest_mean(losses, 100))
    exp = load_preset("vanishing-lstm").experiment
    lstm, losses = train(exp, 250)
    while first_step_below(losses, lstm.task.target) == float("inf") and lstm.step_count < exp.steps:
        losses = np.concatenate([losses, more(lstm, 250)])
    found = outcome("vanishing-lstm/reaches_target", first_step_below(losses, lstm.task.target))
    more(lstm, 250)
    lstm_rec, rnn_rec = lstm.gradients(), rnn.gradients()
    outcome("vanishing-lstm/after", {"log10_reach_over_rnn": np.log10(reach(lstm_rec) / reach(rnn_rec)),
                                     "lstm_factor": lstm_rec.factor, "rnn_factor": rnn_rec.factor})
    assert lowest > 0.8 / 6 and found <= exp.steps, (lowest, found)
    assert reach(lstm_rec) > 1e3 * reach(rnn_rec)
    assert lstm_rec.factor > 0.95 > rnn_rec.factor
    # vanishing-lstm's description: the gradient rides the cell state (measured at step 3000,
    # seeds 0-4: ||dL/dc_t|| keeps 7-22 times more of its size back to t = 0 than ||dL/dh_t||;
    # here, 250 steps after the target, 1.5-22 over seeds 0-2)
    cell = lstm_rec.cell_norms[-1]
    assert outcome("vanishing-lstm/cell_reach_over_hidden_reach", cell[0] / cell[-1] / reach(lstm_rec)) > 1


def test_tbptt_preset_full_and_truncated_agree_in_the_last_chunk_only():
    tr = trainer("tbptt-charlm")
    cut = tr.gradients()
    full = bptt.gradient_record(tr.model, tr.probe_batch(), 0, truncate=0)
    assert cut.truncate == 20 and full.truncate is None
    np.testing.assert_allclose(cut.norms[0][80:], full.norms[0][80:], rtol=1e-5)
    assert not np.allclose(cut.norms[0][:80], full.norms[0][:80], rtol=1e-5)
    np.testing.assert_array_equal(cut.jacobian, full.jacobian)  # the dynamics, untruncated


def test_tbptt_preset_carries_the_state_forward_across_chunk_edges():
    """What tbptt-charlm says: at a chunk edge the state is detached, not reset, so what the
    model writes at step 20 still depends on the characters of the chunk before."""
    import dataclasses

    tr = trainer("tbptt-charlm")
    batch = tr.probe_batch()
    other = batch.x.clone()
    other[19] = other[19].roll(1, dims=-1)  # another character at the last step of chunk 1
    with torch.no_grad():
        out, _ = tr.model.run(batch, tr.experiment.tbptt)
        out_other, _ = tr.model.run(dataclasses.replace(batch, x=other), tr.experiment.tbptt)
    assert torch.equal(out[:19], out_other[:19])
    assert (out[20] - out_other[20]).abs().max() > 1e-3


@pytest.mark.slow
@pytest.mark.trained
def test_exploding_preset_clipping_keeps_training_finite_but_nothing_is_learnt():
    """The exploding-rnn preset's claim, over its budget (about 8 s): clipping acts on almost
    every step and no update is refused, yet the loss never gets below the 0.167 of always
    answering 1. Measured over seeds 0-4, 1 thread: clipped on 95-98% of the steps; lowest
    100-step mean loss 0.228-0.243."""
    tr, losses = train(load_preset("exploding-rnn").experiment)  # train() fails on a refused update
    clipped = outcome("exploding-rnn/clipped_share", tr.history.column("clipped").mean())
    lowest = outcome("exploding-rnn/lowest_100_step_mean", lowest_mean(losses, 100))
    assert clipped >= 0.8 and lowest > tr.task.baseline, (clipped, lowest)


@pytest.mark.trained
def test_exploding_preset_without_clipping_diverges():
    """What the exploding-rnn preset tells the user to try: plain SGD without clipping
    diverges within a few dozen steps (measured over seeds 0-4: at step 19-22)."""
    tr = Trainer(seeded(load_preset("exploding-rnn").experiment.replace(clip=0.0)))
    diverged_at = outcome("exploding-rnn/unclipped_diverges_at",
                          next((r.step for r in tr.run(100) if r.diverged), float("inf")))
    assert diverged_at <= 60, diverged_at
