"""Session zip members read defensively: size limits, refusals of foreign files, safe parsing.

Every reader here refuses (raises Invalid) before allocating more than a limit allows, and
none can run code from the file: safetensors and .npy headers are parsed, never unpickled.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

from core.session.checks import Invalid, need, one_line, short

MiB = 2**20
MAX_JSON_BYTES = 256 * MiB      # session.json (history of a million steps is ~150 MiB)
MAX_TRACE_BYTES = 1024 * MiB    # traces.npz
MAX_RNG_BYTES = 1 * MiB         # rng.safetensors
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
               ValueError, RuntimeError, NotImplementedError, struct.error)


def open_zip(path) -> zipfile.ZipFile:
    """The session zip, or Invalid saying what the file is instead."""
    if os.path.exists(path) and not os.path.isfile(path):  # a folder, or a pipe that would block
        raise Invalid("not a regular file")
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise Invalid("no such file") from None
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error, OSError) as err:
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError:
            raise Invalid(f"cannot read the file ({os_reason(err)})") from None
        raise Invalid(_not_a_zip(head)) from None
    names = zf.namelist()
    if "session.json" not in names:
        zf.close()
        if any(n.endswith(".pkl") or n.endswith("/data/0") for n in names):
            raise Invalid("this is a PyTorch checkpoint (.pt/.pth), not an RNN Explorer session; "
                          "it is not opened because loading it can run code")
        raise Invalid("not an RNN Explorer session (the zip holds no session.json)")
    return zf


def _not_a_zip(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "the file is damaged or truncated (its zip directory cannot be read)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return ("this is a pickle (an old-style .pt/.pth checkpoint), not an RNN Explorer session; "
                "it is not opened because loading it can run code")
    return ("not an RNN Explorer session (a zip file); .pt/.pth checkpoints are not opened "
            "because they can run code")


def read_member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A member's bytes; refuses missing, encrypted, oddly compressed or oversized members."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise Invalid(f"{name} is missing") from None
    need(not info.flag_bits & 0x1, f"{name} is encrypted")
    need(info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED),
         f"{name} uses an unsupported compression method ({info.compress_type})")
    need(info.file_size <= limit, f"{name} declares {info.file_size} bytes; at most {limit} are "
                                  "expected for this experiment (damaged file or zip bomb)")
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except _ZIP_ERRORS as err:
        raise Invalid(f"{name} is damaged ({one_line(err)})") from None
    need(len(data) <= limit, f"{name} is larger than the {limit} bytes allowed")
    return data


def member_limits(model: torch.nn.Module) -> dict[str, int]:
    """Largest believable size of each tensor member for this model (headers included)."""
    state = model.state_dict()
    weights = sum(t.numel() * t.element_size() for t in state.values())
    slack = MiB + 4096 * len(state)
    return {"model.safetensors": weights + slack, "optimizer.safetensors": 4 * weights + 2 * slack,
            "rng.safetensors": MAX_RNG_BYTES}


def read_safetensors(zf: zipfile.ZipFile, name: str, limit: int) -> dict[str, torch.Tensor]:
    data = read_member(zf, name, limit)
    try:
        return safetensors.torch.load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError, OverflowError) as err:
        raise Invalid(f"{name} is not a valid safetensors file ({one_line(err)})") from None


def parse_npz(data: bytes) -> dict[str, np.ndarray]:
    """Arrays of an .npz, each .npy header checked before any data is allocated."""
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            need(sum(i.file_size for i in infos) <= MAX_TRACE_BYTES, "traces.npz is too large")
            for info in infos:
                need(info.filename.endswith(".npy"), f"traces.npz holds {short(info.filename)}, not an array")
                need(info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) and not info.flag_bits & 1,
                     f"traces.npz member {short(info.filename)} is encrypted or oddly compressed")
                arrays[info.filename[:-4]] = _parse_npy(zf.read(info), info.filename)
    except _ZIP_ERRORS as err:
        raise Invalid(f"traces.npz is damaged ({one_line(err)})") from None
    return arrays


def _parse_npy(raw: bytes, name: str) -> np.ndarray:
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        need(read_header is not None, f"trace {short(name)} has unsupported .npy version {version}")
        shape, fortran, dtype = read_header(f)
    except Invalid:
        raise
    except Exception as err:  # numpy evaluates the header text (ast, tokenize): any failure = damage
        raise Invalid(f"trace {short(name)} has a damaged header ({one_line(err)})") from None
    need(not dtype.hasobject and dtype.kind in "biufcUS", f"trace {short(name)} has dtype {dtype}, not plain data")
    need(all(type(d) is int and d >= 0 for d in shape), f"trace {short(name)} has an invalid shape")
    offset = f.tell()
    need(math.prod(shape) * dtype.itemsize == len(raw) - offset, f"trace {short(name)}: data size does not match its shape")
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def os_reason(err: OSError) -> str:
    return err.strerror or one_line(err)
