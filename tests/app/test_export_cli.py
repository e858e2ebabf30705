"""The export command: named files of the right size, experiment.json, frames, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtGui import QImage

from main import main
from tests.app.conftest import tiny


@pytest.fixture(scope="module")
def session_file(tmp_path_factory):
    """A tiny LSTM session saved after 4 steps."""
    from core.session.format import save_session
    from core.training.trainer import Trainer

    trainer = Trainer(tiny())
    for _ in range(4):
        trainer.step()
    path = tmp_path_factory.mktemp("sessions") / "tiny.rnnx"
    save_session(trainer, path)
    return path


def test_export_from_a_session_writes_one_file_per_panel_and_format(qapp, session_file, tmp_path, capsys):
    out = tmp_path / "figs"
    rc = main(["export", "--session", str(session_file), "--steps", "2", "--out", str(out),
               "--panels", "training,hidden", "--formats", "png,svg,csv,npz,json", "--size", "800x450",
               "--frames"])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["experiment.json", "frames", "hidden.npz", "hidden.png", "hidden.svg",
                     "training.csv", "training.png", "training.svg"]
    for name in ("training.png", "hidden.png"):
        assert QImage(str(out / name)).size().toTuple() == (800, 450)
    steps = np.loadtxt(out / "training.csv", delimiter=",", skiprows=1, ndmin=2)[:, 0]
    np.testing.assert_array_equal(steps, np.arange(1, 7))  # the saved 4 steps, then 2 more
    record = json.loads((out / "experiment.json").read_text())
    assert record["step"] == 6 and record["config"]["hidden_size"] == 8 and record["source"]["session"]
    frames = sorted(p.name for p in (out / "frames").iterdir())
    assert frames == [f"hidden_{t:03d}.png" for t in range(12)]
    printed = capsys.readouterr().out.split()
    assert str(out / "training.png") in printed and str(out / "experiment.json") in printed


def test_export_from_a_preset_trains_first(qapp, tmp_path, capsys):
    out = tmp_path / "preset"
    rc = main(["export", "--preset", "adding-lstm", "--steps", "2", "--out", str(out), "--panels", "training",
               "--formats", "png", "--size", "square", "--theme", "light"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["experiment.json", "training.png"]
    assert QImage(str(out / "training.png")).size().toTuple() == (1080, 1080)
    record = json.loads((out / "experiment.json").read_text())
    assert record["source"] == {"preset": "adding-lstm", "steps": 2} and record["figure"]["theme"] == "light"


@pytest.mark.parametrize(("flags", "named"), [
    (["--formats", "png,gif"], "'gif'; choose from png, svg, csv, npz, json"),
    (["--panels", "training,loss"], "'loss'; choose from training, hidden"),
    (["--theme", "neon"], "light, dark, slide; got 'neon'"),
    (["--size", "0x10"], "from 320x240 to 7680x4320; got 0x10"),
    (["--size", "big"], "slide, 4k, square; got 'big'"),
    (["--steps", "-1"], "--steps must be 0 or more; got -1"),
    (["--scale", "0"], "scale must be from 0.25 to 16; got 0"),
])
def test_bad_arguments_give_one_line_errors_and_write_nothing(qapp, session_file, tmp_path, capsys, flags, named):
    out = tmp_path / "never"
    rc = main(["export", "--session", str(session_file), "--out", str(out), *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err and named in err
    assert not out.exists()


def test_an_unwritable_out_folder_is_named(qapp, session_file, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "sub"):
        assert main(["export", "--session", str(session_file), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and str(blocker) in err


def test_an_unknown_preset_or_damaged_session_is_one_line(qapp, tmp_path, capsys):
    assert main(["export", "--preset", "nope", "--out", str(tmp_path / "a")]) == 2
    assert "nope" in capsys.readouterr().err
    damaged = tmp_path / "damaged.rnnx"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["export", "--session", str(damaged), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(damaged) in err and "\n" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------ --animate
def _decoded(path):
    """(frame count, size, loop, durations) of a GIF or APNG, read back with Pillow."""
    from PIL import Image

    with Image.open(path) as image:
        durations = []
        for i in range(image.n_frames):
            image.seek(i)
            durations.append(image.info["duration"])
        return image.n_frames, image.size, image.info.get("loop"), durations


def test_animate_gif_over_t_writes_one_file_per_panel_and_experiment_json(qapp, session_file, tmp_path, capsys):
    out = tmp_path / "anim"
    rc = main(["export", "--session", str(session_file), "--steps", "2", "--out", str(out), "--panels", "hidden",
               "--animate", "gif", "--frames-max", "6", "--fps", "5", "--loop", "--size", "480x270"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["experiment.json", "hidden.gif"]  # no stills unless asked
    assert _decoded(out / "hidden.gif") == (6, (480, 270), 0, [200] * 6)
    record = json.loads((out / "experiment.json").read_text())
    assert record["source"]["animation"] == {"format": "gif", "over": "t", "fps": 5.0, "frames_max": 6, "loop": True}
    assert record["files"] == ["hidden.gif"] and record["step"] == 6
    assert str(out / "hidden.gif") in capsys.readouterr().out.split()


def test_animate_mp4_over_steps_replays_the_snapshots_it_trained_with(qapp, session_file, tmp_path):
    """The session's 4 steps, then 8 more with a probe every 8 // 4 = 2 steps: the hidden
    state has snapshots at 4 (opened), 6, 8, 10, 12; the loss curve every step 1-12."""
    from tests.app.test_animation import mp4_facts

    out = tmp_path / "steps"
    rc = main(["export", "--session", str(session_file), "--steps", "8", "--out", str(out),
               "--panels", "hidden,training", "--animate", "mp4", "--over", "steps", "--frames-max", "4",
               "--size", "480x270", "--formats", "png"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["experiment.json", "hidden.mp4", "hidden.png", "training.mp4",
                                                      "training.png"]
    for name in ("hidden.mp4", "training.mp4"):
        meta, count = mp4_facts(out / name)
        assert (meta["codec"], meta["pix_fmt"], meta["size"], meta["fps"], count) == \
            ("h264", "yuv420p", (480, 270), 10.0, 4)
    assert json.loads((out / "experiment.json").read_text())["files"] == \
        ["hidden.mp4", "hidden.png", "training.mp4", "training.png"]


def test_animate_apng_over_expansions_grows_the_beam_tree(qapp, tmp_path):
    out = tmp_path / "tree"
    rc = main(["export", "--preset", "reverse-attention", "--steps", "2", "--out", str(out), "--animate", "apng",
               "--over", "expansions", "--size", "640x360", "--formats", "json", "--panels", "decoding"])
    assert rc == 0
    tree = json.loads((out / "decoding.json").read_text())
    expansions = int(max(tree["x"]))  # a node's x is the step it was generated at
    assert expansions >= 2
    assert _decoded(out / "decoding.apng") == (expansions, (640, 360), 1, [500.0] * expansions)


@pytest.mark.parametrize(("flags", "named"), [
    (["--animate", "webm"], "--animate must be one of gif, mp4, apng; got 'webm'"),
    (["--animate", "gif", "--over", "epochs"], "--over must be one of t, steps, expansions; got 'epochs'"),
    (["--animate", "gif", "--fps", "0"], "--fps must be from 0.5 to 50 for gif"),
    (["--animate", "gif", "--frames-max", "1"], "--frames-max must be from 2 to 1000; got 1"),
    (["--animate", "mp4", "--loop"], "--loop is for gif and apng"),
    (["--animate", "mp4", "--size", "641x360"], "even width and height (H.264, yuv420p); got 641x360"),
    (["--fps", "12"], "--fps needs --animate gif|mp4|apng"),
    (["--over", "steps"], "--over needs --animate"),
    (["--animate", "gif", "--panels", "training"], "panel 'training' cannot be animated over t; over t: hidden,"),
    (["--animate", "gif", "--over", "expansions"], "--over expansions needs a translation preset"),
])
def test_bad_animation_options_are_one_line_and_write_nothing(qapp, session_file, tmp_path, capsys, flags, named):
    out = tmp_path / "never"
    rc = main(["export", "--session", str(session_file), "--out", str(out), *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err and named in err
    assert not out.exists()


@pytest.mark.slow  # a fresh interpreter: torch and Qt load again
def test_an_export_over_steps_ends_without_a_traceback(tmp_path):
    """The replay's copy of the panel is deleted as the process ends; its axes' width hook
    then ran on a half-deleted layout and printed "RuntimeError: ... already deleted"."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "main.py"), "export", "--preset", "adding-lstm",
                           "--steps", "4", "--out", str(tmp_path / "out"), "--panels", "gradients", "--animate", "gif",
                           "--over", "steps", "--frames-max", "3", "--size", "480x270"],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
    assert (tmp_path / "out" / "gradients.gif").exists()
