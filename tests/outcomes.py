"""Trained-outcome tests: the seed they run with, one training helper, and what they measured.

Training is not bit-identical across CPUs, thread counts and torch versions, so a test that
asserts on what training reaches must hold for other seeds too, not only for the one it was
tuned on. Every such test is marked ``trained``, takes its seeds from :func:`seeded` (or
:func:`train`, which calls it) and passes each quantity it asserts on through
:func:`outcome`. Then

    RNN_EXPLORER_TEST_SEED=N      shifts every seed those tests use by N (default 0);
    RNN_EXPLORER_TEST_THREADS=K   runs torch with K threads (default 1; tests/conftest.py);
    RNN_EXPLORER_OUTCOMES=path    appends one JSON line per measured quantity to ``path``.

``python tests/spread.py`` reruns ``pytest -m trained`` for several shifts and prints each
quantity's min / median / max: the spread the thresholds and the preset descriptions quote.
"""

from __future__ import annotations

import json
import os

import numpy as np

SEED_ENV = "RNN_EXPLORER_TEST_SEED"
THREADS_ENV = "RNN_EXPLORER_TEST_THREADS"
OUTCOMES_ENV = "RNN_EXPLORER_OUTCOMES"


def _whole_number(name: str, default: int, lowest: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        value = lowest - 1
    if value < lowest:
        raise ValueError(f"{name} must be a whole number >= {lowest}; got {text!r}")
    return value


def seed_shift() -> int:
    return _whole_number(SEED_ENV, 0, 0)


def threads() -> int:
    return _whole_number(THREADS_ENV, 1, 1)


def seeded(experiment, offset: int = 0):
    """``experiment`` with its seed moved by the run's seed shift (plus ``offset``: a test
    that trains several seeds asks for offsets 0, 1, 2, ...)."""
    return experiment.replace(seed=experiment.seed + seed_shift() + offset)


def train(experiment, steps: int | None = None, offset: int = 0):
    """(trainer, losses [steps]): ``seeded(experiment, offset)`` trained for ``steps``
    (default: its budget). A diverged (refused) update fails the test."""
    from core.training.trainer import Trainer

    trainer = Trainer(seeded(experiment, offset))
    return trainer, more(trainer, experiment.steps if steps is None else steps)


def more(trainer, steps: int) -> np.ndarray:
    """Train ``trainer`` for ``steps`` more updates; their losses."""
    losses = []
    for record in trainer.run(steps):
        assert not record.diverged, f"step {record.step} diverged"
        losses.append(record.loss)
    return np.asarray(losses)


def first_step_below(losses: np.ndarray, level: float, window: int = 10) -> float:
    """The first step (1-based) whose mean loss over the last ``window`` steps is <= ``level``
    (inf: never): one lucky batch does not count."""
    means = np.convolve(losses, np.ones(window) / window, mode="valid")
    below = np.flatnonzero(means <= level)
    return float(below[0] + window) if len(below) else float("inf")


def lowest_mean(losses: np.ndarray, window: int = 10) -> float:
    """The lowest mean loss over ``window`` consecutive steps."""
    return float(np.convolve(losses, np.ones(window) / window, mode="valid").min())


def outcome(name: str, value):
    """Record ``value`` (a number, or a dict of numbers) under ``name`` when
    RNN_EXPLORER_OUTCOMES is set, and return it unchanged: ``assert outcome("x", v) > 1``."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    for key, v in (value.items() if isinstance(value, dict) else [("", value)]):
        append(f"{name}/{key}" if key != "" else name, v, test)
    return value


def append(name: str, value: float, test: str) -> None:
    """One JSON line in the RNN_EXPLORER_OUTCOMES file (nothing when it is unset)."""
    path = os.environ.get(OUTCOMES_ENV)
    if path:
        line = {"name": name, "value": float(value), "seed_shift": seed_shift(),
                "threads": threads(), "test": test}
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


def environment() -> str:
    """What a trained outcome depends on besides the code: one line for reports."""
    import torch

    return (f"seed shift {seed_shift()} ({SEED_ENV}), torch threads {torch.get_num_threads()} "
            f"({THREADS_ENV}), torch {torch.__version__}, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
