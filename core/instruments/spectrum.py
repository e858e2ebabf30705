"""The spectrum of the recurrent weights, and what it says about gradients.

Pascanu, Mikolov & Bengio (2013): every step's Jacobian is diag(phi'(a_t)) W_hh, and with
|phi'| <= gamma its norm is at most gamma * sigma_max(W_hh). So a largest singular value of
W_hh below 1/gamma is sufficient for gradients to vanish, and above it is necessary (not
sufficient) for them to explode. ``spectrum_record`` gives the singular values (per gate
block for gated cells) and spectral radius of every layer's W_hh, and which side of the
bound an RNN is on.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from core.names import CANDIDATE_GATE, GATES
from core.records import SpectrumRecord

# sup |phi'| of the RNN nonlinearity (Pascanu et al. 2013, section 3.1). The argument needs
# only |phi'| <= gamma: relu's derivative is 0 or 1, so gamma = 1 (the marginal case of
# IRNN's identity initialisation).
GAMMA = {"tanh": 1.0, "relu": 1.0, "sigmoid": 0.25}
REGIMES = {
    "vanishing": "largest singular value below 1/gamma: gradients must vanish (sufficient condition)",
    "explosion possible": "largest singular value above 1/gamma: explosion possible, not certain "
                          "(a necessary condition only; the gradients may still vanish, as the "
                          "Gradients panel measures)",
    "marginal": "largest singular value equals 1/gamma: per-step factors are at most 1",
    "gated": "gated cell: the forget/update gates, not one matrix, set how far gradients reach",
    "not available": "the weights are not finite (training diverged): no spectrum to show",
}
# The matrix whose spectral radius is tracked: W_hh, or the candidate block of a gated cell.
RADIUS_OF = {"rnn": "W_hh", "lstm": "W_hg", "gru": "W_hn"}


def spectral_radius(w: Tensor | np.ndarray) -> float:
    """max |eigenvalue| of a square matrix (nan when it is not finite)."""
    a = w.detach().cpu().double().numpy() if isinstance(w, Tensor) else np.asarray(w, np.float64)
    if not np.isfinite(a).all():
        return float("nan")
    try:
        return float(np.abs(np.linalg.eigvals(a)).max())
    except np.linalg.LinAlgError:
        return float("nan")


def _singular_values(w: np.ndarray) -> np.ndarray:
    """Descending singular values; nan where they cannot be computed (not finite)."""
    if np.isfinite(w).all():
        try:
            return np.linalg.svd(w, compute_uv=False)
        except np.linalg.LinAlgError:
            pass
    return np.full(min(w.shape), np.nan)


def spectrum_record(net, step: int) -> SpectrumRecord:
    """Singular values and spectral radius of every W_hh, and which side of the bound."""
    gates = GATES[net.kind]
    singular, radius, blocks = [], [], {}
    for layer in range(net.num_layers):
        w = net.layer_weights(layer)[1].detach().cpu().double().numpy()
        singular.append(_singular_values(w))
        square = w
        for name, block in zip(gates, np.split(w, len(gates)) if gates else (), strict=True):
            blocks[f"layer{layer}/{name}"] = _singular_values(block)
            if name == CANDIDATE_GATE[net.kind]:
                square = block
        radius.append(spectral_radius(square))
    bound, regime = None, "gated"
    if net.kind == "rnn":
        bound = 1.0 / GAMMA[net.nonlinearity]
        sigma = max(float(s[0]) for s in singular)
        regime = ("not available" if not math.isfinite(sigma)
                  else "marginal" if math.isclose(sigma, bound, rel_tol=1e-6)
                  else "vanishing" if sigma < bound else "explosion possible")
    elif not all(np.isfinite(s).all() for s in singular):
        regime = "not available"
    return SpectrumRecord(step=step, singular_values=tuple(singular), radius=tuple(radius),
                          bound=bound, regime=regime, blocks=blocks, radius_of=RADIUS_OF[net.kind])
