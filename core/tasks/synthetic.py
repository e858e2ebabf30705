"""Sequence tasks: synthetic problems and a small bundled corpus, no downloads.

Adding, copy, sine, running parity, padding (variable-length mean) and a character
language model on a text in resources/corpora; see core.tasks.base for the contract.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from core.batch import Batch
from core.tasks.base import PROBE_SEED, RESOURCES, Task


def _uniform(shape, generator, lo=0.0, hi=1.0) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=generator)


class AddingTask(Task):
    """Adding problem (Hochreiter & Schmidhuber 1997).

    Channel 0 holds uniform values in [0, 1]; channel 1 marks two of them, one in each
    half. The target, read at the last step, is the sum of the two marked values.
    Always predicting 1 gives MSE = Var(u1 + u2) = 2/12 ≈ 0.167.
    """

    name, title = "adding", "Adding problem"
    readout, loss_kind = "last", "mse"
    input_size, output_size = 2, 1
    baseline_label = "predict 1 (MSE 0.167)"
    target = 0.01

    @property
    def baseline(self) -> float:
        return 1 / 6

    def sample(self, batch_size, generator):
        T = max(self.T, 2)
        values = _uniform((T, batch_size), generator)
        half = T // 2
        first = torch.randint(0, half, (batch_size,), generator=generator)
        second = torch.randint(half, T, (batch_size,), generator=generator)
        marks = torch.zeros(T, batch_size)
        cols = torch.arange(batch_size)
        marks[first, cols] = 1.0
        marks[second, cols] = 1.0
        x = torch.stack([values, marks], dim=-1)
        y = (values[first, cols] + values[second, cols]).unsqueeze(-1)
        # Labels from Python floats: formatting tensor elements costs ~7% of a training step.
        labels = tuple(f"{'*' if m else ''}{v:.2f}" for v, m in zip(values[:, 0].tolist(), marks[:, 0].tolist()))
        return Batch(x, y, labels=labels)


class CopyTask(Task):
    """Copy / memory task (Arjovsky et al. 2016).

    Ten symbols from {1..8}, then T blanks with a delimiter (9) at the last of them, then
    ten more blanks during which the network must output the ten symbols. Total length
    T + 20. A memoryless strategy (blank, then uniform guesses) scores 10·log 8/(T + 20).
    """

    name, title = "copy", "Copy memory task"
    readout, loss_kind = "all", "ce"
    input_size, output_size = 10, 9
    baseline_label = "memoryless: 10·log 8/(T+20)"
    n_symbols, n_copy = 8, 10

    @property
    def baseline(self) -> float:
        return self.n_copy * math.log(self.n_symbols) / (self.T + 2 * self.n_copy)

    @property
    def target(self) -> float:
        return 0.1 * self.baseline

    def sample(self, batch_size, generator):
        T, k = self.T, self.n_copy
        length = T + 2 * k
        symbols = torch.randint(1, self.n_symbols + 1, (k, batch_size), generator=generator)
        tokens = torch.zeros(length, batch_size, dtype=torch.long)
        tokens[:k] = symbols
        tokens[T + k - 1] = 9
        y = torch.zeros(length, batch_size, dtype=torch.long)
        y[T + k:] = symbols
        x = torch.nn.functional.one_hot(tokens, self.input_size).float()
        labels = tuple("·" if v == 0 else ("▶" if v == 9 else str(int(v))) for v in tokens[:, 0].tolist())
        return Batch(x, y, labels=labels)


class SineTask(Task):
    """Predict the next value of a sine wave with random frequency and phase.

    Predicting 0 everywhere gives MSE 0.5 (the wave's variance).
    """

    name, title = "sine", "Sine prediction"
    readout, loss_kind = "all", "mse"
    input_size, output_size = 1, 1
    baseline_label = "predict 0 (MSE 0.5)"
    target = 0.005

    @property
    def baseline(self) -> float:
        return 0.5

    def sample(self, batch_size, generator):
        T = self.T
        freq = _uniform((1, batch_size), generator, 0.1, 0.5)
        phase = _uniform((1, batch_size), generator, 0.0, 2 * math.pi)
        t = torch.arange(T + 1, dtype=torch.float32).unsqueeze(1)
        wave = torch.sin(freq * t + phase)
        x, y = wave[:-1].unsqueeze(-1), wave[1:].unsqueeze(-1)
        return Batch(x, y, labels=tuple(f"{v:.2f}" for v in wave[:-1, 0].tolist()))


class ParityTask(Task):
    """Running parity of a bit stream: at every step, is the count of ones so far odd?

    Guessing gives cross-entropy log 2 ≈ 0.693.
    """

    name, title = "parity", "Running parity"
    readout, loss_kind = "all", "ce"
    input_size, output_size = 1, 2
    baseline_label = "guess (log 2)"
    target = 0.02

    @property
    def baseline(self) -> float:
        return math.log(2)

    def sample(self, batch_size, generator):
        bits = torch.randint(0, 2, (self.T, batch_size), generator=generator)
        y = torch.cumsum(bits, 0) % 2
        return Batch(bits.float().unsqueeze(-1), y, labels=tuple(str(b) for b in bits[:, 0].tolist()))


def pad_sequences(seqs: list[Tensor], max_len: int, padding: str = "post",
                  truncation: str = "tail") -> tuple[Tensor, Tensor, Tensor]:
    """Zero-pad (or truncate) variable-length sequences into one time-major tensor.

    Args:
        seqs: B tensors [T_b, *F].
        max_len: the maximum length T; longer sequences are truncated.
        padding: "post" (zeros after) or "pre" (zeros before).
        truncation: "head" keeps the first max_len steps, "tail" the last max_len.
    Returns:
        padded [T, B, *F], valid mask [T, B] bool, lengths [B] (after truncation).
    """
    if padding not in ("post", "pre"):
        raise ValueError(f"padding must be 'post' or 'pre'; got {padding!r}")
    if truncation not in ("head", "tail"):
        raise ValueError(f"truncation must be 'head' or 'tail'; got {truncation!r}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1; got {max_len}")
    kept = [s[:max_len] if truncation == "head" else s[-max_len:] for s in seqs]
    lengths = torch.tensor([len(s) for s in kept])
    if int(lengths.min()) < 1:
        raise ValueError("every sequence must have at least one step")
    out = kept[0].new_zeros((max_len, len(kept), *kept[0].shape[1:]))
    valid = torch.zeros(max_len, len(kept), dtype=torch.bool)
    for b, s in enumerate(kept):
        rows = slice(0, len(s)) if padding == "post" else slice(max_len - len(s), max_len)
        out[rows, b] = s
        valid[rows, b] = True
    return out, valid, lengths


class _VariableLength(Task):
    """Helper for tasks with padded batches; honours padding, truncation and masking."""

    def _pack(self, seqs: list[Tensor], y: Tensor, labels_of_first: list[str]) -> Batch:
        exp = self.exp
        x, valid, lengths = pad_sequences(seqs, self.T, exp.padding, exp.truncation)
        labels = [""] * self.T
        idx = valid[:, 0].nonzero().flatten().tolist()
        first = labels_of_first[:self.T] if exp.truncation == "head" else labels_of_first[-self.T:]
        for t, lab in zip(idx, first):
            labels[t] = lab
        return Batch(x, y, valid, lengths, tuple(labels), pre_padded=exp.padding == "pre")


class PaddingTask(_VariableLength):
    """Mean of a variable-length sequence of values in [-1, 1], read from the final state.

    Lengths are uniform in 1..T and sequences are zero-padded; with masking off the
    padding steps still update the state and the prediction suffers. Predicting 0 gives
    MSE E[1/(3·len)].
    """

    name, title = "padding", "Variable-length mean (padding and masking)"
    readout, loss_kind = "last", "mse"
    input_size, output_size = 1, 1
    baseline_label = "predict 0"
    target = 0.002

    @property
    def baseline(self) -> float:
        return sum(1 / (3 * n) for n in range(1, self.T + 1)) / self.T

    def sample(self, batch_size, generator):
        lengths = torch.randint(1, self.T + 1, (batch_size,), generator=generator)
        seqs = [_uniform((int(n), 1), generator, -1.0, 1.0) for n in lengths]
        y = torch.stack([s.mean(0) for s in seqs])
        return self._pack(seqs, y, [f"{v:.2f}" for v in seqs[0][:, 0]])

    def probe_batch(self):
        g = torch.Generator().manual_seed(PROBE_SEED)
        n = max(1, (3 * self.T) // 5)
        seq = _uniform((n, 1), g, -1.0, 1.0)
        return self._pack([seq], seq.mean(0, keepdim=True), [f"{v:.2f}" for v in seq[:, 0]])


class CharLMTask(_VariableLength):
    """Character-level language model on a public-domain text in resources/corpora.

    Batches are random excerpts of random length (T/2..T), zero-padded; the loss counts
    real steps only. Baseline: the unigram entropy of the corpus (nats per character).
    """

    name, title = "charlm", "Character language model"
    readout, loss_kind = "all", "ce"
    baseline_label = "unigram entropy"
    corpus_file = "alice.txt"

    def __init__(self, exp):
        super().__init__(exp)
        self.text = " ".join(self.corpus().split())
        self.vocab = self.make_vocab(self.text)
        self.ids = torch.tensor(self.encode_corpus(self.text))
        counts = torch.bincount(self.ids, minlength=len(self.vocab)).double()
        p = counts / counts.sum()
        self._entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        self.input_size = self.output_size = len(self.vocab)
        self.split()

    # The steps a text task on the user's file (core.tasks.user.TextTask) changes.
    def corpus(self) -> str:
        return (RESOURCES / "corpora" / self.corpus_file).read_text(encoding="utf-8")

    def make_vocab(self, text: str) -> list[str]:
        return sorted(set(text))

    def encode_corpus(self, text: str) -> list[int]:
        index = {c: i for i, c in enumerate(self.vocab)}
        return [index[c] for c in text]

    def split(self) -> None:
        """Set aside held-out text (the bundled corpus trains on all of it)."""

    @property
    def baseline(self) -> float:
        return self._entropy

    @property
    def target(self) -> float:
        return 0.5 * self._entropy

    def sample(self, batch_size, generator):
        fixed = self.exp.tbptt > 0  # chunked training runs on full-length windows
        lo = self.T if fixed else max(1, self.T // 2)
        lengths = torch.randint(lo, self.T + 1, (batch_size,), generator=generator)
        starts = torch.randint(0, len(self.ids) - self.T - 1, (batch_size,), generator=generator)
        xs, ys = [], []
        for s, n in zip(starts.tolist(), lengths.tolist()):
            chunk = self.ids[s:s + n + 1]
            xs.append(torch.nn.functional.one_hot(chunk[:-1], len(self.vocab)).float())
            ys.append(chunk[1:])
        batch = self._pack(xs, None, [self.vocab[i] for i in self.ids[starts[0]:starts[0] + lengths[0]]])
        y, _, _ = pad_sequences(ys, self.T, self.exp.padding, self.exp.truncation)
        batch.y = y
        if fixed:
            batch.valid = batch.lengths = None
        return batch


SEQUENCE_TASKS: tuple[type[Task], ...] = (AddingTask, CopyTask, SineTask, ParityTask, PaddingTask, CharLMTask)
