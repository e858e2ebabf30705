"""Encoder-decoder with attention, built from the project's instrumented recurrent stacks.

::

    source ids [S, B] -> src_embed -> recurrent (the ENCODER, make_recurrent) -> memory h_1..h_S
    decoder (make_recurrent, initial state = the encoder's final state), one target token a step:

    none:      s_t = dec(y_{t-1}, s_{t-1});            p(y_t) = softmax(W_o s_t)
    additive:  c_t = attend(s_{t-1});  s_t = dec([y_{t-1}; c_t], s_{t-1})      (Bahdanau et al. 2014)
    dot/general: s_t = dec(y_{t-1}, s_{t-1});  c_t = attend(s_t)              (Luong et al. 2015)
    with attention: p(y_t) = softmax(W_o tanh(W_c [s_t; c_t]))

``attend(q)`` weighs the encoder outputs by ``softmax_j(score(q, h_j))`` over real (not padded)
source positions only; see :class:`Attention`. The decoder runs torch's fused kernel, over the
whole target when teacher-forced (none, dot, general) or one length-1 step at a time (additive,
and decoding); both paths share every parameter, named as torch names them
(``recurrent.weight_ih_l0``, ``decoder.weight_hh_l0``, ...).

Decoding (core.decoding) sees the model through ``encode`` and ``step_fn``; the state is a
:class:`DecoderState` whose tensors all have the live hypotheses first, so decoders can reorder
it. There is deliberately no ``loss_from_outputs``: gradients through time are an encoder-only
instrument, and the trainer skips them for this model. Source padding is always masked (the
experiment's padding, truncation, masking and tbptt fields do not apply), and the trainer's
``init`` scheme reaches the encoder (``recurrent``) only; the decoder keeps torch's default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import Experiment
from .decoding import Hypothesis, TreeNode, beam_search, greedy, path_to
from .errors import UserError
from .recurrent import Trace, make_recurrent
from .tasks import Batch
from .translation import BOS, EOS, PAD, UNK

ATTENTION_KINDS = ("none", "additive", "dot", "general")
MAX_BEAM, MAX_OUTPUT = 64, 500  # decode_text's limits (the tree grows as beam * 2 * max_len)


class Attention(nn.Module):
    """Scores of a query against every source position, softmax over the real ones.

    Math (q: decoder state [H], h_j: encoder output [H])::

        additive: e_j = v^T tanh(W_q q + W_k h_j)      (Bahdanau; ``query``, ``key``, ``v``)
        dot:      e_j = q^T h_j                        (Luong)
        general:  e_j = q^T W_k h_j                    (Luong; ``key``)
        a_j = exp(e_j) / sum_{real i} exp(e_i), exactly 0 at padded j;  context = sum_j a_j h_j

    ``keys(memory)`` is the part that depends on the source only (``W_k h_j``; ``h_j`` for dot),
    computed once per source and kept in the decoder state.
    """

    def __init__(self, kind: str, hidden_size: int):
        super().__init__()
        if kind not in ATTENTION_KINDS[1:]:
            raise ValueError(f"attention must be one of additive, dot, general; got {kind!r}")
        self.kind = kind
        H = hidden_size
        if kind == "additive":
            self.query = nn.Linear(H, H, bias=False)
            self.key = nn.Linear(H, H, bias=False)
            self.v = nn.Linear(H, 1, bias=False)
        elif kind == "general":
            self.key = nn.Linear(H, H, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """memory [B, S, H] -> keys [B, S, H]."""
        return memory if self.kind == "dot" else self.key(memory)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """query [B, Q, H], keys [B, S, H] -> unnormalised scores e [B, Q, S]."""
        if self.kind == "additive":
            return self.v(torch.tanh(self.query(query).unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)
        return query @ keys.transpose(1, 2)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query [B, Q, H], keys/memory [B, S, H], mask [B, S] bool (real positions)
        -> context [B, Q, H], weights [B, Q, S] (rows sum to 1, 0 where mask is False)."""
        e = self.scores(query, keys).masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(e, dim=-1)
        return weights @ memory, weights


class DecoderState(NamedTuple):
    """What the decoder carries between steps; every tensor has the K hypotheses first.

    hidden: [K, L, H] decoder h;  cell: [K, L, H] (lstm) or None;  memory: [K, S, H] encoder
    outputs;  keys: [K, S, H] memory as the attention compares it, or None;  mask: [K, S] bool.
    """

    hidden: Tensor
    cell: Tensor | None
    memory: Tensor
    keys: Tensor | None
    mask: Tensor


class Seq2Seq(nn.Module):
    """Encoder-decoder for core.translation tasks (see the module docstring for the equations).

    Args:
        exp: cell, hidden_size, num_layers, embed_size, nonlinearity (rnn) and attention.
        src_vocab_size, tgt_vocab_size: vocabulary sizes (id 0 is padding in both).
    """

    def __init__(self, exp: Experiment, src_vocab_size: int, tgt_vocab_size: int):
        super().__init__()
        E, H, L = exp.embed_size, exp.hidden_size, exp.num_layers
        nonlinearity = exp.nonlinearity if exp.cell == "rnn" else "tanh"
        self.exp, self.attention_kind, self.kind = exp, exp.attention, exp.cell
        self.src_embed = nn.Embedding(src_vocab_size, E, padding_idx=PAD)
        self.recurrent = make_recurrent(exp.cell, E, H, L, nonlinearity)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, E, padding_idx=PAD)
        extra = H if exp.attention == "additive" else 0  # Bahdanau feeds the context in
        self.decoder = make_recurrent(exp.cell, E + extra, H, L, nonlinearity)
        if exp.attention != "none":
            self.attention = Attention(exp.attention, H)
            self.combine = nn.Linear(2 * H, H)
        self.readout = nn.Linear(H, tgt_vocab_size)

    @property
    def encoder(self):
        """The encoder stack (the same module as ``recurrent``)."""
        return self.recurrent

    # ---------------------------------------------------------------------------- encoding
    def encode_batch(self, src: Tensor, lengths: Tensor | None) -> DecoderState:
        """src [S, B] ids, lengths [B] (None: all S real) -> the decoder's initial state (K = B)."""
        S, B = src.shape
        if lengths is None:
            lengths = torch.full((B,), S, dtype=torch.long)
        lengths = torch.as_tensor(lengths, device=src.device)
        out, state, _ = self.recurrent(self.src_embed(src), None, lengths, trace=False)
        h, c = state if self.kind == "lstm" else (state, None)
        memory = out.transpose(0, 1)  # [B, S, H], zero at padded positions
        mask = torch.arange(S, device=src.device).unsqueeze(0) < lengths.unsqueeze(1)
        keys = self.attention.keys(memory) if self.attention_kind != "none" else None
        return DecoderState(h.transpose(0, 1), None if c is None else c.transpose(0, 1), memory, keys, mask)

    @torch.no_grad()
    def encode(self, src_ids: Tensor, length: int | Tensor | None = None) -> DecoderState:
        """One source for the decoders: src_ids [S, 1] (or [S]) -> DecoderState with K = 1."""
        src = src_ids.reshape(-1, 1)
        n = src.shape[0] if length is None else int(length)
        if not 1 <= n <= src.shape[0]:
            raise ValueError(f"length must lie in 1..{src.shape[0]}; got {n}")
        return self.encode_batch(src, torch.tensor([n], device=src.device))

    # ---------------------------------------------------------------------------- decoding
    def _rnn_state(self, st: DecoderState):
        h = st.hidden.transpose(0, 1).contiguous()
        return (h, st.cell.transpose(0, 1).contiguous()) if self.kind == "lstm" else h

    def _output(self, s: Tensor, context: Tensor | None) -> Tensor:
        if context is None:
            return self.readout(s)
        return self.readout(torch.tanh(self.combine(torch.cat([s, context], dim=-1))))

    def advance(self, tokens: Tensor, st: DecoderState) -> tuple[Tensor, Tensor | None, DecoderState]:
        """One decoder step: tokens [K] (the previous output) -> logits [K, V],
        attention weights [K, S] (None without attention), the next state."""
        x = self.tgt_embed(tokens)
        rnn_state, attend = self._rnn_state(st), self.attention_kind != "none"
        context = weights = None
        if self.attention_kind == "additive":  # Bahdanau: attend with s_{t-1}, feed c_t in
            top = st.hidden[:, -1].unsqueeze(1)
            context, weights = self.attention(top, st.keys, st.memory, st.mask)
            x = torch.cat([x, context[:, 0]], dim=-1)
        out, new, _ = self.decoder(x.unsqueeze(0), rnn_state, trace=False)
        s = out[0]
        if attend and context is None:  # Luong: attend with s_t
            context, weights = self.attention(s.unsqueeze(1), st.keys, st.memory, st.mask)
        logits = self._output(s, context[:, 0] if attend else None)
        h, c = new if self.kind == "lstm" else (new, None)
        new_st = st._replace(hidden=h.transpose(0, 1), cell=None if c is None else c.transpose(0, 1))
        return logits, (weights[:, 0] if attend else None), new_st

    def step_fn(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """core.decoding's step function: tokens [K] -> log-probs [K, V], next state."""
        logits, _, state = self.advance(tokens, state)
        return torch.log_softmax(logits, dim=-1), state

    @torch.no_grad()
    def greedy_batch(self, src: Tensor, lengths: Tensor, max_len: int) -> Tensor:
        """Greedy decoding of a whole batch: -> ids [B, <= max_len], eos kept, PAD after it."""
        st = self.encode_batch(src, lengths)
        tokens = torch.full((src.shape[1],), BOS, dtype=torch.long, device=src.device)
        done = torch.zeros_like(tokens, dtype=torch.bool)
        out = []
        for _ in range(max_len):
            logits, _, st = self.advance(tokens, st)
            tokens = logits.argmax(-1)
            out.append(tokens.masked_fill(done, PAD))
            done = done | (tokens == EOS)
            if bool(done.all()):
                break
        return torch.stack(out, dim=1)

    # ------------------------------------------------------------------------ teacher forcing
    def forward(self, src: Tensor, lengths: Tensor | None, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced pass: src [S, B], lengths [B], tgt_in [U, B] (bos, y_1, ...)
        -> logits [U, B, V], attention weights [U, B, S] (None without attention)."""
        st = self.encode_batch(src, lengths)
        if self.attention_kind == "additive":  # the context feeds the recurrence: step by step
            logits, weights = [], []
            for tokens in tgt_in.unbind(0):
                step_logits, w, st = self.advance(tokens, st)
                logits.append(step_logits)
                weights.append(w)
            return torch.stack(logits), torch.stack(weights)
        out, _, _ = self.decoder(self.tgt_embed(tgt_in), self._rnn_state(st), trace=False)
        if self.attention_kind == "none":
            return self.readout(out), None
        context, weights = self.attention(out.transpose(0, 1), st.keys, st.memory, st.mask)
        return self._output(out, context.transpose(0, 1)), weights.transpose(0, 1)

    def loss(self, batch: Batch, detach_every: int = 0) -> tuple[Tensor, dict[str, float]]:
        """Teacher-forced cross-entropy per target token (eos included, padding not) and the
        token accuracy. ``detach_every`` (truncated BPTT) does not apply and is ignored."""
        logits, _ = self(batch.src, batch.lengths, batch.tgt_in)
        target = batch.tgt_out
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD)
        with torch.no_grad():
            real = target != PAD
            correct = (logits.argmax(-1) == target) & real
            accuracy = float(correct.sum() / real.sum().clamp_min(1))
        return loss, {"accuracy": accuracy}

    @torch.no_grad()
    def trace(self, batch: Batch, masking: bool | None = None) -> Trace:
        """The encoder's no-grad trace on ``batch`` (padding not skipped when masking is False)."""
        lengths = batch.lengths if masking is not False else None
        return self.recurrent.probe(self.src_embed(batch.src), lengths=lengths)

    @torch.no_grad()
    def attention_for(self, src_ids: Tensor, length: int, tokens) -> np.ndarray | None:
        """Attention weights [len(tokens), S] while generating ``tokens`` (a hypothesis, eos
        included if emitted) after bos, re-run teacher-forced; None without attention."""
        src = src_ids.reshape(-1, 1)
        if self.attention_kind == "none":
            return None
        tokens = [int(t) for t in tokens]
        if not tokens:
            return np.zeros((0, src.shape[0]), dtype=np.float32)
        tgt_in = torch.tensor([BOS, *tokens[:-1]], device=src.device).unsqueeze(1)
        _, weights = self(src, torch.tensor([int(length)], device=src.device), tgt_in)
        return weights[:, 0].to("cpu", torch.float32).numpy().copy()


# ------------------------------------------------------------------------------ decode_text
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
    first; greedy: the greedy output; tree: every node the beam considered (core.beam_tree);
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
            ``task``, its core.translation task).
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
