"""Model-agnostic decoders: greedy, sampling, beam search (batched and step-wise), references.

A decoder sees the model only through a step function::

    step_fn(tokens: LongTensor[K], state) -> (log_probs: Tensor[K, V], new_state)

``state`` is a tensor, ``None`` or a (nested) tuple of those whose FIRST dimension indexes the
K live hypotheses, e.g. an LSTM's ``(h, c)`` as ``([K, H], [K, H])`` plus encoder memory
``[K, S, H]``. Decoders reorder and select it with :func:`select_state`; what it holds is the
model's business. The initial state describes one input (first dimension 1). ``log_probs`` must be
normalised log-probabilities (all <= 0), e.g. from ``log_softmax``.

Every decoder returns :class:`Hypothesis` objects, best first. ``tokens`` exclude bos and include
eos when it was emitted; a hypothesis ends at eos or after ``max_len`` generated tokens. Scores
follow the Hugging Face convention ``sum(log_probs) / len(tokens) ** length_penalty``
(``length_penalty=0`` is the raw sum). Decoders run under ``torch.no_grad()``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

from core.decoding.tree import BeamResult, Hypothesis, TreeNode

State = Any  # torch.Tensor | None | tuple[State, ...]
StepFn = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]


def select_state(state: State, index: torch.Tensor) -> State:
    """Rows ``index`` (LongTensor[K']) of every tensor in ``state`` along dim 0, keeping the
    (nested) tuple structure; ``None`` stays ``None``. Tensors ``[K, ...]`` become ``[K', ...]``."""

    def select(part: State) -> State:
        if part is None:
            return None
        if isinstance(part, torch.Tensor):
            return part.index_select(0, index.to(part.device))
        if isinstance(part, tuple):
            parts = [select(p) for p in part]
            return type(part)(*parts) if hasattr(part, "_fields") else tuple(parts)
        raise TypeError(f"state must be a tensor, None or a tuple of those, got {type(part).__name__}")

    return select(state)


# --- validation ---------------------------------------------------------------------------------

def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_float(name: str, value: object, positive: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        allowed = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _check_common(bos: int, eos: int, max_len: int, length_penalty: float) -> None:
    _check_int("bos", bos, 0)
    _check_int("eos", eos, 0)
    _check_int("max_len", max_len, 1)
    _check_float("length_penalty", length_penalty)


def _check_log_probs(log_probs: object, k: int, vocab_size: int | None = None) -> torch.Tensor:
    """``log_probs`` after checking its shape is ``(k, V)``."""
    if not isinstance(log_probs, torch.Tensor) or log_probs.dim() != 2 or log_probs.shape[0] != k:
        shape = tuple(log_probs.shape) if isinstance(log_probs, torch.Tensor) else type(log_probs)
        raise ValueError(f"step_fn must return log_probs of shape (K, V) with K={k}, got {shape}")
    if vocab_size is not None and log_probs.shape[1] != vocab_size:
        raise ValueError(f"step_fn returned V={log_probs.shape[1]}, expected {vocab_size}")
    return log_probs


def _device_of(state: State) -> torch.device:
    """Device of the first tensor in ``state`` (CPU if it holds none)."""
    stack = [state]
    while stack:
        part = stack.pop()
        if isinstance(part, torch.Tensor):
            return part.device
        if isinstance(part, tuple):
            stack.extend(reversed(part))
    return torch.device("cpu")


def _normalise(total: float, length: int, length_penalty: float) -> float:
    return total / length**length_penalty


# --- greedy and sampling ------------------------------------------------------------------------

def greedy(step_fn: StepFn, state: State, bos: int, eos: int, max_len: int,
           length_penalty: float = 1.0) -> list[Hypothesis]:
    """The arg-max token at every step; returns ``[hypothesis]``."""
    return sample(step_fn, state, bos, eos, max_len, top_k=1, length_penalty=length_penalty)


def sample(step_fn: StepFn, state: State, bos: int, eos: int, max_len: int,
           temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None, length_penalty: float = 1.0,
           num_samples: int = 1) -> list[Hypothesis]:
    """Ancestral sampling from ``softmax(log_probs / temperature)`` restricted to the ``top_k``
    tokens. ``num_samples`` independent sequences advance together (K <= num_samples); a seeded
    ``generator`` makes the draw reproducible. ``top_k=1`` is greedy (no random numbers drawn).
    Recorded log-probs and scores are the model's (temperature 1), so they compare across
    decoders. Returns ``num_samples`` hypotheses, best first."""
    _check_common(bos, eos, max_len, length_penalty)
    _check_float("temperature", temperature, positive=True)
    if top_k is not None:
        _check_int("top_k", top_k, 1)
    _check_int("num_samples", num_samples, 1)
    device = _device_of(state)
    live = list(range(num_samples))  # which sample each row of the batch belongs to
    tokens = torch.full((num_samples,), bos, dtype=torch.long, device=device)
    state = select_state(state, torch.zeros(num_samples, dtype=torch.long))
    prefixes: list[list[int]] = [[] for _ in live]
    token_lps: list[list[float]] = [[] for _ in live]
    totals = [0.0] * num_samples
    with torch.no_grad():
        for t in range(1, max_len + 1):
            log_probs, state = step_fn(tokens, state)
            lp = _check_log_probs(log_probs, len(live)).to(torch.float64)
            if top_k == 1:
                chosen = lp.argmax(dim=1)
            else:
                logits = lp / temperature
                if top_k is not None and top_k < lp.shape[1]:
                    best, where = logits.topk(top_k, dim=1)
                    logits = torch.full_like(logits, -math.inf).scatter(1, where, best)
                probs = torch.softmax(logits, dim=1)
                chosen = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            chosen_lp = lp.gather(1, chosen[:, None]).squeeze(1)
            going = []
            for row, (i, tok, tok_lp) in enumerate(
                    zip(live, chosen.tolist(), chosen_lp.tolist(), strict=True)):
                prefixes[i].append(tok)
                token_lps[i].append(tok_lp)
                totals[i] += tok_lp
                if tok != eos and t < max_len:
                    going.append(row)
            if not going:
                break
            index = torch.tensor(going, dtype=torch.long, device=lp.device)
            live = [live[row] for row in going]
            state, tokens = select_state(state, index), chosen.index_select(0, index)
    hyps = [Hypothesis(tuple(p), _normalise(s, len(p), length_penalty), tuple(lps))
            for p, s, lps in zip(prefixes, totals, token_lps, strict=True)]
    return sorted(hyps, key=lambda h: h.score, reverse=True)


# --- beam search --------------------------------------------------------------------------------

def _admit(finished: list[Hypothesis], hyp: Hypothesis, width: int) -> bool:
    """Insert ``hyp`` into ``finished`` (best first, at most ``width``) if it belongs there."""
    if len(finished) == width:
        if not hyp.score > finished[-1].score:
            return False
        finished.pop()
    i = len(finished)
    while i > 0 and finished[i - 1].score < hyp.score:
        i -= 1
    finished.insert(i, hyp)
    return True


def _cannot_improve(finished: list[Hypothesis], width: int, best_live_sum: float, length: int,
                    max_len: int, length_penalty: float) -> bool:
    """True if no continuation of a live hypothesis can enter the full finished list.

    Log-probs are <= 0, so a live sum ``s`` of ``length`` tokens ends as ``s' <= s`` after
    ``L in [length + 1, max_len]`` tokens, with score ``s' / L**lp <= s * L**-lp``. That bound is
    monotone in L, so its maximum is at one end of the range: exact for every length_penalty."""
    if len(finished) < width:
        return False
    bound = max(_normalise(best_live_sum, length + 1, length_penalty),
                _normalise(best_live_sum, max_len, length_penalty))
    return bound <= finished[-1].score


class BeamSearch:
    """Batched beam search that can be advanced one expansion at a time (for animation).

    Each :meth:`step` advances all K live hypotheses with ONE ``step_fn`` call (tokens ``[K]``,
    state with first dimension K) and ranks the ``K * V`` continuations with ONE ``topk`` over
    their cumulative log-prob sums ``[K * V]``. The rule at step ``t`` (= continuation length),
    after Hugging Face:

    * the top ``C = min(2 * beam_width, K * V)`` continuations are *considered*; each becomes a
      node of the tree (at most K <= beam_width are eos, so at least beam_width others remain);
    * walking them best first, a continuation *ends* if its token is eos or ``t == max_len``:
      if its rank is < beam_width and it enters the finished list (not yet full, or strictly
      better than the worst member, which it displaces) it is ``"finished"``, else ``"pruned"``;
    * a continuation that does not end is ``"kept"`` (next beam) while fewer than beam_width are
      kept, else ``"pruned"``. So at most beam_width nodes per step are kept.

    The search is done when nothing is kept, after ``max_len`` steps, or (``early_stopping``) when
    the finished list holds beam_width hypotheses that no live one can beat (see
    ``_cannot_improve``: exact, so early stopping never changes the result). Ties in scores are
    broken by ``torch.topk``. Attributes: ``steps`` (expansions run), ``done``.

    With ``beam_width=1`` and ``length_penalty=0`` this is greedy decoding. With another length
    penalty a width-1 beam goes on past greedy's eos with the best non-eos continuation, and may
    return that longer sequence if its normalised score is better.
    """

    def __init__(self, step_fn: StepFn, state: State, bos: int, eos: int, beam_width: int,
                 max_len: int, length_penalty: float = 1.0, *, early_stopping: bool = True):
        _check_int("beam_width", beam_width, 1)
        _check_common(bos, eos, max_len, length_penalty)
        self._step_fn, self._state = step_fn, state
        self._eos, self._width, self._max_len = eos, beam_width, max_len
        self._length_penalty, self._early_stopping = length_penalty, early_stopping
        self._tokens = torch.tensor([bos], dtype=torch.long, device=_device_of(state))
        # cumulative log-prob sum of each live hypothesis [K, 1], float64 to match Python's floats
        self._sums = torch.zeros(1, 1, dtype=torch.float64, device=self._tokens.device)
        self._ids = [0]  # its node in the tree
        self._prefixes: list[tuple[tuple[int, ...], tuple[float, ...]]] = [((), ())]
        self._finished: list[Hypothesis] = []
        self._tree = [TreeNode(0, -1, bos, 0.0, 0.0, 0, "root")]
        self.steps = 0
        self.done = False

    @property
    def tree(self) -> list[TreeNode]:
        """Every node so far, ``tree[i].id == i``."""
        return list(self._tree)

    def step(self) -> list[TreeNode]:
        """Run one expansion and return the nodes it added (all with ``step == self.steps``)."""
        if self.done:
            raise RuntimeError("the beam search is done; call result()")
        width, t = self._width, self.steps + 1
        with torch.no_grad():
            log_probs, new_state = self._step_fn(self._tokens, self._state)
            lp = _check_log_probs(log_probs, len(self._ids))
            vocab = lp.shape[1]
            # float64 sums (lp is promoted exactly), so they equal Python's running sums
            top_sums, flat = torch.topk(torch.add(self._sums, lp).view(-1),
                                        min(2 * width, lp.numel()))
            top_lps = lp.take(flat).tolist()
        if not max(top_lps) <= 0:  # the early-stopping bound relies on it (nan ranks first)
            raise ValueError(f"step_fn must return log-probabilities (<= 0), got {max(top_lps)}")
        nodes, rows, tokens, sums, ids, prefixes = [], [], [], [], [], []
        next_id = len(self._tree)
        ranked = zip(flat.tolist(), top_sums.tolist(), top_lps, strict=True)
        for rank, (f, total, tok_lp) in enumerate(ranked):
            row, tok = divmod(f, vocab)
            status = "pruned"
            if tok == self._eos or t == self._max_len:
                if rank < width:
                    toks, lps = self._prefixes[row]
                    score = _normalise(total, t, self._length_penalty)
                    hyp = Hypothesis(toks + (tok,), score, lps + (tok_lp,), next_id)
                    status = "finished" if _admit(self._finished, hyp, width) else "pruned"
            elif len(rows) < width:
                status = "kept"
                toks, lps = self._prefixes[row]
                rows.append(row)
                tokens.append(tok)
                sums.append(total)
                ids.append(next_id)
                prefixes.append((toks + (tok,), lps + (tok_lp,)))
            nodes.append(TreeNode(next_id, self._ids[row], tok, tok_lp, total, t, status))
            next_id += 1
        self._tree.extend(nodes)
        self.steps = t
        self._ids, self._prefixes = ids, prefixes
        if rows:  # the next step sees only the kept hypotheses, in the new beam's order
            rows_tokens = torch.tensor([rows, tokens], dtype=torch.long, device=lp.device)
            self._state = select_state(new_state, rows_tokens[0])
            self._tokens = rows_tokens[1]
            self._sums = torch.tensor(sums, dtype=torch.float64, device=lp.device)[:, None]
        self.done = (not rows or t == self._max_len or (self._early_stopping and _cannot_improve(
            self._finished, width, max(sums), t, self._max_len, self._length_penalty)))
        return nodes

    def result(self) -> BeamResult:
        """The finished hypotheses so far (best first), the tree and the steps run."""
        return BeamResult(list(self._finished), self.tree, self.steps)

    def run(self) -> BeamResult:
        """Step until done and return the result."""
        while not self.done:
            self.step()
        return self.result()


def beam_search(step_fn: StepFn, state: State, bos: int, eos: int, beam_width: int,
                max_len: int, length_penalty: float = 1.0) -> BeamResult:
    """Batched beam search (see :class:`BeamSearch` for the exact rule), run to the end."""
    return BeamSearch(step_fn, state, bos, eos, beam_width, max_len, length_penalty).run()


def beam_search_loop(step_fn: StepFn, state: State, bos: int, eos: int, beam_width: int,
                     max_len: int, length_penalty: float = 1.0) -> BeamResult:
    """Unbatched beam search: one ``step_fn`` call per live hypothesis (K=1, its own state).

    Same rule, hypotheses and tree as :class:`BeamSearch` (up to ties, and float differences
    between batch sizes inside ``step_fn``). The benchmark's baseline, and an independent
    implementation for the tests.
    """
    _check_int("beam_width", beam_width, 1)
    _check_common(bos, eos, max_len, length_penalty)
    width, device = beam_width, _device_of(state)
    live = [(0.0, (), (), bos, state, 0)]  # (sum, tokens, log-probs, last token, state, node id)
    tree = [TreeNode(0, -1, bos, 0.0, 0.0, 0, "root")]
    finished: list[Hypothesis] = []
    with torch.no_grad():
        for t in range(1, max_len + 1):
            candidates = []
            for total, toks, lps, last, st, node_id in live:
                log_probs, new_st = step_fn(torch.tensor([last], device=device), st)
                row = _check_log_probs(log_probs, 1)[0].to(torch.float64)
                # a continuation in the global top 2W is in its own hypothesis's top 2W
                best, where = row.topk(min(2 * width, row.numel()))
                candidates += [(total + v, toks, lps, tok, v, new_st, node_id)
                               for v, tok in zip(best.tolist(), where.tolist(), strict=True)]
            candidates.sort(key=lambda c: c[0], reverse=True)
            live = []
            for rank, (total, toks, lps, tok, v, st, parent) in enumerate(candidates[:2 * width]):
                if not v <= 0:
                    raise ValueError(f"step_fn must return log-probabilities (<= 0), got {v}")
                status, node_id = "pruned", len(tree)
                if tok == eos or t == max_len:
                    hyp = Hypothesis(toks + (tok,), _normalise(total, t, length_penalty),
                                     lps + (v,), node_id)
                    if rank < width and _admit(finished, hyp, width):
                        status = "finished"
                elif len(live) < width:
                    status = "kept"
                    live.append((total, toks + (tok,), lps + (v,), tok, st, node_id))
                tree.append(TreeNode(node_id, parent, tok, v, total, t, status))
            if not live or _cannot_improve(finished, width, max(c[0] for c in live), t,
                                           max_len, length_penalty):
                break
    return BeamResult(finished, tree, t)


def exhaustive_search(step_fn: StepFn, state: State, bos: int, eos: int, max_len: int,
                      vocab_size: int, length_penalty: float = 1.0) -> list[Hypothesis]:
    """Every sequence (ending at eos or after max_len tokens), best first: the exact reference.

    Depth-first with one K=1 ``step_fn`` call per unfinished prefix, so only for small
    ``vocab_size ** max_len`` (at most 10**6)."""
    _check_common(bos, eos, max_len, length_penalty)
    _check_int("vocab_size", vocab_size, 1)
    if vocab_size**max_len > 10**6:
        raise ValueError(f"vocab_size ** max_len must be <= 10**6, got {vocab_size}**{max_len}")
    device = _device_of(state)
    found: list[Hypothesis] = []
    with torch.no_grad():
        stack = [(bos, state, (), (), 0.0)]  # (last token, state, tokens, log-probs, sum)
        while stack:
            last, st, toks, lps, total = stack.pop()
            log_probs, new_st = step_fn(torch.tensor([last], device=device), st)
            row = _check_log_probs(log_probs, 1, vocab_size)[0].tolist()  # exact in float64
            for tok in reversed(range(vocab_size)):  # so that token 0 is expanded first
                longer, lps_, total_ = toks + (tok,), lps + (row[tok],), total + row[tok]
                if tok == eos or len(longer) == max_len:
                    score = _normalise(total_, len(longer), length_penalty)
                    found.append(Hypothesis(longer, score, lps_))
                else:
                    stack.append((tok, new_st, longer, lps_, total_))
    return sorted(found, key=lambda h: h.score, reverse=True)
