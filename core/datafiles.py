"""Reading the user's own files, torch-free: bytes with their hash, text, vocabularies.

core.tasks.files parses data files on top of this; core.models.io reads vocabularies with it.
Every reader refuses bad input with a :class:`DataError` of one line naming the file, the
line (1-based) or key, and what was expected; nothing here half-applies anything, so the
caller's open data stays as it was. Files are read in 1 MiB chunks (hashed as they come)
and refused above ``MAX_DATA_BYTES`` before a byte is read.

A :class:`DataFile` is the file's bytes plus its path and SHA-256: sessions store it (or,
above a size limit, its path and hash) so a run resumes on exactly the data it trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

MiB = 1024 * 1024
MAX_DATA_BYTES = 50 * MiB
MAX_VOCAB_BYTES = 16 * MiB
CHUNK = MiB
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


class DataError(UserError, ValueError):
    """A data file cannot be used; the message names the file, the line or key, and what was expected."""


@dataclass(frozen=True)
class DataFile:
    """A file's bytes as read once. ``path`` is the name the user gave (shown in messages)."""

    path: str
    content: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def suffix(self) -> str:
        return Path(self.path).suffix.lower()

    @classmethod
    def of(cls, path: str, content: bytes) -> DataFile:
        return cls(path, content, hashlib.sha256(content).hexdigest())


def resolve_path(path: str) -> Path:
    """``path`` as given, or under resources/ when it is relative and only exists there
    (so presets and the README's examples can name ``examples/...``)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and (RESOURCES / p).exists():
        return RESOURCES / p
    return p


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < MiB:
        return f"{n / 1024:.1f} KiB"
    return f"{n / MiB:.1f} MiB"


def read_file(path: str, limit: int = MAX_DATA_BYTES, what: str = "data file") -> DataFile:
    """The whole file, read in chunks and hashed; DataError when it is missing or too large."""
    target = resolve_path(path)
    try:
        info = os.stat(target)
        size = info.st_size
        if stat.S_ISDIR(info.st_mode):
            raise DataError(f"{path}: is a folder; expected a {what}")
        if not stat.S_ISREG(info.st_mode):  # a pipe or device could block or never end
            raise DataError(f"{path}: is not a regular file; expected a {what}")
        if size > limit:
            raise DataError(f"{path}: {human_size(size)} is more than the {human_size(limit)} a {what} "
                            "may have; use an excerpt")
        digest, parts, total = hashlib.sha256(), [], 0
        with open(target, "rb") as f:
            while chunk := f.read(CHUNK):
                total += len(chunk)
                if total > limit:  # the file grew while it was read
                    raise DataError(f"{path}: more than the {human_size(limit)} a {what} may have")
                digest.update(chunk)
                parts.append(chunk)
    except OSError as err:
        raise DataError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    return DataFile(str(path), b"".join(parts), digest.hexdigest())


def data_file(path: str, provided: Mapping[str, DataFile] | None = None, what: str = "data file") -> DataFile:
    """The file an experiment names: from ``provided`` (a session's stored copy) or from disk."""
    if provided and path in provided:
        return provided[path]
    return read_file(path, what=what)


# ------------------------------------------------------------------------------------ text
def text_of(df: DataFile, expected: str = "a UTF-8 text file") -> str:
    """The file as text (BOM dropped, line ends made \\n); refuses binary, non-UTF-8, empty."""
    head = df.content[:8192]
    if b"\x00" in head:
        line = head[:head.index(b"\x00")].count(b"\n") + 1
        raise DataError(f"{df.path}: line {line}: a NUL byte; this looks like a binary file, "
                        f"expected {expected}")
    try:
        text = df.content.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = df.content[:err.start].count(b"\n") + 1
        raise DataError(f"{df.path}: line {line}: byte 0x{df.content[err.start]:02x} is not UTF-8; "
                        f"expected {expected}") from None
    if not text.strip():
        raise DataError(f"{df.path}: the file is empty; expected {expected}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def lines_of(df: DataFile, expected: str) -> list[tuple[int, str]]:
    """(line number, line) of the non-blank lines."""
    return [(i, line) for i, line in enumerate(text_of(df, expected).split("\n"), 1) if line.strip()]


# ------------------------------------------------------------------------------ vocabularies
def parse_vocab(df: DataFile) -> list[str]:
    """A vocabulary: a JSON list of tokens (id = position) or an object {token: id} whose ids
    are 0..V-1, each once. Returns the tokens in id order."""
    expected = "a JSON list of tokens or an object {token: id}"
    try:
        data = json.loads(text_of(df, expected))
    except (ValueError, RecursionError) as err:
        raise DataError(f"{df.path}: not valid JSON ({' '.join(str(err).split())[:120]}); expected {expected}") from None
    if isinstance(data, list):
        for i, token in enumerate(data):
            if not isinstance(token, str):
                raise DataError(f"{df.path}: entry {i} is {type(token).__name__}; expected a token (a string)")
        tokens = data
    elif isinstance(data, dict):
        ids = {}
        for token, i in data.items():
            if type(i) is not int or not 0 <= i < len(data):
                raise DataError(f"{df.path}: key {token[:40]!r}: id {str(i)[:20]} is not a whole number in "
                                f"0..{len(data) - 1}")
            if i in ids:
                raise DataError(f"{df.path}: key {token[:40]!r}: id {i} is also the id of {ids[i][:40]!r}")
            ids[i] = token
        tokens = [ids[i] for i in range(len(data))]
    else:
        raise DataError(f"{df.path}: holds a JSON {type(data).__name__}; expected {expected}")
    if not tokens:
        raise DataError(f"{df.path}: the vocabulary is empty; expected {expected}")
    if len(set(tokens)) != len(tokens):
        dup = next(t for t in tokens if tokens.count(t) > 1)
        raise DataError(f"{df.path}: token {dup[:40]!r} appears twice")
    return tokens


def word_level(tokens: list[str]) -> bool:
    """Whether a vocabulary holds words (a token longer than one character, not a <special>)."""
    return any(len(t) > 1 and not (t.startswith("<") and t.endswith(">")) for t in tokens)


def experiment_files(exp, provided: Mapping[str, DataFile] | None = None) -> dict[str, DataFile]:
    """The files ``exp`` (a core.config.Experiment) reads, by path: its data file (for a task
    that reads one) and its vocabulary, from ``provided`` when there, else from disk."""
    from core.config import DATA_TASKS

    out = {}
    if exp.data and exp.task in DATA_TASKS:
        out[exp.data] = data_file(exp.data, provided)
    if exp.vocab:
        out[exp.vocab] = data_file(exp.vocab, provided, "vocabulary file")
    return out
