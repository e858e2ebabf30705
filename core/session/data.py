"""The user's data files in a session: stored whole, or above a size limit by path and SHA-256.

A session trained on a user's file resumes on exactly those bytes. Files up to
``MAX_STORED_BYTES`` travel inside the session (``data.safetensors``: one uint8 tensor per
file, ``data/<index>``); larger ones are named by path and hash, and opening refuses to
resume when the file there has changed, naming the file and both hashes. session.json
lists them all::

    "data_files": [{"path": "corpus.txt", "sha256": "…", "size": 1234, "stored": true}, ...]
"""

from __future__ import annotations

import hashlib
import zipfile
from typing import Any

import torch

from core.datafiles import DataError, DataFile, read_file
from core.session.checks import Invalid, need, short
from core.session.readers import MiB, read_safetensors

MAX_STORED_BYTES = 16 * MiB
MEMBER = "data.safetensors"


def capture_files(files: dict[str, DataFile]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """(tensors "data/<index>", entries for session.json) of a trainer's files."""
    tensors, entries = {}, []
    for index, (path, df) in enumerate(sorted(files.items())):
        stored = df.size <= MAX_STORED_BYTES
        entries.append({"path": path, "sha256": df.sha256, "size": df.size, "stored": stored})
        if stored:
            tensors[f"data/{index}"] = torch.frombuffer(bytearray(df.content) or bytearray(1),
                                                        dtype=torch.uint8)[:df.size].clone()
    return tensors, entries


def read_files(zf: zipfile.ZipFile, header: dict) -> dict[str, DataFile]:
    """The files a session names, checked against their hashes (raises Invalid)."""
    entries = header.get("data_files", [])
    need(isinstance(entries, list), "data_files must be a list")
    stored_total = 0
    for entry in entries:
        need(isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("sha256"), str)
             and type(entry.get("size")) is int and entry["size"] >= 0 and isinstance(entry.get("stored"), bool),
             f"data_files entry {short(entry)} is not {{path, sha256, size, stored}}")
        if entry["stored"]:
            need(entry["size"] <= MAX_STORED_BYTES, f"data file {short(entry['path'])} is too large to be stored")
            stored_total += entry["size"]
    tensors = read_safetensors(zf, MEMBER, stored_total + MiB) if stored_total or any(
        e["stored"] for e in entries) else {}
    files = {}
    for index, entry in enumerate(entries):
        path, sha = entry["path"], entry["sha256"]
        if entry["stored"]:
            t = tensors.get(f"data/{index}")
            need(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1
                 and t.numel() == entry["size"], f"the stored copy of {short(path)} is missing or damaged")
            content = t.numpy().tobytes()
            need(hashlib.sha256(content).hexdigest() == sha, f"the stored copy of {short(path)} does not match "
                                                             "its SHA-256 (damaged file)")
            files[path] = DataFile(path, content, sha)
        else:
            try:
                df = read_file(path)
            except DataError as err:
                raise Invalid(f"the session trained on {err} (too large to be stored in the session, "
                              "it is read from there)") from None
            need(df.sha256 == sha, f"{path} has changed since the session was saved: its SHA-256 was {sha}, "
                                   f"now {df.sha256}; the session cannot resume exactly on other data")
            files[path] = df
    return files
