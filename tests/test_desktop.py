"""Launching like a desktop app: ``pip install .`` gives ``rnn-explorer`` with its presets and
icon, and ``--install-desktop`` writes a freedesktop.org launcher, icon and MIME type."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import main
from app.cli.desktop import MIME_TYPE, exec_line

ROOT = Path(__file__).resolve().parents[1]
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"


def read_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive in desktop entries
    parser.read_string(path.read_text(encoding="utf-8"))
    return dict(parser["Desktop Entry"])


def test_install_desktop_writes_a_launcher_an_icon_and_the_session_mime_type(tmp_path, monkeypatch, capsys):
    home = tmp_path / "share"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    assert main.main(["--install-desktop"]) == 0
    written = capsys.readouterr().out.split()
    launcher = home / "applications" / "rnn-explorer.desktop"
    icon = home / "icons" / "hicolor" / "scalable" / "apps" / "rnn-explorer.svg"
    mime = home / "mime" / "packages" / "rnn-explorer.xml"
    assert sorted(written) == sorted(map(str, (launcher, icon, mime)))

    entry = read_entry(launcher)
    assert entry["Type"] == "Application" and entry["Name"] == "RNN Explorer"
    assert entry["Terminal"] == "false" and entry["Icon"] == "rnn-explorer"
    assert MIME_TYPE in entry["MimeType"].split(";")
    command = entry["Exec"]
    assert command.endswith(" gui %f")  # a file manager passes the session's path
    program = Path(command.split(" ")[0].strip('"'))
    assert program.is_absolute() and program.exists(), command

    svg = ET.parse(icon).getroot()
    assert svg.tag.endswith("svg") and svg.get("viewBox") == "0 0 128 128"
    types = ET.parse(mime).getroot().findall(f"{MIME_NS}mime-type")
    assert [t.get("type") for t in types] == [MIME_TYPE]
    assert [g.get("pattern") for g in types[0].findall(f"{MIME_NS}glob")] == ["*.rnnx"]
    if shutil.which("update-mime-database"):  # the desktop's database now maps .rnnx to the type
        globs = (home / "mime" / "globs2").read_text()
        assert f"{MIME_TYPE}:*.rnnx" in globs


def test_the_desktop_exec_line_quotes_paths_as_the_specification_says():
    assert exec_line(["/usr/bin/rnn-explorer"]) == "/usr/bin/rnn-explorer gui %f"
    assert exec_line(["/home/a b/venv/bin/python", "/src/main.py"]) == \
        '"/home/a b/venv/bin/python" /src/main.py gui %f'
    assert exec_line(['/odd/"$x`\\']) == '"/odd/\\"\\$x\\`\\\\" gui %f'


def test_a_session_file_alone_opens_the_app_on_it(tmp_path, capsys):
    """A file manager runs ``rnn-explorer FILE.rnnx``: that is ``gui FILE.rnnx``."""
    assert main.with_command(["run.rnnx"]) == ["gui", "run.rnnx"]
    assert main.with_command(["--verbose", "a.RNNX"]) == ["--verbose", "gui", "a.RNNX"]
    assert main.with_command(["train", "--session", "a.rnnx"]) == ["train", "--session", "a.rnnx"]
    assert main.main([str(tmp_path / "missing.rnnx")]) == 2
    assert "no session file" in capsys.readouterr().err


@pytest.mark.slow
def test_pip_install_gives_the_command_with_its_presets_and_icon(tmp_path):
    """A wheel of the project (what ``pip install .`` installs) holds the rnn-explorer
    command, the presets, the corpus and the icon, and an install finds its presets."""
    source = tmp_path / "src"
    for name in ("core", "app", "resources"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("main.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(source)], check=True, timeout=300, capture_output=True)
    wheel = next(wheels.glob("rnn_explorer-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "rnn-explorer = main:main" in zf.read(entry_points).decode()
    presets = {p.name for p in (ROOT / "resources" / "presets").glob("*.toml")}
    assert {f"resources/presets/{p}" for p in presets} <= names
    assert {"main.py", "app/rnn-explorer.svg", "resources/corpora/alice.txt"} <= names
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:  # installed: unpacked as pip would, away from the source
        zf.extractall(target)
    code = ("import core.presets as p, app.cli.desktop as d; "
            "print(p.PRESET_DIR); print(len(p.list_presets())); print(d.ICON.is_file())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                         check=True, capture_output=True, text=True, timeout=120).stdout.split()
    assert Path(out[0]).is_relative_to(target) and int(out[1]) == len(presets) and out[2] == "True"
