"""Decoders against independent references: exhaustive enumeration, the unbatched loop, greedy.

The toy step functions use float64 tables drawn from a seed, so scores have no ties and every
decoder sees bit-identical log-probs whatever the batch size.
"""

from __future__ import annotations

import math
import time
from collections import Counter, namedtuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import core.decoding.search as decoding
from core.bench.beam import bench_beam
from core.decoding.search import (
    BeamSearch,
    beam_search,
    beam_search_loop,
    exhaustive_search,
    greedy,
    sample,
    select_state,
)
from core.decoding.tree import TreeNode, path_to, tree_layout

# --- toy step functions -----------------------------------------------------------------------


def table_step_fn(seed: int, vocab: int, max_len: int):
    """log p(token | last token, t) from a fixed table; state: t as LongTensor[K]."""
    gen = torch.Generator().manual_seed(seed)
    tables = torch.log_softmax(2 * torch.randn(max_len, vocab, vocab, generator=gen,
                                               dtype=torch.float64), dim=-1)

    def step_fn(tokens, t):
        return tables[t, tokens], t + 1

    return step_fn, torch.zeros(1, dtype=torch.long)


def prefix_step_fn(seed: int, vocab: int, buckets: int = 4099):
    """log p(token | whole prefix): the state is a running hash of the prefix, so a wrongly
    reordered state gives the log-probs of another prefix. The state nests a copy of the hash
    and the step count like (h, (c, memory)), and the step function checks they stay together."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.log_softmax(2 * torch.randn(buckets, vocab, generator=gen,
                                              dtype=torch.float64), dim=-1)

    def step_fn(tokens, state):
        h, (copy, t) = state
        assert torch.equal(copy[:, 0], h.double()) and t.shape == h.shape
        h = (h * 1_000_003 + tokens + 1) % (2**31 - 1)
        return table[h % buckets], (h, (h.double()[:, None], t + 1))

    zero = torch.zeros(1, dtype=torch.long)
    return step_fn, (zero, (zero.double()[:, None], zero))


def gru_step_fn(seed: int, vocab: int, hidden: int = 8):
    """A small random GRU language model in float64; state h: [K, H]."""
    gen = torch.Generator().manual_seed(seed)
    embed = torch.randn(vocab, hidden, generator=gen, dtype=torch.float64)
    cell = torch.nn.GRUCell(hidden, hidden).double()
    head = torch.nn.Linear(hidden, vocab).double()
    with torch.no_grad():
        for p in [*cell.parameters(), *head.parameters()]:
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))

    def step_fn(tokens, h):
        h = cell(embed[tokens], h)
        return torch.log_softmax(head(h), dim=-1), h

    return step_fn, torch.zeros(1, hidden, dtype=torch.float64)


MAKERS = {"table": lambda seed, v, n: table_step_fn(seed, v, n),
          "prefix": lambda seed, v, n: prefix_step_fn(seed, v),
          "gru": lambda seed, v, n: gru_step_fn(seed, v)}

# --- checks -------------------------------------------------------------------------------------


def assert_same(a, b):
    """Same token sequences in the same order, scores equal up to float noise."""
    assert [h.tokens for h in a] == [h.tokens for h in b]
    assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-9)


def check_tree(result, width, max_len):
    tree = result.tree
    assert tree[0] == TreeNode(0, -1, tree[0].token, 0.0, 0.0, 0, "root")
    per_step = Counter()
    for i, node in enumerate(tree[1:], start=1):
        parent = tree[node.parent]
        assert node.id == i and 0 <= node.parent < i
        assert parent.status in ("root", "kept") and node.step == parent.step + 1
        assert node.cum_log_prob == parent.cum_log_prob + node.log_prob
        assert node.status in ("kept", "pruned", "finished")
        per_step[node.step, node.status] += 1
        per_step[node.step] += 1
    for step in range(1, result.steps + 1):
        assert 1 <= per_step[step] <= 2 * width
        assert per_step[step, "kept"] <= width
    assert max(n.step for n in tree) == result.steps <= max_len


def check_hypotheses(result, eos, width, max_len, length_penalty, reference):
    hyps, tree = result.hypotheses, result.tree
    assert 1 <= len(hyps) <= width
    assert all(a.score >= b.score for a, b in zip(hyps, hyps[1:], strict=False))
    by_tokens = {h.tokens: h for h in reference}
    for hyp in hyps:
        assert 1 <= len(hyp.tokens) <= max_len and eos not in hyp.tokens[:-1]
        assert hyp.tokens[-1] == eos or len(hyp.tokens) == max_len
        exact = by_tokens[hyp.tokens]  # re-scored independently
        assert hyp.score == pytest.approx(exact.score, abs=1e-9)
        assert hyp.log_probs == pytest.approx(exact.log_probs, abs=1e-9)
        path = [tree[i] for i in path_to(tree, hyp.node_id)[1:]]
        assert tree[hyp.node_id].status == "finished"
        assert tuple(n.token for n in path) == hyp.tokens
        assert tuple(n.log_prob for n in path) == hyp.log_probs
        assert path[-1].cum_log_prob / len(path) ** length_penalty == pytest.approx(hyp.score, abs=1e-12)
    assert hyps[0].score <= reference[0].score + 1e-9


problems = st.fixed_dictionaries({
    "kind": st.sampled_from(["table", "prefix"]),
    "seed": st.integers(0, 2**31 - 1),
    "vocab": st.integers(2, 5),
    "max_len": st.integers(1, 4),
    "width": st.integers(1, 6),
    "length_penalty": st.sampled_from([0.0, 0.6, 1.0, 2.0, -0.5]),
    "eos": st.integers(0, 4),
    "bos": st.integers(0, 4),
})


def setup(p):
    vocab = p["vocab"]
    step_fn, state = MAKERS[p["kind"]](p["seed"], vocab, p["max_len"])
    return step_fn, state, p["bos"] % vocab, p["eos"] % vocab

# --- beam search --------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(problems)
def test_beam_search_invariants(p):
    step_fn, state, bos, eos = setup(p)
    width, max_len, lp = p["width"], p["max_len"], p["length_penalty"]
    reference = exhaustive_search(step_fn, state, bos, eos, max_len, p["vocab"], lp)
    result = beam_search(step_fn, state, bos, eos, width, max_len, lp)
    check_tree(result, width, max_len)
    check_hypotheses(result, eos, width, max_len, lp, reference)
    assert result == beam_search_loop(step_fn, state, bos, eos, width, max_len, lp)
    no_early_stop = BeamSearch(step_fn, state, bos, eos, width, max_len, lp,
                               early_stopping=False).run()
    assert no_early_stop.hypotheses == result.hypotheses  # the stopping bound is exact
    if width == 1 and lp == 0:  # with lp != 0 it may search past greedy's eos for a better score
        assert_same(result.hypotheses, greedy(step_fn, state, bos, eos, max_len, lp))


@settings(max_examples=30, deadline=None)
@given(problems)
def test_wide_enough_beam_is_exhaustive(p):
    step_fn, state, bos, eos = setup(p)
    max_len, lp = p["max_len"], p["length_penalty"]
    width = p["vocab"] ** max_len  # keeps every prefix and every ending
    result = beam_search(step_fn, state, bos, eos, width, max_len, lp)
    assert_same(result.hypotheses,
                exhaustive_search(step_fn, state, bos, eos, max_len, p["vocab"], lp))


@pytest.mark.parametrize("kind", ["table", "prefix", "gru"])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 0.6])
def test_best_hypothesis_matches_exhaustive(kind, length_penalty):
    vocab, max_len, eos, bos = 4, 4, 1, 0
    step_fn, state = MAKERS[kind](7, vocab, max_len)
    reference = exhaustive_search(step_fn, state, bos, eos, max_len, vocab, length_penalty)
    result = beam_search(step_fn, state, bos, eos, vocab**max_len, max_len, length_penalty)
    assert_same(result.hypotheses, reference)  # all 121 sequences, in the same order
    check_tree(result, vocab**max_len, max_len)
    check_hypotheses(result, eos, vocab**max_len, max_len, length_penalty, reference)


def test_wrong_state_reordering_is_detected(monkeypatch):
    """The prefix-hash step function must catch a decoder that forgets to reorder the state."""
    vocab, max_len, eos, bos, lp = 4, 4, 1, 0, 0.0
    step_fn, state = prefix_step_fn(3, vocab)
    reference = exhaustive_search(step_fn, state, bos, eos, max_len, vocab, lp)

    def first_rows(state, index):  # keeps the right number of rows, not the right ones
        return select_state(state, torch.arange(len(index)) % state[0].shape[0])

    monkeypatch.setattr(decoding, "select_state", first_rows)
    wrong = beam_search(step_fn, state, bos, eos, vocab**max_len, max_len, lp)
    assert [h.tokens for h in wrong.hypotheses] != [h.tokens for h in reference]


@pytest.mark.parametrize("kind", ["table", "prefix", "gru"])
def test_batched_equals_loop_and_width_one_equals_greedy(kind):
    step_fn, state = MAKERS[kind](11, 6, 6)
    for width in (1, 3, 5):
        batched = beam_search(step_fn, state, 0, 1, width, 6, 0.6)
        loop = beam_search_loop(step_fn, state, 0, 1, width, 6, 0.6)
        assert_same(batched.hypotheses, loop.hypotheses)
        assert [(n.id, n.parent, n.token, n.status) for n in batched.tree] == \
               [(n.id, n.parent, n.token, n.status) for n in loop.tree]
    width_one = beam_search(step_fn, state, 0, 1, 1, 6, 0.0).hypotheses
    assert_same(width_one, greedy(step_fn, state, 0, 1, 6, 0.0))


def test_stepping_adds_one_step_of_nodes_and_ends_like_beam_search():
    step_fn, state = prefix_step_fn(5, 5)
    search = BeamSearch(step_fn, state, 0, 1, 3, 6, 1.0)
    assert [n.status for n in search.tree] == ["root"] and not search.done
    while not search.done:
        before = len(search.tree)
        added = search.step()
        assert added and {n.step for n in added} == {search.steps}
        assert search.tree == search.tree[:before] + added
    assert search.result() == beam_search(step_fn, state, 0, 1, 3, 6, 1.0)
    with pytest.raises(RuntimeError, match="done"):
        search.step()


def test_early_stopping_skips_steps_without_changing_the_result():
    # eos is very likely from the start, so finished hypotheses soon beat every live one
    table = torch.log_softmax(torch.tensor([5.0, 0.0, -0.5], dtype=torch.float64), 0)

    def step_fn(tokens, state):
        return table.expand(len(tokens), 3), state

    # length_penalty 0: with > 0 the bound must allow for near-free continuations up to max_len
    result = beam_search(step_fn, None, 1, 0, 2, 20, 0.0)
    full = BeamSearch(step_fn, None, 1, 0, 2, 20, 0.0, early_stopping=False).run()
    assert result.steps < full.steps == 20
    assert result.hypotheses == full.hypotheses
    assert result.hypotheses[0].tokens == (0,)

# --- greedy and sampling ------------------------------------------------------------------------


def test_greedy_follows_the_argmax():
    step_fn, state = table_step_fn(2, 5, 7)
    (hyp,) = greedy(step_fn, state, 0, 1, 7, length_penalty=0.0)
    tokens, t, last, total = [], torch.zeros(1, dtype=torch.long), torch.tensor([0]), 0.0
    for _ in range(7):
        log_probs, t = step_fn(last, t)
        last = log_probs.argmax(1)
        tokens.append(int(last))
        total += float(log_probs[0, last])
        if tokens[-1] == 1:
            break
    assert hyp.tokens == tuple(tokens) and hyp.score == pytest.approx(total)
    assert hyp.node_id is None


def test_sampling_is_reproducible_and_low_temperature_or_top1_is_greedy():
    step_fn, state = gru_step_fn(4, 6)
    draws = [sample(step_fn, state, 0, 1, 8, generator=torch.Generator().manual_seed(9),
                    num_samples=5) for _ in range(2)]
    assert draws[0] == draws[1] and len(draws[0]) == 5
    assert all(a.score >= b.score for a, b in zip(draws[0], draws[0][1:], strict=False))
    best = greedy(step_fn, state, 0, 1, 8)
    gen = torch.Generator().manual_seed(1)
    assert_same(sample(step_fn, state, 0, 1, 8, top_k=1, generator=gen), best)
    assert_same(sample(step_fn, state, 0, 1, 8, temperature=1e-6, generator=gen), best)


def test_sampling_frequencies_match_the_model():
    step_fn, state = table_step_fn(6, 4, 1)
    probs = step_fn(torch.tensor([0]), state)[0][0].exp()
    hyps = sample(step_fn, state, 0, 1, 1, generator=torch.Generator().manual_seed(0),
                  num_samples=4000)
    counts = Counter(h.tokens[0] for h in hyps)
    freqs = torch.tensor([counts[v] / 4000 for v in range(4)], dtype=torch.float64)
    assert torch.allclose(freqs, probs, atol=0.03)


def test_top_k_only_draws_the_k_most_likely_tokens():
    step_fn, state = table_step_fn(8, 6, 5)
    hyps = sample(step_fn, state, 0, 1, 5, top_k=2, generator=torch.Generator().manual_seed(3),
                  num_samples=50)
    for hyp in hyps:
        last, t = torch.tensor([0]), state
        for tok in hyp.tokens:
            log_probs, t = step_fn(last, t)
            assert tok in log_probs[0].topk(2).indices.tolist()
            last = torch.tensor([tok])

# --- state, validation --------------------------------------------------------------------------


def test_select_state_keeps_the_nested_structure():
    Pair = namedtuple("Pair", "h c")
    h = torch.arange(6.0).reshape(3, 2)
    state = (Pair(h, h + 10), (None, torch.arange(3)))
    picked = select_state(state, torch.tensor([2, 0, 2]))
    assert isinstance(picked[0], Pair) and picked[1][0] is None
    assert torch.equal(picked[0].c, (h + 10)[[2, 0, 2]])
    assert torch.equal(picked[1][1], torch.tensor([2, 0, 2]))
    assert select_state(None, torch.tensor([0])) is None
    with pytest.raises(TypeError, match="dict"):
        select_state({"h": h}, torch.tensor([0]))


STEP, STATE = table_step_fn(0, 4, 3)


@pytest.mark.parametrize("call, message", [
    (lambda: beam_search(STEP, STATE, 0, 1, 0, 3), "beam_width must be an integer >= 1, got 0"),
    (lambda: beam_search(STEP, STATE, 0, 1, 2.5, 3), "beam_width must be an integer >= 1, got 2.5"),
    (lambda: beam_search(STEP, STATE, 0, 1, 2, 0), "max_len must be an integer >= 1, got 0"),
    (lambda: beam_search_loop(STEP, STATE, 0, 1, -1, 3), "beam_width must be .* got -1"),
    (lambda: greedy(STEP, STATE, 0, 1, -2), "max_len must be an integer >= 1, got -2"),
    (lambda: sample(STEP, STATE, 0, 1, 3, temperature=0), "temperature must be .* > 0, got 0"),
    (lambda: sample(STEP, STATE, 0, 1, 3, temperature=-1.5), "temperature .* got -1.5"),
    (lambda: sample(STEP, STATE, 0, 1, 3, top_k=0), "top_k must be an integer >= 1, got 0"),
    (lambda: sample(STEP, STATE, 0, 1, 3, num_samples=0), "num_samples .* >= 1, got 0"),
    (lambda: beam_search(STEP, STATE, 0, 1, 2, 3, math.nan), "length_penalty .* got nan"),
    (lambda: exhaustive_search(STEP, STATE, 0, 1, 3, 0), "vocab_size .* got 0"),
    (lambda: exhaustive_search(STEP, STATE, 0, 1, 30, 4), "<= 10\\*\\*6, got 4\\*\\*30"),
    (lambda: beam_search(STEP, STATE, 0, 1, True, 3), "beam_width .* got True"),
])
def test_bad_arguments_name_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_step_functions_are_reported():
    def wrong_shape(tokens, state):
        return torch.zeros(len(tokens) + 1, 3), state

    def not_log_probs(tokens, state):
        return torch.ones(len(tokens), 3), state

    with pytest.raises(ValueError, match=r"shape \(K, V\) with K=1, got \(2, 3\)"):
        beam_search(wrong_shape, None, 0, 1, 2, 3)
    with pytest.raises(ValueError, match="log-probabilities"):
        beam_search(not_log_probs, None, 0, 1, 2, 3)

# --- tree layout --------------------------------------------------------------------------------


def test_tree_layout_of_a_small_tree():
    def node(i, parent, step):
        return TreeNode(i, parent, 0, 0.0, 0.0, step, "root" if parent < 0 else "kept")

    #        0
    #      /   \
    #     1     2
    #    / \    |
    #   3   4   5
    tree = [node(0, -1, 0), node(1, 0, 1), node(2, 0, 1),
            node(3, 1, 2), node(4, 1, 2), node(5, 2, 2)]
    assert tree_layout(tree) == {3: (2.0, 0.0), 4: (2.0, 1.0), 5: (2.0, 2.0),
                                 1: (1.0, 0.5), 2: (1.0, 2.0), 0: (0.0, 1.0)}
    assert path_to(tree, 4) == [0, 1, 4]
    with pytest.raises(ValueError, match="node_id 9"):
        path_to(tree, 9)
    with pytest.raises(ValueError, match="parent 7"):
        tree_layout([*tree, node(6, 7, 3)])


def test_tree_layout_of_a_real_search_is_tidy_and_fast():
    step_fn, state = gru_step_fn(1, 20)
    tree = beam_search(step_fn, state, 0, 1, 8, 30, 1.0).tree
    assert len(tree) > 300
    elapsed = []
    for _ in range(5):  # best of 5: a busy machine can pause any single call
        start = time.perf_counter()
        layout = tree_layout(tree)
        elapsed.append(time.perf_counter() - start)
    assert min(elapsed) < 0.02  # about 0.4 ms for 481 nodes on a 2-core VM
    children = {n.id: [] for n in tree}
    for n in tree[1:]:
        children[n.parent].append(n.id)
    leaves = sorted(layout[i][1] for i in children if not children[i])
    assert leaves == [float(i) for i in range(len(leaves))]
    for n in tree:
        assert layout[n.id][0] == n.step
        kids = children[n.id]
        if kids:
            ys = [layout[k][1] for k in kids]
            assert ys == sorted(ys) and min(ys) <= layout[n.id][1] <= max(ys)

# --- benchmark ----------------------------------------------------------------------------------


def test_bench_beam_smoke():
    result = bench_beam(vocab_size=10, hidden_size=8, beam_width=3, max_len=5, repeats=1)
    assert set(result) == {"batched_s", "loop_s", "speedup", "same_hypotheses"}
    assert result["same_hypotheses"] is True and result["batched_s"] > 0


@pytest.mark.slow
def test_bench_beam_batching_pays_off():
    result = bench_beam(repeats=10)
    assert result["same_hypotheses"] is True
    # target is >= 5x on an idle machine; this guard only catches a batching regression (~1x)
    assert result["speedup"] > 2.0, result
