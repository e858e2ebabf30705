"""Sessions: exact resume, round trips, atomic saves, and one clear SessionError for every
damaged, foreign or unsafe file (naming it), with the running experiment left alone."""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cli import common as cli_common
from core.cli import train as cli
from core.config import Experiment
from core.errors import SessionError
from core.session.autosave import autosave_path, discard_autosave, find_recovery, mark_clean_exit
from core.session.format import (
    MIGRATIONS,
    SCHEMA,
    open_session,
    read_session_info,
    read_traces,
    save_session,
)
from core.session.snapshot import restore_trainer_state, trainer_state
from core.training.trainer import Trainer

TINY = Experiment(task="adding", hidden_size=8, seq_len=10, batch_size=8, lr=0.01)
ROOT = Path(__file__).resolve().parents[2]


def trained(exp: Experiment = TINY, steps: int = 3) -> Trainer:
    trainer = Trainer(exp)
    list(trainer.run(steps))
    return trainer


def rezip(src: Path, dst: Path, replace: dict | None = None, header=None) -> Path:
    """A copy of session ``src`` with members replaced (None drops one) or session.json edited."""
    replace = dict(replace or {})
    with zipfile.ZipFile(src) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    if header is not None:
        data = json.loads(members["session.json"])
        header(data)
        members["session.json"] = json.dumps(data).encode()
    members.update(replace)
    with zipfile.ZipFile(dst, "w") as zout:
        for name, data in members.items():
            if data is not None:
                zout.writestr(name, data)
    return dst


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "run.rnnx"
    save_session(trained(), path)
    return path


def refused(path: Path, match: str = "") -> str:
    """Open ``path``; assert a one-line SessionError naming the file (and matching ``match``)."""
    with pytest.raises(SessionError) as info:
        open_session(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert match.lower() in message.lower(), message
    return message


# ------------------------------------------------------------------------- exact resume
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_training_n_saving_opening_and_training_m_equals_n_plus_m_straight(tmp_path, cell, optimizer):
    exp = TINY.replace(cell=cell, optimizer=optimizer, num_layers=2 if cell == "lstm" else 1)
    n, m = 4, 4
    straight = [r.loss for r in Trainer(exp).run(n + m)]
    first = trained(exp, n)
    save_session(first, tmp_path / "run.rnnx")
    resumed = open_session(tmp_path / "run.rnnx")
    assert resumed is not first and resumed.step_count == n
    np.testing.assert_array_equal(resumed.history.column("loss"), straight[:n])
    more = [r.loss for r in resumed.run(m)]
    np.testing.assert_allclose(more, straight[n:], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(resumed.history.column("step"), np.arange(1, n + m + 1))


def test_resume_restores_the_global_generator_only_when_asked(tmp_path):
    trainer = trained()
    expected = torch.get_rng_state()
    save_session(trainer, tmp_path / "run.rnnx")
    torch.rand(5)  # move the global generator on
    open_session(tmp_path / "run.rnnx", global_rng=False)
    assert not torch.equal(torch.get_rng_state(), expected)
    open_session(tmp_path / "run.rnnx")
    assert torch.equal(torch.get_rng_state(), expected)


def test_trainer_state_rewinds_a_trainer_in_memory():
    trainer = trained(TINY.replace(optimizer="adam"), 2)
    tensors, meta = trainer_state(trainer)
    json.dumps(meta, allow_nan=False)  # meta is plain JSON data
    first = [r.loss for r in trainer.run(3)]
    for _ in range(2):  # the snapshot itself is not consumed by the steps after a restore
        restore_trainer_state(trainer, tensors, meta)
        assert trainer.step_count == 2 and len(trainer.history) == 2
        assert [r.loss for r in trainer.run(3)] == first


def test_state_of_another_experiment_is_refused_and_changes_nothing():
    tensors, meta = trainer_state(trained(TINY.replace(hidden_size=6)))
    trainer = trained()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(SessionError, match="hidden_size differs"):
        restore_trainer_state(trainer, tensors, meta)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    assert trainer.step_count == 3


# --------------------------------------------------------------------------- round trips
def test_config_history_and_traces_round_trip(tmp_path):
    trainer = trained(TINY.replace(task="parity", cell="gru", seq_len=6), 2)
    with torch.no_grad():
        trainer.model.readout.bias.fill_(float("inf"))
    assert trainer.step().diverged  # a nan loss and a diverged flag in the history
    trainer.set_learning_rate(0.02)
    trainer.set_clip(0.5)
    traces = {"hidden": np.random.default_rng(0).standard_normal((4, 3, 8)).astype(np.float32),
              "steps": np.arange(4, dtype=np.int64), "valid": np.array([True, False]),
              "labels": np.array(["a", "bc"]), "scalar": np.float64(2.5), "empty": np.zeros((0, 3)),
              "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3))}
    path = tmp_path / "run.rnnx"
    save_session(trainer, path, traces=traces)

    info = read_session_info(path)
    assert info["config"] == trainer.experiment.to_dict() and info["config"]["lr"] == 0.02
    assert info["step_count"] == 2 and info["history_length"] == 3 and math.isnan(info["last_loss"])
    assert info["schema"] == SCHEMA and info["traces"] == sorted(traces)
    loaded = read_traces(path)
    assert loaded.keys() == traces.keys()
    for name, array in traces.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == np.asarray(array).dtype
    resumed = open_session(path)
    assert resumed.experiment == trainer.experiment
    assert resumed.optimizer.param_groups[0]["lr"] == 0.02
    for name in trainer.history.names:
        np.testing.assert_array_equal(resumed.history.column(name), trainer.history.column(name))
    assert "metric/accuracy" in resumed.history.names


def test_a_session_without_traces_reads_no_traces(saved):
    assert read_traces(saved) == {}


def test_object_arrays_are_never_saved(tmp_path):
    with pytest.raises(SessionError, match="dtype object"):
        save_session(trained(), tmp_path / "run.rnnx", traces={"x": np.array([{}, 1], dtype=object)})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- atomicity
def _crash(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("where", ["zip write", "fsync", "os.replace"])
def test_a_crash_mid_save_leaves_the_previous_file_intact(tmp_path, monkeypatch, where):
    path = tmp_path / "run.rnnx"
    save_session(trained(steps=1), path)
    before = path.read_bytes()
    if where == "zip write":
        written = []
        real = zipfile.ZipFile.writestr

        def writestr(self, name, data, *args, **kwargs):
            if written:  # the first member went out; crash on the second
                _crash()
            written.append(name)
            return real(self, name, data, *args, **kwargs)

        monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)
    else:
        monkeypatch.setattr(os, where.removeprefix("os."), _crash)
    with pytest.raises(SessionError, match=f"{path}: cannot save the session .*No space left"):
        save_session(trained(steps=4), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.rnnx"]
    assert open_session(path).step_count == 1


def test_an_interrupt_mid_save_is_not_swallowed_and_leaves_no_temp_file(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "writestr", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_session(trained(steps=1), tmp_path / "run.rnnx")
    assert list(tmp_path.iterdir()) == []


def test_saving_into_a_missing_folder_names_the_file(tmp_path):
    with pytest.raises(SessionError, match="missing/run.rnnx: cannot save"):
        save_session(trained(steps=1), tmp_path / "missing" / "run.rnnx")


# ----------------------------------------------------------------------- damaged files
@pytest.mark.parametrize("cut", [0, 1, 4, 30, 200, 0.5, -22, -1])
def test_a_truncated_file_is_refused(saved, tmp_path, cut):
    data = saved.read_bytes()
    end = int(len(data) * cut) if isinstance(cut, float) else cut if cut >= 0 else len(data) + cut
    path = tmp_path / "cut.rnnx"
    path.write_bytes(data[:end])
    refused(path, "empty" if end == 0 else "")


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.rnnx"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    refused(path, "not an RNN Explorer session (a zip file); .pt/.pth checkpoints are not opened")


def test_a_flipped_byte_inside_a_member_is_caught(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("model.safetensors")
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF
    path = tmp_path / "flipped.rnnx"
    path.write_bytes(bytes(data))
    refused(path, "model.safetensors is damaged")


def test_foreign_zips_are_refused(tmp_path, saved):
    foreign = tmp_path / "foreign.rnnx"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("hello.txt", "hi")
    refused(foreign, "not an RNN Explorer session (the zip holds no session.json)")
    refused(rezip(saved, tmp_path / "no-json.rnnx", {"session.json": None}), "no session.json")
    refused(rezip(saved, tmp_path / "format.rnnx", header=lambda h: h.update(format="other-app")),
            "not an RNN Explorer session (format 'other-app'")
    refused(rezip(saved, tmp_path / "list.rnnx", {"session.json": b"[1, 2]"}), "must hold a JSON object")
    refused(rezip(saved, tmp_path / "text.rnnx", {"session.json": b"{not json"}), "not valid JSON")
    refused(rezip(saved, tmp_path / "deep.rnnx", {"session.json": b"[" * 100_000}), "not valid JSON")
    refused(rezip(saved, tmp_path / "utf16.rnnx", {"session.json": "{}".encode("utf-16")}), "not valid JSON")


@pytest.mark.parametrize("legacy", [False, True])
def test_a_pytorch_checkpoint_is_refused_not_unpickled(tmp_path, legacy):
    path = tmp_path / "model.pt"
    torch.save(trained(steps=1).model.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    refused(path, "not opened because loading it can run code")


def test_a_newer_schema_is_refused_with_its_number(saved, tmp_path):
    path = rezip(saved, tmp_path / "newer.rnnx", header=lambda h: h.update(schema=3))
    refused(path, "was written by a newer RNN Explorer (schema 3; this version reads up to 1)")
    with pytest.raises(SessionError, match="schema 3"):
        read_session_info(path)


def test_an_older_schema_is_migrated(saved, tmp_path):
    def schema_0(header):
        header.update(schema=0, experiment=header.pop("config"))

    assert 0 in MIGRATIONS
    path = rezip(saved, tmp_path / "old.rnnx", header=schema_0)
    assert read_session_info(path)["schema"] == 0
    old, new = open_session(path), open_session(saved)
    assert old.experiment == new.experiment and old.step_count == new.step_count == 3
    assert [r.loss for r in old.run(2)] == [r.loss for r in new.run(2)]
    refused(rezip(saved, tmp_path / "neg.rnnx", header=lambda h: h.update(schema=-1)), "schema must be")


@pytest.mark.parametrize("edit,match", [
    (lambda h: h["config"].update(hidden_size=9), "has shape"),
    (lambda h: h["config"].update(lr="fast"), "config: lr must be a number"),
    (lambda h: h.update(config=[1]), "config is missing"),
    (lambda h: h.update(step_count="3"), "step_count must be a whole number"),
    (lambda h: h["history"]["loss"].pop(), "history.loss must list 3 values"),
    (lambda h: h["history"]["clipped"].__setitem__(0, 2), "history.clipped holds a value of the wrong type"),
    (lambda h: h["history"]["metrics"].update(accuracy="x"), "history.metrics.accuracy must list"),
    (lambda h: h["param_names"].reverse(), "param_names do not match"),
    (lambda h: h["optimizer"]["param_groups"][0].update(lr=-1.0), "optimizer settings are invalid"),
    (lambda h: h["optimizer"]["param_groups"][0].update(betas="high"), "optimizer setting 'betas'"),
    (lambda h: h["optimizer"]["param_groups"][0].update(params=[0]), "parameter groups do not match"),
    (lambda h: h["optimizer"]["param_groups"][0].update(eps="x"), "optimizer setting 'eps' is 'x'"),
])
def test_wrong_values_in_session_json_are_refused(saved, tmp_path, edit, match):
    refused(rezip(saved, tmp_path / "edited.rnnx", header=edit), match)


def test_machine_specific_optimizer_flags_come_from_this_machine(saved, tmp_path):
    def cuda_only(header):
        header["optimizer"]["param_groups"][0].update(capturable=True, fused=True, amsgrad=False)

    trainer = open_session(rezip(saved, tmp_path / "gpu.rnnx", header=cuda_only))
    assert trainer.optimizer.param_groups[0]["capturable"] is False
    assert trainer.optimizer.param_groups[0]["fused"] is None
    assert not trainer.step().diverged


def test_wrong_tensors_are_refused(saved, tmp_path):
    from safetensors.torch import load, save

    with zipfile.ZipFile(saved) as zf:
        model = load(zf.read("model.safetensors"))
        optim = load(zf.read("optimizer.safetensors"))
        rng = load(zf.read("rng.safetensors"))
    name = "recurrent.weight_hh_l0"
    cases = {
        "shape": ({"model.safetensors": save({**model, name: torch.zeros(3, 3)})},
                  f"model weight '{name}' has shape (3, 3); this experiment needs (32, 8)"),
        "missing": ({"model.safetensors": save({k: v for k, v in model.items() if k != name})}, "is missing"),
        "extra": ({"model.safetensors": save({**model, "spy": torch.zeros(1)})}, "does not belong"),
        "dtype": ({"model.safetensors": save({**model, name: model[name].double()})}, "float64"),
        "opt-shape": ({"optimizer.safetensors": save({**optim, "0/exp_avg": torch.zeros(2)})}, "optimizer state"),
        "opt-keys": ({"optimizer.safetensors": save({k: v for k, v in optim.items() if k != "1/exp_avg_sq"})},
                     "expected ['exp_avg', 'exp_avg_sq', 'step']"),
        "opt-name": ({"optimizer.safetensors": save({**optim, "x/step": torch.zeros(())})}, "not named"),
        "rng": ({"rng.safetensors": save({**rng, "data": torch.zeros(5056, dtype=torch.uint8)})},
                "rng/data is not a valid generator state"),
        "rng-type": ({"rng.safetensors": save({**rng, "data": torch.zeros(3)})}, "not a uint8 generator"),
        "member": ({"optimizer.safetensors": None}, "optimizer.safetensors is missing"),
        "garbage": ({"model.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{nope"}, "not a valid safetensors"),
    }
    for case, (members, match) in cases.items():
        refused(rezip(saved, tmp_path / f"{case}.rnnx", members), match)


def test_zip_bombs_are_refused_before_inflating(saved, tmp_path):
    path = rezip(saved, tmp_path / "bomb.rnnx")
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("traces.npz", bytes(8 * 2**20))  # 8 MiB of zeros, a few KiB on disk
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(tmp_path / "big.rnnx", "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            zout.writestr(name, bytes(8 * 2**20) if name == "model.safetensors" else zin.read(name))
    assert (tmp_path / "big.rnnx").stat().st_size < 2**20
    refused(tmp_path / "big.rnnx", "model.safetensors declares 8388608 bytes")


def test_missing_and_unreadable_paths_are_session_errors(tmp_path):
    refused(tmp_path / "nope.rnnx", "no such file")
    refused(tmp_path, "not a regular file")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.rnnx")
        refused(tmp_path / "pipe.rnnx", "not a regular file")  # opening it would block


def test_a_failed_open_leaves_the_current_experiment_alone(saved, tmp_path):
    trainer = trained(TINY.replace(seed=5))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    rng = torch.get_rng_state()
    refused(rezip(saved, tmp_path / "bad.rnnx", header=lambda h: h["history"]["loss"].pop()))
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    assert torch.equal(torch.get_rng_state(), rng) and trainer.step_count == 3


# ----------------------------------------------------------------------------- autosave
def test_recovery_is_offered_only_after_an_unclean_exit(tmp_path, monkeypatch):
    monkeypatch.setenv("RNN_EXPLORER_HOME", str(tmp_path))
    assert find_recovery() is None
    path = autosave_path()
    assert path.parent == tmp_path / "autosave" and path.suffix == ".rnnx"
    save_session(trained(steps=1), path)
    assert find_recovery() == path  # never exited cleanly
    mark_clean_exit()
    os.utime(path, ns=(0, (tmp_path / "autosave" / "clean-exit").stat().st_mtime_ns))
    assert find_recovery() is None  # autosaved, then quit normally
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    assert find_recovery() == path  # autosaved after the last clean exit: a crash
    assert open_session(find_recovery()).step_count == 1
    discard_autosave()
    assert find_recovery() is None
    discard_autosave()  # twice is fine


# --------------------------------------------------------------------------------- CLI
def test_cli_train_save_then_continue_the_session(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    path = tmp_path / "a.rnnx"
    args = parser.parse_args(["train", "--preset", "adding-gru", "--steps", "2", "--seed", "1",
                              "--save", str(path), "--json"])
    assert args.run(args) == 0
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first[-1]["summary"]["saved"] == str(path)
    args = parser.parse_args(["train", "--session", str(path), "--steps", "1", "--json"])
    assert args.run(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["step"] for line in lines[:-1]] == [3] and lines[-1]["summary"]["steps"] == 3
    straight = [r.loss for r in Trainer(cli_common.experiment_from_args(parser.parse_args(
        ["train", "--preset", "adding-gru", "--seed", "1"]))).run(3)]
    np.testing.assert_allclose([line["loss"] for line in lines[:-1]], straight[2:], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_main_py_train_save_and_continue(tmp_path):
    path = tmp_path / "a.rnnx"
    run = [sys.executable, str(ROOT / "main.py"), "train"]
    env = {**os.environ, "RNN_EXPLORER_HOME": str(tmp_path)}
    subprocess.run([*run, "--preset", "adding-gru", "--steps", "20", "--save", str(path)],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    out = subprocess.run([*run, "--session", str(path), "--steps", "10", "--json"],
                         check=True, cwd=ROOT, env=env, capture_output=True, text=True).stdout
    assert json.loads(out.splitlines()[-1])["summary"]["steps"] == 30
    bad = tmp_path / "bad.rnnx"
    bad.write_bytes(b"not a session")
    result = subprocess.run([*run, "--session", str(bad), "--steps", "1"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2 and f"error: {bad}: not an RNN Explorer session" in result.stderr


def test_the_session_modules_have_no_way_to_unpickle():
    source = "".join(p.read_text() for p in [*(ROOT / "core" / "session").glob("*.py"), ROOT / "core" / "atomic.py"])
    for unsafe in (r"(?<![\w.])torch\.load", r"\bpickle\.load", r"allow_pickle=True", r"\bnp\.load\("):
        assert not re.search(unsafe, source), unsafe
