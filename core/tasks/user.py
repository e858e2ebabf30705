"""Tasks on the user's own files (core.tasks.files reads and checks them).

* ``charlm`` with ``data``: a character language model on the user's text, exactly like
  the built-in one, trained on the head of the text and evaluated on a held-out tail.
* ``series``: next-step prediction on CSV columns, normalised with the mean and std of the
  training split (the first 80% of rows), windows of ``seq_len`` rows.
* ``pairs``: an encoder-decoder on ``source TAB target`` lines, characters or words.
* ``classify``: many-to-one classification of ``text TAB label`` lines, read at the last
  real step (post-padded and masked), with per-class accuracy.
(``inputs``, an opened model on typed input with no data, lives in core.tasks.typed.)

Every task has a fixed ``probe``: the experiment's ``probe`` text when given, else the start
of the held-out part. ``describe()`` says what was read (rows, vocabulary, normalisation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from core.batch import Batch
from core.config import Experiment
from core.datafiles import DataError, DataFile, data_file, parse_vocab, text_of
from core.errors import UserError
from core.tasks.base import PROBE_SEED, Task
from core.tasks.files import parse_labelled, parse_pairs, parse_series
from core.tasks.synthetic import CharLMTask, pad_sequences
from core.tasks.translation import TranslationTask
from core.tasks.vocab import Vocab

HELDOUT_SHARE = 0.1   # text and pairs: the tail
SERIES_HELDOUT = 0.2  # series: the last rows
CLASSIFY_HELDOUT = 0.2


def split_tokens(text: str, tokens: str) -> list[str]:
    return text.split() if tokens == "word" else list(text)


class TokenCoder:
    """Tokens <-> ids of a fixed list (a vocabulary file, or the data's tokens)."""

    def __init__(self, itos: Sequence[str], tokens: str, source: str):
        self.itos, self.tokens, self.source = list(itos), tokens, source
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.unk = self.stoi.get("<unk>")

    def encode(self, text: str, where: str) -> list[int]:
        """Ids of ``text``; DataError naming the tokens the vocabulary lacks (unless it has <unk>)."""
        parts = split_tokens(text, self.tokens)
        missing = list(dict.fromkeys(p for p in parts if p not in self.stoi))
        if missing and self.unk is None:
            names = ", ".join(repr(m) for m in missing[:5])
            raise DataError(f"{where}: {names} {'is' if len(missing) == 1 else 'are'} not in the vocabulary "
                            f"of {self.source} ({len(self.itos)} tokens, no <unk>)")
        return [self.stoi.get(p, self.unk) for p in parts]


def vocab_tokens(exp: Experiment, files: Mapping[str, DataFile] | None) -> list[str] | None:
    return parse_vocab(data_file(exp.vocab, files, "vocabulary file")) if exp.vocab else None


def need_data(exp: Experiment) -> None:
    if not exp.data:
        raise UserError(f"task {exp.task!r} learns from your own file: give one (data field, --data FILE, "
                        "or File > Open Data...)")


def one_hot(ids: list[int], size: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(ids, dtype=torch.long), size).float()


# ----------------------------------------------------------------------------------- text
class TextTask(CharLMTask):
    """A character language model on the user's text (see CharLMTask); held-out tail 10%."""

    title = "Character language model on your text"

    def __init__(self, exp: Experiment, files: Mapping[str, DataFile] | None = None):
        self.files = files
        super().__init__(exp)

    def corpus(self) -> str:
        return text_of(data_file(self.exp.data, self.files))

    def make_vocab(self, text: str) -> list[str]:
        tokens = vocab_tokens(self.exp, self.files)
        if tokens is None:
            return super().make_vocab(text)
        self.coder = TokenCoder(tokens, "char", self.exp.vocab)
        return tokens

    def encode_corpus(self, text: str) -> list[int]:
        if self.exp.vocab:
            return self.coder.encode(text, self.exp.data)
        return super().encode_corpus(text)

    def split(self) -> None:
        """Keep the last 10% (at least seq_len + 1 characters when there is room) held out."""
        n, T = len(self.ids), self.T
        need = T + 2
        if n < need:
            raise DataError(f"{self.exp.data}: {n} characters; seq_len {T} needs at least {need} "
                            "(lower seq_len or use a longer text)")
        cut = n - max(int(n * HELDOUT_SHARE), 0)
        if cut < need:
            cut = n  # too short to hold anything out
        self.heldout_ids, self.ids = self.ids[cut:], self.ids[:cut]

    def probe_batch(self) -> Batch:
        if self.exp.probe:
            ids = self._probe_ids(self.exp.probe)
        else:
            source = self.heldout_ids if len(self.heldout_ids) > 1 else self.ids
            ids = source[:self.T].tolist()
        x = one_hot(ids, len(self.vocab)).unsqueeze(1)
        y = torch.tensor(ids[1:] + ids[-1:]).unsqueeze(1)
        return Batch(x, y, labels=tuple(self.vocab[i] for i in ids))

    def _probe_ids(self, text: str) -> list[int]:
        if self.exp.vocab:
            ids = self.coder.encode(text, "probe")
        else:
            index = {c: i for i, c in enumerate(self.vocab)}
            missing = list(dict.fromkeys(c for c in text if c not in index))
            if missing:
                raise DataError(f"probe: {', '.join(repr(c) for c in missing[:5])} never occur in "
                                f"{self.exp.data}; type characters of the text")
            ids = [index[c] for c in text]
        return ids[:2000] or [0]

    def evaluate(self, model) -> dict[str, float]:
        """Cross-entropy (nats/char) on the held-out tail, in windows of seq_len."""
        ids = self.heldout_ids
        if len(ids) < 2:
            return {}
        T = min(self.T, len(ids) - 1)
        starts = list(range(0, len(ids) - T, T))[:64]
        x = torch.stack([one_hot(ids[s:s + T].tolist(), len(self.vocab)) for s in starts], 1)
        y = torch.stack([ids[s + 1:s + T + 1] for s in starts], 1)
        device = next(model.parameters()).device
        with torch.no_grad():
            loss, metrics = model.loss(Batch(x, y).to(str(device)))
        return {"heldout_loss": float(loss), **{f"heldout_{k}": v for k, v in metrics.items()}}

    def describe(self) -> dict:
        return {"characters": len(self.ids) + len(self.heldout_ids), "held_out": len(self.heldout_ids),
                "vocabulary": len(self.vocab)}


# --------------------------------------------------------------------------------- series
class SeriesTask(Task):
    """Predict the next row of the target columns from the input columns (normalised)."""

    name, title = "series", "Next-step prediction on your series"
    readout, loss_kind = "all", "mse"
    baseline_label = "predict the training mean"

    def __init__(self, exp: Experiment, files: Mapping[str, DataFile] | None = None):
        super().__init__(exp)
        need_data(exp)
        s = parse_series(data_file(exp.data, files), exp.column_list, exp.target_list)
        values = torch.tensor(s.values, dtype=torch.float64)
        n, T = len(values), self.T
        cut = n - int(n * SERIES_HELDOUT)
        if cut < T + 1:
            cut = n
        if cut < T + 1:
            raise DataError(f"{exp.data}: {n} rows; seq_len {T} needs at least {T + 1} "
                            f"(lower seq_len to at most {max(1, n - 1)})")
        train = values[:cut]
        self.mean, self.std = train.mean(0), train.std(0, unbiased=False)
        self.std = torch.where(self.std > 0, self.std, torch.ones_like(self.std))
        self.norm = ((values - self.mean) / self.std).float()
        self.series, self.cut = s, cut
        self.inputs, self.targets = list(s.inputs), list(s.targets)
        self.input_size, self.output_size = len(self.inputs), len(self.targets)
        self._baseline = float((self.norm[:cut, self.targets] ** 2).mean())

    @property
    def baseline(self) -> float:
        return self._baseline

    @property
    def target(self) -> float:
        return 0.05 * self._baseline

    def window(self, start: int, length: int) -> Batch:
        x = self.norm[start:start + length, self.inputs]
        y = self.norm[start + 1:start + length + 1, self.targets]
        return Batch(x.unsqueeze(1), y.unsqueeze(1), labels=self._labels(start, length))

    def _labels(self, start: int, length: int) -> tuple[str, ...]:
        if self.series.time is not None:
            return self.series.time[start:start + length]
        return tuple(str(i) for i in range(start + 2, start + length + 2))  # file line numbers

    def sample(self, batch_size, generator):
        T = self.T
        starts = torch.randint(0, self.cut - T, (batch_size,), generator=generator).tolist()
        idx = torch.tensor(starts).unsqueeze(0) + torch.arange(T).unsqueeze(1)  # [T, B]
        x = self.norm[idx][..., self.inputs]
        y = self.norm[idx + 1][..., self.targets]
        return Batch(x, y, labels=self._labels(starts[0], T))

    def probe_batch(self) -> Batch:
        n, T = len(self.norm), self.T
        start = self.cut if n - self.cut >= T + 1 else max(0, self.cut - T - 1)
        return self.window(start, T)

    def evaluate(self, model) -> dict[str, float]:
        """MSE (normalised units) on the held-out rows, one window after another."""
        n, T = len(self.norm), self.T
        starts = list(range(self.cut, n - T, T))[:64]
        if not starts:
            return {}
        batches = [self.window(s, T) for s in starts]
        batch = Batch(torch.cat([b.x for b in batches], 1), torch.cat([b.y for b in batches], 1))
        with torch.no_grad():
            loss, _ = model.loss(batch.to(str(next(model.parameters()).device)))
        return {"heldout_loss": float(loss)}

    def describe(self) -> dict:
        names = self.series.names
        return {"rows": len(self.norm), "train_rows": self.cut,
                "inputs": [names[k] for k in self.inputs], "targets": [names[k] for k in self.targets],
                "normalisation": {names[k]: {"mean": float(self.mean[k]), "std": float(self.std[k])}
                                  for k in sorted(set(self.inputs) | set(self.targets))}}


# ---------------------------------------------------------------------------------- pairs
class WordVocab(Vocab):
    """A Vocab of words: text is split at whitespace and joined with spaces."""

    SEP = " "

    def tokens(self, text: str) -> list[str]:
        return text.split()


class PairsTask(TranslationTask):
    """An encoder-decoder on the user's ``source TAB target`` lines (last 10% held out)."""

    name, title = "pairs", "Sequence pairs from your file"

    def __init__(self, exp: Experiment, files: Mapping[str, DataFile] | None = None):
        need_data(exp)
        pairs = parse_pairs(data_file(exp.data, files))
        word = exp.tokens == "word"
        make = WordVocab if word else Vocab
        tok = (lambda s: s.split()) if word else list  # noqa: E731
        for line, (src, _) in enumerate(pairs, 1):
            if len(tok(src)) > exp.seq_len:
                raise DataError(f"{exp.data}: pair {line}: the source has {len(tok(src))} "
                                f"{'words' if word else 'characters'}; seq_len is {exp.seq_len} "
                                f"(raise it to {max(len(tok(s)) for s, _ in pairs)})")
        self.src_vocab = make(sorted({t for s, _ in pairs for t in tok(s)}))
        self.tgt_vocab = make(sorted({t for _, t in pairs for t in tok(t)}))
        self._tok = tok
        held = int(len(pairs) * HELDOUT_SHARE) if len(pairs) >= 10 else 0
        self.train_pairs = pairs[:len(pairs) - held]
        self._heldout_pairs = pairs[len(pairs) - held:]
        self._longest = max(len(tok(t)) for _, t in pairs)
        super().__init__(exp)
        self.heldout = self._heldout_pairs
        self._heldout_sources = frozenset()

    def _distinct(self, n, generator):
        return []  # the held-out split is the file's tail, set after the base class

    def examples(self, n, generator):
        idx = torch.randint(0, len(self.train_pairs), (n,), generator=generator).tolist()
        return [self.train_pairs[i] for i in idx]

    def space_size(self) -> int:
        return len(self.train_pairs)

    @property
    def max_target_len(self) -> int:
        return self._longest

    def probe_pair(self):
        if self.exp.probe:
            return self.exp.probe[:self.T] if not isinstance(self.src_vocab, WordVocab) else self.exp.probe, ""
        return (self._heldout_pairs or self.train_pairs)[0]

    def batch(self, pairs, pad_to=None):
        out = super().batch(pairs, pad_to)
        if isinstance(self.src_vocab, WordVocab):
            words = pairs[0][0].split()
            out.labels = tuple(words[t] if t < len(words) else "" for t in range(out.x.shape[0]))
        return out

    def describe(self) -> dict:
        return {"pairs": len(self.train_pairs) + len(self._heldout_pairs), "held_out": len(self._heldout_pairs),
                "source_vocabulary": len(self.src_vocab), "target_vocabulary": len(self.tgt_vocab)}


# ------------------------------------------------------------------------------- classify
class ClassifyTask(Task):
    """Many-to-one classification of labelled lines; 20% of lines (a fixed draw) held out."""

    name, title = "classify", "Classify your labelled lines"
    readout, loss_kind = "last", "ce"
    baseline_label = "guess by label frequency"

    def __init__(self, exp: Experiment, files: Mapping[str, DataFile] | None = None):
        super().__init__(exp)
        need_data(exp)
        lines = parse_labelled(data_file(exp.data, files))
        self.class_names = tuple(sorted({label for _, label in lines}))
        tokens = vocab_tokens(exp, files)
        if tokens is None:
            tokens = sorted({t for text, _ in lines for t in split_tokens(text, exp.tokens)})
        self.coder = TokenCoder(tokens, exp.tokens, exp.vocab or exp.data)
        self.vocab = tokens
        self.input_size, self.output_size = len(tokens), len(self.class_names)
        label_id = {c: i for i, c in enumerate(self.class_names)}
        encoded = [(self.coder.encode(text, f"{exp.data}: line {i + 1}") or [0], label_id[label], text)
                   for i, (text, label) in enumerate(lines)]
        order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(PROBE_SEED)).tolist()
        held = int(len(encoded) * CLASSIFY_HELDOUT) if len(encoded) >= 5 else 0
        self.heldout = [encoded[i] for i in order[:held]]
        self.train = [encoded[i] for i in order[held:]]
        counts = torch.bincount(torch.tensor([c for _, c, _ in self.train]), minlength=len(self.class_names))
        p = counts.double() / counts.sum()
        self._entropy = float(-(p[p > 0] * p[p > 0].log()).sum())

    @property
    def baseline(self) -> float:
        return self._entropy

    @property
    def target(self) -> float:
        return 0.1 * self._entropy

    def batch(self, items: list[tuple[list[int], int, str]]) -> Batch:
        exp = self.exp
        seqs = [one_hot(ids, self.input_size) for ids, _, _ in items]
        x, valid, lengths = pad_sequences(seqs, self.T, exp.padding, exp.truncation)
        y = torch.tensor([c for _, c, _ in items])
        first = [self.vocab[i] for i in items[0][0]]
        first = first[:self.T] if exp.truncation == "head" else first[-self.T:]
        labels = [""] * self.T
        for t, lab in zip(valid[:, 0].nonzero().flatten().tolist(), first):
            labels[t] = lab
        return Batch(x, y, valid, lengths, tuple(labels), pre_padded=exp.padding == "pre")

    def sample(self, batch_size, generator):
        idx = torch.randint(0, len(self.train), (batch_size,), generator=generator).tolist()
        return self.batch([self.train[i] for i in idx])

    def probe_batch(self) -> Batch:
        if self.exp.probe:
            item = (self.coder.encode(self.exp.probe, "probe") or [0], 0, self.exp.probe)
        else:
            item = (self.heldout or self.train)[0]
        batch = self.batch([item])
        return batch

    def evaluate(self, model) -> dict[str, float]:
        """Accuracy on the held-out lines, overall and per class."""
        if not self.heldout:
            return {}
        batch = self.batch(self.heldout).to(str(next(model.parameters()).device))
        with torch.no_grad():
            out, state = model.run(batch)
            predicted = model.predict(out, state).argmax(-1).cpu()
        right = predicted == batch.y.cpu()
        result = {"heldout_accuracy": float(right.float().mean())}
        for k, name in enumerate(self.class_names):
            chosen = batch.y.cpu() == k
            if chosen.any():
                result[f"heldout_accuracy_{name}"] = float(right[chosen].float().mean())
        return result

    def describe(self) -> dict:
        return {"lines": len(self.train) + len(self.heldout), "held_out": len(self.heldout),
                "classes": list(self.class_names), "vocabulary": self.input_size}


USER_TASKS: tuple[type[Task], ...] = (SeriesTask, PairsTask, ClassifyTask)


# ------------------------------------------------------------------------- opening a file
TASK_OF_SUFFIX = {".txt": "charlm", ".csv": "series", ".tsv": "pairs"}
# The preset each kind of file starts from ("exactly like charlm-lstm", ...); classify has none.
BASE_PRESET = {"charlm": "charlm-lstm", "series": "sine-gru", "pairs": "reverse-attention"}
CLASSIFY_BASE = {"task": "classify", "cell": "lstm", "hidden_size": 64, "batch_size": 32,
                 "lr": 0.005, "steps": 600}


def task_for_file(path: str, task: str | None = None) -> str:
    """The task a file trains (``task`` when given, else by suffix); DataError otherwise."""
    from pathlib import Path

    if task:
        return task
    suffix = Path(path).suffix.lower()
    if suffix not in TASK_OF_SUFFIX:
        raise DataError(f"{path}: cannot tell the task from the suffix {suffix or '(none)'!r}; expected "
                        ".txt (charlm), .csv (series) or .tsv (pairs), or give the task (classify for "
                        "labelled lines)")
    return TASK_OF_SUFFIX[suffix]


def fit_sequence_length(exp: Experiment, df: DataFile) -> int:
    """A seq_len that fits the file: the longest source (pairs) or line (classify, at most
    400 tokens), the experiment's for text, at most the rows a series can window."""
    if exp.task == "pairs":
        pairs = parse_pairs(df)
        return min(2000, max(len(split_tokens(s, exp.tokens)) for s, _ in pairs))
    if exp.task == "classify":
        lines = parse_labelled(df)
        return min(400, max(len(split_tokens(t, exp.tokens)) for t, _ in lines))
    if exp.task == "series":
        rows = len(parse_series(df, exp.column_list, exp.target_list).values)
        room = rows - int(rows * SERIES_HELDOUT) - 1
        return max(1, min(exp.seq_len, room if room >= 2 else rows - 1))
    if exp.task == "charlm":
        return max(1, min(exp.seq_len, len(text_of(df)) // 2))
    return exp.seq_len


def describe_task(task: Task) -> dict:
    """What a task read from its files (empty for the built-in tasks)."""
    describe = getattr(task, "describe", None)
    return describe() if describe else {}
