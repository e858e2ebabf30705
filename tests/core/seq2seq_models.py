"""Small encoder-decoders the seq2seq tests share: tiny experiments, random models with sharp
attention, padded sources, and where a trained reversal model attends."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import torch

from core.config import Experiment
from core.models.seq2seq import Seq2Seq
from core.names import EOS, PAD


def small(attention="additive", cell="gru", **kw) -> Experiment:
    return Experiment(task="reverse", seq_len=6, cell=cell, hidden_size=8, embed_size=5,
                      attention=attention, batch_size=8, lr=0.01, **kw)


def random_model(exp: Experiment, V_src=9, V_tgt=7, seed=0) -> Seq2Seq:
    torch.manual_seed(seed)
    model = Seq2Seq(exp, V_src, V_tgt)
    with torch.no_grad():  # larger weights: peakier distributions, sharper attention
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


def padded_source(V=9, S=6, lengths=(6, 3, 1), seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (S, len(lengths)), generator=g)
    lengths = torch.tensor(lengths)
    src[torch.arange(S)[:, None] >= lengths[None]] = PAD
    return src, lengths


def attention_offsets(trainer, strings: int = 100) -> dict[int, float]:
    """Share of reversal outputs whose most attended source position is k right of the letter
    they copy (teacher-forced on random strings)."""
    rng, model, task = random.Random(1), trainer.model, trainer.task
    counts: Counter[int] = Counter()
    model.eval()
    with torch.no_grad():
        for _ in range(strings):
            n = rng.randint(3, 16)
            text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
            src = torch.tensor(task.src_vocab.encode(text)).unsqueeze(1)
            weights = np.asarray(model.attention_for(src, n, (*task.tgt_vocab.encode(text[::-1]), EOS)))
            counts.update(int(weights[j].argmax()) - (n - 1 - j) for j in range(n))
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}
