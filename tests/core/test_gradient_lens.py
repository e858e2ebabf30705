"""The gradients lens beyond ||dL/dh_t||: ||dL/dc_t||, the block sweep, the Jacobian-product
rate, the Pascanu bound, and instruments that never fail on weights training produced.

References are independent: a hand-unrolled loop of torch.nn.LSTMCell with ``retain_grad``
on every c_t (chunked for truncated BPTT, ``torch.where`` for padding); dense step
Jacobians (checked against autograd in test_bptt.py) multiplied out; the exact products.
"""

import math

import numpy as np
import pytest
import torch

from core.instruments import bptt, jacobians, products, spectrum
from core.models.recurrent import make_recurrent
from core.presets import load_preset
from core.training.trainer import Trainer


def make(kind, nonlinearity="tanh", layers=1, input_size=3, hidden=5, seed=0):
    torch.manual_seed(seed)
    return make_recurrent(kind, input_size, hidden, layers, nonlinearity).double()


# ------------------------------------------------------------------ dL/dc_t
def reference_cell_grads(net, x, loss_fn, truncate=None, lengths=None):
    """[L, T] ||dL/dc_t||: the LSTM equations unrolled by hand (torch.nn.LSTM's gate order
    i, f, g, o), chunk by chunk for truncated BPTT, padded steps holding the state, and
    retain_grad on every c_t, whose uses are c_{t+1} and h_t = o tanh(c_t)."""
    T, B, _ = x.shape
    L, H = net.num_layers, net.hidden_size
    weights = [[w.detach().clone().requires_grad_() for w in net.layer_weights(layer)] for layer in range(L)]
    valid = torch.ones(T, B, 1, dtype=torch.bool)
    if lengths is not None:
        valid = (torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)
    h = [x.new_zeros(B, H) for _ in range(L)]
    c = [x.new_zeros(B, H) for _ in range(L)]
    nodes = [[None] * T for _ in range(L)]
    outs = []
    k = truncate or T
    for start in range(0, T, k):
        h, c = [s.detach() for s in h], [s.detach() for s in c]
        for t in range(start, min(start + k, T)):
            inp, m = x[t], valid[t]
            for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
                z = inp @ w_ih.T + b_ih + h[layer] @ w_hh.T + b_hh
                i, f, g, o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
                i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
                c[layer] = torch.where(m, f * c[layer] + i * g, c[layer])
                c[layer].retain_grad()
                nodes[layer][t] = c[layer]
                h[layer] = torch.where(m, o * torch.tanh(c[layer]), h[layer])
                inp = h[layer] * m
            outs.append(inp)
    loss_fn(torch.stack(outs), (torch.stack(h), torch.stack(c))).backward()
    return np.array([[float(n.grad.norm()) if n.grad is not None else 0.0 for n in row] for row in nodes])


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("padded", [False, True])
def test_cell_state_gradients_match_a_hand_unrolled_loop(layers, truncate, padded):
    T, B = 9, 3
    net = make("lstm", layers=layers, hidden=4, seed=2)
    x = torch.randn(T, B, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([9, 6, 4]) if padded else None
    w = torch.randn(T, B, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def loss_fn(out, state):  # a loss at every step and one on the final cell state
        return (out * w).sum() + state[1][-1].square().sum()

    got = bptt.through_time(net, x, loss_fn, truncate, lengths)
    want = reference_cell_grads(net, x, loss_fn, truncate, lengths)
    np.testing.assert_allclose(got.cell, want, rtol=1e-10, atol=1e-14)
    assert bptt.through_time(make("gru"), x, lambda o, s: o.sum()).cell is None


def test_the_cell_state_carries_the_gradient_when_forget_gates_are_open():
    """What vanishing-lstm's description says: with f near 1, ||dL/dc_t|| reaches the first
    steps almost undiminished while ||dL/dh_t|| on the same run falls away."""
    tr = Trainer(load_preset("vanishing-lstm").experiment)
    H = tr.experiment.hidden_size
    with torch.no_grad():
        tr.model.recurrent.bias_ih_l0[H:2 * H] = 5.0  # f = sigmoid(5) = 0.993
    rec = tr.gradients()
    c, h = rec.cell_norms[0], rec.norms[0]
    assert c[0] / c[-2] > 0.1 and h[0] / h[-1] < c[0] / c[-2]


# ------------------------------------------------------------------ closed-form products
@pytest.mark.parametrize("kind,nonlinearity", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")])
def test_vjp_and_jvp_equal_the_dense_step_jacobians(kind, nonlinearity):
    net = make(kind, nonlinearity, hidden=6, seed=5)
    x = torch.randn(8, 1, 3, dtype=torch.float64)
    trace = net.probe(x)
    valid = torch.tensor([True] * 6 + [False, True])
    coef = jacobians.step_coefficients(net, x, trace, 0, valid)
    dense = coef.dense().dense()  # [T, S, S]
    S, H = dense.shape[-1], 6
    rows = torch.randn(4, S, dtype=torch.float64)
    cols = torch.randn(S, 4, dtype=torch.float64)
    for t in range(8):
        a, b = coef.vjp(t, rows[:, :H], rows[:, H:] if S > H else None)
        got = a if b is None else torch.cat([a, b], dim=-1)
        torch.testing.assert_close(got, rows @ dense[t], rtol=1e-12, atol=1e-12)
        xh, xc = coef.jvp(t, cols[:H], cols[H:] if S > H else None)
        got = xh if xc is None else torch.cat([xh, xc])
        torch.testing.assert_close(got, dense[t] @ cols, rtol=1e-12, atol=1e-12)
    assert torch.equal(dense[6], torch.eye(S, dtype=torch.float64))  # padded: the state is held


# ------------------------------------------------------------------ the block sweep
SWEEP_TOLERANCE = 1e-3  # relative, issue 20; measured at most 5e-5 on these models


@pytest.mark.parametrize("name", ["vanishing-rnn", "exploding-rnn", "vanishing-lstm", "adding-gru",
                                  "padding-gru", "charlm-lstm", "tbptt-charlm"])
def test_block_sweep_matches_the_exact_products_on_the_presets_models(name, monkeypatch):
    """With a short exact tail (8 steps, not 32), so that the sweep carries most products
    even at T = 30; measured errors at most 2e-5 (tbptt-charlm trained 30 steps: 2e-4)."""
    monkeypatch.setattr(products, "TAIL_MAX", 8)
    tr = Trainer(load_preset(name).experiment)
    batch, net = tr.probe_batch(), tr.model.recurrent
    kwargs = tr.model.recurrent_kwargs(batch)
    exact = bptt.jacobian_norms(net, batch.x, exact=True, per_step=False, **kwargs)
    sweep = bptt.jacobian_norms(net, batch.x, exact=False, per_step=False, **kwargs)
    T = batch.x.shape[0]
    assert sweep.exact_steps < T  # the sweep did run
    np.testing.assert_allclose(sweep.norms, exact.norms, rtol=SWEEP_TOLERANCE)
    assert sweep.rate == pytest.approx(exact.rate, rel=1e-4)


def test_a_trained_wide_model_takes_the_sweep_by_default_and_agrees():
    tr = Trainer(load_preset("tbptt-charlm").experiment)
    for _ in range(30):
        tr.step()
    batch, net = tr.probe_batch(), tr.model.recurrent
    assert net.hidden_size > products.EXACT_MAX_H
    fast = bptt.jacobian_norms(net, batch.x, per_step=False)
    exact = bptt.jacobian_norms(net, batch.x, exact=True, per_step=False)
    assert fast.exact_steps <= products.TAIL_MAX + 1
    np.testing.assert_allclose(fast.norms, exact.norms, rtol=SWEEP_TOLERANCE)


# ------------------------------------------------------------------ the rates
def test_lyapunov_rate_is_the_growth_of_a_renormalised_vector():
    """Closed form: a constant diagonal Jacobian diag(0.5, 0.9, ...) (rnn on zero input
    with W = that diagonal, h = 0, tanh' = 1): the top rate is 0.9."""
    net = make("rnn", hidden=4, seed=1)
    with torch.no_grad():
        net.weight_hh_l0.copy_(torch.diag(torch.tensor([0.5, 0.9, 0.3, 0.7], dtype=torch.float64)))
        net.weight_ih_l0.zero_()
        net.bias_ih_l0.zero_()
        net.bias_hh_l0.zero_()
    jac = bptt.jacobian_norms(net, torch.zeros(30, 1, 3, dtype=torch.float64))
    assert jac.rate == pytest.approx(0.9, rel=1e-12)
    np.testing.assert_allclose(jac.norms, 0.9 ** np.arange(29, -1, -1), rtol=1e-12)


def test_relu_has_gamma_one():
    net = make("rnn", "relu", hidden=6, seed=3)
    assert bptt.pascanu_bound(net) == pytest.approx(np.linalg.norm(net.weight_hh_l0.detach().numpy(), 2))
    assert spectrum.GAMMA["relu"] == 1.0


RATE_GAP = 0.05  # issue 15: the Jacobian-product rate within 0.05 of the measured factor


@pytest.fixture(scope="module")
def trained_rates():
    """(preset, seed, step) -> (measured factor, lyapunov rate, pascanu bound), at steps
    0, 200 and 400 of vanishing-rnn and exploding-rnn, seeds 0-2."""
    out = {}
    for name in ("vanishing-rnn", "exploding-rnn"):
        for seed in range(3):
            tr = Trainer(load_preset(name).experiment.replace(seed=seed))
            for step in (0, 200, 400):
                while tr.step_count < step:
                    tr.step()
                rec = tr.gradients()
                out[name, seed, step] = (rec.factor, rec.lyapunov_rate, rec.pascanu_bound)
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_jacobian_product_rate_tracks_the_measured_factor(trained_rates):
    """Measured (this machine): |rate - factor| at most 0.04 over these 18 runs (exploding-rnn seed 0 at step 400: 0.039), while the
    mean-field estimate strays by up to 0.35 once trained (issue 15's table)."""
    for key, (factor, rate, _) in trained_rates.items():
        assert abs(rate - factor) <= RATE_GAP, (key, factor, rate)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_pascanu_bound_is_above_the_measured_factor(trained_rates):
    for key, (factor, rate, bound) in trained_rates.items():
        print(key, f"factor {factor:.4f} rate {rate:.4f} bound {bound:.3f}")
        assert bound >= factor and bound >= rate, (key, factor, rate, bound)


def test_loss_at_every_step_fits_no_factor():
    rec = Trainer(load_preset("charlm-lstm").experiment.replace(seq_len=20)).gradients()
    assert rec.loss_every_step and math.isnan(rec.factor) and math.isfinite(rec.lyapunov_rate)


# ------------------------------------------------------------------ never fail (issue 14.4)
def test_eigensolver_failure_falls_back_to_the_svd(monkeypatch):
    net = make("rnn", hidden=8, seed=4)
    x = torch.randn(12, 1, 3, dtype=torch.float64)
    want = bptt.jacobian_norms(net, x, per_step=False).norms

    def fail(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigvalsh", fail)
    monkeypatch.setattr(torch.linalg, "eigh", fail)
    np.testing.assert_allclose(bptt.jacobian_norms(net, x, per_step=False).norms, want, rtol=1e-10)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e30])
def test_weights_that_training_blew_up_give_a_note_not_an_exception(value):
    tr = Trainer(load_preset("adding-rnn").experiment.replace(seq_len=20))
    with torch.no_grad():
        tr.model.recurrent.weight_hh_l0.fill_(value)
    rec, spec = tr.gradients(), tr.spectrum()
    if math.isfinite(value):
        assert rec.note is None or rec.note.startswith("not available")
    else:
        assert rec.note.startswith("not available") and spec.regime == "not available"
        assert np.isnan(rec.jacobian).all() and math.isnan(rec.lyapunov_rate)


# ------------------------------------------------------------------ probes at scale (issue 20)
def test_the_cell_state_scan_equals_the_step_by_step_recurrence():
    from core.models.recurrent import linear_scan

    gen = torch.Generator().manual_seed(6)
    for T in (1, 2, 7, 64, 129):
        a = torch.rand(T, 3, 4, dtype=torch.float64, generator=gen)
        b = torch.randn(T, 3, 4, dtype=torch.float64, generator=gen)
        c = c0 = torch.randn(3, 4, dtype=torch.float64, generator=gen)
        want = []
        for t in range(T):
            c = a[t] * c + b[t]
            want.append(c)
        torch.testing.assert_close(linear_scan(a, b, c0), torch.stack(want), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["vanishing-lstm", "padding-gru"])
def test_the_probe_record_copied_at_once_equals_the_loop_trace(name):
    tr = Trainer(load_preset(name).experiment.replace(seq_len=20))
    rec = tr.probe()
    batch = tr.probe_batch()
    out, _, trace = tr.model.recurrent(batch.x, **tr.model.recurrent_kwargs(batch))
    for got, want in zip(rec.hidden, trace.hidden, strict=True):
        np.testing.assert_allclose(got, want[:, 0].detach().numpy(), rtol=1e-5, atol=1e-6)
    for got, want in zip(rec.gates, trace.gates, strict=True):
        assert got.keys() == want.keys()
        for k in got:
            np.testing.assert_allclose(got[k], want[k][:, 0].detach().numpy(), rtol=1e-5, atol=1e-6)
    if rec.cell is not None:
        np.testing.assert_allclose(rec.cell[0], trace.cell[0][:, 0].detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rec.inputs, batch.x[:, 0].numpy())
    assert (rec.unmasked_hidden is not None) == (name == "padding-gru")
