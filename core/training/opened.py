"""A trainer around a model the user opened (core.models.io.load_model).

Without data the task is ``inputs``: the panels show the model on what the user types (the
experiment's ``probe``), nothing trains. With a data file (charlm, series, classify) the
opened weights are the starting point and training fine-tunes them. Either way the
experiment's cell, sizes, bias and embedding become the model's.
"""

from __future__ import annotations

import os

from core.config import DATA_TASKS, Experiment
from core.datafiles import parse_vocab, read_file
from core.errors import UserError
from core.models.io import LoadedModel, load_model
from core.training.trainer import Trainer


def opened_trainer(experiment: Experiment, path: str | os.PathLike, prefix: str | None = None, *,
                   embedding: str | None = "auto", head: str | None = "auto", vocab: str | None = None,
                   nonlinearity: str | None = None) -> Trainer:
    """A Trainer whose model holds the weights of ``path`` (see core.models.io.load_model for
    the arguments). ``experiment`` supplies the rest: its data (to fine-tune on) or none."""
    tokens = parse_vocab(read_file(vocab, what="vocabulary file")) if vocab else None
    loaded = load_model(path, prefix, embedding=embedding, head=head, vocab=tokens, nonlinearity=nonlinearity)
    return trainer_for(loaded, experiment.replace(vocab=vocab or ""))


def trainer_for(loaded: LoadedModel, experiment: Experiment) -> Trainer:
    if experiment.is_seq2seq:
        raise UserError(f"an opened model is one recurrent stack with an optional embedding and head; the "
                        f"{experiment.task} task trains an encoder-decoder (open one of ours as a session)")
    fine_tune = experiment.task in DATA_TASKS and bool(experiment.data)
    exp = experiment if fine_tune else experiment.replace(task="inputs")
    return Trainer(exp.replace(**loaded.experiment_changes()), weights=loaded.weights())
