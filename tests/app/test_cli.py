"""The app's commands through main.py: shot sizes and one-line errors; no torch before paint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

import main

ROOT = Path(__file__).resolve().parents[2]


def test_shot_saves_a_png_of_exactly_the_requested_size(qtbot, tmp_path, capsys):
    out = tmp_path / "window.png"
    code = main.main(["shot", "--preset", "adding-gru", "--steps", "2", "--out", str(out), "--size", "1280x720"])
    assert code == 0 and out.is_file()
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1280, 720)
    panel = tmp_path / "gates.png"
    assert main.main(["shot", "--preset", "adding-gru", "--steps", "1", "--panel", "gates",
                      "--out", str(panel), "--size", "640x400", "--theme", "dark"]) == 0
    assert (QImage(str(panel)).width(), QImage(str(panel)).height()) == (640, 400)


@pytest.mark.parametrize("args, message", [
    (["--panel", "nope"], "unknown panel 'nope'; choose one of training"),
    (["--size", "big"], "size must look like WIDTHxHEIGHT"),
    (["--size", "10x10"], "size must be from 320x240"),
    (["--preset", "nope"], "unknown preset 'nope'; known presets: "),
    (["--theme", "pink"], "theme must be one of light, dark"),
    (["--out", "shot.jpg"], "out must be a .png file"),
])
def test_bad_shot_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    argv = ["shot", "--steps", "1", "--out", str(tmp_path / "x.png"), *args]
    assert main.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_app_modules_import_neither_torch_nor_the_trainer():
    code = ("import sys, main, app.cli.gui, app.window.main_window, app.bench.window, app.window.offscreen, app.panels;"
            "main.build_parser();"
            "bad = [m for m in ('torch', 'core.training.trainer') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_the_window_never_loads_torch_from_launch_to_the_first_trained_frame(tmp_path):
    """The training process builds the first model while the window is made (it starts
    first), and the window's own process never imports torch: looking for an autosave to
    offer back imported the session format, and with it torch, on the GUI thread (seconds
    of a frozen window right after start-up)."""
    code = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtWidgets import QApplication
from app.window.main_window import MainWindow

def main():
    app = QApplication([])
    window = MainWindow()
    assert window.controller is not None and window.controller.is_alive  # started before the widgets
    window.run_built.connect(lambda info: window.toggle_run())
    result = []
    def drawn():
        if window.last_step is not None and not result:
            result.append(3 if 'torch' in sys.modules else 0)
            window.close()
            app.quit()
    window.frame_drawn.connect(drawn)
    window.show()
    app.exec()
    import shiboken6
    shiboken6.delete(window)  # before the interpreter's teardown, as app.cli.gui does
    return result[0] if result else 4

if __name__ == "__main__":
    sys.exit(main())
"""
    script = tmp_path / "start_up.py"
    script.write_text(code)
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, timeout=300, capture_output=True,
                          text=True)
    assert done.returncode == 0, ("torch was imported in the window's process" if done.returncode == 3
                                  else done.stderr[-2000:])
