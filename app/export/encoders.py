"""Streaming animation encoders: GIF and APNG with Pillow, H.264 MP4 with imageio-ffmpeg.

Each writer takes frames one at a time (``add(rgb)``, ``rgb``: uint8 [H, W, 3]) and keeps
only the previous frame, so memory stays flat however many frames an animation has.
Pillow's own ``save_all`` collects every frame before writing (it merges duplicates and
computes differences at the end), so the GIF and APNG containers are assembled here, chunk
by chunk, while Pillow does the real work: the palette (median cut, no dithering), the
GIF's LZW data (``GifImagePlugin.getdata``) and the PNG's deflate streams.

- GIF: one palette for the whole animation, chosen from sample frames (first, middle,
  last) so a heatmap keeps its colour map from frame to frame: the most frequent colours
  exactly, median cut for the rest; no dithering (flat colours compress and look clean). Frame differencing: each frame after the first is cropped to
  the rectangle that changed, and unchanged pixels inside it are transparent (index 255),
  which LZW compresses to almost nothing. Delays are whole centiseconds; a frame rate that
  does not divide 100 alternates delays so the average is exact (30 fps: 3, 3, 4, ...).
- APNG: full colour, lossless; each frame after the first is cropped to the rectangle
  that changed and replaces it (``blend_op`` source). Delays are exact fractions.
- MP4: H.264 in yuv420p (what PowerPoint, Keynote and browsers play), fed to the ffmpeg
  binary that ships in the imageio-ffmpeg wheel through a pipe; even width and height.

Writers write to an open binary file (GIF, APNG) or a path (MP4); the caller makes the
file appear atomically (see app.export.animation).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from core.errors import UserError

GIF_FPS_MAX = 50  # GIF delays are whole centiseconds and players treat < 2 cs as 10 cs
TRANSPARENT = 255  # the GIF palette index kept for "unchanged since the last frame"
EXACT_COLOURS = 96  # the most frequent colours kept exactly in a GIF's palette
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INSTALL = ".venv/bin/pip install {package} (or: make .venv/.installed, which installs every dependency)"


class Writer(Protocol):
    def add(self, rgb: np.ndarray) -> None: ...

    def close(self) -> None: ...


def pillow() -> Any:
    """The PIL package, or UserError saying how to get it (PNG and SVG export need none of this)."""
    try:
        import PIL.GifImagePlugin  # noqa: F401  (registers GIF, and getdata)
        import PIL.Image
    except ImportError:
        raise UserError("GIF and APNG animations need Pillow, which is not installed: "
                        + INSTALL.format(package="pillow")) from None
    return PIL


def ffmpeg() -> Any:
    """The imageio_ffmpeg module, or UserError saying how to get it."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError("MP4 animations need imageio-ffmpeg (it brings its own ffmpeg), which is not installed: "
                        + INSTALL.format(package="imageio-ffmpeg")) from None
    return imageio_ffmpeg


def changed_box(previous: np.ndarray, current: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels that differ ([H, W] or [H, W, C]), or None."""
    diff = previous != current
    if diff.ndim == 3:
        diff = diff.any(axis=2)
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def centiseconds(count: int, fps: float) -> list[int]:
    """GIF delays for ``count`` frames at ``fps``: whole centiseconds whose running sum stays
    within half a centisecond of the exact time (so 30 fps plays at 30 fps on average)."""
    edges = [round(i * 100 / fps) for i in range(count + 1)]
    return [max(b - a, 2) for a, b in zip(edges, edges[1:])]


# ------------------------------------------------------------------------------ GIF
def _pack(rgb: np.ndarray) -> np.ndarray:
    """uint32 0xRRGGBB of each pixel of [..., 3] uint8."""
    packed = rgb[..., 0].astype(np.uint32) << 16
    packed |= rgb[..., 1].astype(np.uint32) << 8
    packed |= rgb[..., 2]
    return packed


def gif_palette(samples: Sequence[np.ndarray], exact: int = EXACT_COLOURS) -> np.ndarray:
    """255 colours (uint8 [255, 3]) for frames like ``samples`` ([H, W, 3] each).

    The ``exact`` most frequent colours are kept as they are (background, text, lines, the
    flat cells of a heatmap: no tint on white, no shift in a colour map), and median cut
    over the remaining pixels picks the rest. With 255 colours or fewer in the samples,
    the palette is exactly those colours."""
    pixels = np.concatenate([np.asarray(s, np.uint8).reshape(-1, 3) for s in samples])
    packed = _pack(pixels)
    colours, counts = np.unique(packed, return_counts=True)
    if len(colours) <= TRANSPARENT:
        chosen = colours
    else:
        kept = colours[np.argsort(counts, kind="stable")[::-1][:exact]]
        rest = pixels[~np.isin(packed, kept)]
        rest = rest[:: max(1, len(rest) // 2**20)]  # a million pixels describe the rest well
        rest = rest[: len(rest) // 1024 * 1024].reshape(-1, 1024, 3) if len(rest) >= 1024 else rest[None]
        image = pillow().Image
        quantized = image.fromarray(np.ascontiguousarray(rest)).quantize(
            colors=TRANSPARENT - exact, method=image.Quantize.MEDIANCUT, dither=image.Dither.NONE)
        cut = np.array(quantized.getpalette()[: 3 * (TRANSPARENT - exact)], np.uint8).reshape(-1, 3)
        chosen = np.concatenate([kept, _pack(cut)])
    palette = np.stack([(chosen >> 16) & 255, (chosen >> 8) & 255, chosen & 255], axis=1).astype(np.uint8)
    if len(palette) < TRANSPARENT:  # pad with the first colour (never chosen over it: argmin takes the first)
        palette = np.concatenate([palette, np.repeat(palette[:1], TRANSPARENT - len(palette), axis=0)])
    return palette


class GifWriter:
    """An animated GIF written frame by frame to ``out`` (see the module docstring)."""

    UNKNOWN = TRANSPARENT  # in the lookup: not met yet (no colour maps to 255)

    def __init__(self, out: BinaryIO, size: tuple[int, int], fps: float, count: int, palette: np.ndarray,
                 loop: bool = False):
        self.PIL = pillow()
        self.out, self.size, self.count = out, size, count
        self.delays = centiseconds(count, fps)
        self.palette = np.asarray(palette, np.uint8)[:TRANSPARENT]
        # nearest palette entry of every colour met so far, by 0xRRGGBB (16 MB, whatever the
        # frame count): exact colours map to themselves, which Pillow's quantize, working on
        # 6-bit colour boxes, does not promise (white came out as 252, 252, 252)
        self.lookup = np.full(1 << 24, self.UNKNOWN, np.uint8)
        self.previous: np.ndarray | None = None
        self.index = 0
        width, height = size
        table = np.concatenate([self.palette, np.zeros((256 - len(self.palette), 3), np.uint8)]).tobytes()
        out.write(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF7, 0, 0) + table)
        if loop:  # NETSCAPE2.0: repeat forever (without it, players show the animation once)
            out.write(b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00")

    def indices(self, rgb: np.ndarray) -> np.ndarray:
        """[H, W] palette indices of ``rgb`` [H, W, 3]: the nearest colour (squared RGB
        distance), no dithering; never 255 (kept for "unchanged")."""
        packed = _pack(rgb)
        index = self.lookup[packed]
        unknown = index == self.UNKNOWN
        if unknown.any():
            new = np.unique(packed[unknown])
            colours = np.stack([(new >> 16) & 255, (new >> 8) & 255, new & 255], axis=1).astype(np.int32)
            palette = self.palette.astype(np.int32)
            for at in range(0, len(new), 4096):  # [4096, 255] distances at a time
                block = colours[at: at + 4096]
                distance = ((block[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2)
                self.lookup[new[at: at + 4096]] = distance.argmin(axis=1)
            index = self.lookup[packed]
        return index

    def add(self, rgb: np.ndarray) -> None:
        if self.index >= self.count:
            raise ValueError(f"this GIF was opened for {self.count} frames")
        current = self.indices(rgb)
        if self.previous is None:
            left, top, patch = 0, 0, current
        else:
            box = changed_box(self.previous, current)
            left, top, right, bottom = box if box is not None else (0, 0, 1, 1)
            patch = current[top:bottom, left:right].copy()
            patch[self.previous[top:bottom, left:right] == patch] = TRANSPARENT
        self._write(patch, left, top)
        self.previous = current
        self.index += 1

    def _write(self, patch: np.ndarray, left: int, top: int) -> None:
        image = self.PIL.Image.frombytes("P", (patch.shape[1], patch.shape[0]), np.ascontiguousarray(patch).tobytes())
        # getdata: the graphic control extension (delay, disposal 1 = keep, transparent
        # index), the image descriptor and the LZW data, with no colour table of its own
        chunks = self.PIL.GifImagePlugin.getdata(image, offset=(left, top), duration=10 * self.delays[self.index],
                                                 disposal=1, transparency=TRANSPARENT)
        for chunk in chunks:
            self.out.write(chunk)

    def close(self) -> None:
        if self.index != self.count:
            raise ValueError(f"this GIF was opened for {self.count} frames; {self.index} were added")
        self.out.write(b";")


# ------------------------------------------------------------------------------ APNG
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a PNG file."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    chunks, at = [], len(PNG_SIGNATURE)
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at: at + 4]), data[at + 4: at + 8]
        chunks.append((kind, data[at + 8: at + 8 + length]))
        at += 12 + length
    return chunks


class ApngWriter:
    """An animated PNG (full colour, lossless) written frame by frame to ``out``."""

    def __init__(self, out: BinaryIO, size: tuple[int, int], fps: float, count: int, loop: bool = False):
        self.PIL = pillow()
        self.out, self.size, self.count = out, size, count
        self.delay = Fraction(1 / fps).limit_denominator(1000)  # seconds per frame, exactly
        self.previous: np.ndarray | None = None
        self.index = 0
        self.sequence = 0  # fcTL and fdAT chunks share one running sequence number
        width, height = size
        out.write(PNG_SIGNATURE)
        out.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        out.write(_chunk(b"acTL", struct.pack(">II", count, 0 if loop else 1)))

    def add(self, rgb: np.ndarray) -> None:
        if self.index >= self.count:
            raise ValueError(f"this APNG was opened for {self.count} frames")
        if self.previous is None:
            box = (0, 0, *self.size)
        else:
            box = changed_box(self.previous, rgb) or (0, 0, 1, 1)
        left, top, right, bottom = box
        patch = np.ascontiguousarray(rgb[top:bottom, left:right])
        buffer = io.BytesIO()
        self.PIL.Image.fromarray(patch).save(buffer, "PNG", compress_level=6)
        data = b"".join(d for kind, d in _png_chunks(buffer.getvalue()) if kind == b"IDAT")
        self.out.write(_chunk(b"fcTL", struct.pack(">IIIIIHHBB", self.sequence, right - left, bottom - top, left, top,
                                                   self.delay.numerator, self.delay.denominator, 0, 0)))
        self.sequence += 1
        if self.index == 0:
            self.out.write(_chunk(b"IDAT", data))  # the first frame is also the still image
        else:
            self.out.write(_chunk(b"fdAT", struct.pack(">I", self.sequence) + data))
            self.sequence += 1
        self.previous = np.array(rgb, copy=True)
        self.index += 1

    def close(self) -> None:
        if self.index != self.count:
            raise ValueError(f"this APNG was opened for {self.count} frames; {self.index} were added")
        self.out.write(_chunk(b"IEND", b""))


# ------------------------------------------------------------------------------ MP4
def check_even(size: tuple[int, int]) -> None:
    """H.264 in yuv420p stores colour at half resolution, so both sides must be even."""
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"an MP4 needs an even width and height (H.264, yuv420p); got {size[0]}x{size[1]}: "
                         f"try {size[0] + size[0] % 2}x{size[1] + size[1] % 2}")


class Mp4Writer:
    """H.264 MP4 (yuv420p, constant frame rate) through imageio-ffmpeg's ffmpeg."""

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, count: int):
        check_even(size)
        self.count, self.index = count, 0
        self.frames = ffmpeg().write_frames(
            str(path), size, fps=Fraction(fps).limit_denominator(1000), codec="libx264", pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p", quality=None, macro_block_size=1, ffmpeg_log_level="error",
            # -f: the temporary file's name has no .mp4 to go by; crf 18: text stays crisp;
            # faststart: the index first, so a slide starts playing at once
            output_params=["-f", "mp4", "-crf", "18", "-preset", "medium", "-movflags", "+faststart"])
        self.frames.send(None)

    def add(self, rgb: np.ndarray) -> None:
        self.frames.send(np.ascontiguousarray(rgb))
        self.index += 1

    def close(self) -> None:
        self.frames.close()  # ffmpeg finishes the file and exits
        if self.index != self.count:
            raise ValueError(f"this MP4 was opened for {self.count} frames; {self.index} were added")
