"""SequenceModel's loss, gradients, metrics and traces against a reference written from its
docstring with torch.nn alone: [x @ E ->] a torch.nn stack loaded with the model's weights,
each padded sequence run on its real steps alone (masking on: padding leaves the state as it
was and outputs zero) or whole (masking off), the readout, and the task's loss written out.
Over the readouts (last, all), losses (mse, ce, norm), cells, biases on and off, embedding on
and off, padding before and after.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.batch import Batch
from core.config import Experiment
from core.models.sequence import SequenceModel

TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
T, B, I, O = 5, 4, 6, 3  # noqa: E741
LENGTHS = torch.tensor([5, 2, 4, 1])


def make_batch(readout, loss_kind, padded, pre, gen, one_hot=False):
    if one_hot:  # token inputs: one-hot rows
        x = F.one_hot(torch.randint(0, I, (T, B), generator=gen), I).float()
    else:
        x = torch.randn(T, B, I, generator=gen)
    if readout == "last":
        y = torch.randint(0, O, (B,), generator=gen) if loss_kind == "ce" else torch.randn(B, O, generator=gen)
    else:
        y = torch.randint(0, O, (T, B), generator=gen) if loss_kind == "ce" else torch.randn(T, B, O, generator=gen)
    if not padded:
        return Batch(x, y)
    steps = torch.arange(T)[:, None]
    valid = steps >= (T - LENGTHS)[None] if pre else steps < LENGTHS[None]
    return Batch(x * valid[..., None], y, valid, LENGTHS.clone(), pre_padded=pre)


def reference(model, batch):
    """(out [T, B, H], top layer's final h [B, H]) by torch.nn, from the docstrings."""
    exp, rec = model.exp, model.recurrent
    kwargs = {"nonlinearity": exp.nonlinearity} if exp.cell == "rnn" else {}
    ref_module = TORCH[exp.cell](rec.input_size, exp.hidden_size, exp.num_layers, bias=exp.bias == "on", **kwargs)
    assert ref_module.state_dict().keys() == rec.state_dict().keys()
    weights = dict(rec.named_parameters())  # the model's own tensors: gradients reach them

    def ref(x):
        return torch.func.functional_call(ref_module, weights, (x,))

    x = batch.x if model.embedding is None else batch.x @ model.embedding.weight
    if batch.valid is None or exp.masking == "off":
        out, state = ref(x)
        return out, (state[0] if isinstance(state, tuple) else state)[-1]
    outs, last = torch.zeros(T, B, exp.hidden_size), []
    for b in range(B):
        real = batch.valid[:, b]
        out, state = ref(x[real, b:b + 1])
        outs[real, b] = out[:, 0]
        last.append((state[0] if isinstance(state, tuple) else state)[-1, 0])
    return outs, torch.stack(last)


def reference_loss(model, batch, loss_kind, readout):
    out, h_last = reference(model, batch)
    if loss_kind == "norm":
        return h_last.norm(dim=-1).mean(), {}
    if readout == "last":
        pred = model.readout(h_last)
        if loss_kind == "mse":
            return ((pred - batch.y) ** 2).mean(), {}
        right = pred.argmax(-1) == batch.y
        metrics = {"accuracy": float(right.float().mean())}
        for k, name in enumerate(model.class_names):
            if bool((batch.y == k).any()):
                metrics[f"accuracy_{name}"] = float(right[batch.y == k].float().mean())
        return F.cross_entropy(pred, batch.y), metrics
    pred = model.readout(out)
    valid = batch.valid if batch.valid is not None else torch.ones(T, B, dtype=torch.bool)
    if loss_kind == "mse":
        return ((pred - batch.y) ** 2).mean(-1)[valid].mean(), {}
    right = (pred.argmax(-1) == batch.y)[valid]
    return F.cross_entropy(pred[valid], batch.y[valid]), {"accuracy": float(right.float().mean())}


CASES = {
    "last-mse-lstm": dict(readout="last", loss_kind="mse", cell="lstm"),
    "last-mse-gru-padded-pre": dict(readout="last", loss_kind="mse", cell="gru", padded=True, pre=True),
    "last-ce-classes-lstm-padded": dict(readout="last", loss_kind="ce", cell="lstm", padded=True,
                                        class_names=("neg", "pos", "neu", "absent")),
    "last-ce-rnn-relu-2-layers": dict(readout="last", loss_kind="ce", cell="rnn", nonlinearity="relu", num_layers=2),
    "last-norm-gru-padded": dict(readout="last", loss_kind="norm", cell="gru", padded=True),
    "last-norm-lstm-2-layers": dict(readout="last", loss_kind="norm", cell="lstm", num_layers=2),
    "all-ce-gru-padded-embedding": dict(readout="all", loss_kind="ce", cell="gru", padded=True, embedding="on"),
    "all-ce-lstm-pre-no-bias": dict(readout="all", loss_kind="ce", cell="lstm", padded=True, pre=True, bias="off"),
    "all-ce-rnn": dict(readout="all", loss_kind="ce", cell="rnn"),
    "all-mse-lstm-padded-masking-off": dict(readout="all", loss_kind="mse", cell="lstm", padded=True, masking="off"),
    "all-mse-rnn-2-layers-padded": dict(readout="all", loss_kind="mse", cell="rnn", num_layers=2, padded=True),
    "last-mse-rnn-masking-off-embedding": dict(readout="last", loss_kind="mse", cell="rnn", padded=True,
                                               masking="off", embedding="on"),
}


def build(case):
    spec = dict(CASES[case])
    readout, loss_kind = spec.pop("readout"), spec.pop("loss_kind")
    padded, pre = spec.pop("padded", False), spec.pop("pre", False)
    class_names = spec.pop("class_names", ())
    exp = Experiment(hidden_size=5, embed_size=3, padding="pre" if pre else "post", **spec)
    torch.manual_seed(len(case))
    model = SequenceModel(exp, I, O, readout, loss_kind, class_names)
    gen = torch.Generator().manual_seed(len(case))
    batch = make_batch(readout, loss_kind, padded, pre, gen, one_hot=exp.embedding == "on")
    return model, batch, readout, loss_kind


@pytest.mark.parametrize("case", list(CASES))
def test_loss_metrics_and_full_bptt_gradients_equal_the_reference(case):
    model, batch, readout, loss_kind = build(case)
    assert (model.embedding is not None) == (model.exp.embedding == "on")
    assert model.recurrent.bias == (model.exp.bias == "on")
    loss, metrics = model.loss(batch)  # the default: full BPTT
    ref_loss, ref_metrics = reference_loss(model, batch, loss_kind, readout)
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-5)
    assert metrics.keys() == ref_metrics.keys()
    for name, value in ref_metrics.items():
        assert metrics[name] == pytest.approx(value, abs=1e-7), name
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    ref_grads = torch.autograd.grad(ref_loss, params, allow_unused=True, materialize_grads=True)
    for (name, _), g, rg in zip(model.named_parameters(), grads, ref_grads, strict=True):
        torch.testing.assert_close(g, rg, atol=1e-6, rtol=1e-4, msg=name)
    # run()'s default is no truncation either: its outputs carry full-BPTT gradients
    out, _ = model.run(batch)
    ref_out, _ = reference(model, batch)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    weights = list(model.recurrent.parameters())
    for g, rg in zip(torch.autograd.grad((out * w).sum(), weights),
                     torch.autograd.grad((ref_out * w).sum(), weights), strict=True):
        torch.testing.assert_close(g, rg, atol=1e-6, rtol=1e-4)
    # a truncation no shorter than the sequence cuts nothing
    for k in (T, T + 3):
        torch.testing.assert_close(model.loss(batch, k)[0], ref_loss, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("case", ["last-ce-classes-lstm-padded", "all-mse-lstm-padded-masking-off",
                                  "all-ce-lstm-pre-no-bias", "all-ce-gru-padded-embedding"])
def test_the_trace_shows_what_the_model_ran_or_the_unmasked_run(case):
    model, batch, _, _ = build(case)
    assert model.exp.num_layers == 1  # the reference's output is the only layer's
    out, _ = reference(model, batch)
    shown = model.trace(batch).hidden[-1]
    if batch.valid is not None and model.exp.masking == "on":  # held at padded steps, shown where real
        shown = shown * batch.valid[..., None]
    torch.testing.assert_close(shown, out, atol=1e-6, rtol=1e-5)
    model.exp = model.exp.replace(masking="off")  # the unmasked run, as masking=False shows it
    unmasked, _ = reference(model, batch)
    model.exp = model.exp.replace(masking="on")
    torch.testing.assert_close(model.trace(batch, masking=False).hidden[-1], unmasked, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("k", [T, T + 1])
def test_padded_training_no_shorter_than_the_truncation_runs_the_fused_kernel(monkeypatch, k):
    """A truncation of k >= T cuts nothing: padded batches go to the fused kernel, not the loop
    (the same numbers, several times slower)."""
    from core.models import recurrent

    model, batch, _, _ = build("last-mse-gru-padded-pre")
    batch.pre_padded = False  # post-padding by lengths: the fused kernel packs it
    batch.valid = torch.arange(T)[:, None] < LENGTHS[None]

    def no_loop(*args, **kwargs):
        raise AssertionError("ran the instrumented loop")

    monkeypatch.setattr(recurrent._Instrumented, "_loop", no_loop)
    assert float(model.loss(batch, k)[0].detach()) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CPU is the only other)")
@pytest.mark.parametrize("case", ["all-ce-rnn", "all-mse-rnn-2-layers-padded", "last-mse-lstm"])
def test_the_loss_on_cuda_equals_the_loss_on_the_cpu(case):
    """Unpadded per-step losses build their weights on the targets' device."""
    model, batch, _, _ = build(case)
    on_cpu = model.loss(batch)[0].detach()
    on_gpu = model.cuda().loss(batch.to("cuda"))[0].detach()
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-5, rtol=1e-5)
