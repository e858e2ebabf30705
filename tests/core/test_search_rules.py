"""Rules of core.decoding.search that the reference comparisons leave open: sampling's default
length penalty, top_k=1 drawing no random numbers while top_k=2 samples from two tokens, and the
unbatched beam search's check that log-probs are <= 0 (0 allowed, positive refused); and the
exhaustive reference's default penalty, size limit and vocabulary check."""

from __future__ import annotations

import math

import pytest
import torch

from core.decoding.search import BeamSearch, beam_search_loop, exhaustive_search, sample

EOS = 0
LOGITS = torch.tensor([-1.0, 0.5, 0.3, -2.0])  # token 1 best, 2 close behind


def fixed(log_probs):
    """A step function returning the same log-probs row for every live hypothesis."""
    def step_fn(tokens, state):
        return log_probs.expand(len(tokens), -1).clone(), state
    return step_fn


def test_sampling_scores_by_the_mean_log_prob_unless_told_otherwise():
    lp = torch.log_softmax(LOGITS, 0)
    (hyp,) = sample(fixed(lp), None, bos=3, eos=EOS, max_len=4, top_k=1)
    assert hyp.tokens == (1, 1, 1, 1)
    assert hyp.score == pytest.approx(sum(hyp.log_probs) / 4, rel=1e-12)  # length_penalty 1
    assert hyp.score == pytest.approx(float(lp[1]), rel=1e-6)


def test_top_k_one_draws_no_random_numbers_and_two_samples_both_tokens():
    lp = torch.log_softmax(LOGITS, 0)
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    sample(fixed(lp), None, bos=3, eos=EOS, max_len=5, top_k=1, generator=generator, num_samples=3)
    assert torch.equal(generator.get_state(), before)
    hyps = sample(fixed(lp), None, bos=3, eos=EOS, max_len=20, top_k=2, generator=generator, num_samples=10)
    seen = {tok for h in hyps for tok in h.tokens}
    assert seen == {1, 2}  # P(2) = 0.45 within the top two: 200 draws all 1 has probability 1e-52


def test_the_unbatched_beam_search_allows_log_prob_zero_and_refuses_positive_ones():
    certain = torch.tensor([-math.inf, 0.0, -math.inf, -math.inf])  # token 1 with probability 1
    result = beam_search_loop(fixed(certain), None, bos=3, eos=EOS, beam_width=2, max_len=3)
    assert result.hypotheses[0].tokens == (1, 1, 1) and result.hypotheses[0].score == 0.0
    with pytest.raises(ValueError, match=r"^step_fn must return log-probabilities \(<= 0\), got 0\.5$"):
        beam_search_loop(fixed(torch.tensor([-1.0, 0.5, -2.0, -3.0])), None, bos=3, eos=EOS, beam_width=2, max_len=3)


class Reached(Exception):
    """Raised by a step function: the search got past its argument checks."""


def test_the_exhaustive_reference_checks_its_size_and_the_step_functions_vocabulary():
    lp = torch.log_softmax(LOGITS, 0)
    found = exhaustive_search(fixed(lp), None, bos=3, eos=EOS, max_len=2, vocab_size=4)
    assert len(found) == 1 + 3 * 4  # eos first, or any other token then anything
    assert all(h.score == pytest.approx(sum(h.log_probs) / len(h.tokens), rel=1e-12) for h in found)
    (only,) = exhaustive_search(fixed(torch.zeros(1)), None, bos=3, eos=EOS, max_len=3, vocab_size=1)
    assert only.tokens == (EOS,) and only.score == 0.0

    def reached(tokens, state):
        raise Reached

    with pytest.raises(Reached):  # 10**6 sequences is the limit, allowed
        exhaustive_search(reached, None, bos=3, eos=EOS, max_len=6, vocab_size=10)
    with pytest.raises(ValueError, match=r"^vocab_size \*\* max_len must be <= 10\*\*6, got 2\*\*20$"):
        exhaustive_search(reached, None, bos=3, eos=EOS, max_len=20, vocab_size=2)
    with pytest.raises(ValueError, match=r"^step_fn returned V=4, expected 5$"):
        exhaustive_search(fixed(lp), None, bos=3, eos=EOS, max_len=2, vocab_size=5)


def test_a_step_function_returning_no_tensor_is_refused_in_one_line_and_beams_score_by_the_mean():
    def as_list(tokens, state):
        return [[-0.1, -2.0]], state

    with pytest.raises(ValueError, match=r"^step_fn must return log_probs of shape \(K, V\) with K=1, got <class 'list'>$"):
        BeamSearch(as_list, None, bos=3, eos=EOS, beam_width=2, max_len=3).step()
    lp = torch.log_softmax(LOGITS, 0)
    result = BeamSearch(fixed(lp), None, bos=3, eos=EOS, beam_width=2, max_len=3).run()  # default penalty
    for hyp in result.hypotheses:
        assert hyp.score == pytest.approx(sum(hyp.log_probs) / len(hyp.tokens), rel=1e-12)


@pytest.mark.parametrize("bad, says", [
    (dict(bos=-1), r"^bos must be an integer >= 0, got -1$"),
    (dict(eos=-2), r"^eos must be an integer >= 0, got -2$"),
    (dict(length_penalty=math.nan), r"^length_penalty must be a finite number, got nan$"),
    (dict(temperature=0.0), r"^temperature must be a finite number > 0, got 0\.0$"),
])
def test_bad_arguments_are_refused_naming_the_field_and_what_is_allowed(bad, says):
    args = dict(bos=3, eos=EOS, max_len=3) | bad
    with pytest.raises(ValueError, match=says):
        sample(fixed(torch.log_softmax(LOGITS, 0)), None, **args)
