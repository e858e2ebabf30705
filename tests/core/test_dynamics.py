"""core.instruments.dynamics against independent references.

Fixed points and eigenvalues of hand-built 2-D networks are known in closed form (the
networks are built around chosen fixed points; 2 x 2 eigenvalues come from the quadratic
formula, not numpy). The step map is checked against torch.nn's own modules carrying the
same weights, the Jacobians against autograd and finite differences, PCA against numpy's SVD.
Everything in float64.
"""

import cmath
import math

import numpy as np
import pytest
import torch

from core.instruments import dynamics as D
from core.instruments import dynamics_record as R
from core.models.recurrent import make_recurrent, torch_reference

ATOL = 1e-6


def eig2(M) -> list[complex]:
    """Eigenvalues of a 2 x 2 matrix by the quadratic formula."""
    (a, b), (c, d) = np.asarray(M, np.float64)
    half, det = (a + d) / 2, a * d - b * c
    root = cmath.sqrt(half * half - det)
    return [half + root, half - root]


def same_eigenvalues(found, expected) -> bool:
    found = sorted(np.asarray(found).tolist(), key=lambda z: (round(z.real, 6), round(z.imag, 6)))
    expected = sorted([complex(z) for z in expected], key=lambda z: (round(z.real, 6), round(z.imag, 6)))
    return len(found) == len(expected) and all(abs(a - b) < ATOL for a, b in zip(found, expected, strict=True))


def grid_starts(lo=-1.0, hi=1.0, n=9) -> torch.Tensor:
    g = torch.linspace(lo, hi, n, dtype=torch.float64)
    return torch.cartesian_prod(g, g)


def network(kind, hidden=2, nonlinearity="tanh", input_size=1):
    net = make_recurrent(kind, input_size, hidden, nonlinearity=nonlinearity).double()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return net


def match(states, expected) -> list[int]:
    """For each expected point, the index of the found state within ATOL of it."""
    out = []
    for point in expected:
        dist = np.linalg.norm(states - np.asarray(point), axis=1)
        assert dist.min() < ATOL, f"no fixed point found at {point}; nearest {states[dist.argmin()]}"
        out.append(int(dist.argmin()))
    return out


# ------------------------------------------------------------------ closed-form networks
def test_bistable_tanh_rnn_has_nine_fixed_points_with_their_eigenvalues():
    """h = tanh(a h) per unit with a = atanh(0.8) / 0.8 > 1: fixed at -0.8, 0 and 0.8 exactly,
    slope a (1 - h^2); the four corners attract, the four edge centres are saddles, 0 repels."""
    a = math.atanh(0.8) / 0.8
    net = network("rnn")
    with torch.no_grad():
        net.weight_hh_l0.copy_(torch.eye(2, dtype=torch.float64) * a)
    found = D.fixed_points(D.StepMap(net, torch.zeros(1)), grid_starts(), distance=1e-3)
    assert found.fixed.all() and len(found.q) == 9
    levels = (-0.8, 0.0, 0.8)
    expected = [(u, v) for u in levels for v in levels]
    for (u, v), i in zip(expected, match(found.states, expected), strict=True):
        slopes = [a * (1 - u * u), a * (1 - v * v)]
        assert same_eigenvalues(found.eigenvalues[i], slopes)
        assert found.stable[i] == (abs(u) > 0 and abs(v) > 0)
        assert found.q[i] < 1e-20


def test_rotating_tanh_rnn_has_one_spiral_fixed_point():
    """Built around h* with W a scaled rotation (a contraction: h* is the only fixed point);
    dF/dh = diag(1 - h*^2) W has a complex pair."""
    h_star = np.array([0.3, -0.2])
    angle, scale = 0.7, 0.9
    W = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    x = np.array([0.5])
    w_ih = np.array([[0.4], [-0.6]])
    b = np.arctanh(h_star) - W @ h_star - w_ih @ x
    net = network("rnn")
    with torch.no_grad():
        net.weight_hh_l0.copy_(torch.tensor(W))
        net.weight_ih_l0.copy_(torch.tensor(w_ih))
        net.bias_hh_l0.copy_(torch.tensor(b))
    found = D.fixed_points(D.StepMap(net, torch.tensor(x)), grid_starts(n=5), distance=1e-3)
    assert len(found.q) == 1 and found.fixed[0]
    np.testing.assert_allclose(found.states[0], h_star, atol=ATOL)
    expected = eig2(np.diag(1 - h_star ** 2) @ W)
    assert abs(expected[0].imag) > 0.1 and same_eigenvalues(found.eigenvalues[0], expected)
    assert found.stable[0] and not found.marginal[0]


def test_relu_rnn_finds_the_attractor_and_the_unstable_point():
    """relu(1.5 h1 - 0.5) = h1 at h1 = 0 (slope 0) and 1 (slope 1.5); relu(0.5 h2 + 0.5) = h2
    at h2 = 1 (slope 0.5): (0, 1) attracts, (1, 1) repels, nothing else is fixed."""
    net = network("rnn", nonlinearity="relu")
    with torch.no_grad():
        net.weight_hh_l0.copy_(torch.tensor([[1.5, 0.0], [0.0, 0.5]], dtype=torch.float64))
        net.bias_hh_l0.copy_(torch.tensor([-0.5, 0.5], dtype=torch.float64))
    found = D.fixed_points(D.StepMap(net, torch.zeros(1)), grid_starts(0.01, 1.5, 8), distance=1e-3)
    assert found.fixed.sum() == 2
    attract, repel = match(found.states, [(0.0, 1.0), (1.0, 1.0)])
    assert same_eigenvalues(found.eigenvalues[attract], [0.0, 0.5]) and found.stable[attract]
    assert same_eigenvalues(found.eigenvalues[repel], [1.5, 0.5]) and not found.stable[repel]


def test_gru_with_constant_gates_has_its_closed_form_fixed_point():
    """With W_hr = W_hz = 0 the gates are constant (r = σ(b_r), z = σ(b_z)); b_in puts the
    fixed point at h*, where dF/dh = z I + (1 - z) r diag(1 - h*^2) W_hn."""
    h_star = np.array([0.4, -0.5])
    b_r, b_z = 0.3, -0.2
    r, z = 1 / (1 + math.exp(-b_r)), 1 / (1 + math.exp(-b_z))
    W_n = 1.3 * np.array([[math.cos(1.1), -math.sin(1.1)], [math.sin(1.1), math.cos(1.1)]])
    b_hn = np.array([0.1, -0.2])
    b_in = np.arctanh(h_star) - r * (W_n @ h_star + b_hn)
    net = network("gru")
    with torch.no_grad():
        net.weight_hh_l0[4:6].copy_(torch.tensor(W_n))
        net.bias_ih_l0.copy_(torch.tensor([b_r, b_r, b_z, b_z, *b_in]))
        net.bias_hh_l0[4:6].copy_(torch.tensor(b_hn))
    found = D.fixed_points(D.StepMap(net, torch.zeros(1)), grid_starts(n=5), distance=1e-3)
    assert len(found.q) == 1 and found.fixed[0]
    np.testing.assert_allclose(found.states[0], h_star, atol=ATOL)
    J = z * np.eye(2) + (1 - z) * r * np.diag(1 - h_star ** 2) @ W_n
    assert same_eigenvalues(found.eigenvalues[0], eig2(J))


def test_lstm_state_is_h_and_c_with_its_closed_form_linearisation():
    """Constant i, f, o (their W_hh blocks zero) and W_hh on the candidate only; b_g puts
    the fixed point at c*, h* = o tanh(c*). dF/d(h, c) = [P; I] [diag(i g') W_g, diag(f)]
    with P = diag(o (1 - tanh^2 c*)), so its eigenvalues are those of the 2 x 2
    diag(i g') W_g P + diag(f), and two zeros."""
    c_star = np.array([0.5, -0.3])
    b_i, b_f, b_o = 0.5, 1.0, 0.2
    i, f, o = (1 / (1 + math.exp(-b)) for b in (b_i, b_f, b_o))
    h_star = o * np.tanh(c_star)
    g_star = (1 - f) * c_star / i
    W_g = np.array([[0.8, -0.9], [0.7, 0.6]])
    b_g = np.arctanh(g_star) - W_g @ h_star
    net = network("lstm")
    with torch.no_grad():
        net.weight_hh_l0[4:6].copy_(torch.tensor(W_g))
        net.bias_ih_l0.copy_(torch.tensor([b_i, b_i, b_f, b_f, *b_g, b_o, b_o]))
    step = D.StepMap(net, torch.zeros(1))
    assert step.S == 4
    g = torch.linspace(-0.8, 0.8, 4, dtype=torch.float64)
    found = D.fixed_points(step, torch.cartesian_prod(g, g, g, g), distance=1e-3)
    assert len(found.q) == 1 and found.fixed[0]
    np.testing.assert_allclose(found.states[0], [*h_star, *c_star], atol=ATOL)
    P = np.diag(o * (1 - np.tanh(c_star) ** 2))
    M = np.diag(i * (1 - g_star ** 2)) @ W_g @ P + np.diag([f, f])
    assert same_eigenvalues(found.eigenvalues[0], [*eig2(M), 0.0, 0.0])
    assert found.stable[0]


def test_a_marginal_direction_is_called_marginal_and_stable():
    """A linear-ish unit that copies itself (z = 1 - 1e-9 via a huge update-gate bias) holds
    any value: every state is (nearly) fixed, with the largest |λ| within 1e-3 of 1."""
    net = network("gru", hidden=2)
    with torch.no_grad():
        net.bias_ih_l0[2:4] = 20.7  # z = σ(20.7) = 1 - 1e-9
    found = D.fixed_points(D.StepMap(net, torch.zeros(1)), grid_starts(-0.5, 0.5, 3), distance=0.1)
    assert found.marginal.all() and found.stable.all()


# ------------------------------------------------------------------ the step map and its Jacobian
CASES = [("rnn", "tanh", 1), ("rnn", "relu", 1), ("lstm", "tanh", 1), ("gru", "tanh", 1),
         ("lstm", "tanh", 2), ("gru", "tanh", 3)]


def random_net(kind, nonlinearity, layers, hidden=4, input_size=3, seed=0):
    torch.manual_seed(seed)
    return make_recurrent(kind, input_size, hidden, layers, nonlinearity).double()


@pytest.mark.parametrize("kind, nonlinearity, layers", CASES)
def test_step_map_is_one_step_of_the_torch_nn_module(kind, nonlinearity, layers):
    net = random_net(kind, nonlinearity, layers)
    x = torch.randn(3, dtype=torch.float64)
    step = D.StepMap(net, x)
    s = torch.randn(5, step.S, dtype=torch.float64) * 0.7
    L, H = layers, net.hidden_size
    h0 = s[:, :L * H].reshape(5, L, H).transpose(0, 1).contiguous()
    ref = torch_reference(net).double()
    with torch.no_grad():
        if kind == "lstm":
            c0 = s[:, L * H:].reshape(5, L, H).transpose(0, 1).contiguous()
            _, (h1, c1) = ref(x.expand(1, 5, 3), (h0, c0))
            expected = torch.cat([h1.transpose(0, 1).reshape(5, -1), c1.transpose(0, 1).reshape(5, -1)], -1)
        else:
            _, h1 = ref(x.expand(1, 5, 3), h0)
            expected = h1.transpose(0, 1).reshape(5, -1)
    torch.testing.assert_close(step(s), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind, nonlinearity, layers", CASES)
def test_jacobian_equals_central_differences(kind, nonlinearity, layers):
    net = random_net(kind, nonlinearity, layers, seed=1)
    step = D.StepMap(net, torch.randn(3, dtype=torch.float64))
    s = torch.randn(3, step.S, dtype=torch.float64) * 0.6
    J = step.jacobian(s)
    eps = 1e-6
    fd = torch.stack([(step(s + eps * e) - step(s - eps * e)) / (2 * eps)
                      for e in torch.eye(step.S, dtype=torch.float64)], dim=-1)
    torch.testing.assert_close(J, fd, rtol=0, atol=1e-7)
    if layers == 1:  # the closed form and the autograd fallback agree too
        torch.testing.assert_close(J, step.jacobian_autograd(s), rtol=0, atol=1e-12)


def test_step_map_refuses_an_input_of_the_wrong_size():
    with pytest.raises(ValueError, match="the input x\\* must have 3 values; got 2"):
        D.StepMap(random_net("gru", "tanh", 1), torch.zeros(2))


# ------------------------------------------------------------------ PCA, de-duplication, inputs
def test_pca_matches_numpy_svd():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 3.0
    p = D.pca(X, 4)
    _, sv, Vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    np.testing.assert_allclose(p.explained, (sv ** 2 / (sv ** 2).sum())[:4], atol=1e-12)
    np.testing.assert_allclose(np.abs(p.components @ Vt[:4].T), np.eye(4), atol=1e-9)
    assert (p.components[np.arange(4), np.abs(p.components).argmax(1)] > 0).all()  # the sign rule
    np.testing.assert_allclose(p.project(X), (X - X.mean(0)) @ p.components.T, atol=1e-12)


def test_unique_points_keeps_the_lowest_q_of_each_cluster():
    states = torch.tensor([[0.0, 0.0], [1e-4, 0.0], [1.0, 1.0], [1.0, 1.0 + 5e-5]], dtype=torch.float64)
    q = torch.tensor([1e-10, 1e-20, 1e-5, 1e-6], dtype=torch.float64)
    assert D.unique_points(states, q, 1e-3).tolist() == [1, 3]


def test_input_symbols_and_parsing():
    labels = ("0", "1", "1", "0")
    x = np.array([[0.0], [1.0], [1.0], [0.0]])
    symbols = R.input_symbols(labels, x)
    assert list(symbols) == ["0", "1"]
    assert R.input_choices(symbols) == ("zero", "1")
    assert R.parse_input("0", symbols, 1)[0] == "zero"  # the zero vector's symbol is "zero"
    name, vector = R.parse_input("1", symbols, 1)
    assert name == "1" and vector.tolist() == [1.0]
    assert R.parse_input("0.5", symbols, 1)[1].tolist() == [0.5]
    with pytest.raises(ValueError, match="input 'x' is not an input of this task; give zero, '1' or 1 number"):
        R.parse_input("x", symbols, 1)
    with pytest.raises(ValueError, match="give zero or 2 numbers separated by commas"):
        R.parse_input("1,2,3", {}, 2)
    # continuous inputs (each label a different value) offer no symbols
    assert R.input_symbols(("a", "a"), np.array([[0.1], [0.2]])) == {}


# ------------------------------------------------------------------ the trainer's record
def test_trainer_record_has_the_probe_first_and_consistent_shapes():
    from core.config import Experiment
    from core.training.trainer import Trainer

    tr = Trainer(Experiment(task="parity", cell="lstm", hidden_size=6, seq_len=12, batch_size=4))
    tr.choose_dynamics_input("1")
    r = tr.dynamics(R.Settings(starts=16))
    T, S = 12, 12
    assert r.input_name == "1" and r.inputs == ("zero", "1") and r.input.tolist() == [1.0]
    assert r.trajectories.shape == (R.TRAJECTORIES, T, 3) and r.valid.all()
    assert r.points.shape[1] == S and r.eigenvalues.shape == (len(r.q), S)
    assert r.labels == tr.probe_batch().labels
    probe = tr.probe()  # row 0 is the probe: its states, projected
    state0 = np.concatenate([probe.hidden[0][0], probe.cell[0][0]])
    np.testing.assert_allclose(r.trajectories[0, 0], (state0 - r.mean) @ r.components.T, atol=1e-5)
    bits = probe.inputs[:, 0]
    assert (r.symbols[0] == np.where(bits == 1, 1, 0)).all()  # "zero" is code 0, "1" code 1
    assert r.fixed.any() and (r.q[r.fixed] <= r.tolerance).all()
    with pytest.raises(ValueError, match="input 'a' is not an input of this task"):
        tr.choose_dynamics_input("a")
    assert tr.dynamics_input == "1"  # a refused input changes nothing


def test_translation_models_have_no_dynamics():
    from core.config import Experiment
    from core.training.trainer import Trainer

    assert Trainer(Experiment(task="reverse", cell="gru", hidden_size=8, embed_size=8)).dynamics() is None


def test_an_exploding_network_gives_a_record_not_an_error():
    """A relu RNN whose states overflow to inf: the instrument runs inside the training
    loop, where an exception would stop training; it leaves the inf states out instead."""
    from core.config import Experiment
    from core.training.trainer import Trainer

    tr = Trainer(Experiment(task="sine", cell="rnn", nonlinearity="relu", hidden_size=4, seq_len=60))
    with torch.no_grad():
        tr.model.recurrent.weight_hh_l0.copy_(torch.eye(4) * 10)
        tr.model.recurrent.bias_hh_l0.fill_(1.0)
    states = tr.model.trace(tr.dynamics_batch()).hidden[0]
    assert not torch.isfinite(states).all()  # the premise: it overflows
    r = tr.dynamics(R.Settings(starts=8))
    assert np.isfinite(r.trajectories).all() and not r.valid[0].all()
    assert np.isfinite(r.explained).all()


def test_the_search_ends_where_scipy_least_squares_does_on_a_random_gru():
    """From the same starts, MINPACK's Levenberg-Marquardt (scipy) on torch.nn.GRUCell's
    G = F(s) - s and the batched search reach the same fixed point, to 1e-6."""
    from scipy.optimize import least_squares

    torch.manual_seed(3)
    cell = torch.nn.GRUCell(2, 6).double()
    with torch.no_grad():
        cell.weight_hh.mul_(3.0)  # strong enough recurrence for more than a trivial point
    net = make_recurrent("gru", 2, 6).double()
    net.load_state_dict({"weight_ih_l0": cell.weight_ih, "weight_hh_l0": cell.weight_hh,
                         "bias_ih_l0": cell.bias_ih, "bias_hh_l0": cell.bias_hh})
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64)

    def G(s):
        h = torch.as_tensor(s).view(1, -1)
        with torch.no_grad():
            return (cell(x, h) - h).view(-1).numpy()

    step = D.StepMap(net, x[0])
    starts = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.5
    mine = D.find_fixed_points(step, starts, max_iter=60)
    both = 0
    for s0, s in zip(starts, mine.states, strict=True):
        ref = least_squares(G, s0.numpy(), method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
        if 0.5 * float(np.sum(ref.fun ** 2)) < 1e-20 and float(step.q(s[None])[0]) < 1e-20:
            both += 1  # where both converge, it is to the same point
            np.testing.assert_allclose(s.numpy(), ref.x, atol=1e-6)
    assert both >= 2  # (the other starts end at slow points, q ~ 3e-3, for both)
