"""Typed input: an opened model shown on what the user types, and any task's probe from text
or numbers.

* ``InputsTask`` (task ``inputs``): no data at all; the probe is the experiment's ``probe``,
  through the model's vocabulary (text) or as numbers.
* ``encode_probe``: a probe batch for any task from typed text (through the task's own
  vocabulary) or rows of numbers; ``parse_rows`` reads typed numbers.
* ``task_vocabulary``: the tokens behind a text task's one-hot inputs (what an export writes
  to vocab.json).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from core.batch import Batch
from core.config import Experiment
from core.datafiles import DataError, DataFile, word_level
from core.errors import UserError
from core.tasks.base import Task
from core.tasks.translation import TranslationTask
from core.tasks.user import TextTask, TokenCoder, WordVocab, one_hot, vocab_tokens


def parse_rows(text: str) -> list[list[float]]:
    """Typed numbers: rows split by ';' or new lines, values by ',' or spaces."""
    rows = [r for r in text.replace("\n", ";").split(";") if r.strip()]
    out = []
    for k, row in enumerate(rows, 1):
        try:
            values = [float(v) for v in row.replace(",", " ").split()]
        except ValueError:
            raise DataError(f"probe: row {k} ({row.strip()[:40]!r}) is not a list of numbers") from None
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"probe: row {k} holds NaN or inf; expected finite numbers")
        out.append(values)
    return out


class InputsTask(Task):
    """An opened model with no data: the probe is what the user types (``probe``), through the
    vocabulary (text) or as numbers (rows separated by ';' or new lines, values by ',' or spaces)."""

    name, title = "inputs", "Your model on your inputs"
    readout, loss_kind = "all", "mse"

    def __init__(self, exp: Experiment, files: Mapping[str, DataFile] | None = None,
                 sizes: Mapping[str, int] | None = None):
        super().__init__(exp)
        sizes = dict(sizes or {})
        tokens = vocab_tokens(exp, files)
        self.coder = TokenCoder(tokens, "word" if word_level(tokens) else "char", exp.vocab) if tokens else None
        if tokens is not None:
            self.input_size = len(tokens)
            if "input_size" in sizes and sizes["input_size"] != len(tokens):
                raise DataError(f"{exp.vocab}: {len(tokens)} tokens; the model takes {sizes['input_size']} "
                                "(its embedding rows or input size)")
        elif "input_size" in sizes:
            self.input_size = sizes["input_size"]
        else:
            self.input_size = len(self._numbers(exp.probe or "0")[0])
        self.output_size = sizes.get("output_size", 1)
        # What "gradients through time" differentiate: the head's output for the next typed token
        # (a language model's head), half its squared output (any other head), or without a head
        # the norm of the top layer's last state.
        if "output_size" not in sizes and sizes:
            self.loss_kind, self.readout = "norm", "last"
        elif tokens is not None and self.output_size == len(tokens):
            self.loss_kind = "ce"

    def _numbers(self, text: str) -> list[list[float]]:
        return parse_rows(text) or [[0.0]]

    def probe_batch(self) -> Batch:
        text = self.exp.probe
        if self.coder is not None:
            ids = self.coder.encode(text, "probe") if text else [0]
            ids = ids or [0]
            x = one_hot(ids, self.input_size)
            labels = tuple(self.coder.itos[i] for i in ids)
        else:
            rows = self._numbers(text) if text else [[0.0] * self.input_size]
            for k, row in enumerate(rows, 1):
                if len(row) != self.input_size:
                    raise DataError(f"probe: row {k} has {len(row)} values; the model takes {self.input_size} "
                                    "inputs a step")
            x = torch.tensor(rows, dtype=torch.float32)
            labels = tuple(str(t) for t in range(len(rows)))
        T = x.shape[0]
        if self.loss_kind == "ce":
            y = torch.tensor(ids[1:] + ids[-1:]).unsqueeze(1)  # the next token
        elif self.readout == "last":
            y = torch.zeros(1, self.output_size)
        else:
            y = torch.zeros(T, 1, self.output_size)
        return Batch(x.unsqueeze(1), y, labels=labels)

    def sample(self, batch_size, generator):
        raise UserError("this model was opened without training data; open a data file (File > Open Data..., "
                        "or --data) to fine-tune it")

    def dynamics_sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """Inputs for the trajectories the Dynamics panel projects, where there is no data to
        sample: random tokens of the vocabulary, or standard normal numbers, as long as the
        probe (time-major [T, batch_size, input_size])."""
        T = self.probe_batch().x.shape[0]
        if self.coder is not None:
            ids = torch.randint(0, self.input_size, (T, batch_size), generator=generator)
            x = torch.nn.functional.one_hot(ids, self.input_size).float()
        else:
            x = torch.randn(T, batch_size, self.input_size, generator=generator)
        return Batch(x, torch.zeros(T, batch_size, self.output_size))


def encode_probe(task: Task, text: str | None = None, rows: list[list[float]] | None = None) -> Batch:
    """A probe batch (one sequence) for ``task`` from typed text (through the task's
    vocabulary) or rows of numbers ([T][input_size]); DataError when it does not fit."""
    if rows is not None:
        width = getattr(task, "input_size", None)
        for k, row in enumerate(rows, 1):
            if len(row) != width:
                raise DataError(f"input: row {k} has {len(row)} values; the model takes {width} inputs a step")
        x = torch.tensor(rows, dtype=torch.float32).unsqueeze(1)
        return Batch(x, torch.zeros(x.shape[0], 1, getattr(task, "output_size", 1)),
                     labels=tuple(str(t) for t in range(len(rows))))
    if text is None or not text.strip():
        raise DataError("input is empty: type the text to probe")
    if isinstance(task, TranslationTask):
        if len(text) > task.T and not isinstance(task.src_vocab, WordVocab):
            text = text[:task.T]
        return task.batch([(text, "")])
    coder = getattr(task, "coder", None)
    vocab = getattr(task, "vocab", None)
    if coder is None and vocab is None:
        raise DataError(f"input: the {task.name} task reads numbers, not text; give a CSV of input rows "
                        "(--input-file)")
    if coder is None or isinstance(task, TextTask) and not task.exp.vocab:
        coder = TokenCoder(vocab, "char", f"the {task.name} task")
    ids = coder.encode(text, "input")
    if not ids:
        raise DataError("input is empty: type the text to probe")
    x = one_hot(ids, task.input_size).unsqueeze(1)
    T, width = x.shape[0], getattr(task, "output_size", 1)
    if task.readout == "last":
        y = torch.zeros(1, dtype=torch.long) if task.loss_kind == "ce" else torch.zeros(1, width)
    else:
        y = torch.tensor(ids[1:] + ids[-1:]).unsqueeze(1) if task.loss_kind == "ce" else torch.zeros(T, 1, width)
    return Batch(x, y, labels=tuple(coder.itos[i] for i in ids))


def task_vocabulary(task: Task) -> list[str] | None:
    """The tokens behind a text task's one-hot inputs, in id order (None for numeric tasks)."""
    coder = getattr(task, "coder", None)
    if coder is not None:
        return list(coder.itos)
    vocab = getattr(task, "vocab", None)
    return list(vocab) if vocab is not None else None
