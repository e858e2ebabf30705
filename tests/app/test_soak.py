"""Soak: 20,000 steps with every panel live. Memory stays bounded, in the window's process and
in the training process, and redraws do not slow down as the history grows (slow; CI runs it)."""

from __future__ import annotations

import os
import time

import pytest

from core.config import Experiment

STEPS = 20_000
MEMORY_GROWTH_LIMIT = 32 * 2**20  # RSS growth allowed after the first 2,000 steps (measured: 6-7 MiB)
REDRAW_RATIO_LIMIT = 0.5  # redraws/s in the last thousand steps over the first thousand, at least


def rss(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default) in bytes (Linux)."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rate(frames: list[tuple[float, int]], first: int, last: int) -> float:
    """Redraws per second while the step count was in [first, last)."""
    times = [t for t, step in frames if first <= step < last]
    assert len(times) >= 10, f"only {len(times)} redraws between steps {first} and {last}"
    return (len(times) - 1) / (times[-1] - times[0])


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS is read from /proc (Linux)")
def test_20000_steps_with_every_panel_live_keep_memory_bounded_and_redraws_steady(qtbot):
    import torch

    from app.window.main_window import MainWindow

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from more, and a busy CI machine stalls them
    window = MainWindow(experiment=Experiment(task="adding", cell="lstm", hidden_size=8, seq_len=10,
                                              batch_size=4, lr=0.01, steps=1_000_000))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.run_info is not None, timeout=60_000)
    for name, dock in window.docks.items():  # tabbed panels float beside the window: all are live
        if window.panels[name].visibleRegion().isEmpty():
            dock.setFloating(True)
            dock.resize(640, 420)
    qtbot.waitUntil(lambda: len(window.visible_panels()) == len(window.panels), timeout=10_000)

    frames: list[tuple[float, int]] = []
    memory: dict[int, int] = {}

    def on_frame() -> None:
        step = window.last_step.step if window.last_step is not None else 0
        frames.append((time.perf_counter(), step))
        if step >= 2_000 and not memory:
            memory[step] = rss(), rss(window.controller.process.pid)

    window.frame_drawn.connect(on_frame)
    try:
        window.toggle_run()
        qtbot.waitUntil(lambda: window.last_step is not None and window.last_step.step >= STEPS, timeout=840_000)
        window.toggle_run()
        qtbot.waitUntil(lambda: window.state == "paused", timeout=30_000)
        end, end_training = rss(), rss(window.controller.process.pid)
    finally:
        torch.set_num_threads(threads)
    (start_step, (start, start_training)), = memory.items()
    growth, training_growth = end - start, end_training - start_training
    early, late = rate(frames, 1_000, 2_000), rate(frames, STEPS - 1_000, STEPS)
    seconds = frames[-1][0] - frames[0][0]
    print(f"\n{STEPS} steps in {seconds:.0f} s; RSS {start / 2**20:.0f} MiB at step {start_step} -> "
          f"{end / 2**20:.0f} MiB; training process {start_training / 2**20:.0f} -> {end_training / 2**20:.0f} "
          f"MiB; redraws/s {early:.1f} (steps 1000-2000) -> {late:.1f} (last 1000)")
    assert growth < MEMORY_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.0f} MiB"
    assert training_growth < MEMORY_GROWTH_LIMIT, f"the training process grew by {training_growth / 2**20:.0f} MiB"
    assert late >= REDRAW_RATIO_LIMIT * early, f"redraws/s fell from {early:.1f} to {late:.1f}"
    training = window.panels["training"]
    assert len(training.series) >= STEPS and all(p.run is window.run_info for p in window.panels.values())
    window.close()
