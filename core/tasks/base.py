"""The task contract: what every task (synthetic, text, translation) offers the trainer.

A task makes batches from a ``torch.Generator`` (so runs are reproducible from the seed),
states its baseline (the loss of a trivial strategy, drawn on the loss plot) and the loss
at which it counts as solved, and says which model it needs (``model_kind``; the model
itself is built by core.training.build, so tasks and models stay independent rooms).
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.batch import Batch
from core.config import Experiment

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
PROBE_SEED = 1234  # the probe sequence is the same for every run of a task


class Task:
    """Base class. Subclasses set the class attributes and implement ``sample``."""

    name = ""
    title = ""
    model_kind = "sequence"  # what core.training.build makes: "sequence" or "seq2seq"
    readout = "all"          # "last": one prediction from the final state; "all": one per step
    loss_kind = "mse"        # "mse" or "ce"
    baseline_label = ""
    target = 0.01            # loss that counts as solved

    def __init__(self, exp: Experiment):
        self.exp = exp
        self.T = exp.seq_len

    input_size: int
    output_size: int

    @property
    def baseline(self) -> float | None:
        return None

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        raise NotImplementedError

    def probe_batch(self) -> Batch:
        """The fixed probe sequence (batch of one) whose internals the panels show."""
        return self.sample(1, torch.Generator().manual_seed(PROBE_SEED))
