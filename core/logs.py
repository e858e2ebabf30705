"""Logging: a rotating log file in the user data directory, --verbose to stderr."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

LOGGER = "rnn_explorer"
LOG_FILE = "rnn-explorer.log"


def data_dir() -> Path:
    """Per-user data directory (autosaves, logs); RNN_EXPLORER_HOME overrides it (tests)."""
    override = os.environ.get("RNN_EXPLORER_HOME")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir("rnn-explorer", appauthor=False))


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message is logged (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: bool = False) -> Path | None:
    """Attach a rotating file handler (1 MB x 3) and, when verbose, a stderr handler.

    Calling it again (several commands in one process, as in the tests) leaves exactly
    these: the file handler follows a changed data directory, the stderr one comes and goes
    with ``verbose``. Returns the log file's path (None when the directory is not writable).
    """
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.DEBUG)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    path: Path | None = data_dir() / LOG_FILE
    for handler in list(logger.handlers):
        stale = (isinstance(handler, logging.handlers.RotatingFileHandler)
                 and (path is None or Path(handler.baseFilename) != path.absolute()))
        if stale or (isinstance(handler, _Stderr) and not verbose):
            logger.removeHandler(handler)
            handler.close()
    if path is not None and not any(isinstance(h, logging.handlers.RotatingFileHandler) for h in logger.handlers):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3,
                                                           encoding="utf-8")
            handler.setFormatter(fmt)
            logger.addHandler(handler)
        except OSError:
            path = None  # a read-only home must not stop the program
    if verbose and not any(isinstance(h, _Stderr) for h in logger.handlers):
        stream = _Stderr()
        stream.setFormatter(fmt)
        stream.setLevel(logging.DEBUG)
        logger.addHandler(stream)
    return path
