"""Beam search against a reference written here from its definition, and the exhaustive oracle
at lengths where early stopping matters.

``beam_search_loop`` shares its admission, stopping bound and score helpers with the batched
search, so comparing the two checks batching, not the rule. The reference below shares
nothing with core.decoding: it expands every live hypothesis over the whole vocabulary,
sorts all continuations, and applies the rule ``core.decoding.search.BeamSearch`` documents
(the top ``2 * width`` are considered; an ending one, eos or at ``max_len``, is finished if
its rank is below ``width``; the rest are kept while fewer than ``width`` are) with no early
stopping at all. The batched search stops early when no live hypothesis can still enter the
finished list, a bound that must be exact: a bound that forgets long continuations under a
length penalty (the mutation that survived the old suite) returns other hypotheses here.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from core.decoding.search import BeamSearch, beam_search, exhaustive_search, greedy
from tests.core.test_decoding import gru_step_fn, prefix_step_fn, table_step_fn

LENGTH_PENALTIES = (0.0, 0.6, 1.0, 2.0)


def textbook_beam(step_fn, state, bos, eos, width, max_len, length_penalty):
    """[(score, tokens)] best first, at most ``width``: the rule, run to the end."""
    beam = [((), 0.0, state)]  # (tokens, sum of log-probs, model state)
    finished = []
    for t in range(1, max_len + 1):
        continuations = []
        for tokens, total, st in beam:
            log_probs, new_st = step_fn(torch.tensor([tokens[-1] if tokens else bos]), st)
            for token, log_prob in enumerate(log_probs[0].tolist()):
                continuations.append((total + log_prob, tokens + (token,), new_st))
        continuations.sort(key=lambda c: c[0], reverse=True)
        beam = []
        for rank, (total, tokens, st) in enumerate(continuations[:2 * width]):
            if tokens[-1] == eos or t == max_len:
                if rank < width:
                    finished.append((total / t**length_penalty, tokens))
            elif len(beam) < width:
                beam.append((tokens, total, st))
        if not beam:
            break
    finished.sort(key=lambda f: f[0], reverse=True)
    return finished[:width]


def all_sequences(step_fn, state, bos, eos, vocab, max_len, length_penalty):
    """Every sequence scored by brute force over itertools.product (no decoder involved)."""
    scored = {}
    for n in range(1, max_len + 1):
        for tokens in itertools.product(range(vocab), repeat=n):
            if eos in tokens[:-1] or (n < max_len and tokens[-1] != eos):
                continue
            st, last, total = state, bos, 0.0
            for token in tokens:
                log_probs, st = step_fn(torch.tensor([last]), st)
                total += float(log_probs[0, token])
                last = token
            scored[tokens] = total / n**length_penalty
    return sorted(scored.items(), key=lambda item: item[1], reverse=True)


MAKERS = {"table": table_step_fn, "prefix": lambda seed, vocab, max_len: prefix_step_fn(seed, vocab)}


def problems(seeds):
    """Every kind, vocab 3-5, max_len 5-7, width 1-3 and length penalty, for these seeds."""
    for seed, kind, vocab, max_len, width, lp in itertools.product(
            seeds, MAKERS, (3, 4, 5), (5, 6, 7), (1, 2, 3), LENGTH_PENALTIES):
        eos = seed % vocab
        yield kind, seed, vocab, max_len, width, lp, (eos + 1) % vocab, eos


def test_the_reference_is_exhaustive_when_the_beam_holds_every_sequence():
    for seed, lp in itertools.product(range(2), LENGTH_PENALTIES):
        step_fn, state = table_step_fn(seed, 3, 6)
        exact = all_sequences(step_fn, state, 0, 1, 3, 6, lp)
        got = textbook_beam(step_fn, state, 0, 1, len(exact), 6, lp)
        assert [tokens for _, tokens in got] == [tokens for tokens, _ in exact]


def test_batched_beam_search_equals_the_textbook_rule_on_648_searches():
    """Measured: the bound without its max_len end returns other hypotheses in 49 of 2,160
    such searches (seeds 0-9), 23 of these 648."""
    differ = []
    for kind, seed, vocab, max_len, width, lp, bos, eos in problems(range(3)):
        step_fn, state = MAKERS[kind](seed, vocab, max_len)
        got = beam_search(step_fn, state, bos, eos, width, max_len, lp).hypotheses
        want = textbook_beam(step_fn, state, bos, eos, width, max_len, lp)
        if [h.tokens for h in got] != [tokens for _, tokens in want]:
            differ.append((kind, seed, vocab, max_len, width, lp))
            continue
        assert [h.score for h in got] == pytest.approx([score for score, _ in want], abs=1e-12)
    assert not differ, f"{len(differ)} searches differ from the rule, e.g. {differ[:3]}"


@pytest.mark.parametrize("length_penalty", LENGTH_PENALTIES)
def test_early_stopping_never_changes_a_gru_language_models_beam(length_penalty):
    for seed, width in itertools.product(range(4), (1, 2, 4)):
        step_fn, state = gru_step_fn(seed, 5)
        early = BeamSearch(step_fn, state, 0, 1, width, 7, length_penalty).run()
        full = BeamSearch(step_fn, state, 0, 1, width, 7, length_penalty, early_stopping=False).run()
        assert early.hypotheses == full.hypotheses
        want = textbook_beam(step_fn, state, 0, 1, width, 7, length_penalty)
        assert [h.tokens for h in early.hypotheses] == [tokens for _, tokens in want]


@pytest.mark.parametrize(("vocab", "max_len"), [(2, 7), (3, 6), (3, 7)])
@pytest.mark.parametrize("length_penalty", LENGTH_PENALTIES)
def test_exhaustive_oracle_at_lengths_where_the_stopping_bound_matters(vocab, max_len, length_penalty):
    """A beam as wide as the number of sequences keeps them all: it must list exactly what
    brute force over itertools.product finds, in the same order; exhaustive_search too."""
    for seed in range(2):
        step_fn, state = prefix_step_fn(seed, vocab)
        exact = all_sequences(step_fn, state, 0, 1, vocab, max_len, length_penalty)
        search = exhaustive_search(step_fn, state, 0, 1, max_len, vocab, length_penalty)
        assert [h.tokens for h in search] == [tokens for tokens, _ in exact]
        wide = beam_search(step_fn, state, 0, 1, len(exact), max_len, length_penalty).hypotheses
        assert [h.tokens for h in wide] == [tokens for tokens, _ in exact]
        assert [h.score for h in wide] == pytest.approx([score for _, score in exact], abs=1e-12)
        for width in (1, 2, 3):  # a narrow beam never beats the optimum, and ranks what it finds
            narrow = beam_search(step_fn, state, 0, 1, width, max_len, length_penalty).hypotheses
            assert narrow[0].score <= exact[0][1] + 1e-12
            assert [h.score for h in narrow] == pytest.approx([dict(exact)[h.tokens] for h in narrow], abs=1e-12)


def test_negative_length_penalties_where_the_bound_is_at_the_short_end():
    """A negative penalty favours short endings: the bound's maximum is one token on
    (length + 1). Measured: a bound from length + 2 returns other hypotheses in 9 of these 192."""
    differ = []
    for seed, kind, vocab, max_len, width, lp in itertools.product(
            range(6), MAKERS, (2, 3), (5, 7), (2, 3), (-1.0, -2.0)):
        eos = seed % vocab
        step_fn, state = MAKERS[kind](seed, vocab, max_len)
        got = beam_search(step_fn, state, (eos + 1) % vocab, eos, width, max_len, lp).hypotheses
        want = textbook_beam(step_fn, state, (eos + 1) % vocab, eos, width, max_len, lp)
        if [h.tokens for h in got] != [tokens for _, tokens in want]:
            differ.append((kind, seed, vocab, max_len, width, lp))
    assert not differ, f"{len(differ)} searches differ from the rule, e.g. {differ[:3]}"


def test_the_finished_list_admits_only_strictly_better_hypotheses_after_equal_ones():
    """The rule's admission (``_admit``): best first, at most ``width``; a newcomer must be
    strictly better than the worst member to displace it, and goes after members it ties."""
    from core.decoding.search import _admit
    from core.decoding.tree import Hypothesis

    def hyp(score, name):
        return Hypothesis((name,), score, (score,))

    finished = [hyp(-1.0, 1), hyp(-2.0, 2)]
    assert not _admit(finished, hyp(-2.0, 3), 2)  # ties the worst: stays out
    assert [h.tokens for h in finished] == [(1,), (2,)]
    assert _admit(finished, hyp(-1.0, 4), 2)  # ties the best: in, after it; the worst goes
    assert [h.tokens for h in finished] == [(1,), (4,)]
    assert _admit(finished, hyp(-0.5, 5), 3) and [h.tokens for h in finished] == [(5,), (1,), (4,)]


def test_the_search_stops_when_a_live_hypothesis_can_at_best_tie():
    """eos and the other token are equally likely: after step 1 the finished eos and the live
    prefix have the same score, and a tie cannot enter the finished list."""
    half = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))

    def step_fn(tokens, state):
        return half.expand(len(tokens), 2), state

    result = beam_search(step_fn, None, 1, 0, 1, 6, 0.0)
    assert result.steps == 1 and result.hypotheses[0].tokens in ((0,), (1,))


def test_a_certain_token_is_a_log_probability_of_zero():
    certain = torch.tensor([0.0, -math.inf, -math.inf], dtype=torch.float64)  # log p = [0, -inf, -inf]

    def step_fn(tokens, state):
        return certain.expand(len(tokens), 3), state

    (hyp,) = beam_search(step_fn, None, 1, 0, 1, 4, 1.0).hypotheses
    assert hyp.tokens == (0,) and hyp.score == 0.0


def test_greedy_scores_by_the_length_normalised_sum_by_default():
    step_fn, state = table_step_fn(2, 5, 7)
    (hyp,) = greedy(step_fn, state, 0, 1, 7)
    assert hyp.score == pytest.approx(sum(hyp.log_probs) / len(hyp.tokens), abs=1e-12)



def test_a_vocabulary_of_eos_alone_ends_after_one_step():
    """Every continuation ends: nothing is kept, so the search is done before max_len."""
    def step_fn(tokens, state):
        return torch.zeros(len(tokens), 1, dtype=torch.float64), state

    result = beam_search(step_fn, None, 0, 0, 3, 5, 1.0)
    assert result.steps == 1 and [h.tokens for h in result.hypotheses] == [(0,)]
