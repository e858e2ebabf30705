"""Tasks: the stated baselines are what the trivial strategies really score; padding is exact."""

import math

import pytest
import torch

from core.config import Experiment
from core.tasks import make_task
from core.tasks.synthetic import pad_sequences


def sample(task_name, n=4096, **kw):
    task = make_task(Experiment(task=task_name, **kw))
    return task, task.sample(n, torch.Generator().manual_seed(0))


def test_adding_baseline_is_mse_of_always_predicting_one():
    task, batch = sample("adding", seq_len=30)
    assert batch.x.shape == (30, 4096, 2)
    assert torch.all(batch.x[:, :, 1].sum(0) == 2)  # exactly two marks
    mse = float(((batch.y - 1.0) ** 2).mean())
    assert mse == pytest.approx(task.baseline, rel=0.05)
    assert task.baseline == pytest.approx(0.167, abs=1e-3)


def test_copy_baseline_is_the_memoryless_cross_entropy():
    T = 20
    task, batch = sample("copy", seq_len=T)
    assert batch.x.shape[0] == T + 20
    # memoryless: blank with certainty for T+10 steps, then uniform over the 8 symbols
    logits = torch.full((T + 20, 4096, 9), -1e9)
    logits[: T + 10, :, 0] = 0.0
    logits[T + 10:, :, 1:] = 0.0
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.y.flatten())
    assert float(ce) == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-4)
    assert task.baseline == pytest.approx(float(ce), rel=1e-4)


def test_sine_and_parity_baselines():
    task, batch = sample("sine", seq_len=40)
    assert float((batch.y ** 2).mean()) == pytest.approx(task.baseline, rel=0.05)
    task, batch = sample("parity", seq_len=16)
    assert torch.equal(batch.y, torch.cumsum(batch.x[..., 0].long(), 0) % 2)
    assert task.baseline == pytest.approx(math.log(2))


def test_padding_task_baseline_and_masks():
    task, batch = sample("padding", seq_len=12, padding="pre")
    assert float((batch.y ** 2).mean()) == pytest.approx(task.baseline, rel=0.1)
    assert batch.pre_padded
    assert torch.equal(batch.valid.sum(0), batch.lengths)
    assert torch.all(batch.x[~batch.valid] == 0)
    assert torch.all(batch.valid[-1])  # pre-padding: the last step is always real


def test_charlm_baseline_is_unigram_entropy_and_loss_mask():
    task, batch = sample("charlm", n=64, seq_len=32)
    ids = task.ids
    p = torch.bincount(ids).double() / len(ids)
    assert task.baseline == pytest.approx(float(-(p[p > 0] * p[p > 0].log()).sum()))
    assert batch.valid is not None and int(batch.lengths.min()) >= 16
    assert torch.equal(batch.x.argmax(-1)[1:][batch.valid[1:]], batch.y[:-1][batch.valid[1:]])


@pytest.mark.parametrize("padding", ["post", "pre"])
@pytest.mark.parametrize("truncation", ["head", "tail"])
def test_pad_sequences(padding, truncation):
    seqs = [torch.arange(1, 6).float().unsqueeze(-1), torch.arange(1, 3).float().unsqueeze(-1)]
    x, valid, lengths = pad_sequences(seqs, 4, padding, truncation)
    assert lengths.tolist() == [4, 2]
    first = [1, 2, 3, 4] if truncation == "head" else [2, 3, 4, 5]
    assert x[:, 0, 0].tolist() == first
    expect = [1, 2, 0, 0] if padding == "post" else [0, 0, 1, 2]
    assert x[:, 1, 0].tolist() == expect
    assert valid[:, 1].tolist() == [v != 0 for v in expect]


def test_pad_sequences_rejects_bad_policy():
    with pytest.raises(ValueError, match="padding must be 'post' or 'pre'; got 'middle'"):
        pad_sequences([torch.ones(2, 1)], 3, "middle")


def test_same_generator_same_batches_and_fixed_probe():
    task = make_task(Experiment(task="adding"))
    a = task.sample(8, torch.Generator().manual_seed(5))
    b = task.sample(8, torch.Generator().manual_seed(5))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert torch.equal(task.probe_batch().x, make_task(Experiment(task="adding", seed=9)).probe_batch().x)
    assert len(task.probe_batch().labels) == task.T
