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
    jacobian:   [T], ||dh_T/dh_t||_2 (spectral norm of the Jacobian product), top layer
                (nan where not available, see ``note``).
    factor:     measured per-step factor: geometric rate fitted to ``norms[-1]``; nan when
                the loss is at every step (``loss_every_step``: the curve then sums paths
                from every later loss, and no single rate describes it).
    mean_field: rho(W_hh) * rms(phi'), the mean-field estimate of the per-step factor, valid
                for random weights (rnn only, else None); not a prediction once trained.
    truncate:   truncated-BPTT chunk length, or None for full BPTT.
    cell_norms: lstm: per layer [T], ||dL/dc_t|| (total derivative through the cell state,
                truncated like ``norms``); None for other cells.
    full_norms: with ``truncate``: per layer [T], ||dL/dh_t|| of full (untruncated) BPTT
                on the same weights, to compare; else None.
    pascanu_bound: sigma_max(W_hh) * gamma (gamma = sup |phi'|: 1 for tanh and relu), the
                upper bound on every step's factor (Pascanu et al. 2013; rnn only, else None).
    lyapunov_rate: the Jacobian-product rate: finite-time Lyapunov exponent of the backward
                product of step Jacobians along the probe's trajectory, as a per-step factor
                (core.instruments.products); nan when not available.
    loss_every_step: the task's loss sums a term at every step (else: at the last step).
    note:       why the Jacobian quantities are not available ("not available: ..."), or None.
    """

    step: int
    norms: tuple[np.ndarray, ...]
    jacobian: np.ndarray
    factor: float
    mean_field: float | None
    truncate: int | None
    cell_norms: tuple[np.ndarray, ...] | None = None
    full_norms: tuple[np.ndarray, ...] | None = None
    pascanu_bound: float | None = None
    lyapunov_rate: float = float("nan")
    loss_every_step: bool = False
    note: str | None = None


@dataclass(frozen=True)
class SpectrumRecord:
    """Singular values of each recurrent matrix and the Pascanu et al. (2013) bound.

    singular_values: per layer, descending, of W_hh (for gated cells: of each gate block,
                     keyed "layer0/input" etc. in ``blocks``).
    radius:          per layer spectral radius (largest |eigenvalue|) of W_hh (or its
                     candidate block for gated cells: ``radius_of`` names the matrix).
    bound:           1/gamma for tanh and relu (1) RNNs; None for gated cells.
    regime:          "vanishing" (sigma_max < bound: sufficient for vanishing gradients),
                     "explosion possible" (sigma_max > bound: necessary for exploding, not
                     sufficient), "marginal" (sigma_max = bound, e.g. orthogonal init),
                     "gated" (lstm, gru) or "not available" (weights not finite).
                     core.instruments.spectrum.REGIMES explains each in a sentence.
    radius_of:       the matrix ``radius`` is of: "W_hh" (rnn), "W_hg" (lstm), "W_hn" (gru).
    """

    step: int
    singular_values: tuple[np.ndarray, ...]
    radius: tuple[float, ...]
    bound: float | None
    regime: str
    blocks: dict[str, np.ndarray] = field(default_factory=dict)
    radius_of: str = "W_hh"


@dataclass(frozen=True)
class CounterfactualRecord:
    """What if: the probe run twice on the same weights, as it is and with interventions.

    interventions: the enabled edits in their text form (core.interventions), and
    descriptions: the same for people ("forget gate f of unit 3 (layer 0) set to 0 from t = 10").
    factual, counterfactual: ProbeRecords of one loop (core.models.interventions), so they are
                  equal up to the first edited step and differ exactly where the edits reach.
    loss:         (factual, counterfactual) task loss on the probe.
    prediction:   (factual, counterfactual) readout of the probe: [O] for a model that reads
                  out once at the end, [T, O] for one that reads out at every step.
    gradient_norms: per layer [T], ||dL/dh_t|| of the counterfactual, or None.
    lesion:       the edits also apply while training goes on.
    """

    step: int
    interventions: tuple[str, ...]
    descriptions: tuple[str, ...]
    factual: ProbeRecord
    counterfactual: ProbeRecord
    loss: tuple[float, float]
    prediction: tuple[np.ndarray, np.ndarray]
    gradient_norms: tuple[np.ndarray, ...] | None = None
    lesion: bool = False


@dataclass(frozen=True)
class AblationRecord:
    """Units ranked by effect: each hidden unit of ``layer`` zeroed in turn over the whole probe.

    base_loss: the probe loss as it is.
    effects:   [H], the probe loss with unit v zeroed minus base_loss (> 0: the unit helps).
    method:    "exact" (the batched sweep) or "first-order" (core.models.interventions.
               ablation_estimates: one forward and one backward, a ranking, not a measurement).
    """

    step: int
    layer: int
    base_loss: float
    effects: np.ndarray
    method: str = "exact"

    @property
    def order(self) -> np.ndarray:
        """Unit indices, largest effect first."""
        return np.argsort(-self.effects, kind="stable")


@dataclass(frozen=True)
class DynamicsRecord:
    """Hidden-state dynamics under a constant input x* (see core.instruments.dynamics).

    The state s is every layer's h, then (lstm) every layer's c: S = L*H or 2*L*H values.
    K <= 3 principal components are kept for drawing, P fixed or slow points found, B
    sequences of T steps (row 0 the probe), with P, B small.

    input_name, input: the constant input x* [I] the points are fixed under; ``inputs``
                  names every input the run offers ("zero", then the task's symbols).
    explained:    [<= 10] fraction of the states' variance along each principal component.
    mean, components: [S] and [K, S]: the projection (s - mean) @ components.T.
    trajectories: [B, T, K] the states projected; valid [B, T] bool (False at padding).
    symbols:      [B, T] int, the input symbol at each step as an index into ``inputs``
                  (-1 where the input is none of them, e.g. continuous inputs);
                  input_values [B, T] float, the first input channel.
    labels:       T strings, the probe's time axis.
    points:       [P, S] fixed points (q <= tolerance), then slow points, each by q;
                  projected [P, K]; q [P]; fixed [P] bool; stable [P] bool (nothing
                  grows: every |λ| < 1 + 1e-3); marginal [P] bool (the largest |λ| is
                  within 1e-3 of 1: a direction is held, a memory).
    eigenvalues:  [P, S] complex, eigenvalues of dF/ds at each point, by decreasing modulus.
    starts:       how many initial states the search began from; elapsed: the seconds it
                  took (not ``seconds``: a StepRecord's field, which code tells steps by).
    """

    step: int
    kind: str
    hidden_size: int
    num_layers: int
    input_name: str
    input: np.ndarray
    inputs: tuple[str, ...]
    explained: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    trajectories: np.ndarray
    valid: np.ndarray
    symbols: np.ndarray
    input_values: np.ndarray
    labels: tuple[str, ...]
    points: np.ndarray
    projected: np.ndarray
    q: np.ndarray
    fixed: np.ndarray
    stable: np.ndarray
    marginal: np.ndarray
    eigenvalues: np.ndarray
    tolerance: float
    starts: int
    elapsed: float


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
    probe, gradients, spectrum, counterfactual, dynamics: attached only when asked for (the GUI
                  asks at most for what the next frame shows); counterfactual only while
                  interventions are on.
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
    counterfactual: CounterfactualRecord | None = None
    dynamics: DynamicsRecord | None = None
