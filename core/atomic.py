"""Atomic file replacement: a crash or a full disk mid-write never destroys the old file.

The new content goes to a temporary file in the same directory (so the final rename stays
on one file system), is flushed and fsync'ed, and only then renamed over the target with
``os.replace``, which is atomic on POSIX and Windows. On any error the temporary file is
removed and the previous file is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file for binary writing; on success it replaces ``path``.

    Usage::

        with atomic_write("run.rnnx") as f:
            f.write(data)

    The temporary file is ``.<name>.<random>.tmp`` next to ``path``, created with the
    usual permissions (0o666 less the umask). If the block raises, it is deleted and the
    exception propagates.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX only; Windows cannot open directories)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the data itself is safe
    finally:
        os.close(fd)
