"""Plain-data records that cross from the engine to the app (and to files).

Frozen dataclasses of floats, strings and numpy arrays copied off the graph: no live
tensors, no autograd graph, safe to hand to another thread. Shapes use T = time steps of
the probe sequence, H = hidden size, L = layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ProbeRecord:
    """The internals of the model on the fixed probe sequence, after ``step`` updates.

    labels:   T strings for the time axis (input tokens or values).
    inputs:   [T, I] the probe inputs.
    valid:    [T] bool, False at padded steps.
    hidden:   per layer [T, H] hidden state h_t (held through padded steps when masked).
    cell:     per layer [T, H] LSTM cell state c_t, or None.
    gates:    per layer dict gate name -> [T, H]: lstm input/forget/cell/output,
              gru reset/update/new, {} for rnn.
    unmasked_hidden: per layer [T, H], the same probe run with masking off (padding
              leaks into the state), or None when the probe has no padding.
    backward: a bidirectional network's backward direction (``ProbeDirection``); then
              hidden, cell, gates and unmasked_hidden above are its forward direction.
              None for a unidirectional network.
    """

    step: int
    kind: str
    labels: tuple[str, ...]
    inputs: np.ndarray
    valid: np.ndarray
    hidden: tuple[np.ndarray, ...]
    cell: tuple[np.ndarray, ...] | None
    gates: tuple[dict[str, np.ndarray], ...]
    unmasked_hidden: tuple[np.ndarray, ...] | None = None
    backward: ProbeDirection | None = None

    @property
    def T(self) -> int:
        return len(self.labels)

    @property
    def bidirectional(self) -> bool:
        return self.backward is not None


@dataclass(frozen=True)
class ProbeDirection:
    """The backward direction of a bidirectional network on the probe, shaped as ProbeRecord's
    fields of the same names ([T, H] per layer, indexed by input position t: its h_t has
    read the probe from the last step down to t)."""

    hidden: tuple[np.ndarray, ...]
    cell: tuple[np.ndarray, ...] | None
    gates: tuple[dict[str, np.ndarray], ...]
    unmasked_hidden: tuple[np.ndarray, ...] | None = None


@dataclass(frozen=True)
class GradientRecord:
    """Gradients through time on the probe batch (see core.instruments.bptt).

    norms:      per layer [T], ||dL/dh_t|| (Frobenius over batch and units), total
                derivative through the whole recurrence (truncated when ``truncate``).
    jacobian:   [T], ||dh_T/dh_t||_2 (spectral norm of the Jacobian product), top layer.
    factor:     measured per-step factor: geometric rate fitted to ``norms[-1]``.
    predicted:  per-step factor predicted from the spectrum (None when not applicable).
    truncate:   truncated-BPTT chunk length, or None for full BPTT.
    """

    step: int
    norms: tuple[np.ndarray, ...]
    jacobian: np.ndarray
    factor: float
    predicted: float | None
    truncate: int | None


@dataclass(frozen=True)
class SpectrumRecord:
    """Singular values of each recurrent matrix and the Pascanu et al. (2013) bound.

    singular_values: per layer, descending, of W_hh (for gated cells: of each gate block,
                     keyed "layer0/input" etc. in ``blocks``).
    radius:          per layer spectral radius (largest |eigenvalue|) of W_hh (or its
                     candidate block for gated cells).
    bound:           1/gamma for tanh (1) or sigmoid (4) RNNs; None for gated cells.
    regime:          "vanishing" (sigma_max < bound: sufficient for vanishing gradients),
                     "may explode" (sigma_max > bound: necessary for exploding), "marginal"
                     (sigma_max = bound, e.g. orthogonal init), "gated" (lstm, gru) or
                     "not applicable (relu)". core.bptt.REGIMES explains each in a sentence.
    """

    step: int
    singular_values: tuple[np.ndarray, ...]
    radius: tuple[float, ...]
    bound: float | None
    regime: str
    blocks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class StepRecord:
    """One optimiser update.

    loss:         training loss of this step's batch (before the update).
    grad_norm:    total L2 norm of all gradients before clipping (nan/inf if diverged).
    grad_norm_clipped: the norm after clipping (equal to grad_norm when not clipped).
    clipped:      clipping changed the gradient.
    diverged:     loss or gradient was not finite; the update was NOT applied.
    metrics:      task metrics, e.g. {"accuracy": 0.93, "exact_match": 0.5}.
    param_grad_norms: parameter name -> gradient norm.
    seconds:      wall time of the update.
    probe, gradients, spectrum: attached only when asked for (the GUI asks at most for
                  what the next frame shows).
    restored_step: on a diverged step, the step whose state the model went back to
                  (core.training.rollback), or None when there was none to go back to.
    """

    step: int
    loss: float
    grad_norm: float
    grad_norm_clipped: float
    clipped: bool
    diverged: bool
    metrics: dict[str, float]
    param_grad_norms: dict[str, float]
    seconds: float
    probe: ProbeRecord | None = None
    gradients: GradientRecord | None = None
    spectrum: SpectrumRecord | None = None
    restored_step: int | None = None
