"""Loaders under fuzzing: random and mutated bytes fed to the session and preset loaders end
in the loader's own error (SessionError / PresetError) or a good load, never another
exception, crash or hang; and a failed open leaves the running experiment alone."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import FIELDS, Experiment
from core.errors import PresetError, SessionError
from core.presets import PRESET_DIR, Preset, parse_preset
from core.session.format import open_session, read_session_info, read_traces, save_session
from core.training.trainer import Trainer

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder for the fuzzed files (examples share it: hypothesis cannot use tmp_path)."""
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def saved(work) -> bytes:
    """A real session: LSTM, parity (so metrics), two steps, two trace arrays."""
    trainer = Trainer(Experiment(task="parity", cell="lstm", hidden_size=4, seq_len=5, batch_size=2))
    list(trainer.run(2))
    save_session(trainer, work / "good.rnnx", traces={"h": np.arange(12, dtype=np.float32).reshape(3, 4),
                                                      "labels": np.array(["a", "b"])})
    return (work / "good.rnnx").read_bytes()


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def zipped(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in parts.items():
            zf.writestr(name, content)
    return buffer.getvalue()


def mutations(size: int):
    """Byte-level damage to a buffer of ``size`` bytes: flips, cuts, insertions, deletions."""
    pos = st.integers(0, max(0, size - 1))
    return st.lists(st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(1, 255)),
        st.tuples(st.just("cut"), pos, st.just(0)),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=32)),
        st.tuples(st.just("delete"), pos, st.integers(1, 64)),
    ), min_size=1, max_size=6)


def mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, at, arg in edits:
        at = min(at, max(0, len(buf) - 1))
        if kind == "flip" and buf:
            buf[at] ^= arg
        elif kind == "cut":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = arg
        elif kind == "delete":
            del buf[at:at + arg]
    return bytes(buf)


def load_all(work: Path, data: bytes) -> None:
    """Every session reader on ``data``: a result or a one-line SessionError naming the file;
    a trainer that opens can take a step."""
    path = work / "fuzzed.rnnx"
    path.write_bytes(data)
    for reader in (read_session_info, read_traces, open_session):
        try:
            result = reader(path)
        except SessionError as err:
            assert str(path) in str(err) and "\n" not in str(err)
        else:
            assert result is not None
            if isinstance(result, Trainer):
                result.step()  # what opens must also train (it may diverge, not raise)


# ------------------------------------------------------------------------------ session
@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_never_escape_session_error(work, data):
    load_all(work, data)


@FUZZ
@given(st.data())
def test_mutated_session_files_never_escape_session_error(work, saved, data):
    load_all(work, mutate(saved, data.draw(mutations(len(saved)))))


@FUZZ
@given(st.data())
def test_mutated_members_with_valid_checksums_reach_the_parsers_and_are_refused(work, saved, data):
    parts = members(saved)
    name = data.draw(st.sampled_from(sorted(parts)))
    parts[name] = mutate(parts[name], data.draw(mutations(len(parts[name]))))
    load_all(work, zipped(parts))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:6]):
            yield from _paths(item, (*prefix, i))


@FUZZ
@given(st.data())
def test_wrong_json_values_anywhere_in_the_header_are_refused(work, saved, data):
    """Replace (or delete) any value of session.json: the type checks, not Python, answer."""
    parts = members(saved)
    header = json.loads(parts["session.json"])
    path = data.draw(st.sampled_from([p for p in _paths(header) if p]))
    parent = header
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON_VALUES)
    parts["session.json"] = json.dumps(header).encode()
    load_all(work, zipped(parts))


def test_a_failed_open_leaves_a_running_trainer_untouched(work, saved):
    trainer = Trainer(Experiment(hidden_size=8, seq_len=10, batch_size=8))
    list(trainer.run(2))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    optimizer = trainer.optimizer.state_dict()["state"][0]["exp_avg"].clone()
    generator, global_rng = trainer.generator.get_state(), torch.get_rng_state()
    for cut in range(0, len(saved), max(1, len(saved) // 40)):
        path = work / "cut.rnnx"
        path.write_bytes(saved[:cut])
        with pytest.raises(SessionError):
            open_session(path)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert torch.equal(trainer.optimizer.state_dict()["state"][0]["exp_avg"], optimizer)
    assert torch.equal(trainer.generator.get_state(), generator)
    assert torch.equal(torch.get_rng_state(), global_rng) and trainer.step_count == 2


# ------------------------------------------------------------------------------- preset
def parse(data) -> None:
    try:
        assert isinstance(parse_preset(data, "fuzzed.toml"), Preset)
    except PresetError as err:
        assert "fuzzed.toml" in str(err)


@FUZZ
@given(st.binary(max_size=2048) | st.text(max_size=512))
def test_random_preset_text_never_escapes_preset_error(data):
    parse(data)


@FUZZ
@given(st.sampled_from(sorted(PRESET_DIR.glob("*.toml"))), st.data())
def test_mutated_presets_never_escape_preset_error(path, data):
    original = path.read_bytes()
    parse(mutate(original, data.draw(mutations(len(original)))))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(value), repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


TOML_VALUES = st.recursive(st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3), max_leaves=6)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), TOML_VALUES, max_size=6),
       st.sampled_from([1, 2, "1", True, 1.0]))
def test_any_experiment_values_in_a_preset_are_checked(fields, schema):
    lines = [f"schema = {_toml(schema)}", 'name = "x"', 'title = "t"', 'group = "gates"',
             'description = "d"', "[experiment]", *(f"{k} = {_toml(v)}" for k, v in fields.items())]
    parse("\n".join(lines))


def test_deeply_nested_preset_arrays_are_a_preset_error():
    parse('schema = 1\nname = "x"\ntitle = "t"\ngroup = "gates"\ndescription = "d"\nx = '
          + "[" * 5000 + "]" * 5000)


@FUZZ
@given(st.data())
def test_mutated_trace_arrays_are_refused_or_read_as_plain_arrays(work, saved, data):
    """Damage inside an .npy (its header is Python-literal text) with every checksum valid."""
    parts = members(saved)
    with zipfile.ZipFile(io.BytesIO(parts["traces.npz"])) as zf:
        arrays = {name: zf.read(name) for name in zf.namelist()}
    name = data.draw(st.sampled_from(sorted(arrays)))
    arrays[name] = mutate(arrays[name], data.draw(mutations(len(arrays[name]))))
    parts["traces.npz"] = zipped(arrays)
    path = work / "traces.rnnx"
    path.write_bytes(zipped(parts))
    try:
        traces = read_traces(path)
    except SessionError as err:
        assert str(path) in str(err)
    else:
        assert all(isinstance(a, np.ndarray) and not a.dtype.hasobject for a in traces.values())


# ------------------------------------------------------------------ the user's own files
# Every reader of a user's file ends in its one-line error (DataError, ModelFileError) naming
# the file, or in a good result; never another exception.
GOOD_FILES = {
    "series.csv": b"time,a,b\n0,1.5,2\n1,-3,4e-2\n2,5,6\n",
    "pairs.tsv": "abc\tcba\nd\u00e9j\u00e0\t\u00e0j\u00e9d\n".encode(),
    "labels.tsv": b"good film\tpos\nbad film\tneg\n",
    "labels.csv": b'text,label\n"a, b",x\nc,y\n',
    "vocab.json": b'{"a": 0, "b": 1, "<unk>": 2}',
}


def read_user_file(work: Path, name: str, data: bytes) -> None:
    from core.datafiles import DataError, parse_vocab, read_file, text_of
    from core.tasks.files import parse_labelled, parse_pairs, parse_series

    path = work / name
    path.write_bytes(data)
    readers = {"series.csv": parse_series, "pairs.tsv": parse_pairs, "labels.tsv": parse_labelled,
               "labels.csv": parse_labelled, "vocab.json": parse_vocab}
    for reader in (text_of, readers[name]):
        try:
            result = reader(read_file(str(path)))
        except DataError as err:
            assert str(err).startswith(str(path)) and "\n" not in str(err), str(err)
        else:
            assert result is not None


@FUZZ
@given(st.sampled_from(sorted(GOOD_FILES)), st.binary(max_size=1024) | st.text(max_size=256).map(str.encode))
def test_random_bytes_as_a_data_file_are_a_data_error(work, name, data):
    read_user_file(work, name, data)


@FUZZ
@given(st.sampled_from(sorted(GOOD_FILES)), st.data())
def test_mutated_data_files_are_a_data_error_or_read(work, name, data):
    original = GOOD_FILES[name]
    read_user_file(work, name, mutate(original, data.draw(mutations(len(original)))))


@pytest.fixture(scope="module")
def model_files(work) -> dict[str, bytes]:
    """A real torch.nn GRU with an embedding and a head, saved with safetensors and torch."""
    import safetensors.torch

    torch.manual_seed(0)
    state = {**{f"rnn.{k}": v for k, v in torch.nn.GRU(3, 4).state_dict().items()},
             "emb.weight": torch.randn(5, 3), "fc.weight": torch.randn(2, 4), "fc.bias": torch.randn(2)}
    torch.save(state, work / "good.pt")
    return {"model.safetensors": safetensors.torch.save(state), "model.pt": (work / "good.pt").read_bytes()}


def load_user_model(work: Path, name: str, data: bytes) -> None:
    from core.models.io import LoadedModel, ModelFileError, load_model

    path = work / name
    path.write_bytes(data)
    try:
        result = load_model(path)
    except ModelFileError as err:
        assert str(err).startswith(str(path)) and "\n" not in str(err), str(err)
    else:
        assert isinstance(result, LoadedModel)
        result.trace(torch.zeros(2, 1, result.input_size))  # what opens also runs


@FUZZ
@given(st.sampled_from(["model.safetensors", "model.pt"]), st.binary(max_size=2048))
def test_random_bytes_as_a_model_file_are_a_model_file_error(work, name, data):
    load_user_model(work, name, data)


@FUZZ
@given(st.data())
def test_mutated_model_files_are_a_model_file_error_or_load(work, model_files, data):
    name = data.draw(st.sampled_from(sorted(model_files)))
    original = model_files[name]
    load_user_model(work, name, mutate(original, data.draw(mutations(len(original)))))
