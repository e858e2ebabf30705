"""The names the user sees, defined once: cell kinds, gates, special tokens, choices.

Plain Python, no torch: the window, the training process, the engine and the files all
read these, so a name is spelled the same in the UI, the CLI, saved files and the docs.
Orders are torch.nn's (gate blocks of ``weight_hh_l{k}``: lstm i, f, g, o; gru r, z, n).
"""

from __future__ import annotations

CELL_KINDS = ("rnn", "lstm", "gru")
NONLINEARITIES = ("tanh", "relu")

# Gate names per cell kind, in the order of torch.nn's stacked weight blocks.
GATES: dict[str, tuple[str, ...]] = {
    "rnn": (),
    "lstm": ("input", "forget", "cell", "output"),
    "gru": ("reset", "update", "new"),
}
GATE_SYMBOLS = {"input": "i", "forget": "f", "cell": "g", "output": "o",
                "reset": "r", "update": "z", "new": "n"}
# Gates squashed by tanh (signed); the others are sigmoids in [0, 1].
TANH_GATES = frozenset({"cell", "new"})
# The square block of a gated cell's W_hh that plays the part of an RNN's W_hh (the candidate).
CANDIDATE_GATE = {"lstm": "cell", "gru": "new"}

# Special tokens of every vocabulary (character-level text tasks): ids 0-3.
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(len(SPECIALS))

ATTENTION_KINDS = ("none", "additive", "dot", "general")
INIT_SCHEMES = ("default", "orthogonal", "identity", "spectral")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
# Teacher forcing in seq2seq training (core.training.schedules): how the ratio moves with the step.
TF_SCHEDULES = ("constant", "linear", "inverse-sigmoid")
# Held-out scores of a translation model, as StepRecord metrics: token accuracy teacher-forced
# (each token predicted from the true prefix) and free running (greedy decoding, its own outputs
# fed back, compared position by position), and exact match, which is the same both ways.
HELDOUT_METRICS = ("heldout_tokens_teacher_forced", "heldout_tokens_free_running", "heldout_exact_match")
