"""Opening the user's trained torch.nn RNN/LSTM/GRU, and exporting ours under torch.nn's names.

    from core.models.io import load_model
    loaded = load_model("model.safetensors", prefix="encoder.rnn.", vocab="vocab.json")
    loaded.info          # kind, input_size, hidden_size, num_layers, bias (inferred from shapes)
    trace = loaded.trace(loaded.encode("hello"))   # hidden [L][T, 1, H], gates, cell

Files: ``.safetensors``, or ``.pt``/``.pth`` read only with ``torch.load(weights_only=True)``
(never unpickling objects). A state dict holds the recurrent weights bare (``weight_ih_l0``)
or under a prefix (``encoder.rnn.weight_ih_l0``); ``inspect_model`` lists the prefixes found
and the keys that could be an embedding ([V, input_size]) or a linear head ([O, hidden_size]).
Anything wrong raises :class:`ModelFileError`, one line naming the file, the key and what
was expected. ``export_model`` writes our model back: the recurrent weights under torch.nn's
exact keys, ``embedding.weight`` and ``head.weight``/``head.bias`` when present, and a
``vocab.json`` beside the file, so plain torch loads it with ``load_state_dict``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from core.atomic import atomic_write
from core.datafiles import parse_vocab, read_file
from core.errors import UserError
from core.models.recurrent import RNN, Trace, make_recurrent

MAX_MODEL_BYTES = 2 * 1024**3
FORMAT = "rnn-explorer-model"
GATE_ROWS = {1: "rnn", 3: "gru", 4: "lstm"}
PARAM = re.compile(r"^(?P<prefix>.*?)(?P<name>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<layer>\d+)"
                   r"(?P<reverse>_reverse)?$")
OBJECTS = ("this file contains Python objects, not only tensors; re-save it with "
           "`torch.save(model.state_dict(), ...)` or as safetensors")


class ModelFileError(UserError, ValueError):
    """A model file cannot be used; the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class StackInfo:
    """One recurrent stack found in a state dict (keys ``prefix + weight_ih_l0`` ...)."""

    prefix: str
    kind: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool

    def describe(self) -> str:
        where = f"under {self.prefix!r}" if self.prefix else "bare keys"
        return (f"{self.kind.upper()} ({where}): input {self.input_size}, hidden {self.hidden_size}, "
                f"{self.num_layers} layer{'s' if self.num_layers > 1 else ''}, "
                f"{'with' if self.bias else 'without'} bias")


@dataclass(frozen=True)
class ModelInfo:
    """What a file holds: its stacks, and per stack the keys that could be its embedding or head."""

    path: str
    keys: dict[str, tuple[tuple[int, ...], str]]  # key -> (shape, dtype)
    stacks: dict[str, StackInfo]                   # prefix -> stack
    embeddings: dict[str, list[str]]               # prefix -> candidate keys ([V, input_size])
    heads: dict[str, list[str]]                    # prefix -> candidate weight keys ([O, hidden_size])
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """A stack loaded into the project's instrumented cells, with optional embedding, head, vocab."""

    path: str
    info: StackInfo
    recurrent: nn.Module
    embedding: nn.Embedding | None
    head: nn.Linear | None
    vocab: list[str] | None
    keys: dict[str, str]  # our role ("embedding", "head") -> the key it came from

    @property
    def input_size(self) -> int:
        """Size of one input step as typed: the vocabulary with an embedding, else the stack's."""
        return self.embedding.num_embeddings if self.embedding is not None else self.info.input_size

    def sizes(self) -> dict[str, int]:
        out = {"input_size": self.input_size}
        if self.head is not None:
            out["output_size"] = self.head.out_features
        return out

    def weights(self) -> dict[str, Tensor]:
        """The weights under core.models.sequence.SequenceModel's names (recurrent.*, readout.*)."""
        out = {f"recurrent.{k}": v for k, v in self.recurrent.state_dict().items()}
        if self.embedding is not None:
            out["embedding.weight"] = self.embedding.weight.detach()
        if self.head is not None:
            out.update({f"readout.{k}": v for k, v in self.head.state_dict().items()})
        return out

    def experiment_changes(self) -> dict:
        """The experiment fields that describe this model (cell, sizes, bias, embedding)."""
        changes = {"cell": self.info.kind, "hidden_size": self.info.hidden_size,
                   "num_layers": self.info.num_layers, "bias": "on" if self.info.bias else "off",
                   "embedding": "on" if self.embedding is not None else "off"}
        if isinstance(self.recurrent, RNN):
            changes["nonlinearity"] = self.recurrent.nonlinearity
        if self.embedding is not None:
            changes["embed_size"] = self.embedding.embedding_dim
        return changes

    def encode(self, text: str) -> Tensor:
        """[T, 1, input_size] one-hot rows of ``text`` through the vocabulary (characters, or
        words when the vocabulary holds words)."""
        if self.vocab is None:
            raise ModelFileError(f"{self.path}: no vocabulary was given; text needs one (--vocab FILE)")
        words = any(len(t) > 1 and not (t.startswith("<") and t.endswith(">")) for t in self.vocab)
        index = {t: i for i, t in enumerate(self.vocab)}
        parts = text.split() if words else list(text)
        missing = [p for p in parts if p not in index and "<unk>" not in index]
        if missing or not parts:
            raise ModelFileError(f"input: {missing[0]!r} is not in the vocabulary" if missing else "input is empty")
        ids = torch.tensor([index.get(p, index.get("<unk>", 0)) for p in parts])
        return nn.functional.one_hot(ids, len(self.vocab)).float().unsqueeze(1)

    @torch.no_grad()
    def trace(self, x: Tensor) -> Trace:
        """Every hidden state and gate for inputs x [T, B, input_size] (one-hot with a vocabulary)."""
        if self.embedding is not None:
            x = x @ self.embedding.weight
        return self.recurrent.probe(x)

    @torch.no_grad()
    def outputs(self, x: Tensor) -> Tensor:
        """[T, B, O] the head's output (or the top layer's states [T, B, H] without a head)."""
        out = self.trace(x).hidden[-1]
        return self.head(out) if self.head is not None else out


# -------------------------------------------------------------------------------- reading
def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a .safetensors, .pt or .pth file; never unpickles objects."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth"):
        raise ModelFileError(f"{path}: expected a .safetensors, .pt or .pth file; got {suffix or 'no suffix'}")
    try:
        size = p.stat().st_size
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read the model file ({err.strerror or err})") from None
    if size > MAX_MODEL_BYTES:
        raise ModelFileError(f"{path}: {size / 1024**3:.1f} GiB is more than the 2 GiB a model file may have")
    if size == 0:
        raise ModelFileError(f"{path}: the file is empty; expected a state dict")
    metadata: dict[str, str] = {}
    try:
        if suffix == ".safetensors":
            with safetensors.safe_open(str(p), framework="pt") as f:
                metadata = dict(f.metadata() or {})
                raw = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no items)
        else:
            raw = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = " ".join(str(err).split())
        if "Unsupported global" in reason or "GLOBAL" in reason:  # a class the file wants built
            raise ModelFileError(f"{path}: {OBJECTS}") from None
        raise ModelFileError(f"{path}: not a readable torch file ({reason[:120]})") from None
    except Exception as err:  # noqa: BLE001 (a parser of untrusted bytes: any failure is a damaged file)
        kind = "safetensors" if suffix == ".safetensors" else "torch"
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise ModelFileError(f"{path}: not a readable {kind} file ({reason})") from None
    return _flatten(raw, str(path)), metadata


def _flatten(raw, path: str, prefix: str = "", depth: int = 0) -> dict[str, Tensor]:
    """A state dict, or a checkpoint dict holding one (nested dicts joined with '.')."""
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path}: holds a {type(raw).__name__}, not a state dict; save "
                             "`model.state_dict()`")
    out: dict[str, Tensor] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, Tensor):
            out[name] = value
        elif isinstance(value, dict) and depth < 4:
            out.update(_flatten(value, path, f"{name}.", depth + 1))
    if not out and depth == 0:
        raise ModelFileError(f"{path}: holds no tensors; expected a state dict")
    return out


def inspect_state_dict(tensors: dict[str, Tensor], path: str, metadata: dict[str, str] | None = None) -> ModelInfo:
    """The recurrent stacks in ``tensors`` and the embedding/head candidates of each."""
    groups: dict[str, dict[tuple[str, int], str]] = {}
    for key in tensors:
        m = PARAM.match(key)
        if m:
            if m["reverse"]:
                raise ModelFileError(f"{path}: key {key!r}: a bidirectional layer; only one direction "
                                     "is supported (save a unidirectional model)")
            if m["name"] == "weight_hr":
                raise ModelFileError(f"{path}: key {key!r}: an LSTM with proj_size; expected one without projection")
            groups.setdefault(m["prefix"], {})[(m["name"], int(m["layer"]))] = key
    if not groups:
        shown = ", ".join(list(tensors)[:4])
        raise ModelFileError(f"{path}: no recurrent weights (keys like 'weight_ih_l0', 'rnn.weight_hh_l0'); "
                             f"found {shown}{', ...' if len(tensors) > 4 else ''}")
    stacks = {prefix: _stack(prefix, keys, tensors, path) for prefix, keys in sorted(groups.items())}
    embeddings, heads = {}, {}
    recurrent_keys = {k for keys in groups.values() for k in keys.values()}
    for prefix, stack in stacks.items():
        others = [(k, t) for k, t in tensors.items() if k not in recurrent_keys and k.endswith("weight")
                  and t.dim() == 2]
        embeddings[prefix] = [k for k, t in others if t.shape[1] == stack.input_size]
        heads[prefix] = [k for k, t in others if t.shape[1] == stack.hidden_size]
    return ModelInfo(path, {k: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for k, t in tensors.items()},
                     stacks, embeddings, heads, dict(metadata or {}))


def _stack(prefix: str, keys: dict[tuple[str, int], str], tensors: dict[str, Tensor], path: str) -> StackInfo:
    first = keys.get(("weight_hh", 0))
    if first is None:
        raise ModelFileError(f"{path}: key {prefix}weight_hh_l0 is missing (the stack {prefix or 'of bare keys'!r})")
    w_hh = tensors[first]
    if w_hh.dim() != 2 or w_hh.shape[1] == 0 or w_hh.shape[0] % w_hh.shape[1]:
        raise ModelFileError(f"{path}: key {first!r} has shape {list(w_hh.shape)}; expected [G*H, H] "
                             "(G = 1 rnn, 3 gru, 4 lstm)")
    H = w_hh.shape[1]
    gates = w_hh.shape[0] // H
    if gates not in GATE_ROWS:
        raise ModelFileError(f"{path}: key {first!r} has shape {list(w_hh.shape)}: {gates} blocks of {H} rows; "
                             "expected 1 (rnn), 3 (gru) or 4 (lstm)")
    layers = 1 + max(layer for _, layer in keys)
    bias = ("bias_ih", 0) in keys
    input_size = None
    for layer in range(layers):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            key = f"{prefix}{name}_l{layer}"
            if name.startswith("bias") and not bias:
                if (name, layer) in keys:
                    raise ModelFileError(f"{path}: key {key!r} is unexpected: layer 0 has no biases")
                continue
            if (name, layer) not in keys:
                raise ModelFileError(f"{path}: key {key!r} is missing")
            t = tensors[key]
            if not t.is_floating_point():
                raise ModelFileError(f"{path}: key {key!r} is {str(t.dtype).removeprefix('torch.')}; "
                                     "expected floating-point weights")
            if name == "weight_ih" and layer == 0:
                if t.dim() != 2 or t.shape[0] != gates * H:
                    raise ModelFileError(f"{path}: key {key!r} has shape {list(t.shape)}; expected "
                                         f"[{gates * H}, input_size]")
                input_size = t.shape[1]
            expected = {"weight_ih": [gates * H, input_size if layer == 0 else H],
                        "weight_hh": [gates * H, H]}.get(name, [gates * H])
            if list(t.shape) != expected:
                raise ModelFileError(f"{path}: key {key!r} has shape {list(t.shape)}; expected {expected} "
                                     f"(a {GATE_ROWS[gates]} with hidden size {H})")
    if input_size == 0:
        raise ModelFileError(f"{path}: key {prefix}weight_ih_l0 has no columns; expected input_size >= 1")
    return StackInfo(prefix, GATE_ROWS[gates], int(input_size), int(H), layers, bias)


def inspect_model(path: str | os.PathLike) -> ModelInfo:
    """What ``path`` holds (stacks, candidates), to show before loading."""
    tensors, metadata = read_state_dict(path)
    return inspect_state_dict(tensors, str(path), metadata)


# -------------------------------------------------------------------------------- loading
def load_model(path: str | os.PathLike, prefix: str | None = None, *, embedding: str | None = "auto",
               head: str | None = "auto", vocab: str | os.PathLike | list[str] | None = None,
               nonlinearity: str | None = None) -> LoadedModel:
    """Load one recurrent stack of ``path`` into the instrumented cells of core.models.recurrent.

    Args:
        prefix: the stack's key prefix (e.g. "encoder.rnn."); None takes the only one found.
        embedding / head: a key ("embedding.weight", "fc.weight"), None for none, or "auto":
            ``embedding.weight`` / ``head.weight`` when present (our export), else the only
            candidate of the right shape, else none.
        vocab: a JSON file (a list of tokens or {token: id}) or a list; it must have as many
            tokens as the embedding has rows (or as the stack has inputs, without embedding).
        nonlinearity: for rnn stacks, "tanh" or "relu" (not in the weights; default: the
            file's metadata when we wrote it, else tanh).
    Raises:
        ModelFileError naming the file and key for anything that does not fit.
    """
    path = str(path)
    tensors, metadata = read_state_dict(path)
    info = inspect_state_dict(tensors, path, metadata)
    if prefix is None:
        if len(info.stacks) > 1:
            raise ModelFileError(f"{path}: holds {len(info.stacks)} recurrent stacks "
                                 f"({', '.join(repr(p) for p in info.stacks)}); pick one with a prefix")
        prefix = next(iter(info.stacks))
    if prefix not in info.stacks:
        raise ModelFileError(f"{path}: no recurrent stack under prefix {prefix!r}; found "
                             f"{', '.join(repr(p) for p in info.stacks)}")
    stack = info.stacks[prefix]
    emb_key = _pick(embedding, info.embeddings[prefix], "embedding.weight", tensors, path, "embedding")
    head_key = _pick(head, info.heads[prefix], "head.weight", tensors, path, "head")
    _check_unknown(tensors, prefix, {emb_key, head_key}, path)
    nonlinearity = nonlinearity or metadata.get("nonlinearity", "tanh")
    if nonlinearity not in ("tanh", "relu"):
        raise ModelFileError(f"{path}: nonlinearity must be tanh or relu; got {nonlinearity!r}")
    net = make_recurrent(stack.kind, stack.input_size, stack.hidden_size, stack.num_layers,
                         nonlinearity if stack.kind == "rnn" else "tanh", stack.bias)
    own = {k[len(prefix):]: tensors[k].detach().to(torch.float32) for k in tensors
           if k.startswith(prefix) and PARAM.match(k) and PARAM.match(k)["prefix"] == prefix}
    net.load_state_dict(own, strict=True)
    emb = None
    if emb_key is not None:
        w = tensors[emb_key].to(torch.float32)
        emb = nn.Embedding(w.shape[0], w.shape[1])
        emb.weight.data.copy_(w)
    lin = None
    if head_key is not None:
        w = tensors[head_key].to(torch.float32)
        bias_key = head_key[:-len("weight")] + "bias"
        b = tensors.get(bias_key)
        if b is not None and (b.dim() != 1 or b.shape[0] != w.shape[0] or not b.is_floating_point()):
            raise ModelFileError(f"{path}: key {bias_key!r} has shape {list(b.shape)}; expected [{w.shape[0]}]")
        lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        lin.weight.data.copy_(w)
        if b is not None:
            lin.bias.data.copy_(b.to(torch.float32))
    tokens = _vocab(vocab)
    loaded = LoadedModel(path, stack, net, emb, lin, tokens,
                         {k: v for k, v in (("embedding", emb_key), ("head", head_key)) if v})
    if tokens is not None and len(tokens) != loaded.input_size:
        what = (f"the embedding {emb_key!r} has {loaded.input_size} rows" if emb is not None
                else f"the model takes {loaded.input_size} inputs")
        raise ModelFileError(f"{vocab if isinstance(vocab, (str, os.PathLike)) else 'vocabulary'}: "
                             f"{len(tokens)} tokens, but {what}")
    return loaded


def _pick(choice: str | None, candidates: list[str], ours: str, tensors, path: str, role: str) -> str | None:
    if choice is None or choice == "none":
        return None
    if choice == "auto":
        if ours in candidates:
            return ours
        return candidates[0] if len(candidates) == 1 else None
    if choice not in tensors:
        raise ModelFileError(f"{path}: no key {choice!r} for the {role}; candidates: "
                             f"{', '.join(candidates) or 'none'}")
    if choice not in candidates:
        shape = list(tensors[choice].shape)
        want = "[V, input_size]" if role == "embedding" else "[O, hidden_size]"
        raise ModelFileError(f"{path}: key {choice!r} has shape {shape}; the {role} must be {want} "
                             "of floating-point numbers")
    return choice


def _check_unknown(tensors: dict[str, Tensor], prefix: str, chosen: set, path: str) -> None:
    """Refuse keys in the stack's own namespace that are not weights we know.

    Under a prefix ("rnn."), every key there must be a recurrent weight; with bare keys, a
    key without a dot (a module's own parameter) must be one (dotted keys are sub-modules).
    """
    for key in tensors:
        if key in chosen or key.endswith("bias") and key[:-4] + "weight" in chosen:
            continue
        rest = key[len(prefix):] if key.startswith(prefix) else None
        if rest is None or (not prefix and "." in rest):
            continue
        m = PARAM.match(key)
        if not m or m["prefix"] != prefix:
            raise ModelFileError(f"{path}: unknown key {key!r} under {prefix or 'the bare keys'!r}; expected "
                                 "weight_ih_l<k>, weight_hh_l<k>, bias_ih_l<k>, bias_hh_l<k>")


def _vocab(vocab) -> list[str] | None:
    if vocab is None or isinstance(vocab, list):
        return vocab
    return parse_vocab(read_file(str(vocab), what="vocabulary file"))


# ------------------------------------------------------------------------------- exporting
def export_model(model: nn.Module, path: str | os.PathLike, vocab: list[str] | None = None) -> list[str]:
    """Write ``model`` (a SequenceModel: [embedding,] recurrent, readout) for plain torch.

    The file holds the recurrent weights under torch.nn's exact keys (``weight_ih_l0`` ...),
    ``embedding.weight`` [V, E] when the model embeds, and ``head.weight``/``head.bias`` (the
    readout); ``.safetensors`` (with metadata: kind, nonlinearity, sizes) or ``.pt``. A
    ``vocab.json`` (the token list, id = position) is written beside it when ``vocab`` is
    given. Writes are atomic. Returns the paths written.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth"):
        raise ModelFileError(f"{path}: export to a .safetensors, .pt or .pth file; got {suffix or 'no suffix'}")
    if not p.parent.is_dir():
        raise ModelFileError(f"{path}: the folder {p.parent} does not exist")
    if hasattr(model, "decoder"):
        raise ModelFileError(f"{path}: an encoder-decoder is kept whole in its session (.rnnx); export writes "
                             "one recurrent stack with its embedding and head")
    net = model.recurrent
    state = dict(net.state_dict())
    if getattr(model, "embedding", None) is not None:
        state["embedding.weight"] = model.embedding.weight
    readout = getattr(model, "readout", None)
    if isinstance(readout, nn.Linear):
        state.update({f"head.{k}": v for k, v in readout.state_dict().items()})
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in state.items()}
    metadata = {"format": FORMAT, "kind": net.kind, "input_size": str(net.input_size),
                "hidden_size": str(net.hidden_size), "num_layers": str(net.num_layers),
                "bias": str(bool(net.bias)).lower(),
                "nonlinearity": getattr(net, "nonlinearity", "tanh") if net.kind == "rnn" else "tanh"}
    written = []
    try:
        with atomic_write(p) as f:
            if suffix == ".safetensors":
                f.write(safetensors.torch.save(state, metadata=metadata))
            else:
                torch.save(state, f)
        written.append(str(p))
        if vocab is not None:
            beside = p.with_name("vocab.json")
            with atomic_write(beside) as f:
                f.write(json.dumps(list(vocab), ensure_ascii=False).encode("utf-8"))
            written.append(str(beside))
    except OSError as err:
        raise ModelFileError(f"{path}: cannot write the model ({err.strerror or err})") from None
    return written
