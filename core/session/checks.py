"""Checks shared by the session readers: a refusal type and short, one-line descriptions.

Every reader raises ``Invalid`` for what it refuses; the public functions of
core.session.format turn it into a SessionError naming the file.
"""

from __future__ import annotations

from typing import Any


class Invalid(Exception):
    """Something read is wrong; the public functions turn it into SessionError naming the source."""


def need(condition: bool, message: str) -> None:
    if not condition:
        raise Invalid(message)


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return " ".join(text.split())[:300]
