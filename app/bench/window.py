"""Benchmarks of the desktop app, for ``python main.py bench`` (see core/cli_bench.py).

Each returns a dict whose ratio key the bench command compares with its target:

* ``bench_redraw``: full-window redraws per second (1600x900, hidden 256, T 200) while the
  worker trains; target >= 30.
* ``bench_window_training``: training steps per second with the window open, over the same
  experiment trained headless in the same process; target >= 0.8.
* ``bench_startup``: time from launch to the window's first paint, over the time to
  ``import torch``, each in a fresh interpreter; target <= 0.6.
* ``bench_time_to_interactive``: time from launch to the first trained frame drawn (Run
  pressed as soon as the model is built), over the time to ``import torch``; target <= 1.5.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REDRAW_SIZE = (1600, 900)


def _app() -> Any:
    from app.window.offscreen import ensure_app

    return ensure_app()


def _wait(app: Any, condition, timeout: float) -> None:
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("benchmark set-up timed out")
        app.processEvents()
        time.sleep(0.002)


def _open_window(experiment: Any) -> tuple[Any, Any]:
    from app.window.main_window import MainWindow

    app = _app()
    window = MainWindow(experiment=experiment)
    window.resize(*REDRAW_SIZE)
    window.show()
    window.start()
    _wait(app, lambda: window.run_info is not None and window.panels["hidden"].probe is not None, 300)
    return app, window


def bench_redraw(seconds: float = 5.0, hidden_size: int = 256, seq_len: int = 200) -> dict[str, float]:
    """Redraw every panel and repaint the whole window as often as possible while training."""
    from core.config import Experiment

    experiment = Experiment(task="adding", cell="lstm", hidden_size=hidden_size, seq_len=seq_len,
                            batch_size=32, steps=1_000_000)
    app, window = _open_window(experiment)
    try:
        window.frame_timer.stop()  # this loop is the frame clock
        window.controller.run()
        _wait(app, lambda: window.last_step is not None, 120)
        frames, start = 0, time.perf_counter()
        first_step = window.last_step.step
        while time.perf_counter() - start < seconds:
            for panel in window.visible_panels():  # every panel on screen redraws, new data or not
                panel.invalidate()
            window.draw_frame()  # refreshes and repaints them
            app.processEvents()  # records arrive
            frames += 1
        elapsed = time.perf_counter() - start
        steps = window.last_step.step - first_step
    finally:
        window.close()
    return {"redraws_per_s": frames / elapsed, "frames": frames, "seconds": elapsed,
            "training_steps_per_s": steps / elapsed, "hidden_size": hidden_size, "seq_len": seq_len}


def bench_window_training(seconds: float = 5.0, preset: str = "adding-lstm") -> dict[str, float]:
    """Steps/s of ``preset`` with the window open and redrawing, over steps/s headless."""
    import torch

    from app.training.engine import make_trainer
    from app.training.loop import leave_a_core_for_the_gui
    from core.presets import load_preset

    # The same torch thread count both ways, so the ratio is the window's cost alone.
    leave_a_core_for_the_gui()
    experiment = load_preset(preset).experiment.replace(steps=1_000_000)
    trainer = make_trainer(experiment)
    trainer.step()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer.step()
        count += 1
    headless = count / (time.perf_counter() - start)
    del trainer

    app, window = _open_window(experiment)
    try:
        window.controller.run()
        _wait(app, lambda: window.last_step is not None, 120)
        first, start = window.last_step.step, time.perf_counter()
        frames_before = _count_frames(window)
        _run_event_loop(seconds)  # the real event loop, as in the app: no polling here
        elapsed = time.perf_counter() - start
        app.processEvents()
        windowed = (window.last_step.step - first) / elapsed
        frames = _count_frames(window) - frames_before
    finally:
        window.close()
    return {"ratio": windowed / headless if headless else 0.0, "headless_steps_per_s": headless,
            "window_steps_per_s": windowed, "window_frames_per_s": frames / elapsed, "preset": preset,
            "torch_threads": torch.get_num_threads()}


def _run_event_loop(seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _count_frames(window: Any) -> int:
    if not hasattr(window, "_bench_frames"):
        window._bench_frames = [0]
        window.frame_drawn.connect(lambda: window._bench_frames.__setitem__(0, window._bench_frames[0] + 1))
    return window._bench_frames[0]


FIRST_PAINT_SCRIPT = """
import os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtWidgets import QApplication
from app.window.main_window import MainWindow
app = QApplication(sys.argv[:1])
window = MainWindow()  # as `python main.py` builds it (the training process starts at once)
def painted():
    window.controller.process.kill()  # not left to import torch while the next launch is timed
    sys.stdout.write("painted\\n"); sys.stdout.flush(); os._exit(0)
window.first_painted.connect(painted)
window.show()
app.exec()
"""

# Launch to the first trained frame: a user who presses Run the moment the model is built.
INTERACTIVE_SCRIPT = """
import os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtWidgets import QApplication
from app.window.main_window import MainWindow
app = QApplication(sys.argv[:1])
window = MainWindow()
window.run_built.connect(lambda info: window.toggle_run())
def drawn():
    if window.last_step is not None:  # a frame drawn after the first training step arrived
        window.controller.process.kill()
        sys.stdout.write("interactive\\n"); sys.stdout.flush(); os._exit(0)
window.frame_drawn.connect(drawn)
window.show()
app.exec()
"""


def _launch_seconds(code: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return time.perf_counter() - start


def bench_startup(repeats: int = 3) -> dict[str, float]:
    """Median launch-to-first-paint over median launch-to-``import torch`` (fresh interpreters)."""
    _launch_seconds("import torch")  # warm the file cache for both
    _launch_seconds(FIRST_PAINT_SCRIPT)
    torch_s, paint_s = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        torch_s.append(_launch_seconds("import torch"))
        paint_s.append(_launch_seconds(FIRST_PAINT_SCRIPT))
    torch_median, paint_median = statistics.median(torch_s), statistics.median(paint_s)
    return {"ratio": paint_median / torch_median, "first_paint_s": paint_median,
            "import_torch_s": torch_median}


def bench_time_to_interactive(repeats: int = 3) -> dict[str, float]:
    """Median launch-to-first-trained-frame over median launch-to-``import torch``.

    The window builds its first model while it is made and painted (the training process
    starts first), and the first optimizer step does not import torch._dynamo
    (core.training.optimizers), so this is about one torch import plus a build and a step.
    """
    _launch_seconds("import torch")  # warm the file cache for both
    _launch_seconds(INTERACTIVE_SCRIPT)
    torch_s, ready_s = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        torch_s.append(_launch_seconds("import torch"))
        ready_s.append(_launch_seconds(INTERACTIVE_SCRIPT))
    torch_median, ready_median = statistics.median(torch_s), statistics.median(ready_s)
    return {"ratio": ready_median / torch_median, "interactive_s": ready_median,
            "import_torch_s": torch_median}
