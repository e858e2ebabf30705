"""Teacher forcing, scheduled sampling and the bidirectional encoder of the encoder-decoder.

References: the schedules' closed forms (Bengio et al. 2015), greedy decoding (free running
must feed back exactly what greedy decoding feeds back), a hand-written decoder loop for mixed
teacher forcing, torch.nn's bidirectional modules for the encoder, and a per-example
teacher-forced pass for the held-out token accuracy.
"""

import math

import pytest
import torch

from core.config import ConfigError, Experiment
from core.models.recurrent import torch_reference
from core.models.seq2seq import Seq2Seq, both_directions
from core.names import BOS, EOS, HELDOUT_METRICS
from core.training.schedules import coin_generator, sigmoid_k, teacher_forcing_ratio
from core.training.trainer import EVAL_EVERY, Trainer
from tests.core.seq2seq_models import padded_source, random_model, small


def target_inputs(B=3, U=5, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.full((1, B), BOS), torch.randint(3, 7, (U - 1, B), generator=g)])


# ------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("r", [0.0, 0.3])
def test_schedules_follow_their_closed_forms(r):
    exp = Experiment(task="dates", teacher_forcing=r, steps=1000)
    constant = exp.replace(tf_schedule="constant")
    linear = exp.replace(tf_schedule="linear")
    sigmoid = exp.replace(tf_schedule="inverse-sigmoid")
    assert all(teacher_forcing_ratio(constant, i) == r for i in (0, 500, 5000))
    assert teacher_forcing_ratio(linear, 0) == 1.0
    assert teacher_forcing_ratio(linear, 250) == pytest.approx(1 - 0.25 * (1 - r))
    assert teacher_forcing_ratio(linear, 1000) == pytest.approx(r)
    assert teacher_forcing_ratio(linear, 4000) == pytest.approx(r)  # past the budget: stays
    k = sigmoid_k(1000)
    assert k * math.log(k) == pytest.approx(500)
    # Bengio et al.'s eps_i = k / (k + exp(i / k)), rescaled to end at r: midpoint at N / 2
    assert teacher_forcing_ratio(sigmoid, 0) == pytest.approx(r + (1 - r) * k / (k + 1))
    assert teacher_forcing_ratio(sigmoid, 500) == pytest.approx(r + (1 - r) / 2)
    assert teacher_forcing_ratio(sigmoid, 1000) == pytest.approx(r, abs=0.01)
    values = [teacher_forcing_ratio(sigmoid, i) for i in range(0, 1001, 50)]
    assert values == sorted(values, reverse=True)


def test_a_ratio_of_one_is_plain_teacher_forcing_whatever_the_schedule():
    exp = Experiment(task="dates", teacher_forcing=1.0, tf_schedule="linear")
    assert teacher_forcing_ratio(exp, 0) == teacher_forcing_ratio(exp, exp.steps // 2) == 1.0


def test_coin_generators_depend_on_seed_and_step_only():
    a = torch.rand(5, generator=coin_generator(3, 10))
    assert torch.equal(a, torch.rand(5, generator=coin_generator(3, 10)))
    assert not torch.equal(a, torch.rand(5, generator=coin_generator(3, 11)))
    assert not torch.equal(a, torch.rand(5, generator=coin_generator(4, 10)))


# -------------------------------------------------------------------- the model's forward
@pytest.mark.parametrize("attention", ["none", "additive", "dot"])
def test_free_running_feeds_back_what_greedy_decoding_feeds_back(attention):
    """teacher_forcing = 0: every input after bos is the previous argmax, so the argmaxes
    are greedy decoding's output (up to its first eos, where greedy stops)."""
    model = random_model(small(attention, "lstm", num_layers=2))
    src, lengths = padded_source()
    tgt_in = target_inputs(U=6)
    with torch.no_grad():
        logits, _ = model(src, lengths, tgt_in, teacher_forcing=0.0)
    free = logits.argmax(-1).T  # [B, U]
    greedy = model.greedy_batch(src, lengths, 6)
    for b in range(3):
        row = greedy[b].tolist()
        n = row.index(EOS) + 1 if EOS in row else len(row)
        assert free[b, :n].tolist() == row[:n]


@pytest.mark.parametrize("attention", ["none", "general"])
def test_mixed_teacher_forcing_equals_a_hand_written_decoder_loop(attention):
    model = random_model(small(attention, "gru"))
    src, lengths = padded_source()
    tgt_in = target_inputs(U=6)
    with torch.no_grad():
        logits, _ = model(src, lengths, tgt_in, 0.5, torch.Generator().manual_seed(9))
        coins = torch.rand(tgt_in.shape, generator=torch.Generator().manual_seed(9)) < 0.5
        assert 0 < int(coins[1:].sum()) < coins[1:].numel()  # a real mix
        for b in range(3):
            n = int(lengths[b])
            state, fed = model.encode(src[:n, b], n), BOS
            for t in range(tgt_in.shape[0]):
                step_logits, _, state = model.advance(torch.tensor([fed]), state)
                torch.testing.assert_close(step_logits[0], logits[t, b], atol=1e-5, rtol=1e-5)
                nxt = t + 1
                if nxt < tgt_in.shape[0]:
                    fed = int(tgt_in[nxt, b]) if coins[nxt, b] else int(step_logits[0].argmax())


def test_teacher_forcing_one_is_the_fused_pass_and_draws_nothing():
    model = random_model(small("dot", "lstm"))
    src, lengths = padded_source()
    tgt_in = target_inputs()
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    with torch.no_grad():
        a, wa = model(src, lengths, tgt_in)
        b, wb = model(src, lengths, tgt_in, 1.0, g)
    assert torch.equal(a, b) and torch.equal(wa, wb) and torch.equal(g.get_state(), state)


# --------------------------------------------------------------------------------- trainer
def test_trainer_records_the_ratio_and_held_out_exact_match_at_a_throttled_rate():
    exp = small("dot", "gru", teacher_forcing=0.0, tf_schedule="linear", steps=EVAL_EVERY + 10)
    tr = Trainer(exp)
    records = list(tr.run(exp.steps))
    ratios = [r.metrics["teacher_forcing"] for r in records]
    assert ratios[0] == 1.0 and ratios == sorted(ratios, reverse=True)
    assert ratios[-1] == pytest.approx(1 / exp.steps)
    evaluated = [r.step for r in records if HELDOUT_METRICS[0] in r.metrics]
    assert evaluated == [EVAL_EVERY, exp.steps]
    last = records[-1].metrics
    ev = tr.evaluate()
    assert [last[k] for k in HELDOUT_METRICS] == [ev["token_accuracy_teacher_forced"], ev["token_accuracy"],
                                                  ev["exact_match"]]
    again = Trainer(exp)
    assert [r.loss for r in again.run(exp.steps)] == [r.loss for r in records]
    assert "teacher_forcing" not in Trainer(small()).step().metrics  # ratio 1: nothing new


def test_sampled_training_resumes_exactly_from_a_session(tmp_path):
    from core.session.format import open_session, save_session

    exp = small("none", "lstm", teacher_forcing=0.2, tf_schedule="inverse-sigmoid", steps=12)
    straight = Trainer(exp)
    losses = [r.loss for r in straight.run(12)]
    first = Trainer(exp)
    for _ in first.run(5):
        pass
    save_session(first, tmp_path / "half.rnnx")
    resumed = open_session(tmp_path / "half.rnnx")
    assert [r.loss for r in resumed.run(7)] == losses[5:]


def test_held_out_teacher_forced_scores_against_one_example_at_a_time():
    """Token accuracy teacher-forced, counted one held-out example at a time; and exact match
    teacher-forced (every token right given the true prefix) equals greedy decoding's exact
    match, as it must: then greedy decoding is fed exactly the true tokens."""
    tr = Trainer(Experiment(task="reverse", seq_len=4, cell="gru", hidden_size=16, embed_size=8, attention="dot",
                            batch_size=32, lr=0.02, steps=100))
    for _ in tr.run(100):  # part-way: some outputs right, some not
        pass
    task, model = tr.task, tr.model.eval()
    right = tokens = exact = 0
    with torch.no_grad():
        for src, tgt in task.heldout:
            b = task.batch([(src, tgt)])
            logits, _ = model(b.src, b.lengths, b.tgt_in)
            hits = [p == t for p, t in zip(logits[:, 0].argmax(-1).tolist(), b.tgt_out[:, 0].tolist(), strict=True)]
            right, tokens, exact = right + sum(hits), tokens + len(hits), exact + all(hits)
    ev = task.evaluate(model)
    assert ev["token_accuracy_teacher_forced"] == pytest.approx(right / tokens)
    assert 0 < ev["exact_match"] < 1 and ev["exact_match"] == pytest.approx(exact / len(task.heldout))
    assert ev["token_accuracy"] <= ev["token_accuracy_teacher_forced"]


# ------------------------------------------------------------------- bidirectional encoder
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bidirectional_encoder_equals_torch_nn(cell):
    model = random_model(small(cell=cell, num_layers=2, bidirectional="on"))
    assert model.recurrent.bidirectional and model.recurrent.hidden_size == 4
    src, lengths = padded_source()
    st = model.encode_batch(src, lengths)
    ref = torch_reference(model.recurrent)
    assert isinstance(ref, torch.nn.RNNBase) and ref.bidirectional
    packed = torch.nn.utils.rnn.pack_padded_sequence(model.src_embed(src), lengths, enforce_sorted=False)
    out, state = ref(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=src.shape[0])
    torch.testing.assert_close(st.memory, out.transpose(0, 1), atol=1e-5, rtol=1e-5)
    h = state[0] if cell == "lstm" else state  # [2L, B, H/2]
    for layer in range(2):
        torch.testing.assert_close(st.hidden[:, layer], torch.cat([h[2 * layer], h[2 * layer + 1]], -1))
    if cell == "lstm":
        torch.testing.assert_close(st.cell, both_directions(state[1]).transpose(0, 1))
    assert "recurrent.weight_hh_l1_reverse" in model.state_dict()


def test_bidirectional_encoder_needs_an_even_hidden_size():
    with pytest.raises(ConfigError, match="hidden_size must be even for a bidirectional encoder.*got 7") as info:
        Seq2Seq(small(bidirectional="on").replace(hidden_size=7), 9, 7)
    assert info.value.field == "hidden_size"


def test_probe_record_carries_both_directions():
    tr = Trainer(small("dot", "lstm", bidirectional="on").replace(seq_len=12))
    probe = tr.step(probe=True).probe
    assert probe.bidirectional and probe.hidden[0].shape == (12, 4) == probe.backward.hidden[0].shape
    assert set(probe.backward.gates[0]) == {"input", "forget", "cell", "output"}
    assert probe.backward.cell[0].shape == (12, 4) and probe.backward.unmasked_hidden[0].shape == (12, 4)
    # the backward direction, run by hand on the probe's real steps, ends where it starts
    batch = tr.probe_batch()
    n = int(batch.lengths[0])
    with torch.no_grad():
        _, _, trace = tr.model.recurrent(tr.model.src_embed(batch.src[:n]))
    torch.testing.assert_close(torch.from_numpy(probe.backward.hidden[0][:n]), trace.reverse.hidden[0][:, 0])
    torch.testing.assert_close(torch.from_numpy(probe.hidden[0][:n]), trace.hidden[0][:, 0])
    assert not Trainer(small("dot", "lstm")).probe().bidirectional
