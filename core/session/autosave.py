"""Autosave and crash recovery: where the app saves on a timer, and whether the last run crashed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from core.logs import data_dir
from core.session import SUFFIX  # not core.session.format: that loads torch

# The app saves to autosave_path() on a timer and calls mark_clean_exit() when it quits
# normally. At start, find_recovery() returns the autosave if it is newer than the last
# clean exit (the previous run crashed); after offering it, the app calls discard_autosave()
# or mark_clean_exit(). One autosave per user: two app instances share it.
AUTOSAVE_NAME = "autosave" + SUFFIX
CLEAN_EXIT_NAME = "clean-exit"


def _autosave_dir() -> Path:
    directory = data_dir() / "autosave"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def autosave_path() -> Path:
    """Where the app autosaves (``<data dir>/autosave/autosave.rnnx``); creates the folder."""
    return _autosave_dir() / AUTOSAVE_NAME


def mark_clean_exit() -> None:
    """Record that the app quit normally, after its last autosave."""
    marker = _autosave_dir() / CLEAN_EXIT_NAME
    marker.write_text(datetime.now(UTC).isoformat() + "\n", encoding="utf-8")


def find_recovery() -> Path | None:
    """The autosave, when one exists and is newer than the last clean exit; else None."""
    directory = data_dir() / "autosave"
    autosave, marker = directory / AUTOSAVE_NAME, directory / CLEAN_EXIT_NAME
    try:
        saved = autosave.stat().st_mtime_ns
    except OSError:
        return None
    try:
        clean = marker.stat().st_mtime_ns
    except OSError:
        return autosave
    return autosave if saved > clean else None


def discard_autosave() -> None:
    """Remove the autosave (the user declined recovery, or started afresh)."""
    try:
        (data_dir() / "autosave" / AUTOSAVE_NAME).unlink()
    except FileNotFoundError:
        pass
