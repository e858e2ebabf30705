"""Logging: a rotating log file in the user data directory, --verbose to stderr."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

LOGGER = "rnn_explorer"


def data_dir() -> Path:
    """Per-user data directory (autosaves, logs); RNN_EXPLORER_HOME overrides it (tests)."""
    override = os.environ.get("RNN_EXPLORER_HOME")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir("rnn-explorer", appauthor=False))


def setup_logging(verbose: bool = False) -> Path | None:
    """Attach a rotating file handler (1 MB x 3) and, when verbose, a stderr handler."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.DEBUG)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = None
    if not any(isinstance(h, logging.handlers.RotatingFileHandler) for h in logger.handlers):
        try:
            directory = data_dir()
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / "rnn-explorer.log"
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3)
            handler.setFormatter(fmt)
            logger.addHandler(handler)
        except OSError:
            path = None  # a read-only home must not stop the program
    if verbose and not any(type(h) is logging.StreamHandler for h in logger.handlers):
        stream = logging.StreamHandler()
        stream.setFormatter(fmt)
        stream.setLevel(logging.DEBUG)
        logger.addHandler(stream)
    return path
