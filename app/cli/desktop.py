"""``python main.py --install-desktop``: RNN Explorer in the desktop's application menu.

Writes, under ``$XDG_DATA_HOME`` (default ``~/.local/share``), the three files the
freedesktop.org specifications read:

* ``applications/rnn-explorer.desktop``: the launcher (Desktop Entry Specification), which
  runs this installation's command with ``gui %f``, so a file manager passes a session file;
* ``icons/hicolor/scalable/apps/rnn-explorer.svg``: its icon (Icon Theme Specification);
* ``mime/packages/rnn-explorer.xml``: the ``application/x-rnn-explorer-session`` type of
  ``*.rnnx`` files (Shared MIME-info), which the launcher says it opens.

Then the desktop's caches are refreshed with ``update-mime-database`` and
``update-desktop-database`` where they are installed (a file manager reads the new type and
launcher at once); without them the files still take effect at the next login.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

APP_ID = "rnn-explorer"
MIME_TYPE = "application/x-rnn-explorer-session"
ICON = Path(__file__).resolve().parent.parent / "rnn-explorer.svg"

MIME_XML = f"""<?xml version="1.0" encoding="UTF-8"?>
<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">
  <mime-type type="{MIME_TYPE}">
    <comment>RNN Explorer session</comment>
    <sub-class-of type="application/zip"/>
    <generic-icon name="{APP_ID}"/>
    <glob pattern="*.rnnx" weight="60"/>
  </mime-type>
</mime-info>
"""


def data_home() -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share`` when it is unset or not absolute (the spec's rule)."""
    value = os.environ.get("XDG_DATA_HOME", "")
    return Path(value) if value and Path(value).is_absolute() else Path.home() / ".local" / "share"


def launch_command() -> list[str]:
    """How to start this installation: the ``rnn-explorer`` script that is running (or on
    PATH), else this Python with main.py."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == APP_ID and script.exists():
        return [str(script.resolve())]
    found = shutil.which(APP_ID)
    if found:
        return [str(Path(found).resolve())]
    main = Path(__file__).resolve().parents[2] / "main.py"
    return [sys.executable, str(main)]


def exec_line(command: list[str]) -> str:
    """The Exec value: arguments quoted as the Desktop Entry Specification wants (double
    quotes; backslash, quote, dollar and backtick escaped), then ``gui %f``."""
    def quote(arg: str) -> str:
        if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`'):
            return arg
        escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
        return f'"{escaped}"'

    return " ".join([*(quote(a) for a in command), "gui", "%f"])


def desktop_entry(command: list[str]) -> str:
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.5",
        "Name=RNN Explorer",
        "GenericName=Recurrent network lab",
        "Comment=See how recurrent neural networks learn: RNN, LSTM, GRU, BPTT, beam search and attention",
        f"Exec={exec_line(command)}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=Education;Science;ArtificialIntelligence;",
        f"MimeType={MIME_TYPE};",
        "StartupNotify=true",
        f"StartupWMClass={APP_ID}",
        "",
    ])


def install_desktop(root: Path | None = None, refresh: bool = True) -> list[Path]:
    """Write the launcher, icon and MIME type under ``root`` (default: data_home()); returns
    the files written. OSError names what could not be written."""
    root = root or data_home()
    files = {
        root / "applications" / f"{APP_ID}.desktop": desktop_entry(launch_command()).encode(),
        root / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg": ICON.read_bytes(),
        root / "mime" / "packages" / f"{APP_ID}.xml": MIME_XML.encode(),
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if refresh:
        for tool, folder in (("update-mime-database", root / "mime"),
                             ("update-desktop-database", root / "applications")):
            if shutil.which(tool):
                subprocess.run([tool, str(folder)], check=False, timeout=60,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return list(files)


def run_install_desktop() -> int:
    if not sys.platform.startswith("linux"):
        raise ValueError(f"--install-desktop writes freedesktop.org files for Linux desktops; this is {sys.platform}")
    for path in install_desktop():
        print(path)
    print(f"RNN Explorer is in the application menu; .rnnx files open with: {shlex.join(launch_command())} gui FILE",
          file=sys.stderr)
    return 0
