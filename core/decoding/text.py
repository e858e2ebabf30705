"""Decoding typed text with a trained encoder-decoder: greedy and beam search side by side,
the beam's whole tree and the attention of any hypothesis, as plain data.

The model is reached only through ``encode``, ``step_fn`` and ``attention_for``
(core.models.seq2seq.Seq2Seq), and the task through its vocabularies and length ``T``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.decoding.search import beam_search, greedy
from core.decoding.tree import Hypothesis, TreeNode, path_to
from core.errors import UserError
from core.names import BOS, EOS, UNK

MAX_BEAM, MAX_OUTPUT = 64, 500  # decode_text's limits (the tree grows as beam * 2 * max_len)


class DecodeInputError(UserError, ValueError):
    """The text or a decoding setting cannot be decoded; the message names what and why."""


@dataclass(frozen=True)
class DecodedHypothesis:
    """One output, plain data. ``ids``/``tokens``: target ids and their text ("<eos>" last
    when emitted); ``text``: the output string; ``score``: sum(log_probs) / len ** length_penalty;
    ``node_id``: the beam tree node of the last token (None for greedy)."""

    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    text: str
    score: float
    log_probs: tuple[float, ...]
    node_id: int | None = None


@dataclass(frozen=True)
class DecodeResult:
    """What ``decode_text`` found, plain data (numpy and Python values, no tensors).

    source: the text decoded (stripped, maybe truncated); source_tokens / source_ids: one per
    source position ("<unk>" where the character is unknown); hypotheses: beam search, best
    first; greedy: the greedy output; tree: every node the beam considered (core.decoding.tree);
    token_texts: target id -> text, to label the tree; attention: [len(hypotheses[0].ids),
    len(source_tokens)] weights of the best hypothesis (None without attention); notice: what
    was changed in the input (unknown characters, truncation), or None.
    """

    source: str
    source_tokens: tuple[str, ...]
    source_ids: tuple[int, ...]
    hypotheses: tuple[DecodedHypothesis, ...]
    greedy: DecodedHypothesis
    tree: tuple[TreeNode, ...]
    token_texts: tuple[str, ...]
    attention: np.ndarray | None
    notice: str | None
    beam: int
    length_penalty: float
    max_len: int


def _model_and_task(source, task):
    if task is None and hasattr(source, "model") and hasattr(source, "task"):
        return source.model, source.task
    if task is None:
        raise TypeError("decode_text needs a Trainer, or a model and its task (task=...)")
    return source, task


def _check_settings(beam: object, length_penalty: object, max_len: object) -> None:
    def integer(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not integer(beam) or not 1 <= beam <= MAX_BEAM:
        raise DecodeInputError(f"beam must be an integer from 1 to {MAX_BEAM}; got {beam!r}")
    if not integer(max_len) or not 1 <= max_len <= MAX_OUTPUT:
        raise DecodeInputError(f"max_len must be an integer from 1 to {MAX_OUTPUT}; got {max_len!r}")
    ok = isinstance(length_penalty, (int, float)) and not isinstance(length_penalty, bool)
    if not ok or not math.isfinite(length_penalty):
        raise DecodeInputError(f"length_penalty must be a finite number; got {length_penalty!r}")


def prepare_text(task, text: object) -> tuple[str, list[int], str | None]:
    """(kept text, source ids, notice): strip, truncate to ``task.T``, unknown -> <unk>."""
    if not isinstance(text, str):
        raise DecodeInputError(f"input must be text; got {type(text).__name__}")
    kept = text.strip()
    if not kept:
        raise DecodeInputError("input is empty: type the text to translate")
    notices = []
    if len(kept) > task.T:
        notices.append(f"input truncated to {task.T} characters (the model's maximum source length)")
        kept = kept[:task.T]
    unknown = task.src_vocab.unknown(kept)
    if unknown:
        names = ", ".join(repr(c) for c in unknown)
        notices.append(f"unknown character{'s' if len(unknown) > 1 else ''} {names} read as <unk>")
    return kept, task.src_vocab.encode(kept), "; ".join(notices) or None


def _plain(hyp: Hypothesis, vocab) -> DecodedHypothesis:
    return DecodedHypothesis(tuple(hyp.tokens), tuple(vocab.itos[t] for t in hyp.tokens),
                             vocab.decode(hyp.tokens), float(hyp.score),
                             tuple(float(v) for v in hyp.log_probs), hyp.node_id)


def decode_text(source, text: str, beam: int = 4, length_penalty: float = 1.0,
                max_len: int | None = None, *, task=None) -> DecodeResult:
    """Translate ``text`` with greedy decoding and beam search, keeping the beam's tree and the
    best hypothesis's attention.

    Args:
        source: a core.trainer.Trainer of a translation task, or a Seq2Seq model (then pass
            ``task``, its core.tasks.translation task).
        text: the input; surrounding spaces are dropped, text longer than ``task.T`` is
            truncated and unknown characters read as <unk>, both said in ``notice``.
        beam: beam width (1..64); length_penalty: scores are sum(log p) / len ** length_penalty;
        max_len: most output tokens, eos included (default: the task's longest target + 1).
    Raises:
        DecodeInputError (a UserError and ValueError): empty text or a bad setting.
    """
    model, task = _model_and_task(source, task)
    if max_len is None:
        max_len = task.max_target_len + 1
    _check_settings(beam, length_penalty, max_len)
    kept, ids, notice = prepare_text(task, text)
    device = next(model.parameters()).device
    src = torch.tensor(ids, device=device).unsqueeze(1)
    with torch.no_grad():  # the model has no dropout: train/eval mode does not matter
        state = model.encode(src, len(ids))
        best_greedy = greedy(model.step_fn, state, BOS, EOS, max_len, length_penalty)[0]
        found = beam_search(model.step_fn, state, BOS, EOS, beam, max_len, length_penalty)
        attention = model.attention_for(src, len(ids), found.hypotheses[0].tokens)
    vocab = task.tgt_vocab
    return DecodeResult(
        source=kept, source_tokens=tuple(task.src_vocab.itos[i] if i != UNK else "<unk>" for i in ids),
        source_ids=tuple(ids), hypotheses=tuple(_plain(h, vocab) for h in found.hypotheses),
        greedy=_plain(best_greedy, vocab), tree=tuple(found.tree), token_texts=vocab.itos,
        attention=attention, notice=notice, beam=beam, length_penalty=float(length_penalty),
        max_len=max_len)


def attention_for_node(source, result: DecodeResult, node_id: int, *, task=None) -> np.ndarray | None:
    """Attention [step of node_id, len(source_tokens)] along the tree path to ``node_id``
    (any node a user selects in the beam tree, finished or not)."""
    model, _ = _model_and_task(source, task)
    tokens = [result.tree[i].token for i in path_to(result.tree, node_id)[1:]]
    src = torch.tensor(result.source_ids, device=next(model.parameters()).device)
    return model.attention_for(src, len(result.source_ids), tokens)
