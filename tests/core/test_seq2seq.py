"""Encoder-decoder: attention against hand-written formulas, masking, the encoder against
torch.nn, the decoding step against the teacher-forced pass, beam search against exhaustive
search, decode_text's input handling and tree, and the trainer's contract."""

import copy
import math

import numpy as np
import pytest
import torch

from core.decoding.search import beam_search, exhaustive_search, greedy
from core.decoding.text import DecodeInputError, DecodeResult, attention_for_node, decode_text
from core.decoding.tree import path_to
from core.errors import UserError
from core.models.recurrent import torch_reference
from core.models.seq2seq import Attention
from core.names import BOS, EOS, PAD
from core.presets import load_preset
from core.training.trainer import Trainer
from tests.core.seq2seq_models import attention_offsets, padded_source, random_model, small
from tests.outcomes import more, outcome, train

KINDS = ("additive", "dot", "general")



# ------------------------------------------------------------------------------- attention
@pytest.mark.parametrize("kind", KINDS)
def test_attention_weights_are_zero_at_padding_and_rows_sum_to_one(kind):
    torch.manual_seed(0)
    att = Attention(kind, 4)
    memory = torch.randn(3, 5, 4) * 5
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    memory[~mask] = 100.0  # would dominate any score if it leaked
    context, weights = att(torch.randn(3, 2, 4) * 5, att.keys(memory), memory, mask)
    assert weights.shape == (3, 2, 5) and context.shape == (3, 2, 4)
    assert torch.all(weights[~mask[:, None, :].expand_as(weights)] == 0.0)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 2), atol=1e-6)
    assert torch.allclose(weights[2, :, 0], torch.ones(2))
    assert torch.allclose(context, weights @ torch.where(mask[..., None], memory, 0.0), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_attention_scores_match_the_papers_formulas(kind):
    torch.manual_seed(1)
    H = 3
    att = Attention(kind, H)
    q, h = torch.randn(2, 2, H), torch.randn(2, 4, H)
    with torch.no_grad():
        got = att.scores(q, att.keys(h))
    # plain Python floats from here: an independent evaluation of the formulas
    qs, hs = q.tolist(), h.tolist()
    W = {name: p.detach().tolist() for name, p in att.named_parameters()}
    want = torch.zeros(2, 2, 4)
    for b in range(2):
        for i in range(2):
            s_, r_ = qs[b][i], range(H)
            for j in range(4):
                hj = hs[b][j]
                if kind == "dot":  # Luong: s . h_j
                    e = sum(s_[k] * hj[k] for k in r_)
                elif kind == "general":  # Luong: s^T W_a h_j
                    Wa = W["key.weight"]
                    e = sum(s_[r] * Wa[r][c] * hj[c] for r in r_ for c in r_)
                else:  # Bahdanau: v_a^T tanh(W_a s + U_a h_j)
                    Wq, Wk, v = W["query.weight"], W["key.weight"], W["v.weight"][0]
                    e = sum(v[r] * math.tanh(sum(Wq[r][c] * s_[c] + Wk[r][c] * hj[c] for c in r_)) for r in r_)
                want[b, i, j] = e
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="attention must be one of additive, dot, general; got 'none'"):
        Attention("none", H)


# --------------------------------------------------------------------------------- encoder
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_encoder_equals_torch_nn_with_the_same_weights(cell):
    model = random_model(small(cell=cell, num_layers=2))
    src, lengths = padded_source()
    st = model.encode_batch(src, lengths)
    ref = torch_reference(model.recurrent)
    packed = torch.nn.utils.rnn.pack_padded_sequence(model.src_embed(src), lengths, enforce_sorted=False)
    out, state = ref(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=src.shape[0])
    h = state[0] if cell == "lstm" else state
    assert torch.allclose(st.memory, out.transpose(0, 1), atol=1e-5)
    assert torch.allclose(st.hidden, h.transpose(0, 1), atol=1e-5)
    assert torch.equal(st.mask, src.T != PAD)
    names = set(model.state_dict())
    assert {"recurrent.weight_ih_l1", "decoder.weight_hh_l0", "src_embed.weight", "readout.bias"} <= names


# ------------------------------------------------------------------- step_fn vs teacher forcing
@pytest.mark.parametrize("attention", ["none", *KINDS])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_fn_log_probs_equal_the_teacher_forced_pass(attention, cell):
    model = random_model(small(attention, cell, num_layers=2))
    src, lengths = padded_source()
    g = torch.Generator().manual_seed(2)
    tgt_in = torch.cat([torch.full((1, 3), BOS), torch.randint(3, 7, (4, 3), generator=g)])
    with torch.no_grad():
        logits, weights = model(src, lengths, tgt_in)
        forced = torch.log_softmax(logits, -1)
    for b in range(3):  # one source at a time, unpadded, as decode_text runs it
        n = int(lengths[b])
        state = model.encode(src[:n, b], n)
        for t in range(tgt_in.shape[0]):
            log_probs, state = model.step_fn(tgt_in[t, b:b + 1], state)
            assert torch.allclose(log_probs[0], forced[t, b], atol=1e-5), (b, t)
        if attention == "none":
            assert weights is None and model.attention_for(src[:n, b], n, [4, 5]) is None
        else:
            rows = model.attention_for(src[:n, b], n, tgt_in[1:, b].tolist() + [EOS])
            assert rows.shape == (5, n)
            assert np.allclose(rows, weights[:, b, :n].numpy(), atol=1e-5)
            assert torch.all(weights[:, b, n:] == 0)


def test_greedy_batch_equals_the_decoders_greedy():
    model = random_model(small("dot", "lstm"), V_tgt=7)
    src, lengths = padded_source()
    batch = model.greedy_batch(src, lengths, 6)
    for b in range(3):
        n = int(lengths[b])
        hyp = greedy(model.step_fn, model.encode(src[:n, b], n), BOS, EOS, 6)[0]
        row = batch[b].tolist()
        assert row[:len(hyp.tokens)] == list(hyp.tokens)
        assert all(t == PAD for t in row[len(hyp.tokens):])


@pytest.mark.parametrize("attention", ["none", "additive", "general"])
def test_beam_search_on_the_model_finds_the_exhaustive_optimum(attention):
    model = random_model(small(attention, "gru"), V_tgt=6, seed=3)
    src, lengths = padded_source(lengths=(5,))
    state = model.encode(src[:5, 0], 5)
    for lp in (0.0, 1.0):
        best = exhaustive_search(model.step_fn, state, BOS, EOS, 3, 6, lp)[:4]
        # width 36 keeps every prefix of 2 tokens: the beam is exact at max_len 3
        found = beam_search(model.step_fn, state, BOS, EOS, 36, 3, lp).hypotheses[:4]
        assert [h.tokens for h in found] == [h.tokens for h in best]
        assert [h.score for h in found] == pytest.approx([h.score for h in best], abs=1e-5)  # K=36 vs K=1 float noise
    one = beam_search(model.step_fn, state, BOS, EOS, 1, 5, 0.0).hypotheses[0]
    assert one.tokens == greedy(model.step_fn, state, BOS, EOS, 5, 0.0)[0].tokens


# ------------------------------------------------------------------------------ decode_text
@pytest.fixture(scope="module")
def trainer():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    tr = Trainer(small("additive", "gru").replace(seq_len=8))
    for _ in range(5):
        tr.step()
    torch.set_num_threads(before)
    return tr


def test_decode_text_tree_and_hypotheses_are_consistent(trainer):
    result = decode_text(trainer, "abcde", beam=3, length_penalty=1.0)
    assert isinstance(result, DecodeResult) and result.notice is None
    assert result.source == "abcde" and result.source_tokens == tuple("abcde")
    tree = result.tree
    assert [n.id for n in tree] == list(range(len(tree))) and tree[0].status == "root"
    scores = [h.score for h in result.hypotheses]
    assert scores == sorted(scores, reverse=True) and len(result.hypotheses) == 3
    for hyp in result.hypotheses:
        path = path_to(tree, hyp.node_id)
        assert tuple(tree[i].token for i in path[1:]) == hyp.ids
        assert tree[hyp.node_id].status == "finished"
        assert tree[hyp.node_id].cum_log_prob == pytest.approx(sum(hyp.log_probs))
        assert hyp.score == pytest.approx(sum(hyp.log_probs) / len(hyp.ids))
        assert hyp.tokens == tuple(result.token_texts[i] for i in hyp.ids)
        assert hyp.text == trainer.task.tgt_vocab.decode(hyp.ids)
    for node in tree[1:]:
        assert node.cum_log_prob == pytest.approx(tree[node.parent].cum_log_prob + node.log_prob)
    best = result.hypotheses[0]
    assert result.attention.shape == (len(best.ids), 5)
    assert np.allclose(result.attention.sum(1), 1.0, atol=1e-5)
    assert result.greedy.node_id is None and result.greedy.score <= best.score + 1e-9
    along = attention_for_node(trainer, result, best.node_id)
    assert np.allclose(along, result.attention)
    inner = tree[path_to(tree, best.node_id)[2]]
    assert attention_for_node(trainer, result, inner.id).shape == (2, 5)


def test_decode_text_input_handling(trainer):
    for empty in ("", "   "):
        with pytest.raises(DecodeInputError, match="input is empty") as info:
            decode_text(trainer, empty)
        assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    result = decode_text(trainer, "aBc!B")
    assert result.notice == "unknown characters 'B', '!' read as <unk>"
    assert result.source_tokens == ("a", "<unk>", "c", "<unk>", "<unk>")
    result = decode_text(trainer, "abcdefghijkl")
    assert result.notice.startswith("input truncated to 8 characters")
    assert result.source == "abcdefgh" and result.attention.shape[1] == 8
    for kwargs, message in [({"beam": 0}, "beam must be an integer from 1 to 64; got 0"),
                            ({"max_len": 0}, "max_len must be an integer from 1 to 500; got 0"),
                            ({"length_penalty": math.nan}, "length_penalty must be a finite number; got nan")]:
        with pytest.raises(DecodeInputError, match=message):
            decode_text(trainer, "abc", **kwargs)
    model_only = decode_text(trainer.model, "abc", task=trainer.task, beam=2)
    assert model_only.hypotheses[0].ids == decode_text(trainer, "abc", beam=2).hypotheses[0].ids


def test_no_attention_result_has_no_attention():
    tr = Trainer(small("none", "lstm"))
    result = decode_text(tr, "abc", beam=2)
    assert result.attention is None and result.hypotheses


# --------------------------------------------------------------------------- trainer contract
def test_trainer_records_and_evaluation_for_seq2seq():
    exp = small("dot", "lstm", num_layers=2).replace(seq_len=12)
    tr = Trainer(exp)
    record = tr.step(probe=True, gradients=True, spectrum=True)
    assert "accuracy" in record.metrics and math.isfinite(record.loss)
    assert record.gradients is None and not hasattr(tr.model, "loss_from_outputs")
    probe = record.probe
    assert probe.T == 12 and probe.labels == (*tr.task.probe_text, "", "", "")
    assert probe.hidden[0].shape == (12, 8) and set(probe.gates[0]) == {"input", "forget", "cell", "output"}
    assert probe.unmasked_hidden is not None  # the probe is padded to T
    assert len(record.spectrum.singular_values) == 2
    ev = tr.evaluate()
    assert set(ev) == {"exact_match", "token_accuracy", "token_accuracy_teacher_forced"}  # values: test_evaluate_*
    again = Trainer(exp)
    again.step()
    assert again.history.column("loss")[0] == tr.history.column("loss")[0]


@pytest.mark.parametrize("wrong_every", [0, 3])
def test_evaluate_scores_an_oracle_that_answers_from_the_held_out_table(wrong_every):
    """evaluate() against a model that answers from the held-out table (its own reference),
    perfect or with the first token of every ``wrong_every``-th answer changed."""
    task = Trainer(small("none", "gru")).task
    answers = {src: tgt for src, tgt in task.heldout}
    order = {src: i for i, (src, _) in enumerate(task.heldout)}

    def answer(text: str) -> list[int]:
        ids = [*task.tgt_vocab.encode(answers[text]), EOS]
        if wrong_every and order[text] % wrong_every == 0:
            ids[0] = task.tgt_vocab.encode("0" if answers[text][0] != "0" else "1")[0]
        return ids

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def greedy_batch(self, src, lengths, max_len):
            rows = []
            for b in range(src.shape[1]):
                ids = answer("".join(task.src_vocab.itos[i] for i in src[:lengths[b], b]))
                rows.append(ids + [PAD] * (max_len - len(ids)))
            return torch.tensor(rows)

        def teacher_forced_batch(self, src, lengths, tgt_in):  # its own answer whatever the prefix
            rows = [answer("".join(task.src_vocab.itos[i] for i in src[:lengths[b], b])) for b in range(src.shape[1])]
            return torch.tensor([row + [PAD] * (tgt_in.shape[0] - len(row)) for row in rows]).T

    n = len(task.heldout)
    wrong = len(range(0, n, wrong_every)) if wrong_every else 0
    tokens = sum(len(tgt) + 1 for _, tgt in task.heldout)  # eos counts
    assert task.evaluate(Oracle()) == pytest.approx({"exact_match": (n - wrong) / n,
                                                     "token_accuracy": (tokens - wrong) / tokens,
                                                     "token_accuracy_teacher_forced": (tokens - wrong) / tokens})


# ------------------------------------------------------------------ presets (slow: training)
DATE_BUCKETS = (12, 20)  # source length 1-12, 13-20, 21-30 characters
LONG_DATES = "exact_match_len_21-30"


def held_out(trainer: Trainer, buckets=DATE_BUCKETS) -> dict[str, float]:
    return trainer.task.evaluate(trainer.model, by_length=buckets)


@pytest.fixture(scope="module")
def dates_runs():
    """dates-attention and dates-noattention trained for their budgets, with held-out results
    along the way, and a copy of dates-attention's model at step 150: the beam-vs-greedy
    preset is exactly that run stopped there (about 60 s on one thread)."""
    exp, light = (load_preset(n).experiment for n in ("dates-attention", "beam-vs-greedy"))
    assert light.replace(steps=exp.steps) == exp
    attention, _ = train(exp, light.steps)
    runs = {"beam-vs-greedy": copy.deepcopy(attention.model), "attention_at": {light.steps: held_out(attention)}}
    for step in (300, exp.steps):
        more(attention, step - attention.step_count)
        runs["attention_at"][step] = held_out(attention)
    runs["dates-attention"] = attention
    runs["dates-noattention"], _ = train(load_preset("dates-noattention").experiment)
    return runs


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.timeout(1200)  # trains minutes of CPU; a busy machine takes longer
def test_dates_attention_preset_reaches_high_exact_match(dates_runs):
    """Measured over seeds 0-1, 1 thread: held-out exact match 0.61-0.72 at step 150,
    0.97-0.985 at step 300 and 0.9975-1.0 at the end, at least 0.9946 in every length bucket."""
    results = {step: outcome(f"dates-attention/at_{step}", r) for step, r in dates_runs["attention_at"].items()}
    end = results[1000]
    assert results[300]["exact_match"] >= 0.8, results[300]
    assert end["exact_match"] >= 0.95, end
    assert min(v for k, v in end.items() if k.startswith("exact_match_len")) >= 0.9, end
    tr = dates_runs["dates-attention"]
    assert tr.evaluate()["exact_match"] == end["exact_match"]


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.timeout(1200)  # trains minutes of CPU; a busy machine takes longer
def test_dates_without_attention_is_far_behind_after_the_same_steps(dates_runs):
    """Without attention the whole date must pass through the encoder's final state; after
    the same 1000 steps it is far behind, how far depends much on the seed. Measured, 1
    thread, seeds 0-4: held-out exact match 0.015-0.56 (0.015, 0.56, 0.50, 0.31, 0.03), on
    inputs of 21-30 characters 0.0-0.59, against 0.9975-1.0 with attention (seeds 0-1): a
    gap of at least 0.41; token accuracy 0.80-0.92."""
    with_ = dates_runs["attention_at"][1000]
    without = outcome("dates-noattention/at_1000", held_out(dates_runs["dates-noattention"]))
    assert without[LONG_DATES] <= with_[LONG_DATES] - 0.25, (with_, without)
    assert without["exact_match"] <= with_["exact_match"] - 0.25, (with_, without)
    assert without["token_accuracy"] >= 0.6, without


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.timeout(1200)  # trains minutes of CPU; a busy machine takes longer
def test_beam_vs_greedy_preset_beam_search_fixes_more_of_greedys_dates_than_it_breaks(dates_runs):
    """The beam-vs-greedy preset on 300 held-out dates. Measured over seeds 0-4, 1 thread:
    beam and greedy differ on 14-25, beam fixes 9-15 of greedy's errors and breaks 1-4 of its
    right answers (fixes minus breaks: 7-13). "October 23, 1951" is the
    description's example only with seed 0 (greedy 1951-01-23, beam 1951-10-23); seeds 1-3
    get it right both ways, seed 4 wrong both ways: it is logged, not asserted."""
    model, task = dates_runs["beam-vs-greedy"], dates_runs["dates-attention"].task
    fixes = breaks = differ = 0
    pairs = task.heldout[:300]
    for source, target in pairs:
        result = decode_text(model, source, beam=4, length_penalty=1.0, task=task)
        best, greedy_ = result.hypotheses[0], result.greedy
        differ += best.text != greedy_.text
        fixes += best.text == target != greedy_.text
        breaks += greedy_.text == target != best.text
    outcome("beam-vs-greedy/held_out_300", {"differ": differ, "fixes": fixes, "breaks": breaks})
    result = decode_text(model, "October 23, 1951", beam=4, length_penalty=1.0, task=task)
    outcome("beam-vs-greedy/october", {"greedy_right": result.greedy.text == "1951-10-23",
                                        "beam_right": result.hypotheses[0].text == "1951-10-23",
                                        "margin": result.hypotheses[0].score - result.greedy.score})
    assert fixes >= breaks + 4, (fixes, breaks, differ)


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.timeout(1200)  # trains minutes of CPU; a busy machine takes longer
def test_reversal_without_attention_degrades_with_length():
    """The classic curve (Bahdanau et al. 2014, fig. 2), on reverse-attention: without
    attention, exact match falls from short to long strings; with attention it holds.
    Measured over seeds 0-1, 1 thread, after the 1500 steps: without attention 0.95-0.975 on
    3-6 letters, 0.37-0.40 on 7-11, 0.0-0.007 on 12-16; with attention 0.965-0.973 overall
    (0.958-0.975 already at step 500) and 0.93-0.94 on 12-16; the most attended position is
    one right of the copied letter for 0.887-0.894 of the outputs, on it for 0.10."""
    buckets = (6, 11)  # 3-6, 7-11, 12-16 letters
    exp = load_preset("reverse-attention").experiment
    results = {}
    for attention in ("dot", "none"):
        tr, _ = train(exp.replace(attention=attention), 500)
        for step in (500, 1000, exp.steps):
            more(tr, step - tr.step_count)
            results[attention, step] = outcome(f"reverse-attention/{attention}/at_{step}", held_out(tr, buckets))
        if attention == "dot":
            # The description: the anti-diagonal sits one position right of the copied letter.
            offsets = outcome("reverse-attention/attention_offset", attention_offsets(tr))
    short, long = "exact_match_len_1-6", "exact_match_len_12-16"
    none, dot = results["none", exp.steps], results["dot", exp.steps]
    assert none[short] >= 0.8 and none[long] <= 0.1, none
    assert dot["exact_match"] >= 0.88 and dot[long] >= 0.8, dot
    assert offsets.get(1, 0) >= 0.7 and offsets.get(0, 0) <= 0.25, offsets


