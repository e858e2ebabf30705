"""The encoder-decoder against a reference written from the module docstring's equations.

The reference runs one example at a time on its real source tokens only (no padding, so no
masking to get right), with torch.nn recurrent modules built from the experiment (not from
the model's own stacks) holding the model's weights, and the attention, combine and readout
layers written out as the papers' formulas. It is compared with the batched, padded model
over cells, layers, attention kinds and both encoder directions: logits, attention weights,
scheduled sampling's fed-back tokens, the loss and its token accuracy.
"""

from types import SimpleNamespace

import pytest
import torch

from core.models.seq2seq import Seq2Seq, both_directions
from core.names import BOS, EOS, PAD
from tests.core.seq2seq_models import padded_source, random_model, small

# cell, attention, layers, bidirectional, nonlinearity: every attention kind with every cell,
# one and two layers, both encoder directions (relu reaches the rnn cells only)
CONFIGS = [
    ("rnn", "none", 1, "off", "relu"), ("rnn", "additive", 2, "on", "relu"), ("rnn", "dot", 2, "off", "tanh"),
    ("rnn", "general", 1, "on", "relu"), ("lstm", "none", 2, "on", "relu"), ("lstm", "additive", 2, "off", "tanh"),
    ("lstm", "dot", 2, "on", "tanh"), ("lstm", "general", 1, "off", "relu"), ("gru", "none", 1, "off", "tanh"),
    ("gru", "additive", 1, "on", "tanh"), ("gru", "dot", 1, "off", "relu"), ("gru", "general", 2, "on", "tanh"),
]
V_SRC, V_TGT = 9, 7


def experiment(cell, attention, layers, bidirectional, nonlinearity):
    return small(attention, cell, num_layers=layers, bidirectional=bidirectional, nonlinearity=nonlinearity)


def torch_stack(exp, module, input_size: int, hidden_size: int, bidirectional: bool):
    """A torch.nn stack built from the experiment, holding ``module``'s weights."""
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[exp.cell]
    kwargs = {"nonlinearity": exp.nonlinearity} if exp.cell == "rnn" else {}
    ref = cls(input_size, hidden_size, exp.num_layers, bidirectional=bidirectional, **kwargs)
    ref.load_state_dict(module.state_dict())
    return ref


def reference(model: Seq2Seq, src, lengths, tgt_in, coins=None):
    """logits [U, B, V], weights [U, B, S] (None without attention) and the tokens fed [U, B],
    one example at a time from the equations. ``coins`` [U, B] bool: True feeds the true token
    (scheduled sampling), False the previous argmax; None: always the true token."""
    exp, P = model.exp, {k: v.detach() for k, v in model.named_parameters()}
    E, H, L, kind = exp.embed_size, exp.hidden_size, exp.num_layers, exp.attention
    bi, lstm = exp.bidirectional == "on", exp.cell == "lstm"
    encoder = torch_stack(exp, model.recurrent, E, H // 2 if bi else H, bi)
    decoder = torch_stack(exp, model.decoder, E + (H if kind == "additive" else 0), H, False)
    S, B = src.shape
    U = tgt_in.shape[0]
    logits = torch.zeros(U, B, V_TGT)
    weights = torch.zeros(U, B, S)
    fed = torch.zeros(U, B, dtype=torch.long)

    def join(h):  # [L * directions, 1, h] -> [L, 1, H]: each layer's directions side by side
        return torch.stack([torch.cat([h[2 * i], h[2 * i + 1]], -1) for i in range(L)]) if bi else h

    def attend(q, memory):  # q [H], memory [n, H] -> weights [n], context [H]
        if kind == "additive":  # v^T tanh(W_q q + W_k h_j)
            e = torch.stack([P["attention.v.weight"][0] @ torch.tanh(P["attention.query.weight"] @ q
                                                                     + P["attention.key.weight"] @ h)
                             for h in memory])
        elif kind == "general":  # q^T W_k h_j
            e = torch.stack([q @ (P["attention.key.weight"] @ h) for h in memory])
        else:  # q^T h_j
            e = torch.stack([q @ h for h in memory])
        a = torch.exp(e - e.max())
        a = a / a.sum()
        return a, (a[:, None] * memory).sum(0)

    with torch.no_grad():
        for b in range(B):
            n = int(lengths[b])
            memory, state = encoder(P["src_embed.weight"][src[:n, b]].unsqueeze(1))
            memory = memory[:, 0]  # [n, H]
            state = (join(state[0]), join(state[1])) if lstm else join(state)
            previous = None
            for t in range(U):
                token = tgt_in[t, b] if coins is None or t == 0 or coins[t, b] else previous
                fed[t, b] = token
                x = P["tgt_embed.weight"][token]
                if kind == "additive":  # attend with s_{t-1}, feed c_t in
                    a, c = attend((state[0] if lstm else state)[-1, 0], memory)
                    x = torch.cat([x, c])
                out, state = decoder(x.view(1, 1, -1), state)
                s = out[0, 0]
                if kind in ("dot", "general"):  # attend with s_t
                    a, c = attend(s, memory)
                if kind != "none":
                    s = torch.tanh(P["combine.weight"] @ torch.cat([s, c]) + P["combine.bias"])
                    weights[t, b, :n] = a
                logits[t, b] = P["readout.weight"] @ s + P["readout.bias"]
                previous = logits[t, b].argmax()
    return logits, (weights if kind != "none" else None), fed


def target(B=3, U=5, seed=2):
    """tgt_in [U, B] (bos then tokens) and tgt_out [U, B] (tokens then eos, PAD after)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, V_TGT, (U, B), generator=g)
    tgt_in = torch.cat([torch.full((1, B), BOS), tokens[:-1]])
    tgt_out = tokens.clone()
    tgt_out[-1] = EOS
    tgt_out[-1, 1] = PAD  # example 1 ends one token earlier
    tgt_out[-2, 1] = EOS
    return tgt_in, tgt_out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c)))
def test_forward_loss_and_sampling_equal_the_reference(config):
    model = random_model(experiment(*config), V_SRC, V_TGT)
    assert model.encoder is model.recurrent
    src, lengths = padded_source(V_SRC)
    tgt_in, tgt_out = target()
    want, want_w, _ = reference(model, src, lengths, tgt_in)
    g, global_state = torch.Generator().manual_seed(1), torch.get_rng_state()
    g_state = g.get_state()
    with torch.no_grad():
        got, got_w = model(src, lengths, tgt_in)
        again, _ = model(src, lengths, tgt_in, 1.0, g)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # plain teacher forcing flips no coins: neither generator moves, and the result is the same
    assert torch.equal(g.get_state(), g_state) and torch.equal(torch.get_rng_state(), global_state)
    assert torch.equal(again, got)
    if want_w is None:
        assert got_w is None
    else:
        torch.testing.assert_close(got_w, want_w, atol=1e-5, rtol=1e-5)  # exactly 0 past each length
    assert torch.equal(model.teacher_forced_batch(src, lengths, tgt_in), want.argmax(-1))

    # the loss: cross-entropy per real target token (eos included, PAD not), token accuracy
    batch = SimpleNamespace(src=src, lengths=lengths, tgt_in=tgt_in, tgt_out=tgt_out)
    loss, metrics = model.loss(batch, detach_every=2)
    assert (loss.item(), metrics) == expected_loss(want, tgt_out)
    loss.backward()  # the loss is differentiable down to the encoder
    assert model.src_embed.weight.grad.abs().sum() > 0

    # scheduled sampling: coins from the generator, the previous argmax where they come up False
    for p in (0.5, 0.0):
        coins = torch.rand(tgt_in.shape, generator=torch.Generator().manual_seed(5)) < p
        want, want_w, fed = reference(model, src, lengths, tgt_in, coins)
        assert p == 0.0 or not torch.equal(fed, tgt_in)
        with torch.no_grad():
            got, got_w = model(src, lengths, tgt_in, p, torch.Generator().manual_seed(5))
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        if want_w is None:
            assert got_w is None
        else:
            torch.testing.assert_close(got_w, want_w, atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            loss, metrics = model.loss(batch, 0, p, torch.Generator().manual_seed(5))
        assert (loss.item(), metrics) == expected_loss(want, tgt_out)


def expected_loss(logits, tgt_out):
    """(mean cross-entropy over the real target tokens, {"accuracy": share of argmax hits})."""
    real = [(t, b) for t in range(tgt_out.shape[0]) for b in range(tgt_out.shape[1]) if tgt_out[t, b] != PAD]
    nll = [-torch.log_softmax(logits[t, b], -1)[tgt_out[t, b]] for t, b in real]
    hits = sum(int(logits[t, b].argmax() == tgt_out[t, b]) for t, b in real)
    return pytest.approx(float(sum(nll) / len(nll)), abs=1e-4), {"accuracy": pytest.approx(hits / len(real))}


def test_the_token_accuracy_of_a_single_target_token():
    model = random_model(small("none", "gru"), V_SRC, V_TGT)
    src, lengths = padded_source(V_SRC, lengths=(4,))
    tgt_in = torch.tensor([[BOS]])
    with torch.no_grad():
        best = int(model(src, lengths, tgt_in)[0].argmax(-1))
    for tgt_out, accuracy in ((best, 1.0), ((best + 1) % V_TGT or 1, 0.0)):
        batch = SimpleNamespace(src=src, lengths=lengths, tgt_in=tgt_in, tgt_out=torch.tensor([[tgt_out]]))
        assert model.loss(batch)[1] == {"accuracy": accuracy}


def test_padding_embeds_as_zero_on_both_sides():
    """Id 0 is padding: the encoder reads zeros where it is told not to skip padding
    (``trace(masking=False)``), as the sequence tasks' zero padding."""
    model = Seq2Seq(small("dot", "gru"), V_SRC, V_TGT)
    pad = torch.tensor([PAD])
    assert torch.all(model.src_embed(pad) == 0) and torch.all(model.tgt_embed(pad) == 0)
    assert torch.all(model.src_embed(torch.tensor([4])) != 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_scheduled_sampling_on_the_gpu_equals_the_cpu():
    """The coins are drawn on the CPU (from a CPU generator) and compared on the model's device;
    lengths (given or not) and the source mask live there too."""
    model = random_model(small("additive", "lstm"), V_SRC, V_TGT)
    src, lengths = padded_source(V_SRC)
    tgt_in, _ = target()
    with torch.no_grad():
        want, _ = model(src, lengths, tgt_in, 0.5, torch.Generator().manual_seed(5))
        whole, _ = model(src, None, tgt_in)
        model.cuda()
        got, _ = model(src.cuda(), lengths.cuda(), tgt_in.cuda(), 0.5, torch.Generator().manual_seed(5))
        got_whole, _ = model(src.cuda(), None, tgt_in.cuda())
    torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_whole.cpu(), whole, atol=1e-4, rtol=1e-4)


def test_scheduled_sampling_draws_from_the_global_generator_without_one():
    model = random_model(small("dot", "gru"), V_SRC, V_TGT)
    src, lengths = padded_source(V_SRC)
    tgt_in, _ = target()
    torch.manual_seed(11)
    with torch.no_grad():
        got, _ = model(src, lengths, tgt_in, 0.5)
    coins = torch.rand(tgt_in.shape, generator=torch.Generator().manual_seed(11)) < 0.5
    want, _, _ = reference(model, src, lengths, tgt_in, coins)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_an_unpadded_batch_needs_no_lengths():
    model = random_model(small("general", "lstm", num_layers=2, bidirectional="on"), V_SRC, V_TGT)
    src, lengths = padded_source(V_SRC, lengths=(6, 6))
    tgt_in, _ = target(B=2)
    with torch.no_grad():
        got, got_w = model(src, None, tgt_in)
    want, want_w, _ = reference(model, src, lengths, tgt_in)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_w, want_w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", CONFIGS[4:8], ids=lambda c: "-".join(map(str, c)))
def test_greedy_batch_feeds_back_its_argmax_and_pads_after_eos(config):
    """Against the reference run free (every coin False), cut after each example's first eos."""
    model = random_model(experiment(*config), V_SRC, V_TGT, seed=4)
    with torch.no_grad():  # make eos likely so that some rows stop early
        model.readout.bias[EOS] += 4.0
    src, lengths = padded_source(V_SRC)
    U = 6
    tgt_in = torch.full((U, 3), BOS)
    want, _, _ = reference(model, src, lengths, tgt_in, torch.zeros(U, 3, dtype=torch.bool))
    expected = want.argmax(-1).T.tolist()  # [B, U]
    got = model.greedy_batch(src, lengths, U).tolist()
    rows = []
    for row in expected:
        n = row.index(EOS) + 1 if EOS in row else U
        rows.append(row[:n] + [PAD] * (U - n))
    width = max((row.index(EOS) + 1 if EOS in row else U) for row in expected)
    assert got == [row[:width] for row in rows]
    assert any(EOS in row for row in rows)


def test_encode_state_attention_for_and_refusals():
    model = random_model(small("additive", "lstm", num_layers=2, bidirectional="on"), V_SRC, V_TGT)
    src, lengths = padded_source(V_SRC)
    one = model.encode(src[:, 1])  # a length defaults to every position
    batch = model.encode_batch(src[:, 1:2], torch.tensor([6]))
    for a, b in zip(one, batch, strict=True):
        torch.testing.assert_close(a, b.detach(), atol=1e-6, rtol=1e-6)
    st = model.encode(src[:3, 1], torch.tensor(3))
    assert st.hidden.shape == st.cell.shape == (1, 2, 8) and st.memory.shape == st.keys.shape == (1, 3, 8)
    assert st.mask.tolist() == [[True, True, True]]
    for bad in (0, 7):
        with pytest.raises(ValueError, match=f"length must lie in 1..6; got {bad}"):
            model.encode(src[:, 0], bad)
    empty = model.attention_for(src[:, 1], 3, [])
    assert empty.shape == (0, 6) and empty.dtype == "float32"
    rows = model.attention_for(src[:, 1], 3, [4, EOS])
    _, want_w, _ = reference(model, src[:, 1:2], torch.tensor([3]), torch.tensor([[BOS], [4]]))
    assert rows.dtype == "float32" and rows.shape == (2, 6)
    torch.testing.assert_close(torch.from_numpy(rows), want_w[:, 0])


def test_both_directions_puts_each_layers_directions_side_by_side():
    state = torch.arange(4 * 3 * 2).reshape(4, 3, 2)  # [2L, B, H/2]: l0 fwd, l0 bwd, l1 fwd, l1 bwd
    joined = both_directions(state)
    assert joined.shape == (2, 3, 4)
    for layer in range(2):
        for b in range(3):
            assert joined[layer, b].tolist() == state[2 * layer, b].tolist() + state[2 * layer + 1, b].tolist()


def test_trace_masks_padding_unless_told_not_to():
    model = random_model(small("dot", "gru"), V_SRC, V_TGT)
    src, lengths = padded_source(V_SRC)
    batch = SimpleNamespace(src=src, lengths=lengths)
    x = model.src_embed(src).detach()
    for masking, expected in ((None, lengths), (True, lengths), (False, None)):
        got, want = model.trace(batch, masking), model.recurrent.probe(x, lengths=expected)
        for a, b in zip(got.hidden, want.hidden, strict=True):
            assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    masked, unmasked = model.trace(batch), model.trace(batch, False)
    assert not all(torch.equal(torch.as_tensor(a), torch.as_tensor(b))
                   for a, b in zip(masked.hidden, unmasked.hidden, strict=True))
