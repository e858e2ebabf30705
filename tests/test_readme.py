"""The README's commands work as written: every complete ``python main.py`` command in it
runs (with a small step count, writing into a temporary folder) and every synopsis line
names only options that exist and all of them.

What it found before: ``export``'s synopsis left out ``--panels`` (its example used it) and
``decode``'s left out six options; progress bars filled a pipe with carriage returns; ``shot``
printed Qt's "propagateSizeHints" note three times.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9]*(?:\.[a-z]+)?\b|…|\.\.\.|\[|\|")  # NAME, FILE.rnnx, [--x], a|b
SKIPPED = {"bench": "minutes of benchmarks", None: "opens the window"}
STEPS = "2"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)


def commands(text: str) -> list[str]:
    """Each ``python main.py ...`` command: block lines (continuations joined, prompts and
    comments dropped) and inline code spans."""
    found = []
    for block in code_blocks(text):
        joined = False  # the line before ended in a shell continuation (\\)
        for line in block.splitlines():
            line = re.sub(r"^\$ ", "", line.split("  #")[0].rstrip())
            more = line.endswith("\\")
            line = line.rstrip("\\").rstrip()
            if joined and found:
                found[-1] += " " + line.strip()
            elif re.match(r"(\.venv/bin/)?python main\.py", line):
                found.append(line)
                joined = more
                continue
            elif line.startswith(" ") and found and line.strip().startswith("["):
                found[-1] += " " + line.strip()
            joined = more and joined
    found += re.findall(r"`((?:\.venv/bin/)?python main\.py[^`]*)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return list(dict.fromkeys(found))


def subcommands() -> dict[str | None, set[str]]:
    """Command name (None: the top level) -> its long options."""
    parser = main.build_parser()
    out: dict[str | None, set[str]] = {None: set()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = {o for a in sub._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
        else:
            out[None] |= {o for o in action.option_strings if o.startswith("--")} - {"--help"}
    return out


def command_of(words: list[str]) -> str | None:
    known = subcommands()
    return next((w for w in words if w in known), None)


SYNOPSES = [c for c in commands(README) if PLACEHOLDER.search(c.split("main.py", 1)[1])]
RUNNABLE = [c for c in commands(README) if c not in SYNOPSES]


def test_the_readme_says_how_to_run_commands_inside_the_environment():
    assert "source .venv/bin/activate" in README and ".venv/bin/python main.py" in README
    assert len(RUNNABLE) >= 5 and len(SYNOPSES) >= 8, (RUNNABLE, SYNOPSES)


def test_every_command_and_synopsis_names_real_options_and_all_of_them():
    options = subcommands()
    mentioned: dict[str | None, set[str]] = {name: set() for name in options}
    for line in commands(README):
        words = line.split("main.py", 1)[1].replace("[", " ").replace("]", " ").replace("|", " ").split()
        command = command_of(words)
        flags = {w.split("=")[0] for w in words if w.startswith("--")}
        unknown = flags - options[command] - options[None]
        assert not unknown, f"{line!r}: no such option {sorted(unknown)}"
        mentioned[command] |= flags
        mentioned[None] |= flags & options[None]
    for command, flags in options.items():
        prose = {flag for flag in flags if f"`{flag}" in README}  # the top level's are described in text
        missing = flags - mentioned[command] - (prose if command is None else set())
        assert not missing, f"{command or 'main.py'}: {sorted(missing)} missing from the README's synopsis"


def as_test_run(command: str, tmp_path: Path) -> list[str]:
    """The command with a small step count and its outputs in ``tmp_path``."""
    words = shlex.split(command)
    words = words[words.index("main.py") + 1:]
    for i, word in enumerate(words[:-1]):
        if word == "--steps":
            words[i + 1] = STEPS
        if word in ("--out", "--save", "--export-model"):
            words[i + 1] = str(tmp_path / Path(words[i + 1]).name)
    if command_of(words) in ("train", "decode", "shot", "export", "dynamics") and "--steps" not in words:
        words += ["--steps", STEPS]
    return words


@pytest.mark.slow
@pytest.mark.parametrize("command", RUNNABLE)
def test_each_readme_command_runs_as_written(command, tmp_path):
    words = as_test_run(command, tmp_path)
    name = command_of(words)
    # A file the reader makes first (the model their own code exported): it parses, at least.
    missing = [words[i + 1] for i, w in enumerate(words[:-1])
               if w in ("--model", "--vocab", "--data", "--session") and not (ROOT / words[i + 1]).exists()]
    if name in SKIPPED or missing:
        assert main.build_parser().parse_args(words).command == name  # it parses, at least
        pytest.skip(f"not run: {SKIPPED[name] if name in SKIPPED else 'needs the reader’s ' + ', '.join(missing)}")
    # As a user's shell runs it: no display, stderr a pipe (progress bars must not draw there).
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["XDG_DATA_HOME"] = str(tmp_path / "share")  # --install-desktop writes here, not in the user's home
    done = subprocess.run([sys.executable, "main.py", *words], cwd=ROOT, env=env, capture_output=True,
                          timeout=600)  # bytes: text mode would turn a carriage return into a newline
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, err[-2000:]
    assert "\r" not in err, "a progress bar was drawn into a pipe"
    assert "Traceback" not in err and "This plugin does not support" not in err, err
