"""Start-up benchmark: launch to the end of the first paint of every visible panel.

Measured in fresh interpreters, over the time to ``import torch`` (``ratio``, target <= 0.6):
the window is meant to be on screen, every panel drawn, before the engine could even load.
The window's own first paint comes before its panels' (docks paint after the frame), so
the clock stops only when the last panel visible on screen has finished its first paint;
the window is built as ``python main.py`` builds it, without starting the training process
(which starts after the first paint, so it is no part of what the user waits for here).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FIRST_PAINT_SCRIPT = """
import os, sys, time
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from app.bench.paints import PaintCounter
from app.window.main_window import MainWindow
app = QApplication(sys.argv[:1])
window = MainWindow(autostart=False)
marks = {}
window.first_painted.connect(lambda: marks.setdefault("window", time.perf_counter()))
def check():  # runs once the paint pass that painted a panel has ended
    visible = [p.name for p in window.visible_panels()]
    if "window" in marks and visible and all(counter.counts[n] for n in visible):
        window_ms = (time.perf_counter() - marks["window"]) * 1000
        sys.stdout.write(f"{window_ms:.3f} {len(visible)}\\n"); sys.stdout.flush(); os._exit(0)
counter = PaintCounter(window.panels, on_paint=lambda name: QTimer.singleShot(0, check))
window.show()
app.exec()
"""


def _launch(code: str) -> tuple[float, str]:
    """(seconds from launch to exit, what the script printed) in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120)
    return time.perf_counter() - start, done.stdout


def bench_startup(repeats: int = 3) -> dict[str, float]:
    """Median launch-to-every-panel-painted over median launch-to-``import torch``."""
    _launch("import torch")  # warm the file cache for both
    _launch(FIRST_PAINT_SCRIPT)
    torch_s, panels_s, window_s, panels = [], [], [], 0
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        torch_s.append(_launch("import torch")[0])
        seconds, out = _launch(FIRST_PAINT_SCRIPT)
        after_window_ms, panels = out.split()
        panels_s.append(seconds)
        window_s.append(seconds - float(after_window_ms) / 1000)
    torch_median, panels_median = statistics.median(torch_s), statistics.median(panels_s)
    return {"ratio": panels_median / torch_median, "panels_painted_s": panels_median,
            "window_painted_s": statistics.median(window_s), "import_torch_s": torch_median,
            "window_ratio": statistics.median(window_s) / torch_median, "visible_panels": int(panels)}
