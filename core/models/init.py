"""Initialisation schemes for the recurrent weights W_hh, applied layer by layer.

W_hh of a gated cell stacks one [H, H] block per gate (lstm: input, forget, cell, output;
gru: reset, update, new, torch's order); every scheme acts on each block separately, so
the recurrent map of each gate gets the property the scheme promises.

* ``default``:    leave torch's U(-1/sqrt(H), 1/sqrt(H)) as it is.
* ``orthogonal``: each block a random orthogonal matrix (Haar measure; all singular
                  values 1). ``spectral_radius`` is not used.
* ``identity``:   IRNN (Le, Jaitly & Hinton 2015): each block ``spectral_radius * I`` and
                  all biases (b_ih and b_hh) zero; W_ih is left as it is. For gated cells
                  the same is done to every gate block (the paper defines only the rnn).
* ``spectral``:   rescale each block so its spectral radius (largest |eigenvalue|) is
                  exactly ``spectral_radius``. The largest singular value is then usually
                  larger (about twice for torch's uniform init), which is what decides
                  the Pascanu et al. bound, see core.bptt.

Every scheme acts on both directions of a bidirectional stack.

Reproducible: ``orthogonal`` draws from ``generator`` (or torch's global generator,
seeded by the trainer); the other schemes draw nothing.

``set_forget_bias`` is separate (it applies to LSTMs whatever the W_hh scheme): it sets
b_if + b_hf of every unit, the forget gate's bias (Gers, Schmidhuber & Cummins 2000;
Jozefowicz, Zaremba & Sutskever 2015 recommend 1, so that f starts near σ(1) = 0.73 rather
than σ(0) = 0.5 and the cell state is kept by default). Only the sum enters the equations,
and the two biases always get the same gradient (dL/db_if = dL/db_hf), so with SGD, Adam
or RMSprop and no weight decay, how the sum is split never changes training: we split it
evenly (b_if = b_hf = bias / 2), which keeps the two equal for the whole run.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from core.names import GATES, INIT_SCHEMES


def random_orthogonal(n: int, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float32) -> Tensor:
    """A Haar-distributed [n, n] orthogonal matrix (QR of a Gaussian, signs fixed by R's diagonal)."""
    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).to(dtype)


def _blocks(net) -> int:
    return max(1, len(GATES[net.kind]))


@torch.no_grad()
def initialise(net, scheme: str, spectral_radius: float = 1.0,
               generator: torch.Generator | None = None) -> None:
    """Initialise every layer's W_hh of ``net`` (from core.recurrent.make_recurrent) in place.

    Args:
        scheme: one of ``INIT_SCHEMES``.
        spectral_radius: the radius for ``identity`` and ``spectral`` (>= 0).
        generator: random source for ``orthogonal``; torch's global one when None.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(INIT_SCHEMES)}; got {scheme!r}")
    if not (isinstance(spectral_radius, (int, float)) and math.isfinite(spectral_radius)
            and spectral_radius >= 0):
        raise ValueError(f"spectral_radius must be a finite number >= 0; got {spectral_radius!r}")
    if scheme == "default":
        return
    H, k = net.hidden_size, _blocks(net)
    for layer, reverse in _layers(net):
        _, w_hh, b_ih, b_hh = net.layer_weights(layer, reverse)
        for block in w_hh.view(k, H, H):
            if scheme == "orthogonal":
                block.copy_(random_orthogonal(H, generator, block.dtype))
            elif scheme == "identity":
                block.copy_(spectral_radius * torch.eye(H, dtype=block.dtype))
            else:
                block.copy_(_scaled_to_radius(block, spectral_radius))
        if scheme == "identity":
            for b in (b_ih, b_hh):
                if b is not None:
                    b.zero_()


def _layers(net) -> list[tuple[int, bool]]:
    """(layer, reverse) of every direction of every layer."""
    return [(layer, reverse) for layer in range(net.num_layers) for reverse in (False, True)[:net.directions]]


@torch.no_grad()
def set_forget_bias(net, bias: float) -> None:
    """Set b_if + b_hf of every unit of every LSTM layer (and direction) of ``net`` to ``bias``
    in place (b_if = b_hf = bias / 2, see the module docstring). ``bias`` 0 leaves torch's
    random initialisation (U(-1/sqrt(H), 1/sqrt(H)) each, so the sum has mean 0) as it is, so
    that the default changes nothing. Raises ValueError for a net that is not an LSTM."""
    if not (isinstance(bias, (int, float)) and math.isfinite(bias)):
        raise ValueError(f"forget bias must be a finite number; got {bias!r}")
    if net.kind != "lstm":
        raise ValueError(f"the forget-gate bias applies to lstm layers only; this is a {net.kind}")
    if bias == 0 or not net.bias:
        return
    H = net.hidden_size
    forget = GATES["lstm"].index("forget")
    for layer, reverse in _layers(net):
        _, _, b_ih, b_hh = net.layer_weights(layer, reverse)
        for b in (b_ih, b_hh):
            b.view(-1, H)[forget].fill_(bias / 2)


def _scaled_to_radius(block: Tensor, radius: float) -> Tensor:
    """``block`` scaled so that max |eigenvalue| equals ``radius`` (computed in float64)."""
    current = float(torch.linalg.eigvals(block.double()).abs().max())
    if current == 0.0:
        if radius == 0.0:
            return block
        raise ValueError("W_hh has spectral radius 0 (nilpotent or zero); it cannot be scaled "
                         "to a nonzero radius; initialise it randomly first")
    return (block.double() * (radius / current)).to(block.dtype)
