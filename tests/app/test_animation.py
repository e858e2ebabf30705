"""Animations: what was written is decoded (Pillow for GIF/APNG, ffmpeg for MP4) and compared
with the stills the same panel paints, for each sweep; bad options are one line; memory stays flat."""

from __future__ import annotations

import io
import re
import subprocess
import tracemalloc

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from app.export.animation import (
    Animation,
    FrameSweep,
    StepReplay,
    TimeSweep,
    drawn_steps,
    probe_length,
    replay_copy,
    save_animation,
    spread,
    write_animation,
)
from app.export.encoders import ApngWriter, GifWriter, centiseconds, changed_box, gif_palette
from app.export.figure import Figure, caption_lines, render_image
from app.export.replay import RecordLog
from tests.app.conftest import fed as fed_panel
from tests.app.conftest import tiny, train

SMALL = Figure(size=(480, 270), theme="slide")


def frames_of(path) -> list[np.ndarray]:
    """Every frame of a GIF or APNG as shown (composited), RGB [H, W, 3]."""
    with Image.open(path) as image:
        out = []
        for i in range(image.n_frames):
            image.seek(i)
            out.append(np.asarray(image.convert("RGB")))
    return out


def durations(path) -> list[float]:
    with Image.open(path) as image:
        found = []
        for i in range(image.n_frames):
            image.seek(i)
            found.append(image.info["duration"])
    return found


def facts(path) -> tuple[int, tuple[int, int], int | None]:
    """(frames, size, loop) of a GIF or APNG."""
    with Image.open(path) as image:
        return image.n_frames, image.size, image.info.get("loop")


def rgb(image) -> np.ndarray:
    from app.export.animation import rgb_array

    return rgb_array(image)


def mp4_facts(path) -> tuple[dict, int]:
    """What ffmpeg (imageio-ffmpeg's binary, as ffprobe would) reads in an MP4: the video
    stream's codec, pixel format, size and frame rate, and the frames it decodes."""
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path),
                           "-map", "0:v:0", "-f", "null", "-"], capture_output=True, text=True, check=True)
    stream = re.search(r"Stream #0:0.*?: Video: (\w+).*?, (\w+)\(.*?, (\d+)x(\d+).*?, ([\d.]+) fps",
                       done.stderr)
    frames = re.findall(r"frame=\s*(\d+)", done.stderr)
    codec, pix_fmt, width, height, fps = stream.groups()
    return {"codec": codec, "pix_fmt": pix_fmt, "size": (int(width), int(height)), "fps": float(fps)}, \
        int(frames[-1])


@pytest.fixture
def hidden(qtbot, lstm_run):
    return fed_panel(qtbot, "hidden", lstm_run, size=(900, 500))


# ------------------------------------------------------------------------------ over t
def test_a_gif_over_t_has_one_frame_per_time_step_at_the_exact_size(hidden, tmp_path, lstm_run):
    T = probe_length(lstm_run[1])
    hidden.set_time_cursor(4)
    path = save_animation(TimeSweep(hidden, T), tmp_path / "hidden.gif", SMALL, Animation("gif", "t", loop=True), 6)
    assert facts(path) == (T, (480, 270), 0)
    assert durations(path) == [100] * T  # 10 frames/s
    assert hidden.time_cursor == 4 and hidden.parentWidget() is None  # put back as it was


def test_apng_frames_are_the_stills_the_panel_paints_pixel_for_pixel(hidden, tmp_path, lstm_run):
    """Same panel code as a PNG export: frame k equals the still at t = k with its caption."""
    T = probe_length(lstm_run[1])
    path = save_animation(TimeSweep(hidden, T), tmp_path / "hidden.apng", SMALL, Animation("apng", "t", fps=4), 6)
    frames = frames_of(path)
    assert len(frames) == T and durations(path) == [250] * T
    assert facts(path)[2] == 1  # played once unless --loop
    for t in (0, T // 2, T - 1):
        hidden.set_time_cursor(t)
        title, details = caption_lines(hidden, 6)
        still = rgb(render_image(hidden, SMALL, (f"{title} · t = {t}", details)))
        np.testing.assert_array_equal(frames[t], still)
    assert not np.array_equal(frames[0], frames[-1])  # the cursor moved


def test_the_gif_palette_keeps_the_heatmap_colours(hidden, tmp_path, lstm_run):
    """Quantized to one palette per animation, without dithering: every frame stays within a
    few levels of the lossless frame, so the colour map reads the same."""
    T = probe_length(lstm_run[1])
    figure = Figure(size=(640, 360))
    gif = frames_of(save_animation(TimeSweep(hidden, T), tmp_path / "h.gif", figure, Animation("gif"), 6))
    exact = frames_of(save_animation(TimeSweep(hidden, T), tmp_path / "h.apng", figure, Animation("apng"), 6))
    for a, b in zip(gif, exact, strict=True):
        error = np.abs(a.astype(int) - b.astype(int)).max(axis=2)
        assert error.mean() < 1.5 and np.percentile(error, 99.5) <= 24


def test_frame_differencing_keeps_a_sweep_over_t_small(hidden, tmp_path, lstm_run):
    T = probe_length(lstm_run[1])
    figure = Figure(size=(960, 540))
    gif = save_animation(TimeSweep(hidden, T), tmp_path / "h.gif", figure, Animation("gif"), 6)
    one = save_animation(TimeSweep(hidden, 2, 2), tmp_path / "one.gif", figure, Animation("gif"), 6)
    assert gif.stat().st_size < 0.3 * T * one.stat().st_size / 2  # each later frame: the cursor's strip only


def test_frames_max_spreads_the_frames_and_the_fps_sets_the_delays(hidden, tmp_path, lstm_run):
    T = probe_length(lstm_run[1])
    path = save_animation(TimeSweep(hidden, T, 5), tmp_path / "h.gif", SMALL, Animation("gif", fps=30), 6)
    assert spread(T, 5) == [0, 3, 6, 8, 11] and len(frames_of(path)) == 5
    assert durations(path) == [30, 40, 30, 30, 40]  # whole centiseconds, 30 frames/s on average


def test_an_mp4_over_t_is_h264_yuv420p_at_the_exact_size(hidden, tmp_path, lstm_run):
    T = probe_length(lstm_run[1])
    path = save_animation(TimeSweep(hidden, T), tmp_path / "hidden.mp4", Figure(size=(640, 360)),
                          Animation("mp4", fps=12), 6)
    meta, count = mp4_facts(path)
    assert (meta["codec"], meta["pix_fmt"], meta["size"], count) == ("h264", "yuv420p", (640, 360), T)
    assert meta["fps"] == 12


# ------------------------------------------------------------------------------ over steps
def test_a_replay_paints_the_panel_as_it_was_at_each_snapshot(qtbot, hidden, tmp_path):
    """Frame i equals a fresh panel fed the records up to that step (the still at that step);
    the live panel is not touched."""
    from app.cli.export import train_with_snapshots
    from app.training.engine import make_trainer, run_info

    trainer = make_trainer(tiny())
    records = train_with_snapshots(trainer, 12, 4, {"probe"})
    info = run_info(trainer)
    assert drawn_steps(hidden.draws, records) == [0, 3, 6, 9, 12]
    live = hidden.probe
    path = save_animation(StepReplay(replay_copy(hidden), info, records, 5), tmp_path / "steps.apng", SMALL,
                          Animation("apng", "steps"))
    frames = frames_of(path)
    assert len(frames) == 5 and hidden.probe is live
    for i, step in ((0, 0), (3, 9)):
        still = fed_panel(qtbot, "hidden", (info, [r for r in records if r.step <= step]), size=(900, 500))
        title, details = caption_lines(still, step)
        np.testing.assert_array_equal(frames[i], rgb(render_image(still, SMALL, (f"{title} · step {step}", details))))
    assert not np.array_equal(frames[1], frames[4])


def test_the_training_curve_replays_every_step_and_as_mp4(qtbot, tmp_path, lstm_run):
    info, records = lstm_run
    training = fed_panel(qtbot, "training", lstm_run)
    assert drawn_steps(training.draws, records) == [1, 2, 3, 4, 5, 6]
    path = save_animation(StepReplay(replay_copy(training), info, records), tmp_path / "t.mp4",
                          Figure(size=(640, 360)), Animation("mp4", "steps"))
    meta, count = mp4_facts(path)
    assert (meta["codec"], meta["pix_fmt"], meta["size"], count) == ("h264", "yuv420p", (640, 360), 6)


def test_a_replay_needs_two_snapshots_and_panels_with_their_own_work_refuse(qtbot, lstm_run):
    info, records = lstm_run
    hidden = fed_panel(qtbot, "hidden", lstm_run)
    with pytest.raises(ValueError, match="hidden: the records hold 1 step"):
        StepReplay(replay_copy(hidden), info, records[-1:])
    decoding = fed_panel(qtbot, "decoding", lstm_run)
    with pytest.raises(ValueError, match="decoding cannot replay training steps"):
        StepReplay(replay_copy(decoding), info, records)
    with pytest.raises(ValueError, match="has no time cursor"):
        TimeSweep(fed_panel(qtbot, "training", lstm_run), 12)


# ------------------------------------------------------------------------------ over expansions
@pytest.fixture(scope="module")
def reverse_trainer():
    from app.training.engine import make_trainer

    trainer = make_trainer(tiny(task="reverse", cell="gru", attention="dot", hidden_size=16, embed_size=8,
                                seq_len=6, batch_size=8))
    for _ in range(3):
        trainer.step()
    return trainer


def test_a_gif_over_expansions_grows_the_beam_tree(qtbot, reverse_trainer, tmp_path):
    from app.panels.decoding.panel import DecodingPanel
    from app.theme import LIGHT
    from app.training.engine import run_info

    panel = DecodingPanel(LIGHT)
    qtbot.addWidget(panel)
    panel.reset(run_info(reverse_trainer))
    panel.input.setText("abcd")
    view = panel.decode_now(reverse_trainer)
    expansions = view.result.tree[-1].step
    assert panel.frame_count() == expansions >= 2
    path = save_animation(FrameSweep(panel), tmp_path / "tree.gif", Figure(size=(960, 540)),
                          Animation("gif", "expansions"))
    frames = frames_of(path)
    assert len(frames) == expansions and durations(path) == [500] * expansions  # 2 frames/s
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))
    assert panel.shown_steps == expansions  # back to the whole tree


# ------------------------------------------------------------------------------ options, files
@pytest.mark.parametrize(("animation", "message"), [
    (Animation("webm"), "--animate must be one of gif, mp4, apng; got 'webm'"),
    (Animation("gif", "epochs"), "--over must be one of t, steps, expansions; got 'epochs'"),
    (Animation("gif", fps=60), "--fps must be from 0.5 to 50 for gif"),
    (Animation("mp4", fps=0.1), "--fps must be from 0.5 to 60 for mp4"),
    (Animation("gif", frames_max=1), "--frames-max must be from 2 to 1000; got 1"),
    (Animation("mp4", loop=True), "--loop is for gif and apng"),
])
def test_bad_options_are_refused_in_one_line(animation, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as err:
        animation.validated()
    assert "\n" not in str(err.value)


def test_an_odd_size_is_refused_for_mp4_before_anything_is_written(hidden, tmp_path):
    with pytest.raises(ValueError, match="even width and height .* got 641x360: try 642x360"):
        list(write_animation(TimeSweep(hidden, 12), tmp_path / "h.mp4", Figure(size=(641, 360)), Animation("mp4")))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["gif", "apng", "mp4"])
def test_cancelling_leaves_no_file_and_the_old_one_intact(hidden, tmp_path, fmt):
    target = tmp_path / f"hidden.{fmt}"
    target.write_bytes(b"the previous animation")
    frames = write_animation(TimeSweep(hidden, 12), target, SMALL, Animation(fmt))
    assert next(frames) == 1 and next(frames) == 2
    frames.close()  # Cancel
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert target.read_bytes() == b"the previous animation"
    assert hidden.parentWidget() is None and hidden.time_cursor == 0


def test_a_missing_video_library_is_one_line_saying_how_to_get_it(monkeypatch, hidden, tmp_path):
    from core.errors import UserError

    monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)  # as if not installed
    with pytest.raises(UserError, match="pip install imageio-ffmpeg") as err:
        list(write_animation(TimeSweep(hidden, 12), tmp_path / "h.mp4", SMALL, Animation("mp4")))
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []
    from app.export.figure import save_png

    assert save_png(hidden, tmp_path / "still.png", SMALL).exists()  # stills need none of it


# ------------------------------------------------------------------------------ encoders
def test_encoders_hold_one_frame_not_the_animation():
    """200 frames of 640x360 (138 MB as RGB) go through each encoder with a flat peak of the
    memory Python tracks (numpy arrays; Pillow's image buffers are C memory, not counted),
    so no frame list builds up in our code."""
    size, count = (640, 360), 200
    base = np.full((size[1], size[0], 3), 250, np.uint8)
    base[:100] = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :, None]

    def frame(i: int) -> np.ndarray:
        f = base.copy()
        f[120:340, i * 3: i * 3 + 4] = (200, 40, 40)
        return f

    palette = gif_palette([frame(0)])
    for make in (lambda out: GifWriter(out, size, 25, count, palette), lambda out: ApngWriter(out, size, 25, count)):
        out = io.BytesIO()
        writer = make(out)  # its fixed state (the GIF's 16 MB colour lookup) is not frames
        tracemalloc.start()
        for i in range(count):
            writer.add(frame(i))
        writer.close()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 12 * base.nbytes  # a few frames' worth (and working arrays), not 200
        with Image.open(io.BytesIO(out.getvalue())) as decoded:
            assert decoded.n_frames == count
            decoded.seek(count - 1)
            shown = np.asarray(decoded.convert("RGB"))
        assert np.abs(shown.astype(int) - frame(count - 1)).max() <= 8


def test_the_changed_box_and_the_gif_delays():
    a = np.zeros((5, 7), np.uint8)
    b = a.copy()
    assert changed_box(a, b) is None
    b[1, 2] = b[3, 5] = 1
    assert changed_box(a, b) == (2, 1, 6, 4)
    assert centiseconds(3, 10) == [10, 10, 10] and sum(centiseconds(30, 30)) == 100
    assert centiseconds(2, 0.5) == [200, 200]


# ------------------------------------------------------------------------------ the window's record log
def test_the_record_log_stays_bounded_and_evenly_spread(lstm_run):
    """Snapshots of each kind are thinned apart; steps stay in order with every kind kept."""
    info, records = train(tiny(), 40)
    log = RecordLog(max_steps=16, max_snapshots=5)
    log.add(records)
    kept = log.records()
    steps = [r.step for r in kept if type(r).__name__ == "StepRecord"]
    assert len(steps) <= 16 and steps == sorted(steps) and steps[-1] >= 33
    assert len(set(np.diff(steps))) <= 2  # evenly spaced (one gap, or the gap after thinning)
    for kind in ("GradientRecord", "SpectrumRecord"):
        at = [r.step for r in kept if type(r).__name__ == kind]
        assert 2 <= len(at) <= 5, kind
    assert [r.step for r in kept] == sorted(r.step for r in kept)
    assert "Kept:" in log.describe()


def test_the_record_log_bounds_the_bytes_of_snapshots(lstm_run):
    info, records = lstm_run
    probe = records[-1].probe
    from app.export.replay import nbytes

    log = RecordLog(max_bytes=3 * nbytes(probe))
    log.add([probe.__class__(**{**probe.__dict__, "step": s}) for s in range(20)])
    assert log.bytes <= 3 * nbytes(probe) and len(log.records()) >= 2



@pytest.mark.slow  # a fresh interpreter: torch and Qt load again
def test_without_pillow_and_imageio_ffmpeg_the_app_starts_and_exports_stills(tmp_path):
    """In a fresh interpreter where neither package can be imported: the window builds, a PNG
    and an SVG are written, and a GIF or MP4 is one line saying how to get what is missing."""
    import subprocess
    import sys
    from pathlib import Path

    script = f"""
import sys
sys.modules["PIL"] = sys.modules["imageio_ffmpeg"] = None  # as if not installed
from tests.app.conftest import tiny, train
from app.window.offscreen import build_window, ensure_app
ensure_app()
run = train(tiny(), 2)
window = build_window(*run)
from app.export.animation import Animation, TimeSweep, save_animation
from app.export.figure import Figure, save_png, save_svg
from core.errors import UserError
hidden = window.panels["hidden"]
save_png(hidden, r"{tmp_path / 'h.png'}", Figure(size=(480, 270)))
save_svg(hidden, r"{tmp_path / 'h.svg'}", Figure(size=(480, 270)))
for fmt in ("gif", "mp4"):
    try:
        save_animation(TimeSweep(hidden, 12), r"{tmp_path}/h." + fmt, Figure(size=(480, 270)), Animation(fmt))
    except UserError as err:
        print(err)
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, cwd=root,
                          env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("GIF and APNG animations need Pillow") and "pip install pillow" in lines[0]
    assert lines[1].startswith("MP4 animations need imageio-ffmpeg") and "pip install imageio-ffmpeg" in lines[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "h.svg"]
