"""Real-window screenshots at laptop to desktop sizes (the README's "At every size").

Run under an X server with each size as its screen, e.g.
    xvfb-run -s "-screen 0 2560x1440x24" .venv/bin/python tools/window_shots.py --out docs
The window is the app's own (its training process, its layout for the size), trained
STEPS steps on PRESET and paused; each PNG is what the screen shows of the window.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

SIZES = ((1280, 720), (1600, 900), (1920, 1080), (2560, 1440))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="adding-lstm")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    os.environ.setdefault("RNN_EXPLORER_HOME", tempfile.mkdtemp())  # not the user's settings

    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from app.window.main_window import MainWindow

    def wait(condition, seconds: float = 120.0) -> None:
        end = time.monotonic() + seconds
        while not condition() and time.monotonic() < end:
            app.processEvents(QEventLoop.AllEvents, 50)

    window = MainWindow(preset=args.preset, theme="light")
    window.show()
    wait(lambda: window.run_info is not None)
    window.step(args.steps)
    wait(lambda: window.last_step is not None and window.last_step.step >= args.steps and window.state == "paused")
    for width, height in SIZES:
        window.setGeometry(0, 0, width, height)
        start = time.monotonic()
        wait(lambda s=start: time.monotonic() - s > 2.0)  # the layout, the catch-up and a frame
        window.refresh_all()
        wait(lambda s=start: time.monotonic() - s > 2.5)
        image = window.screen().grabWindow(window.winId())
        path = Path(args.out) / f"window-{width}x{height}.png"
        image.save(str(path))
        print(path, image.width(), image.height())
    window.close()


if __name__ == "__main__":
    main()
