"""What the tests send to the training process: trainer factories with faults, and jobs.

The process is a fresh interpreter (app.training.controller), so these are module-level functions
(picklable), in a module that imports no Qt; a fault's state lives in that process.
"""

from __future__ import annotations

import dataclasses

from app.training.engine import build_trainer
from core.config import ConfigError


def refuse(source):
    raise ConfigError("hidden_size", "hidden_size must be an integer from 1 to 4096; got 0")


def with_step(source, fault):
    """``build_trainer(source)`` whose n-th step (counted from 1) goes through ``fault(n, step, attach)``."""
    trainer = build_trainer(source)
    real_step, calls = trainer.step, [0]

    def step(**attach):
        calls[0] += 1
        return fault(calls[0], real_step, attach)

    trainer.step = step
    return trainer


def _diverge_at_3_fail_at_5(n, real_step, attach):
    if n == 3:
        return dataclasses.replace(real_step(**attach), diverged=True)
    if n == 5:
        raise RuntimeError("simulated failure")
    return real_step(**attach)


def _bug_in_first_step(n, real_step, attach):
    def step_with_a_bug():
        raise RuntimeError("simulated bug in a step")

    return step_with_a_bug() if n == 1 else real_step(**attach)


def diverge_at_3_fail_at_5(source):
    return with_step(source, _diverge_at_3_fail_at_5)


def bug_in_first_step(source):
    return with_step(source, _bug_in_first_step)


def slow_gradients(source):
    """A trainer whose gradients through time take a minute, as on a very big model."""
    import time

    trainer = build_trainer(source)
    real = trainer.gradients

    def gradients():
        time.sleep(60)
        return real()

    trainer.gradients = gradients
    return trainer


def decode_reference(trainer, text: str, beam: int, penalty: float = 1.0):
    """core.decoding on the same model and input: (BeamResult, per-expansion node lists, attention)."""
    import torch

    from core.decoding.search import BeamSearch, beam_search
    from core.names import BOS, EOS

    task, model = trainer.task, trainer.model
    src = torch.tensor(task.src_vocab.encode(text)).unsqueeze(1)
    max_len = task.max_target_len + 1
    state = model.encode(src, len(text))
    whole = beam_search(model.step_fn, state, BOS, EOS, beam, max_len, penalty)
    search = BeamSearch(model.step_fn, state, BOS, EOS, beam, max_len, penalty)
    expansions = []
    while not search.done:
        expansions.append(search.step())
    attention = {i: model.attention_for(src, len(text), h.tokens) for i, h in enumerate(whole.hypotheses)}
    return whole, expansions, attention


def failing_spectrum(source):
    """A trainer whose spectrum fails from step 2 on, as eigh did on weights Adam with lr 10 made."""
    trainer = build_trainer(source)
    real = trainer.spectrum

    def spectrum():
        if trainer.step_count >= 2:
            raise RuntimeError("linalg.eigh: the algorithm failed to converge")
        return real()

    trainer.spectrum = spectrum
    return trainer
