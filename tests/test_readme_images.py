"""Each image in the README is captioned with the command that made it: the same command
(command, preset, steps, panels, size) as the Makefile's ``shot`` target, which makes them,
and the PNG has the pixel size that command asks for."""

from __future__ import annotations

import re
import shlex
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IGNORED = {"--out", "--formats"}  # where a file goes, not what is in it


def readme_images() -> dict[str, list[str]]:
    """docs/NAME.png -> the `python main.py ...` command quoted in the caption under it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(r"!\[[^\]]*\]\((docs/[\w.-]+\.png)\)\s*\n\s*\n\*([^\n]*)", text):
        command = re.search(r"`python main\.py ([^`]+)`", match.group(2))
        assert command, f"the caption of {match.group(1)} quotes no `python main.py ...` command"
        found[match.group(1)] = shlex.split(command.group(1))
    return found


def makefile_images() -> dict[str, list[str]]:
    """docs/NAME.png -> the main.py arguments of the `shot` recipe line that makes it."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").split("\nshot:", 1)[1].split("\n\n", 1)[0]
    made, last = {}, None
    for line in lines.splitlines()[1:]:
        words = shlex.split(line.strip())
        if "main.py" in words:
            last = words[words.index("main.py") + 1:]
            out = last[last.index("--out") + 1] if "--out" in last else ""
            if out.endswith(".png"):
                made[out] = last
        elif words[:1] == ["mv"] and last is not None:  # an export's file moved into docs/
            made[words[2]] = last
    return made


def options(args: list[str]) -> dict[str, str]:
    """The command and its options, defaults filled in, where files go left out."""
    command, rest = args[0], args[1:]
    pairs = dict(zip(rest[::2], rest[1::2], strict=True))
    pairs.setdefault("--size", "1920x1080")
    if command == "export":
        pairs["--panel"] = pairs.pop("--panels", "all")
    pairs.setdefault("--panel", "all")
    return {"command": command, **{k: v for k, v in pairs.items() if k not in IGNORED}}


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


CAPTIONED = readme_images()


def test_the_readme_shows_images_and_the_makefile_makes_each_of_them():
    assert set(CAPTIONED) >= {"docs/screenshot.png", "docs/decoding.png", "docs/slide-gradients.png"}
    assert set(makefile_images()) == set(CAPTIONED)


@pytest.mark.parametrize("image", sorted(CAPTIONED))
def test_each_caption_quotes_the_command_that_made_the_image(image):
    made_by = makefile_images()[image]
    assert options(CAPTIONED[image]) == options(made_by), f"{image}: caption {CAPTIONED[image]}, Makefile {made_by}"
    width, height = map(int, options(made_by)["--size"].split("x"))
    assert png_size(ROOT / image) == (width, height)
