"""Encoder-decoder with attention, built from the project's instrumented recurrent stacks.

::

    source ids [S, B] -> src_embed -> recurrent (the ENCODER, make_recurrent) -> memory h_1..h_S
    decoder (make_recurrent, initial state = the encoder's final state), one target token a step:

    none:      s_t = dec(y_{t-1}, s_{t-1});            p(y_t) = softmax(W_o s_t)
    additive:  c_t = attend(s_{t-1});  s_t = dec([y_{t-1}; c_t], s_{t-1})      (Bahdanau-style)
    dot/general: s_t = dec(y_{t-1}, s_{t-1});  c_t = attend(s_t)              (Luong et al. 2015)
    with attention: p(y_t) = softmax(W_o tanh(W_c [s_t; c_t]))

"Bahdanau-style", not Bahdanau et al. (2014)'s model: the additive scores from the previous
decoder state and the context fed into the decoder are theirs, but the encoder reads one
direction only and the output layer is Luong et al.'s attentional tanh(W_c [s_t; c_t]).
Without attention there is no attention module and no combine layer W_c, and the decoder's
input is narrower, so the model has fewer parameters (dates: 41,039 against 69,839 with
additive attention).

``attend(q)`` weighs the encoder outputs by ``softmax_j(score(q, h_j))`` over real (not padded)
source positions only; see :class:`Attention`. The decoder runs torch's fused kernel, over the
whole target when teacher-forced (none, dot, general) or one length-1 step at a time (additive,
and decoding); both paths share every parameter, named as torch names them
(``recurrent.weight_ih_l0``, ``decoder.weight_hh_l0``, ...).

Decoding (core.decoding.search) sees the model through ``encode`` and ``step_fn``; the state is a
:class:`DecoderState` whose tensors all have the live hypotheses first, so decoders can reorder
it. There is deliberately no ``loss_from_outputs``: gradients through time are an encoder-only
instrument, and the trainer skips them for this model. Source padding is always masked (the
experiment's padding, truncation, masking and tbptt fields do not apply), and the trainer's
``init`` scheme reaches the encoder (``recurrent``) only; the decoder keeps torch's default.

Bidirectional encoder (``exp.bidirectional == "on"``; Schuster & Paliwal 1997, as Bahdanau et
al. used): hidden_size/2 units read the source forwards and as many backwards, so the memory
h_j = [h_fwd_j; h_bwd_j] has hidden_size units, as the decoder's attention expects, and the
decoder starts from the two directions' final states side by side (OpenNMT's "brnn"; the
backward one has read the whole source down to its first token). The parameter count stays
close to the unidirectional encoder's.

Teacher forcing: ``forward(..., teacher_forcing=p, generator=g)`` with p < 1 feeds the decoder,
at each step t >= 1 of each sequence, the true y_{t-1} with probability p and its own previous
argmax otherwise (scheduled sampling; core.training.schedules), one step at a time; p = 1 is
plain teacher forcing and p = 0 free running.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.batch import Batch
from core.config import ConfigError, Experiment
from core.models.recurrent import Trace, make_recurrent
from core.names import ATTENTION_KINDS, BOS, EOS, PAD


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
    """Encoder-decoder for core.tasks.translation tasks (see the module docstring for the equations).

    Args:
        exp: cell, hidden_size, num_layers, embed_size, nonlinearity (rnn) and attention.
        src_vocab_size, tgt_vocab_size: vocabulary sizes (id 0 is padding in both).
    """

    def __init__(self, exp: Experiment, src_vocab_size: int, tgt_vocab_size: int):
        super().__init__()
        E, H, L = exp.embed_size, exp.hidden_size, exp.num_layers
        nonlinearity = exp.nonlinearity if exp.cell == "rnn" else "tanh"
        self.exp, self.attention_kind, self.kind = exp, exp.attention, exp.cell
        self.bidirectional = exp.bidirectional == "on"
        if self.bidirectional and H % 2:
            raise ConfigError("hidden_size", f"hidden_size must be even for a bidirectional encoder "
                                             f"(hidden_size/2 units each way); got {H}")
        self.src_embed = nn.Embedding(src_vocab_size, E, padding_idx=PAD)
        self.recurrent = make_recurrent(exp.cell, E, H // 2 if self.bidirectional else H, L, nonlinearity,
                                        bidirectional=self.bidirectional)
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
        if self.bidirectional:  # [2L, B, H/2] -> [L, B, H]: each layer's directions side by side
            h, c = both_directions(h), (None if c is None else both_directions(c))
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
    def forward(self, src: Tensor, lengths: Tensor | None, tgt_in: Tensor, teacher_forcing: float = 1.0,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced pass: src [S, B], lengths [B], tgt_in [U, B] (bos, y_1, ...)
        -> logits [U, B, V], attention weights [U, B, S] (None without attention).

        ``teacher_forcing`` < 1: each input after bos is the true token with that probability
        (coin flips [U, B] from ``generator``, torch's global one when None), else the
        decoder's own previous argmax (no gradient flows through that choice)."""
        st = self.encode_batch(src, lengths)
        sampled = teacher_forcing < 1.0
        if self.attention_kind == "additive" or sampled:  # each input depends on the last step: step by step
            coins = torch.rand(tgt_in.shape, generator=generator).to(tgt_in.device) < teacher_forcing \
                if sampled else None
            logits, weights = [], []
            for t, tokens in enumerate(tgt_in.unbind(0)):
                if sampled and t:
                    tokens = torch.where(coins[t], tokens, logits[-1].detach().argmax(-1))
                step_logits, w, st = self.advance(tokens, st)
                logits.append(step_logits)
                weights.append(w)
            return torch.stack(logits), (torch.stack(weights) if self.attention_kind != "none" else None)
        out, _, _ = self.decoder(self.tgt_embed(tgt_in), self._rnn_state(st), trace=False)
        if self.attention_kind == "none":
            return self.readout(out), None
        context, weights = self.attention(out.transpose(0, 1), st.keys, st.memory, st.mask)
        return self._output(out, context.transpose(0, 1)), weights.transpose(0, 1)

    def loss(self, batch: Batch, detach_every: int = 0, teacher_forcing: float = 1.0,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy per target token (eos included, padding not) and the token accuracy,
        teacher-forced with probability ``teacher_forcing`` (see ``forward``).
        ``detach_every`` (truncated BPTT) does not apply and is ignored."""
        logits, _ = self(batch.src, batch.lengths, batch.tgt_in, teacher_forcing, generator)
        target = batch.tgt_out
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD)
        with torch.no_grad():
            real = target != PAD
            correct = (logits.argmax(-1) == target) & real
            accuracy = float(correct.sum() / real.sum().clamp_min(1))
        return loss, {"accuracy": accuracy}

    @torch.no_grad()
    def teacher_forced_batch(self, src: Tensor, lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """The argmax at every target position given the true prefix: ids [U, B]."""
        logits, _ = self(src, lengths, tgt_in)
        return logits.argmax(-1)

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


def both_directions(state: Tensor) -> Tensor:
    """A bidirectional stack's final states [2L, B, H/2] (layer by layer, forward first)
    -> [L, B, H], each layer's forward and backward states side by side."""
    two_l, B, half = state.shape
    return state.view(two_l // 2, 2, B, half).transpose(1, 2).reshape(two_l // 2, B, 2 * half)
