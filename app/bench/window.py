"""Benchmarks of the window while it trains, for ``python main.py bench`` (app.cli.bench).

Each returns a dict whose headline key the bench command compares with its target:

* ``bench_redraw``: how often every visible panel is repainted, as fast as the window can
  (1600x900, hidden 256, T 200) while the training process trains: the slowest panel's
  paints per second (``redraws_per_s``; target >= 30), each panel's, and the loop's ticks.
* ``bench_window_training``: training steps per second with the window open and drawing,
  over the same experiment trained headless in this process (``ratio``; target >= 0.8), with
  the frame timer's ticks, each visible panel's paints per second and both processes' memory.

Paints are counted per panel (app.bench.paints): a timer tick is not a redraw.
* ``bench_time_to_interactive``: time from launch to the first trained frame drawn (Run
  pressed as soon as the model is built), over the time to ``import torch``, each in a fresh
  interpreter (``ratio``; target <= 1.5).
"""

from __future__ import annotations

import time
from typing import Any

from app.bench.paints import PaintCounter, rates, rss_mb

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


def _visible(window: Any) -> list[str]:
    return [p.name for p in window.visible_panels()]


def bench_redraw(seconds: float = 5.0, hidden_size: int = 256, seq_len: int = 200) -> dict[str, Any]:
    """Redraw every visible panel and let Qt paint, as often as possible, while training."""
    from core.config import Experiment

    experiment = Experiment(task="adding", cell="lstm", hidden_size=hidden_size, seq_len=seq_len,
                            batch_size=32, steps=1_000_000)
    app, window = _open_window(experiment)
    try:
        window.frame_timer.stop()  # this loop is the frame clock
        counter = PaintCounter(window.panels)
        window.controller.run()
        _wait(app, lambda: window.last_step is not None, 120)
        visible = _visible(window)
        ticks, first_step, before = 0, window.last_step.step, counter.snapshot()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for panel in window.visible_panels():  # every panel on screen redraws, new data or not
                panel.invalidate()
            window.draw_frame()  # pushes the data into the plot items
            app.processEvents()  # Qt paints them; records arrive
            ticks += 1
        elapsed = time.perf_counter() - start
        per_panel = rates(before, counter.snapshot(), elapsed, visible)
        steps = window.last_step.step - first_step
    finally:
        window.close()
    slowest = min(per_panel, key=per_panel.get)
    return {"redraws_per_s": per_panel[slowest], "slowest_panel": slowest, "panel_paints_per_s": per_panel,
            "ticks_per_s": ticks / elapsed, "seconds": elapsed, "training_steps_per_s": steps / elapsed,
            "hidden_size": hidden_size, "seq_len": seq_len}


def bench_window_training(seconds: float = 5.0, preset: str = "adding-lstm") -> dict[str, Any]:
    """Steps/s of ``preset`` with the window open and drawing, over steps/s headless."""
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
        counter = PaintCounter(window.panels)
        ticks = [0]
        window.frame_drawn.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))
        window.controller.run()
        _wait(app, lambda: window.last_step is not None, 120)
        child = window.controller.process.pid
        memory_before = rss_mb(child), rss_mb()
        visible = _visible(window)
        first, ticks_before, before = window.last_step.step, ticks[0], counter.snapshot()
        start = time.perf_counter()
        _run_event_loop(seconds)  # the real event loop, as in the app: no polling here
        elapsed = time.perf_counter() - start
        app.processEvents()
        windowed = (window.last_step.step - first) / elapsed
        per_panel = rates(before, counter.snapshot(), elapsed, visible)
        tick_rate = (ticks[0] - ticks_before) / elapsed
        memory_after = rss_mb(child), rss_mb()
    finally:
        window.close()
    return {"ratio": windowed / headless if headless else 0.0, "headless_steps_per_s": headless,
            "window_steps_per_s": windowed, "ticks_per_s": tick_rate, "panel_paints_per_s": per_panel,
            "training_process_rss_mb": memory_after[0], "training_process_rss_growth_mb": memory_after[0] - memory_before[0],
            "window_process_rss_mb": memory_after[1], "preset": preset, "torch_threads": torch.get_num_threads()}


def _run_event_loop(seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


# Launch to the first trained frame: a user who presses Run the moment the model is built.
# As app.cli.gui does: the training process starts before this process imports Qt.
INTERACTIVE_SCRIPT = """
import os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from app.training.child import spawn
from app.training.loop import TRAINING_PROCESS, training_loop
engine = spawn(training_loop(), TRAINING_PROCESS)
from PySide6.QtWidgets import QApplication
from app.window.main_window import MainWindow
app = QApplication(sys.argv[:1])
window = MainWindow(engine=engine)
window.run_built.connect(lambda info: window.toggle_run())
def drawn():
    if window.last_step is not None:  # a frame drawn after the first training step arrived
        window.controller.process.kill()
        sys.stdout.write("interactive\\n"); sys.stdout.flush(); os._exit(0)
window.frame_drawn.connect(drawn)
window.show()
app.exec()
"""


def bench_time_to_interactive(repeats: int = 3) -> dict[str, float]:
    """Median launch-to-first-trained-frame over median launch-to-``import torch``.

    The window builds its first model while it is made and painted (the training process
    starts first), and the first optimizer step does not import torch._dynamo
    (core.training.optimizers), so this is about one torch import plus a build and a step.
    """
    import statistics

    from app.bench.startup import _launch

    _launch("import torch")  # warm the file cache for both
    _launch(INTERACTIVE_SCRIPT)
    torch_s, ready_s = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        torch_s.append(_launch("import torch")[0])
        ready_s.append(_launch(INTERACTIVE_SCRIPT)[0])
    torch_median, ready_median = statistics.median(torch_s), statistics.median(ready_s)
    return {"ratio": ready_median / torch_median, "interactive_s": ready_median,
            "import_torch_s": torch_median}
