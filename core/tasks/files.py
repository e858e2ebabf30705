"""Parsing the user's data files: CSV series, TSV pairs and labelled lines.

The bytes come from core.datafiles (read in chunks, hashed, size-limited, UTF-8 checked);
each parser refuses bad content with a DataError of one line naming the file, the line
(1-based) and column, and what was expected.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from core.datafiles import DataError, DataFile, lines_of, text_of

# Header names taken as a series' time axis (labels, never an input).
TIME_NAMES = ("time", "t", "date", "datetime", "timestamp", "step", "index", "day", "hour", "year")


# ---------------------------------------------------------------------------------- series
@dataclass(frozen=True)
class Series:
    """A numeric table. ``values`` [N, C] float64 (finite) of ``names``; ``time`` N labels or None."""

    names: tuple[str, ...]
    values: list[list[float]]
    time: tuple[str, ...] | None
    inputs: tuple[int, ...]   # column indices fed to the network
    targets: tuple[int, ...]  # column indices predicted one step ahead


def _number(text: str) -> float:
    value = float(text)  # ValueError for text
    if not math.isfinite(value):
        raise OverflowError
    return value


def parse_series(df: DataFile, columns: tuple[str, ...] = (), target: tuple[str, ...] = (),
                 min_rows: int = 2) -> Series:
    """A CSV with a header row and numeric columns; a column named like TIME_NAMES is the time axis.

    ``columns``: the inputs (default: every column but the time column); ``target``: the
    columns predicted (default: the inputs). Refuses ragged rows, non-numbers, NaN and inf
    in the used columns, and unknown column names, each with its line and column.
    """
    expected = "a CSV file: a header row, then rows of numbers"
    text = text_of(df, expected)
    rows = [(i, row) for i, row in enumerate(csv.reader(io.StringIO(text)), 1) if any(c.strip() for c in row)]
    if not rows:
        raise DataError(f"{df.path}: the file is empty; expected {expected}")
    header_line, header = rows[0]
    names = tuple(c.strip() for c in header)
    if all(_is_number(n) for n in names):
        raise DataError(f"{df.path}: line {header_line}: expected a header row of column names; got numbers")
    for n in names:
        if not n:
            raise DataError(f"{df.path}: line {header_line}: a column has no name; name every column")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{df.path}: line {header_line}: column {dup!r} appears twice")
    time_col = next((k for k, n in enumerate(names) if n.lower() in TIME_NAMES), None)
    for given, what in ((columns, "input"), (target, "target")):
        for n in given:
            if n not in names:
                raise DataError(f"{df.path}: {what} column {n!r} is not in the file; it has: {', '.join(names)}")
    inputs = tuple(names.index(n) for n in columns) or tuple(k for k in range(len(names)) if k != time_col)
    if not inputs:
        raise DataError(f"{df.path}: no numeric column besides the time column {names[time_col]!r}")
    targets = tuple(names.index(n) for n in target) or inputs
    used = sorted(set(inputs) | set(targets))
    if len(rows) - 1 < min_rows:
        raise DataError(f"{df.path}: {len(rows) - 1} data row(s); expected at least {min_rows}")
    values, time = [], []
    for line, row in rows[1:]:
        if len(row) != len(names):
            raise DataError(f"{df.path}: line {line}: {len(row)} cells; the header has {len(names)}")
        out = [0.0] * len(names)
        for k in used:
            cell = row[k].strip()
            try:
                out[k] = _number(cell)
            except ValueError:
                raise DataError(f"{df.path}: line {line}, column {names[k]!r}: {cell[:40]!r} is not a "
                                "number") from None
            except OverflowError:
                raise DataError(f"{df.path}: line {line}, column {names[k]!r}: {cell[:40]!r} is not a "
                                "finite number (NaN and inf cannot be learned from)") from None
        values.append(out)
        if time_col is not None:
            time.append(row[time_col].strip())
    return Series(names, values, tuple(time) if time_col is not None else None, inputs, targets)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------- pairs and labels
def parse_pairs(df: DataFile) -> list[tuple[str, str]]:
    """Lines ``source TAB target`` (both non-empty)."""
    expected = "one 'source TAB target' pair a line"
    pairs = []
    for line, text in lines_of(df, expected):
        parts = text.split("\t")
        if len(parts) != 2:
            got = "no TAB" if len(parts) == 1 else f"{len(parts) - 1} TABs"
            raise DataError(f"{df.path}: line {line}: {got}; expected {expected}")
        src, tgt = parts[0].strip(), parts[1].strip()
        if not src or not tgt:
            raise DataError(f"{df.path}: line {line}: the {'source' if not src else 'target'} is empty; "
                            f"expected {expected}")
        pairs.append((src, tgt))
    return pairs


def parse_labelled(df: DataFile) -> list[tuple[str, str]]:
    """Lines ``text TAB label`` (.tsv) or CSV rows ``text,label`` (.csv); a first row whose
    label is literally "label" is a header and skipped."""
    if df.suffix == ".csv":
        expected = "CSV rows 'text,label'"
        rows = [(i, row) for i, row in enumerate(csv.reader(io.StringIO(text_of(df, expected))), 1)
                if any(c.strip() for c in row)]
    else:
        expected = "one 'text TAB label' line each"
        rows = [(i, text.split("\t")) for i, text in lines_of(df, expected)]
    out = []
    for n, (line, row) in enumerate(rows):
        if len(row) != 2:
            got = ("no TAB" if len(row) == 1 else f"{len(row) - 1} TABs") if df.suffix != ".csv" else f"{len(row)} cells"
            raise DataError(f"{df.path}: line {line}: {got}; expected {expected}")
        text, label = row[0].strip(), row[1].strip()
        if n == 0 and label.lower() == "label":
            continue
        if not text or not label:
            raise DataError(f"{df.path}: line {line}: the {'text' if not text else 'label'} is empty; "
                            f"expected {expected}")
        out.append((text, label))
    if not out:
        raise DataError(f"{df.path}: no lines after the header; expected {expected}")
    if len({label for _, label in out}) < 2:
        raise DataError(f"{df.path}: every line has the label {out[0][1]!r}; classification needs at "
                        "least 2 labels")
    return out
