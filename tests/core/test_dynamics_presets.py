"""What the Dynamics panel shows on the presets, as their descriptions say (trained, slow).

Each claim was measured over seeds 0-4 on a 2-core machine; the spread is in each test's
docstring. ``RNN_EXPLORER_TEST_SEED`` shifts the seed of every run here, so the claims can
be re-checked on other seeds. Runs are shared at module scope and trained no longer than
the claims need.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.instruments.dynamics import StepMap, find_fixed_points, stack_states
from core.presets import load_preset
from core.training.trainer import Trainer
from tests.outcomes import seed_shift

pytestmark = [pytest.mark.slow, pytest.mark.trained]
SHIFT = seed_shift()  # RNN_EXPLORER_TEST_SEED


def trained(preset: str, steps: int, seed: int) -> Trainer:
    trainer = Trainer(load_preset(preset).experiment.replace(seed=seed + SHIFT, steps=steps))
    for _ in trainer.run(steps):
        pass
    return trainer


def readout_class(trainer: Trainer, states: np.ndarray) -> np.ndarray:
    H = trainer.experiment.hidden_size
    with torch.no_grad():
        return trainer.model.readout(torch.as_tensor(states[:, :H], dtype=torch.float32)).argmax(-1).numpy()


# ---------------------------------------------------------------------------------- parity-gru
@pytest.fixture(scope="module")
def parity():
    """parity-gru after its 1000 steps (seed 1: seed 0 had not learned parity by then)."""
    trainer = trained("parity-gru", 1000, seed=1)
    batch = trainer.task.sample(256, torch.Generator().manual_seed(99))
    with torch.no_grad():
        _, metrics = trainer.model.loss(batch)
    if metrics["accuracy"] < 0.99:
        pytest.skip(f"parity not learned in 1000 steps with seed {1 + SHIFT} (accuracy {metrics['accuracy']:.2f}); "
                    "the claims are about a network that has learned it")
    return trainer


def test_parity_under_input_0_has_one_attracting_point_and_it_says_even(parity):
    """Seeds 1-4 (seed 0 had not learned by step 1000): exactly one fixed point under input
    0, stable, largest |λ| 0.82-0.97, read out as even parity."""
    parity.choose_dynamics_input("0")
    r = parity.dynamics()
    assert r.fixed.sum() == 1
    point = r.points[r.fixed][0]
    assert r.stable[r.fixed][0] and not r.marginal[r.fixed][0]
    assert 0.75 < abs(r.eigenvalues[r.fixed][0][0]) < 0.99
    assert readout_class(parity, point[None])[0] == 0


def test_parity_holds_odd_for_tens_of_zeros_then_drifts_to_even(parity):
    """No fixed point holds odd parity: from every odd state of the trajectories, the
    readout turns even after 12-33 steps of zeros (medians 21-25 over seeds 1-4), longer
    than a run of zeros in random bits is likely to last (10 in a row: once in ~1000 bits)."""
    batch = parity.dynamics_batch()
    with torch.no_grad():
        trace = parity.model.trace(batch)
    states = stack_states(trace.hidden, trace.cell).reshape(-1, parity.experiment.hidden_size).double()
    odd = states[torch.as_tensor(readout_class(parity, states.numpy()) == 1)]
    step = StepMap(parity.model.recurrent, torch.zeros(1))
    s, alive = odd, np.ones(len(odd), bool)
    turned = np.zeros(len(odd))
    for k in range(1, 201):
        s = step(s)
        now_odd = readout_class(parity, s.numpy()) == 1
        turned[alive & ~now_odd] = k
        alive &= now_odd
    assert not alive.any()  # every odd state ends even
    assert 8 <= turned.min() and np.median(turned) <= 40


def test_parity_under_input_1_has_an_unstable_point_that_flips_the_state(parity):
    """Seeds 1-4: under input 1 the one fixed point is unstable, with a real eigenvalue of
    -2.3 to -2.8: each 1 throws the state across it, from one side to the other."""
    parity.choose_dynamics_input("1")
    r = parity.dynamics()
    assert r.fixed.sum() == 1
    lam = r.eigenvalues[r.fixed][0][0]
    assert not r.stable[r.fixed][0] and abs(lam.imag) < 1e-9 and -3.2 < lam.real < -1.8


# ---------------------------------------------------------------------------------- sine-gru
@pytest.fixture(scope="module")
def sine():
    return trained("sine-gru", 300, seed=0)


def test_sine_spirals_into_one_attracting_point_under_zero_input(sine):
    """Seeds 0-4 at step 300 (and seeds 0-2 at the preset's 1500): one fixed point, stable,
    whose leading eigenvalues include a complex pair with |λ| 0.84-0.94 turning 1.19-1.37
    radians a step: left to itself the state spirals in (a damped rotation, no limit cycle)."""
    r = sine.dynamics()
    assert r.fixed.sum() == 1 and r.stable[r.fixed][0]
    ev = r.eigenvalues[r.fixed][0]
    pair = ev[np.abs(ev.imag) > 1e-6][:2]
    assert len(pair) == 2 and 0.78 < abs(pair[0]) < 0.98 and 1.0 < abs(math.atan2(pair[0].imag, pair[0].real)) < 1.55
    assert abs(pair[0]) >= np.abs(ev).max() - 0.1  # among the slowest modes


# ---------------------------------------------------------------------------------- adding-lstm
@pytest.fixture(scope="module")
def adding():
    """adding-lstm at step 1500, half its budget: the shortest run where every measured seed
    has left the baseline (at 1000-1200 steps most had not). About 45 s on an idle core."""
    return trained("adding-lstm", 1500, seed=0)


def test_adding_lstm_keeps_one_attracting_point_with_a_slow_direction(adding):
    """Seeds 0-4 at step 1500: under zero input exactly one fixed point, stable, largest |λ|
    0.79-0.98 (its slowest direction decays by 2-21% a step); in seeds 0 and 4 slow points
    (q 3e-9 to 1e-6) line up with it along that direction (their first principal component
    holds over 99% of their spread): a short stretch of line attractor."""
    r = adding.dynamics()
    assert r.fixed.sum() == 1 and r.stable[r.fixed][0] and not r.marginal[r.fixed][0]
    assert 0.7 < abs(r.eigenvalues[r.fixed][0][0]) < 0.995
    slow = r.points[~r.fixed]
    if len(slow) >= 3:  # where slow points appear, they lie on a line
        centred = slow - slow.mean(0)
        sv = np.linalg.svd(centred, compute_uv=False)
        assert sv[0] ** 2 / (sv ** 2).sum() > 0.9


def _reference_step(trainer: Trainer, x: float):
    """G(s) = F(s) - s by torch.nn.GRUCell with the model's weights, float64: independent of
    the finder's own step map."""
    net = trainer.model.recurrent
    cell = torch.nn.GRUCell(net.input_size, net.hidden_size).double()
    w_ih, w_hh, b_ih, b_hh = (w.detach().double() for w in net.layer_weights(0))
    cell.load_state_dict({"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh})
    inp = torch.full((1, net.input_size), float(x), dtype=torch.float64)

    def G(s: np.ndarray) -> np.ndarray:
        h = torch.as_tensor(s, dtype=torch.float64).view(1, -1)
        with torch.no_grad():
            return (cell(inp, h) - h).view(-1).numpy()

    return G


@pytest.mark.parametrize("x", [0.0, 1.0])
def test_parity_fixed_points_agree_with_scipy_and_are_fixed_in_float32(parity, x):
    """scipy.optimize.least_squares (MINPACK's Levenberg-Marquardt) on torch.nn.GRUCell's
    G = F(s) - s, from a few starts around each reported fixed point and from states of the
    trajectories, ends where the finder does (to 1e-6); and every reported fixed point has
    q < 1e-8 under torch.nn.GRU in the model's own float32."""
    from scipy.optimize import least_squares

    parity.choose_dynamics_input("1" if x else "0")
    r = parity.dynamics()
    G = _reference_step(parity, x)
    step = StepMap(parity.model.recurrent, torch.tensor([x]))
    rng = np.random.default_rng(0)
    fixed = r.points[r.fixed]
    starts = [p + 0.05 * rng.standard_normal(p.shape) for p in fixed for _ in range(2)]
    for s0 in starts:
        ref = least_squares(G, s0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
        assert 0.5 * float(np.sum(ref.fun ** 2)) < 1e-20
        mine = find_fixed_points(step, torch.tensor(s0[None]))
        np.testing.assert_allclose(mine.states[0].numpy(), ref.x, atol=1e-6)
    ref32 = torch.nn.GRU(1, parity.experiment.hidden_size)
    ref32.load_state_dict(parity.model.recurrent.state_dict())
    for point in fixed:
        h = torch.tensor(point, dtype=torch.float32).view(1, 1, -1)
        with torch.no_grad():
            _, h1 = ref32(torch.full((1, 1, 1), x), h)
        assert 0.5 * float(((h1.double() - h.double()) ** 2).sum()) < 1e-8
