"""Batches: what a task hands the model, time-major, as plain containers of tensors.

A leaf module (tasks make batches, models read them) with no torch import at module level:
the fields are tensors, but nothing here needs torch until ``to`` moves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class Batch:
    """One batch, time-major.

    x:       [T, B, I] float inputs.
    y:       targets: [B, O] float (readout "last"), [T, B] long (classification at every
             step) or [T, B, O] float (regression at every step).
    valid:   [T, B] bool, real (not padded) steps; None when every step is real.
    lengths: [B] real lengths; None when every sequence has length T.
    labels:  T strings describing sequence 0 (the time axis of the panels).
    pre_padded: padding sits before the sequence instead of after it.
    """

    x: Tensor
    y: Tensor
    valid: Tensor | None = None
    lengths: Tensor | None = None
    labels: tuple[str, ...] = ()
    pre_padded: bool = False

    def to(self, device: str) -> Batch:
        move = (lambda t: t.to(device) if t is not None else None)  # noqa: E731
        return Batch(move(self.x), move(self.y), move(self.valid), move(self.lengths),
                     self.labels, self.pre_padded)

@dataclass
class TranslationBatch(Batch):
    """A Batch (x = one-hot source [S, B, V_src], valid/lengths = source padding,
    labels = source characters of item 0) plus the ids the encoder-decoder trains on.

    src:     [S, B] long source ids, PAD after each source's length.
    tgt_in:  [U, B] long: BOS then the target (the decoder's teacher-forced inputs).
    tgt_out: [U, B] long: the target then EOS, PAD after it (also ``y``).
    """

    src: Tensor | None = None
    tgt_in: Tensor | None = None
    tgt_out: Tensor | None = None

    @property
    def src_lengths(self) -> Tensor:
        """[B] real source lengths (the same tensor as ``lengths``)."""
        return self.lengths

    def to(self, device: str) -> TranslationBatch:
        def move(t):
            return t.to(device) if t is not None else None

        return TranslationBatch(move(self.x), move(self.y), move(self.valid), move(self.lengths),
                                self.labels, self.pre_padded, move(self.src),
                                move(self.tgt_in), move(self.tgt_out))
