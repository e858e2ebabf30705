"""What if: a trainer's model with interventions, as plain records.

``counterfactual_record`` runs the probe twice through the same edited loop (no edits, then
the interventions), so the two runs agree exactly up to the first edited step; it adds the
task's loss and prediction for both and ||dL/dh_t|| of the counterfactual (the BPTT
instrument run on the edited recurrence). ``ablation_records`` ranks the hidden units by
what zeroing each costs on the probe, one batched forward per layer. ``lesion_loss`` is the
training loss with the interventions applied, for a lesion kept while training goes on.
"""

from __future__ import annotations

import numpy as np
import torch

from core.batch import Batch
from core.instruments.bptt import grad_through_time
from core.interventions import Intervention, InterventionError, check_interventions, enabled
from core.models.interventions import (
    EditedStack,
    Plan,
    ablation_estimates,
    ablation_losses,
    edited_loss,
    edited_trace,
    model_plan,
)
from core.models.recurrent import Trace
from core.records import AblationRecord, CounterfactualRecord, ProbeRecord


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


def supports_interventions(model) -> bool:
    """Interventions edit a recurrent stack with a readout (core.models.sequence)."""
    return hasattr(model, "recurrent_kwargs") and hasattr(model, "loss_from_outputs")


def checked(model, batch: Batch, edits) -> tuple[Intervention, ...]:
    """``edits`` checked against ``model`` and the probe ``batch`` (its length T)."""
    if not supports_interventions(model):
        raise InterventionError("intervention", "interventions apply to sequence tasks (a recurrent stack "
                                "with a readout); this model is an encoder-decoder")
    net = model.recurrent
    return check_interventions(edits, net.kind, net.num_layers, net.hidden_size, batch.x.shape[0])


def probe_record(trace: Trace, batch: Batch, step: int) -> ProbeRecord:
    """Batch element 0 of ``trace`` as a ProbeRecord (as Trainer.probe builds it)."""
    valid = batch.valid[:, 0] if batch.valid is not None else torch.ones(batch.x.shape[0], dtype=torch.bool)
    return ProbeRecord(
        step=step, kind=trace.kind, labels=batch.labels, inputs=_numpy(batch.x[:, 0]),
        valid=valid.cpu().numpy().copy(),
        hidden=tuple(_numpy(h[:, 0]) for h in trace.hidden),
        cell=tuple(_numpy(c[:, 0]) for c in trace.cell) if trace.cell is not None else None,
        gates=tuple({k: _numpy(v[:, 0]) for k, v in g.items()} for g in trace.gates),
    )


def counterfactual_record(model, batch: Batch, edits: tuple[Intervention, ...], step: int, *,
                          lesion: bool = False, gradients: bool = True, truncate: int = 0
                          ) -> CounterfactualRecord | None:
    """The factual and the counterfactual probe (None when no edit is enabled).

    ``gradients``: also ||dL/dh_t|| of the counterfactual (a loop forward and backward),
    truncated every ``truncate`` steps as training is.
    """
    on = enabled(edits)
    if not on:
        return None
    was_training = model.training
    model.eval()
    try:
        factual, f_loss, f_pred = edited_trace(model, batch, Plan())
        plan = model_plan(model, batch, on)
        counter, c_loss, c_pred = edited_trace(model, batch, plan)
        norms = None
        if gradients:
            kwargs = model.recurrent_kwargs(batch)
            rows = grad_through_time(EditedStack(model.recurrent, plan), model.inputs(batch),
                                     lambda out, state: model.loss_from_outputs(out, state, batch)[0],
                                     truncate or None, kwargs.get("lengths"), mask=kwargs.get("mask"))
            norms = tuple(row.copy() for row in rows)
    finally:
        model.train(was_training)
    return CounterfactualRecord(
        step=step, interventions=tuple(e.text() for e in on), descriptions=tuple(e.describe() for e in on),
        factual=probe_record(factual, batch, step), counterfactual=probe_record(counter, batch, step),
        loss=(float(f_loss), float(c_loss)), prediction=(_numpy(f_pred), _numpy(c_pred)),
        gradient_norms=norms, lesion=lesion)


def ablation_layers(model, layers: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The layers to sweep (default: all), checked against ``model``."""
    if not supports_interventions(model):
        raise InterventionError("layer", "the ablation sweep applies to sequence tasks (a recurrent stack "
                                "with a readout); this model is an encoder-decoder")
    net = model.recurrent
    layers = tuple(range(net.num_layers)) if layers is None else tuple(layers)
    for layer in layers:
        if not 0 <= layer < net.num_layers:
            raise InterventionError("layer", f"layer {layer} is out of range; allowed 0 to {net.num_layers - 1}")
    return layers


ABLATION_METHODS = ("exact", "first-order")


def ablation_records(model, batch: Batch, step: int, layers: tuple[int, ...] | None = None,
                     method: str = "exact") -> tuple[AblationRecord, ...]:
    """One AblationRecord per layer (default: every layer), each from one batched forward
    ("exact") or from one forward and backward ("first-order", see ablation_estimates)."""
    if method not in ABLATION_METHODS:
        raise InterventionError("method", f"unknown ablation method {method!r}; allowed "
                                f"{', '.join(ABLATION_METHODS)}")
    layers = ablation_layers(model, layers)
    was_training = model.training
    model.eval()
    try:
        out = []
        for layer in layers:
            if method == "exact":
                losses = ablation_losses(model, batch, layer).double().cpu().numpy()
                base, effects = float(losses[0]), (losses[1:] - losses[0]).copy()
            else:
                base, estimate = ablation_estimates(model, batch, layer)
                effects = estimate.double().cpu().numpy()
            out.append(AblationRecord(step=step, layer=layer, base_loss=base, effects=effects, method=method))
    finally:
        model.train(was_training)
    return tuple(out)


def lesion_loss(model, batch: Batch, edits: tuple[Intervention, ...], tbptt: int = 0):
    """(loss, metrics) of a training batch with the enabled ``edits`` applied (with autograd)."""
    return edited_loss(model, batch, model_plan(model, batch, enabled(edits)), tbptt)
