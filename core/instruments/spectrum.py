"""The spectrum of the recurrent weights, and what it says about gradients.

Pascanu, Mikolov & Bengio (2013): with |f'| <= gamma, a largest singular value of W_hh
below 1/gamma is sufficient for gradients to vanish, and above it is necessary for them to
explode. ``spectrum_record`` gives the singular values (per gate block for gated cells) and
spectral radius of every layer's W_hh, and which side of the bound an RNN is on.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from core.names import CANDIDATE_GATE, GATES
from core.records import SpectrumRecord

# sup |f'| of the RNN nonlinearity (Pascanu et al. 2013, section 3.1); relu has no entry:
# its derivative is bounded by 1 but its activations are not, see REGIMES.
GAMMA = {"tanh": 1.0, "sigmoid": 0.25}
REGIMES = {
    "vanishing": "largest singular value below 1/gamma: gradients must vanish (sufficient condition)",
    "may explode": "largest singular value above 1/gamma: gradients can explode (necessary condition), "
                   "though they may still vanish",
    "marginal": "largest singular value equals 1/gamma: per-step factors are at most 1",
    "gated": "gated cell: the forget/update gates, not one matrix, set how far gradients reach",
    "not applicable (relu)": "relu RNN: the bound assumes a bounded nonlinearity; relu activations "
                             "are unbounded",
}


def spectral_radius(w: Tensor | np.ndarray) -> float:
    """max |eigenvalue| of a square matrix."""
    a = w.detach().cpu().double().numpy() if isinstance(w, Tensor) else np.asarray(w, np.float64)
    return float(np.abs(np.linalg.eigvals(a)).max())


def spectrum_record(net, step: int) -> SpectrumRecord:
    """Singular values and spectral radius of every W_hh, and which side of the bound."""
    gates = GATES[net.kind]
    singular, radius, blocks = [], [], {}
    for layer in range(net.num_layers):
        w = net.layer_weights(layer)[1].detach().cpu().double().numpy()
        singular.append(np.linalg.svd(w, compute_uv=False))
        square = w
        for name, block in zip(gates, np.split(w, len(gates)) if gates else (), strict=True):
            blocks[f"layer{layer}/{name}"] = np.linalg.svd(block, compute_uv=False)
            if name == CANDIDATE_GATE[net.kind]:
                square = block
        radius.append(spectral_radius(square))
    bound, regime = None, "gated"
    if net.kind == "rnn":
        gamma = GAMMA.get(net.nonlinearity)
        if gamma is None:
            regime = f"not applicable ({net.nonlinearity})"
        else:
            bound = 1.0 / gamma
            sigma = max(float(s[0]) for s in singular)
            regime = ("marginal" if math.isclose(sigma, bound, rel_tol=1e-6)
                      else "vanishing" if sigma < bound else "may explode")
    return SpectrumRecord(step=step, singular_values=tuple(singular), radius=tuple(radius),
                          bound=bound, regime=regime, blocks=blocks)
