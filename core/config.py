"""Experiment configuration: one frozen, validated dataclass, described by FIELDS.

Every run is reproducible from (Experiment, seed). ``FIELDS`` is the single source of
truth for allowed values: validation, the GUI's widgets and the CLI's messages read it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from core.names import (
    ATTENTION_KINDS,
    CELL_KINDS,
    INIT_SCHEMES,
    NONLINEARITIES,
    OPTIMIZERS,
    TF_SCHEDULES,
)


def shown(value: Any, limit: int = 40) -> str:
    """repr of a value for a message, shortened so a huge value cannot flood it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(ValueError):
    """An experiment field has a value outside what is allowed. ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Spec:
    """Allowed values of one field: a numeric range (lo..hi inclusive) or choices."""

    label: str
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    text: bool = False  # free text (a path, column names): a string of one line

    def describe(self) -> str:
        if self.text:
            return f"text of one line, at most {MAX_TEXT} characters (empty = not used)"
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        return f"from {_bound(self.lo)} to {_bound(self.hi)}"


def _bound(x: float) -> str:
    """A range end as typed: 1000000 and 2147483647 in full (not 1e+06), 1e-06 short."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


MAX_TEXT = 4096  # longest text field (a path or a list of column names)

TASKS = ("adding", "copy", "sine", "parity", "charlm", "padding", "reverse", "sort", "dates",
         "series", "pairs", "classify", "inputs")
SEQ2SEQ_TASKS = ("reverse", "sort", "dates", "pairs")
# Tasks on the user's own file (``data``); charlm reads the user's text when ``data`` is set.
DATA_TASKS = ("charlm", "series", "pairs", "classify")
# Tasks that exist only with a user's file or model (no preset can ship them).
USER_ONLY_TASKS = ("series", "pairs", "classify", "inputs")

FIELDS: dict[str, Spec] = {
    "task": Spec("Task", "What the network learns", choices=TASKS),
    "cell": Spec("Cell", "Recurrent cell kind", choices=CELL_KINDS),
    "nonlinearity": Spec("Nonlinearity", "RNN activation (rnn cells only)", choices=NONLINEARITIES),
    "hidden_size": Spec("Hidden size", "Units per layer", 1, 4096),
    "num_layers": Spec("Layers", "Stacked recurrent layers", 1, 8),
    "init": Spec("Initialisation", "Recurrent weight initialisation",
                 choices=INIT_SCHEMES),
    "spectral_radius": Spec("Spectral radius", "Scale of W_hh for identity/spectral init", 0.0, 10.0),
    "forget_bias": Spec("Forget-gate bias", "LSTM: b_if + b_hf of every unit at initialisation (1: Gers et al. "
                        "2000, Jozefowicz et al. 2015); 0 = torch's random biases, whose sum has mean 0",
                        -10.0, 10.0),
    "optimizer": Spec("Optimizer", "Update rule", choices=OPTIMIZERS),
    "lr": Spec("Learning rate", "Optimizer step size", 1e-6, 10.0),
    "batch_size": Spec("Batch size", "Sequences per step", 1, 1024),
    "seq_len": Spec("Sequence length", "Time steps T (the maximum length for variable-length tasks)", 1, 2000),
    "clip": Spec("Clip norm", "Clip the total gradient norm to this value (0 = off)", 0.0, 1e6),
    "tbptt": Spec("TBPTT chunk", "Truncated BPTT: detach the state every k steps (0 = full BPTT)", 0, 2000),
    "padding": Spec("Padding", "Where zero padding goes in variable-length batches", choices=("post", "pre")),
    "truncation": Spec("Truncation", "Which end of an over-long sequence is kept", choices=("head", "tail")),
    "masking": Spec("Masking", "Skip padded steps so they do not change the state", choices=("on", "off")),
    "attention": Spec("Attention", "Encoder-decoder attention (translation tasks): additive = "
                      "Bahdanau-style (scores from the previous decoder state, context fed to the "
                      "decoder; one-directional encoder, Luong's output layer); dot, general = Luong",
                      choices=ATTENTION_KINDS),
    "embed_size": Spec("Embedding size", "Token embedding size (translation tasks)", 1, 1024),
    "bidirectional": Spec("Bidirectional encoder", "Translation: the encoder reads the source both ways, "
                          "hidden_size/2 units each way (Schuster & Paliwal 1997)", choices=("off", "on")),
    "teacher_forcing": Spec("Teacher forcing", "Translation: the chance that training feeds the decoder the "
                            "true previous token rather than its own (1 = always, 0 = free running)", 0.0, 1.0),
    "tf_schedule": Spec("Forcing schedule", "Translation: constant = the ratio throughout; linear and "
                        "inverse-sigmoid (scheduled sampling, Bengio et al. 2015) go from 1 at step 0 "
                        "to the ratio at the end of the budget", choices=TF_SCHEDULES),
    "steps": Spec("Steps", "Training budget (optimiser updates)", 1, 1_000_000),
    "seed": Spec("Seed", "Random seed: same seed, same numbers", 0, 2**31 - 1),
    "device": Spec("Device", "Where tensors live. A GPU pays once the arithmetic outweighs its "
                   "~2-4 ms of kernel launches a step: measured (H200 against one CPU thread, LSTM, "
                   "T 50) 1.2-2x at hidden x batch near 2,000 (64 x 32), 5-40x at 128-256 x 32-128, "
                   "about 100x at 512 x 128; the presets (hidden 32-128) train no faster on it",
                   choices=("cpu", "cuda")),
    "data": Spec("Data file", "Your own data: a .txt text (charlm), a .csv series (series), a .tsv of "
                 "source TAB target pairs (pairs) or of text TAB label lines (classify); empty = built-in",
                 text=True),
    "columns": Spec("Input columns", "Series: comma-separated CSV columns fed to the network "
                    "(empty = every numeric column but a time column)", text=True),
    "target": Spec("Target columns", "Series: comma-separated columns whose next value is predicted "
                   "(empty = the input columns)", text=True),
    "tokens": Spec("Tokens", "Pairs and classify: split text into characters or words",
                   choices=("char", "word")),
    "vocab": Spec("Vocabulary", "Text: a vocabulary file (JSON list, or {token: id}) that maps your text "
                  "to the model's inputs (empty = built from the data)", text=True),
    "probe": Spec("Probe input", "What the panels show: text through the vocabulary, or numbers "
                  "(rows split by ';', values by ',', or a .csv file of rows); empty = the task's own probe",
                  text=True),
    "bias": Spec("Bias", "Recurrent layers have bias vectors (off only for models opened without them)",
                 choices=("on", "off")),
    "embedding": Spec("Embedding", "Text tasks: a learned token embedding of embed_size before the "
                      "recurrent layers (off = one-hot inputs)", choices=("off", "on")),
}

_INT_FIELDS = {"hidden_size", "num_layers", "batch_size", "seq_len", "tbptt", "embed_size", "steps", "seed"}


@dataclass(frozen=True)
class Experiment:
    """A complete, valid experiment. Construct with keywords; invalid values raise ConfigError."""

    task: str = "adding"
    cell: str = "lstm"
    nonlinearity: str = "tanh"
    hidden_size: int = 32
    num_layers: int = 1
    init: str = "default"
    spectral_radius: float = 0.9
    forget_bias: float = 0.0
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 32
    seq_len: int = 50
    clip: float = 0.0
    tbptt: int = 0
    padding: str = "post"
    truncation: str = "tail"
    masking: str = "on"
    attention: str = "additive"
    embed_size: int = 32
    bidirectional: str = "off"
    teacher_forcing: float = 1.0
    tf_schedule: str = "constant"
    steps: int = 2000
    seed: int = 0
    device: str = "cpu"
    data: str = ""
    columns: str = ""
    target: str = ""
    tokens: str = "char"
    vocab: str = ""
    probe: str = ""
    bias: str = "on"
    embedding: str = "off"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            validate_field(f.name, getattr(self, f.name))

    def replace(self, **changes: Any) -> Experiment:
        """A copy with some fields changed (validated; unknown names raise ConfigError)."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(name, f"unknown experiment field {name!r}; known: {', '.join(FIELDS)}")
        return dataclasses.replace(self, **{k: coerce(k, v) for k, v in changes.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        if not isinstance(data, dict):
            raise ConfigError("experiment", f"experiment must be a table of fields; got {type(data).__name__}")
        return cls().replace(**data)

    @property
    def is_seq2seq(self) -> bool:
        return self.task in SEQ2SEQ_TASKS

    @property
    def column_list(self) -> tuple[str, ...]:
        """``columns`` split at commas (empty names dropped)."""
        return split_names(self.columns)

    @property
    def target_list(self) -> tuple[str, ...]:
        return split_names(self.target)


def split_names(text: str) -> tuple[str, ...]:
    """'a, b,c' -> ('a', 'b', 'c')."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def coerce(name: str, value: Any) -> Any:
    """Convert text or numbers into the field's type, or raise ConfigError naming it."""
    spec = FIELDS.get(name)
    if spec is None:
        raise ConfigError(name, f"unknown experiment field {name!r}")
    if spec.text:
        return value.strip() if isinstance(value, str) else value
    if spec.choices is not None:
        if isinstance(value, bool) and name in ("masking", "bidirectional"):
            return "on" if value else "off"
        return str(value).strip().lower() if isinstance(value, str) else value
    try:
        if isinstance(value, bool):
            raise TypeError
        if name in _INT_FIELDS:
            as_float = float(value)
            if as_float != int(as_float):
                raise ValueError
            return int(as_float)
        return float(value)
    except (TypeError, ValueError, OverflowError):
        kind = "an integer" if name in _INT_FIELDS else "a number"
        raise ConfigError(name, f"{name} must be {kind} {spec.describe()}; got {shown(value)}") from None


def validate_field(name: str, value: Any) -> None:
    """Raise ConfigError with the value and the allowed range unless value is allowed."""
    spec = FIELDS[name]
    if spec.text:
        if not isinstance(value, str) or len(value) > MAX_TEXT or "\n" in value or "\r" in value:
            raise ConfigError(name, f"{name} must be {spec.describe()}; got {shown(value)}")
        return
    if spec.choices is not None:
        if value not in spec.choices:
            raise ConfigError(name, f"{name} must be {spec.describe()}; got {shown(value)}")
        return
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name in _INT_FIELDS and numeric and not isinstance(value, int):
        numeric = False
    if not numeric or value != value or not (spec.lo <= value <= spec.hi):
        kind = "an integer" if name in _INT_FIELDS else "a number"
        raise ConfigError(name, f"{name} must be {kind} {spec.describe()}; got {shown(value)}")
