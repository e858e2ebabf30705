"""core.instruments.jacobians' dense blocks for callers other than the products: the
fixed-point finder's ``cell_jacobians`` and ``step_jacobians`` (closed form for rnn, lstm,
gru; autograd through the model's own ``_cell`` for any other cell).

References: torch.autograd.functional.jacobian through torch.nn.RNNCell / LSTMCell / GRUCell
carrying the same weights, at random states; for a cell without a closed form here
(softsign), its derivative written out, J = diag(1 / (1 + |a|)^2) W_hh.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.instruments import jacobians
from core.models.recurrent import make_recurrent

KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
N, N_IN, H = 6, 3, 4


def make(kind, nonlinearity="tanh"):
    torch.manual_seed(1)
    return make_recurrent(kind, N_IN, H, 1, nonlinearity).double()


def nn_cell(net):
    cls = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}.get(net.kind)
    cell = cls(N_IN, H) if cls else nn.RNNCell(N_IN, H, nonlinearity=net.nonlinearity)
    w_ih, w_hh, b_ih, b_hh = (w.detach().clone() for w in net.layer_weights(0))
    cell.load_state_dict({"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh})
    return cell.double()


@pytest.mark.parametrize("kind,nonlinearity", KINDS)
def test_cell_jacobians_equal_autograd_through_torch_nn_cells(kind, nonlinearity):
    """d s'/d s for N states (s = h, or (h, c) for lstm), blocks as documented."""
    net = make(kind, nonlinearity)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(N, N_IN, dtype=torch.float64, generator=gen)
    h = torch.randn(N, H, dtype=torch.float64, generator=gen) * 0.8
    c = torch.randn(N, H, dtype=torch.float64, generator=gen) if kind == "lstm" else None
    w_ih, w_hh, b_ih, b_hh = (w.detach() for w in net.layer_weights(0))
    J = jacobians.cell_jacobians(net, w_hh, b_hh, F.linear(x, w_ih, b_ih), h, c)
    cell = nn_cell(net)
    for n in range(N):
        if kind == "lstm":
            def step(s, n=n):
                h1, c1 = cell(x[n:n + 1], (s[None, :H], s[None, H:]))
                return torch.cat([h1, c1], dim=-1)[0]

            want = torch.autograd.functional.jacobian(step, torch.cat([h[n], c[n]]))
            torch.testing.assert_close(J.dense()[n], want, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(J.hh[n], want[:H, :H], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(torch.diag_embed(J.cc[n]), want[H:, H:], rtol=1e-10, atol=1e-12)
        else:
            want = torch.autograd.functional.jacobian(lambda s, n=n: cell(x[n:n + 1], s[None])[0], h[n])
            torch.testing.assert_close(J.hh[n], want, rtol=1e-10, atol=1e-12)
            assert J.hc is None


def softsign_cell(net):
    """The rnn ``net`` with a cell of a kind that has no closed form in jacobians."""
    net.kind = "softsign"
    net._cell = lambda xi, h, c, w_hh, b_hh, edit=None: (F.softsign(xi + F.linear(h, w_hh, b_hh)), None, {})
    return net


def test_a_cell_without_a_closed_form_gets_its_step_jacobians_by_autograd():
    net = make("rnn")
    x = torch.randn(5, 2, N_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    trace = net.probe(x)  # the states to step from
    net = softsign_cell(net)
    w_ih, w_hh, b_ih, b_hh = (w.detach() for w in net.layer_weights(0))
    h = trace.hidden[-1][:, 1]
    h_prev = torch.cat([h.new_zeros(1, H), h[:-1]])
    a = F.linear(x[:, 1], w_ih, b_ih) + F.linear(h_prev, w_hh, b_hh)
    want = (1 / (1 + a.abs()) ** 2).unsqueeze(-1) * w_hh
    got = jacobians.step_jacobians(net, x, trace, 1)
    torch.testing.assert_close(got.dense(), want, rtol=1e-12, atol=1e-14)
    assert jacobians.cell_jacobians(net, w_hh, b_hh, a, h_prev, None) is None


def test_lstm_step_jacobians_keep_their_blocks():
    """hh is dh_t/dh_{t-1} [T, H, H] (c held), not the whole [2H, 2H] state Jacobian."""
    net = make("lstm")
    x = torch.randn(5, 1, N_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    trace = net.probe(x)
    J = jacobians.step_jacobians(net, x, trace, 0)
    full = jacobians.step_jacobians_autograd(net, x, trace, 0)
    assert J.hh.shape == (5, H, H) and J.cc.shape == (5, H)
    np.testing.assert_allclose(J.hh.numpy(), full[:, :H, :H].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(J.dense().numpy(), full.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind,nonlinearity", KINDS)
def test_step_jacobians_of_a_model_without_biases(kind, nonlinearity):
    """bias off: no b_ih, b_hh (None, not zeros) along the trajectory of a torch.nn loop."""
    torch.manual_seed(5)
    net = make_recurrent(kind, N_IN, H, 1, nonlinearity, False).double()
    x = torch.randn(5, 2, N_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    cls = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}.get(kind)
    cell = cls(N_IN, H, bias=False) if cls else nn.RNNCell(N_IN, H, bias=False, nonlinearity=nonlinearity)
    w_ih, w_hh, _, _ = (w.detach().clone() if w is not None else None for w in net.layer_weights(0))
    cell.load_state_dict({"weight_ih": w_ih, "weight_hh": w_hh})
    cell.double()
    got = jacobians.step_jacobians(net, x, net.probe(x), 1).dense()
    h = c = torch.zeros(1, H, dtype=torch.float64)
    for t in range(5):
        if kind == "lstm":
            def step(s, t=t):
                h1, c1 = cell(x[t, 1:2], (s[None, :H], s[None, H:]))
                return torch.cat([h1, c1], dim=-1)[0]

            want = torch.autograd.functional.jacobian(step, torch.cat([h[0], c[0]]))
            h, c = cell(x[t, 1:2], (h, c))
        else:
            want = torch.autograd.functional.jacobian(lambda s, t=t: cell(x[t, 1:2], s[None])[0], h[0])
            h = cell(x[t, 1:2], h)
        torch.testing.assert_close(got[t], want, rtol=1e-10, atol=1e-12)


def test_relu_at_exactly_zero_has_torchs_derivative_zero():
    """An IRNN-style start (zero biases, zero input, zero state) puts the pre-activation at
    exactly 0, where torch's relu backward (and so autograd's Jacobian) is 0."""
    net = make("rnn", "relu")
    with torch.no_grad():
        net.bias_ih_l0.zero_()
        net.bias_hh_l0.zero_()
    w_ih, w_hh, b_ih, b_hh = (w.detach() for w in net.layer_weights(0))
    zero = torch.zeros(1, H, dtype=torch.float64)
    J = jacobians.cell_jacobians(net, w_hh, b_hh, torch.zeros(1, H, dtype=torch.float64), zero, None)
    cell = nn_cell(net)
    want = torch.autograd.functional.jacobian(lambda s: cell(torch.zeros(1, N_IN, dtype=torch.float64), s[None])[0],
                                              zero[0])
    assert torch.equal(want, torch.zeros(H, H, dtype=torch.float64))
    torch.testing.assert_close(J.hh[0], want, rtol=0, atol=0)
