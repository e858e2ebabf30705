"""Truncated-BPTT training against a hand-written chunked loop with explicit detaches.

The reference is written here from the definition and shares no code with core: torch.nn's
RNNCell / LSTMCell / GRUCell carrying copies of the model's weights, run time-outer and
layer-inner; at the start of every chunk of k steps each layer's state (h, and c for the
LSTM) is detached, so no gradient crosses a chunk boundary; padded steps hold the state; the
readout and the task's loss are written out by hand. Reference and Trainer train side by
side on the same batches with plain SGD, so equal losses step after step (and equal weights)
mean equal gradients: full BPTT, or a detach in the wrong place, gives other numbers (each
case also checks that the full-BPTT reference is told apart, so the test can fail).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.config import Experiment
from core.training.trainer import Trainer

STEPS = 4
LR = 0.5  # large, so one step's gradient difference shows in the next losses


def reference_cells(recurrent, exp: Experiment) -> list[nn.Module]:
    """One torch.nn cell per layer of the kind the experiment asks for (its nonlinearity, not
    the model's), with a copy of the layer's weights (torch.nn's names)."""
    cells = []
    for layer in range(recurrent.num_layers):
        n_in = recurrent.input_size if layer == 0 else recurrent.hidden_size
        kind = exp.cell
        if kind == "rnn":
            cell = nn.RNNCell(n_in, recurrent.hidden_size, nonlinearity=exp.nonlinearity)
        else:
            cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](n_in, recurrent.hidden_size)
        state = {name: getattr(recurrent, f"{name}_l{layer}").detach().clone()
                 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        cell.load_state_dict(state)
        cells.append(cell)
    return cells


class ChunkedReference(nn.Module):
    """cells + a Linear readout, trained with BPTT truncated every ``k`` steps (0: full)."""

    def __init__(self, model, k: int):
        super().__init__()
        self.kind = model.exp.cell
        self.cells = nn.ModuleList(reference_cells(model.recurrent, model.exp))
        self.readout = copy.deepcopy(model.readout)
        self.k = k
        self.masking = model.exp.masking == "on"
        self.readout_kind, self.loss_kind = model.readout_kind, model.loss_kind
        self.accuracy = None

    def loss(self, batch) -> torch.Tensor:
        x = batch.x
        T, B, _ = x.shape
        H = self.cells[0].hidden_size
        valid = batch.valid if batch.valid is not None else torch.ones(T, B, dtype=torch.bool)
        # masking off: padded steps run like real ones (only the loss still skips them)
        m = (valid if self.masking else torch.ones(T, B, dtype=torch.bool)).unsqueeze(-1)
        h = [x.new_zeros(B, H) for _ in self.cells]
        c = [x.new_zeros(B, H) for _ in self.cells]
        outs = []
        for t in range(T):
            if self.k and t % self.k == 0:  # a new chunk: nothing flows back past here
                h = [s.detach() for s in h]
                c = [s.detach() for s in c]
            inp = x[t]
            for layer, cell in enumerate(self.cells):
                if self.kind == "lstm":
                    h_new, c_new = cell(inp, (h[layer], c[layer]))
                    c[layer] = torch.where(m[t], c_new, c[layer])
                else:
                    h_new = cell(inp, h[layer])
                h[layer] = torch.where(m[t], h_new, h[layer])  # padding holds the state
                inp = h[layer] * m[t]
            outs.append(inp)
        if self.readout_kind == "last":
            return ((self.readout(h[-1]) - batch.y) ** 2).mean()
        pred = self.readout(torch.stack(outs))  # [T, B, O]
        if self.loss_kind == "mse":
            per_step = ((pred - batch.y) ** 2).mean(-1)
        else:
            per_step = F.cross_entropy(pred.flatten(0, 1), batch.y.flatten(), reduction="none").view(T, B)
            right = (pred.argmax(-1) == batch.y) & valid
            self.accuracy = float(right.sum()) / float(valid.sum())
        return (per_step * valid).sum() / valid.sum()


def train_side_by_side(exp: Experiment, reference_k: int):
    """(trainer losses, reference losses, trainer weights, reference weights) after STEPS."""
    trainer = Trainer(exp)
    reference = ChunkedReference(trainer.model, reference_k)
    optimizer = torch.optim.SGD(reference.parameters(), lr=LR)
    generator = torch.Generator()
    generator.set_state(trainer.generator.get_state())  # the same batches
    ours, theirs = [], []
    for step in range(STEPS):
        batch = trainer.task.sample(exp.batch_size, generator)
        optimizer.zero_grad()
        loss = reference.loss(batch)
        loss.backward()
        optimizer.step()
        theirs.append(float(loss.detach()))
        record = trainer.step()
        ours.append(record.loss)
        if step == 0 and reference.accuracy is not None:  # counts real steps only
            # (first step only: the same weights exactly; later, float noise between the fused
            # kernel and the cells can flip a near-tie between two logits)
            assert record.metrics["accuracy"] == pytest.approx(reference.accuracy, abs=1e-6)
    weights = [getattr(trainer.model.recurrent, f"weight_hh_l{i}").detach().clone()
               for i in range(exp.num_layers)]
    ref_weights = [cell.weight_hh.detach().clone() for cell in reference.cells]
    return ours, theirs, weights, ref_weights


CASES = {
    # chunks of a fixed-length batch (SequenceModel.run's chunk loop)
    "charlm-rnn": dict(task="charlm", cell="rnn", seq_len=12, tbptt=4),
    "charlm-lstm": dict(task="charlm", cell="lstm", seq_len=12, tbptt=5),
    "charlm-gru-2-layers": dict(task="charlm", cell="gru", seq_len=12, tbptt=4, num_layers=2),
    "adding-lstm-last": dict(task="adding", cell="lstm", seq_len=12, tbptt=3),
    # padded batches (the instrumented loop detaches): post-padding by lengths, pre by mask
    "padding-rnn-post": dict(task="padding", cell="rnn", seq_len=12, tbptt=4),
    "padding-lstm-pre": dict(task="padding", cell="lstm", seq_len=12, tbptt=4, padding="pre"),
    "padding-gru-post-2-layers": dict(task="padding", cell="gru", seq_len=12, tbptt=5, num_layers=2),
    # masking off: the padding runs through the state like real steps
    "padding-lstm-masking-off": dict(task="padding", cell="lstm", seq_len=12, tbptt=4, masking="off"),
    # one prediction per step, regression
    "sine-gru": dict(task="sine", cell="gru", seq_len=12, tbptt=5),
    "sine-rnn-relu": dict(task="sine", cell="rnn", nonlinearity="relu", seq_len=12, tbptt=4),
}

FULL = {  # full BPTT through the same models and losses
    "charlm-lstm": dict(task="charlm", cell="lstm", seq_len=10),
    "charlm-gru-padded": dict(task="charlm", cell="gru", seq_len=10),  # random lengths: padded
    "padding-rnn-masking-off": dict(task="padding", cell="rnn", seq_len=10, masking="off"),
    "padding-gru-post": dict(task="padding", cell="gru", seq_len=10),  # the final state skips padding
    "padding-lstm-pre": dict(task="padding", cell="lstm", seq_len=10, padding="pre"),
    "sine-lstm": dict(task="sine", cell="lstm", seq_len=10),
    "sine-gru-relu-ignored": dict(task="sine", cell="gru", nonlinearity="relu", seq_len=10),  # rnn only
}


@pytest.mark.parametrize("case", list(CASES))
def test_truncated_training_equals_a_chunked_loop_with_explicit_detaches(case):
    exp = Experiment(hidden_size=6, batch_size=4, optimizer="sgd", lr=LR, **CASES[case])
    ours, theirs, weights, ref_weights = train_side_by_side(exp, exp.tbptt)
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)
    for a, b in zip(weights, ref_weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # measured: within 3e-8
    # The reference with full BPTT trains to other weights (measured: 4e-4 to 0.13 apart), and
    # other losses from the second step on: the comparison can tell them apart.
    _, full, _, full_weights = train_side_by_side(exp, 0)
    assert max(float((a - b).abs().max()) for a, b in zip(weights, full_weights, strict=True)) > 1e-4
    assert full[1:] != pytest.approx(theirs[1:], rel=1e-5, abs=1e-6)
    assert full[0] == pytest.approx(theirs[0], rel=1e-6)  # same first forward pass: same batches


@pytest.mark.parametrize("case", list(FULL))
def test_full_bptt_training_equals_the_unchunked_loop(case):
    exp = Experiment(hidden_size=6, batch_size=4, optimizer="sgd", lr=LR, **FULL[case])
    ours, theirs, weights, ref_weights = train_side_by_side(exp, 0)
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)
    for a, b in zip(weights, ref_weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_accuracy_counts_the_real_steps_only():
    """Right at every padded step and at every other real one: accuracy is the real share."""
    trainer = Trainer(Experiment(task="charlm", cell="gru", hidden_size=6, seq_len=10, batch_size=8))
    batch = trainer.task.sample(8, torch.Generator().manual_seed(3))
    valid = batch.valid
    assert valid is not None and not bool(valid.all())
    V = trainer.task.output_size
    right = ~valid.clone()
    real = valid.nonzero()
    right[real[::2, 0], real[::2, 1]] = True
    guess = torch.where(right, batch.y, (batch.y + 1) % V)
    pred = F.one_hot(guess, V).float() * 5.0
    trainer.model.predict = lambda out, state: pred
    _, metrics = trainer.model.loss_from_outputs(None, None, batch)
    assert metrics["accuracy"] == pytest.approx(float((right & valid).sum()) / float(valid.sum()), abs=1e-7)


def test_a_batch_with_one_real_step_has_that_steps_loss():
    trainer = Trainer(Experiment(task="charlm", cell="gru", hidden_size=6, seq_len=10, batch_size=2))
    batch = trainer.task.sample(2, torch.Generator().manual_seed(4))
    batch.valid = torch.zeros_like(batch.valid)
    batch.valid[0, 1] = True  # one real step in the whole batch
    pred = torch.randn(*batch.y.shape, trainer.task.output_size, generator=torch.Generator().manual_seed(5))
    trainer.model.predict = lambda out, state: pred
    loss, _ = trainer.model.loss_from_outputs(None, None, batch)
    assert float(loss) == pytest.approx(float(F.cross_entropy(pred[0, 1][None], batch.y[0, 1][None])), rel=1e-6)


@pytest.mark.parametrize("tbptt", [0, 4])
def test_training_without_padding_runs_the_fused_kernel(monkeypatch, tbptt):
    """The instrumented Python loop gives the same numbers several times slower: training on
    unpadded batches (whole or in chunks) must not fall back to it."""
    from core.models import recurrent

    trainer = Trainer(Experiment(task="adding", cell="lstm", hidden_size=6, seq_len=12, batch_size=4, tbptt=tbptt))

    def no_loop(*args, **kwargs):
        raise AssertionError("training ran the instrumented loop")

    monkeypatch.setattr(recurrent._Instrumented, "_loop", no_loop)
    assert trainer.step().loss > 0


def test_per_step_regression_averages_the_outputs_of_the_real_steps():
    """Readout "all" with MSE over several outputs and padded steps (no task has both yet)."""
    trainer = Trainer(Experiment(task="sine", cell="gru", hidden_size=6, seq_len=6, batch_size=3))
    gen = torch.Generator().manual_seed(6)
    y = torch.randn(6, 3, 2, generator=gen)
    pred = torch.randn(6, 3, 2, generator=gen)
    valid = torch.ones(6, 3, dtype=torch.bool)
    valid[4:, 0] = valid[2:, 2] = False
    batch = trainer.task.sample(3, gen)
    batch.y, batch.valid = y, valid
    trainer.model.predict = lambda out, state: pred
    loss, metrics = trainer.model.loss_from_outputs(None, None, batch)
    per_real_step = [float(((pred[t, b] - y[t, b]) ** 2).mean()) for t in range(6) for b in range(3) if valid[t, b]]
    assert float(loss) == pytest.approx(sum(per_real_step) / len(per_real_step), rel=1e-6) and metrics == {}

