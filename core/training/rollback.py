"""The last good state: where a diverged run goes back to, so that it can continue.

A loss that becomes inf or nan has usually been climbing for many steps first (preset
exploding-rnn with clip 0 and lr 0.1: 0.9, 71, 7.5e3, ... 2.8e35, inf): the weights of the
step before the failure are finite but already ruined, and no learning rate or clip norm
makes them train again. So the trainer keeps one copy of the model and optimizer state from
the most recent step whose loss was sane, at most ``GOOD_FACTOR`` times the lowest smoothed
loss so far, and goes back to it when a step diverges; the step count keeps counting.

Cost: one more copy of the parameters and optimizer moments (core.training.resources counts it) and
copying them at each sane step, a small fraction of a training step.
"""

from __future__ import annotations

import math
from typing import Any

import torch

GOOD_FACTOR = 4.0  # a loss above this many times the lowest smoothed loss is not kept
SMOOTHING = 0.1  # weight of the newest loss in the running mean (about 10 steps)


class LastGood:
    """One copy of a trainer's weights and optimizer state, taken before a sane update.

    step: the step count of the kept state (None until a state was kept); loss: what its
    batch's loss was.
    """

    def __init__(self) -> None:
        self.step: int | None = None
        self.loss = math.nan
        self._smoothed: float | None = None
        self._lowest = math.inf
        self._params: list[torch.Tensor] = []
        self._state: list[dict[str, Any]] = []

    def offer(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, loss: float) -> None:
        """Keep the current state if ``loss`` (its batch's, finite) is sane. Call before the update."""
        self._smoothed = loss if self._smoothed is None else (1 - SMOOTHING) * self._smoothed + SMOOTHING * loss
        self._lowest = min(self._lowest, self._smoothed)
        if loss > GOOD_FACTOR * self._lowest:
            return
        params = [p.detach() for p in model.parameters()]
        old = self._state if len(self._state) == len(params) else [{}] * len(params)
        with torch.no_grad():
            if _same_shapes(self._params, params):
                _copy_all(self._params, params)
            else:
                self._params = [p.clone() for p in params]
            copies: tuple[list, list] = ([], [])
            self._state = [_copy_entries(optimizer.state.get(p, {}), kept, copies)
                           for p, kept in zip(model.parameters(), old, strict=True)]
            _copy_all(*copies)
        self.step, self.loss = step, loss

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int | None:
        """Put the kept state back (in place); the step count it had, or None if none was kept."""
        if self.step is None:
            return None
        params = list(model.parameters())
        with torch.no_grad():
            _copy_all([p.detach() for p in params], self._params)
            copies: tuple[list, list] = ([], [])
            for p, saved in zip(params, self._state, strict=True):
                entries = _copy_entries(saved, optimizer.state.get(p, {}), copies)
                if entries:
                    optimizer.state[p] = entries
                else:
                    optimizer.state.pop(p, None)
            _copy_all(*copies)
        return self.step


def _copy_all(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """One call for all tensors: each torch call from Python also takes the GIL, which the
    app's drawing thread needs too."""
    if targets:
        torch._foreach_copy_(targets, sources)


def _same_shapes(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and x.dtype == y.dtype for x, y in zip(a, b, strict=True))


def _copy_entries(source: dict[str, Any], target: dict[str, Any],
                  copies: tuple[list[torch.Tensor], list[torch.Tensor]]) -> dict[str, Any]:
    """``source``'s optimizer entries, to be copied into ``target``'s tensors where they fit:
    those pairs are appended to ``copies`` (targets, sources) for one ``_copy_all`` later."""
    out = {}
    for key, value in source.items():
        if isinstance(value, torch.Tensor):
            buffer = target.get(key)
            if isinstance(buffer, torch.Tensor) and buffer.shape == value.shape and buffer.dtype == value.dtype:
                copies[0].append(buffer)
                copies[1].append(value)
                out[key] = buffer
            else:
                out[key] = value.detach().clone()
        else:
            out[key] = value
    return out
