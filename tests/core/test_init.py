"""core.models.init: each scheme gives W_hh (every gate block, every layer) the promised property."""

import numpy as np
import pytest
import torch

from core.models.init import initialise, random_orthogonal, set_forget_bias
from core.models.recurrent import make_recurrent
from core.names import INIT_SCHEMES as SCHEMES

CELLS = [("rnn", 1), ("lstm", 4), ("gru", 3)]


def blocks(net, layer):
    w = net.layer_weights(layer)[1].detach().double().numpy()
    return np.split(w, len(w) // net.hidden_size)


def make(kind, seed=0, hidden=16):
    torch.manual_seed(seed)
    return make_recurrent(kind, 3, hidden, num_layers=2)


@pytest.mark.parametrize("kind,n_blocks", CELLS)
@pytest.mark.parametrize("radius", [0.5, 0.9, 1.7])
def test_spectral_sets_the_radius_of_every_block(kind, n_blocks, radius):
    net = make(kind)
    initialise(net, "spectral", spectral_radius=radius)
    for layer in range(2):
        assert len(blocks(net, layer)) == n_blocks
        for b in blocks(net, layer):
            assert np.abs(np.linalg.eigvals(b)).max() == pytest.approx(radius, rel=1e-5)


@pytest.mark.parametrize("kind,n_blocks", CELLS)
def test_spectral_only_rescales(kind, n_blocks):
    net = make(kind)
    before = [blocks(net, layer) for layer in range(2)]
    initialise(net, "spectral", spectral_radius=0.9)
    for layer in range(2):
        for old, new in zip(before[layer], blocks(net, layer), strict=True):
            ratio = new / old
            np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)


@pytest.mark.parametrize("kind,n_blocks", CELLS)
def test_orthogonal_blocks(kind, n_blocks):
    net = make(kind)
    initialise(net, "orthogonal", generator=torch.Generator().manual_seed(1))
    for layer in range(2):
        bs = blocks(net, layer)
        for b in bs:
            np.testing.assert_allclose(b.T @ b, np.eye(len(b)), atol=1e-5)
        assert not np.allclose(bs[0], bs[-1]) or len(bs) == 1  # independent draws


@pytest.mark.parametrize("kind,n_blocks", CELLS)
def test_identity_blocks_and_zero_biases(kind, n_blocks):
    net = make(kind)
    w_ih_before = net.weight_ih_l0.detach().clone()
    initialise(net, "identity", spectral_radius=0.7)
    for layer in range(2):
        for b in blocks(net, layer):
            np.testing.assert_array_equal(b, 0.7 * np.eye(len(b), dtype=np.float32))
        _, _, b_ih, b_hh = net.layer_weights(layer)
        assert not b_ih.any() and not b_hh.any()
    assert torch.equal(net.weight_ih_l0, w_ih_before)  # input weights kept


def test_default_leaves_torchs_init_alone():
    net = make("lstm")
    state = {k: v.clone() for k, v in net.state_dict().items()}
    initialise(net, "default", spectral_radius=3.0)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())


def test_deterministic_given_the_generator_or_the_global_seed():
    a, b, c = make("gru", seed=0), make("gru", seed=1), make("gru", seed=2)
    initialise(a, "orthogonal", generator=torch.Generator().manual_seed(5))
    initialise(b, "orthogonal", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.weight_hh_l1, b.weight_hh_l1)
    torch.manual_seed(5)
    initialise(c, "orthogonal")
    torch.manual_seed(5)
    initialise(b, "orthogonal")
    assert torch.equal(c.weight_hh_l0, b.weight_hh_l0)


def test_random_orthogonal_is_haar_not_biased_in_sign():
    g = torch.Generator().manual_seed(0)
    diag = torch.stack([torch.diagonal(random_orthogonal(4, g)) for _ in range(400)])
    assert abs(float(diag.mean())) < 0.05  # plain QR without the sign fix gives a bias


@pytest.mark.parametrize("scheme,radius,match", [
    ("xavier", 1.0, "scheme must be one of default, orthogonal, identity, spectral; got 'xavier'"),
    ("spectral", -1.0, "spectral_radius must be a finite number >= 0"),
    ("spectral", float("nan"), "spectral_radius must be a finite number >= 0"),
])
def test_bad_arguments_raise(scheme, radius, match):
    with pytest.raises(ValueError, match=match):
        initialise(make("rnn"), scheme, spectral_radius=radius)


def test_zero_matrix_cannot_be_scaled_to_a_radius():
    net = make("rnn")
    with torch.no_grad():
        net.weight_hh_l0.zero_()
    with pytest.raises(ValueError, match="spectral radius 0"):
        initialise(net, "spectral", spectral_radius=0.9)


def test_every_scheme_is_a_config_choice():
    from core.config import FIELDS

    assert set(SCHEMES) == set(FIELDS["init"].choices)


# ------------------------------------------------------------------------ forget-gate bias
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_forget_bias_sets_the_sum_and_nothing_else_against_torch_nn(layers, bidirectional):
    """Same seed, same draws as torch.nn.LSTM; then b_if + b_hf = 1 for every unit, layer and
    direction, split evenly, and every other parameter is still torch's."""
    H = 8
    torch.manual_seed(3)
    ref = torch.nn.LSTM(3, H, layers, bidirectional=bidirectional)
    torch.manual_seed(3)
    net = make_recurrent("lstm", 3, H, layers, bidirectional=bidirectional)
    set_forget_bias(net, 1.0)
    theirs, ours = ref.state_dict(), net.state_dict()
    assert list(theirs) == list(ours)
    forget = slice(H, 2 * H)  # torch's gate order i, f, g, o
    for name, value in ours.items():
        expected = theirs[name].clone()
        if name.startswith("bias_"):
            expected[forget] = 0.5
            assert torch.equal(value[forget], torch.full((H,), 0.5))
        assert torch.equal(value, expected), name
    for suffix in [f"l{k}{d}" for k in range(layers) for d in ("", "_reverse")[:1 + bidirectional]]:
        total = ours[f"bias_ih_{suffix}"][forget] + ours[f"bias_hh_{suffix}"][forget]
        assert torch.equal(total, torch.ones(H))
    # with no input and no state the forget gate is sigma(1) at the first step, in every unit
    _, _, trace = net(torch.zeros(1, 1, 3))
    torch.testing.assert_close(trace.gates[0]["forget"][0, 0], torch.full((H,), torch.sigmoid(torch.tensor(1.0))))


def test_forget_bias_zero_leaves_torchs_init_alone():
    net = make("lstm")
    state = {k: v.clone() for k, v in net.state_dict().items()}
    set_forget_bias(net, 0.0)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam, torch.optim.RMSprop])
def test_how_the_forget_bias_is_split_does_not_change_training(optimizer):
    """The reason for the even split: b_if and b_hf get equal gradients, so all of the sum in
    b_if or half in each trains to the same outputs (within float rounding)."""
    torch.manual_seed(0)
    even = make_recurrent("lstm", 3, 8)
    set_forget_bias(even, 2.0)
    lopsided = make_recurrent("lstm", 3, 8)
    lopsided.load_state_dict(even.state_dict())
    with torch.no_grad():
        lopsided.bias_ih_l0[8:16] = 2.0
        lopsided.bias_hh_l0[8:16] = 0.0
    x, y = torch.randn(20, 4, 3), torch.randn(20, 4, 8)
    outs = []
    for net in (even, lopsided):
        opt = optimizer(net.parameters(), lr=0.01)
        for _ in range(30):
            opt.zero_grad()
            out, _, _ = net(x, trace=False)
            ((out - y) ** 2).mean().backward()
            opt.step()
        outs.append(net(x, trace=False)[0])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(even.bias_ih_l0[8:16] + even.bias_hh_l0[8:16],
                                   lopsided.bias_ih_l0[8:16] + lopsided.bias_hh_l0[8:16], atol=1e-5, rtol=1e-5)


def test_forget_bias_refuses_other_cells_and_non_finite_values():
    with pytest.raises(ValueError, match="applies to lstm layers only; this is a gru"):
        set_forget_bias(make("gru"), 1.0)
    with pytest.raises(ValueError, match="forget bias must be a finite number; got nan"):
        set_forget_bias(make("lstm"), float("nan"))


@pytest.mark.parametrize("scheme", ["orthogonal", "identity", "spectral"])
def test_schemes_reach_the_backward_direction(scheme):
    torch.manual_seed(0)
    net = make_recurrent("rnn", 3, 6, 2, bidirectional=True)
    initialise(net, scheme, spectral_radius=0.8)
    for layer in range(2):
        for reverse in (False, True):
            w = net.layer_weights(layer, reverse)[1].detach().double().numpy()
            if scheme == "orthogonal":
                np.testing.assert_allclose(w.T @ w, np.eye(6), atol=1e-5)
            elif scheme == "identity":
                np.testing.assert_array_equal(w, 0.8 * np.eye(6, dtype=np.float32))
            else:
                assert np.abs(np.linalg.eigvals(w)).max() == pytest.approx(0.8, rel=1e-5)
