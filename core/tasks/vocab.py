"""Character vocabularies: text <-> ids, with the special tokens of core.names first."""

from __future__ import annotations

from collections.abc import Sequence

from core.names import EOS, SPECIALS, UNK


class Vocab:
    """Characters <-> ids; ids 0-3 are the specials, then ``chars`` in the given order.

    A subclass with other tokens overrides ``tokens`` (text -> token strings) and ``SEP``."""

    SEP = ""  # what decode puts between tokens

    def __init__(self, chars: Sequence[str]):
        self.itos: tuple[str, ...] = SPECIALS + tuple(chars)
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def tokens(self, text: str) -> list[str]:
        return list(text)  # a special's name is never one character

    def encode(self, text: str) -> list[int]:
        """One id per token; tokens outside the vocabulary become UNK."""
        return [self.stoi.get(c, UNK) for c in self.tokens(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` up to the first eos, specials dropped."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i > UNK:
                out.append(self.itos[i])
        return self.SEP.join(out)

    def unknown(self, text: str) -> list[str]:
        """Distinct tokens of ``text`` the vocabulary lacks, in order of appearance."""
        return list(dict.fromkeys(c for c in self.tokens(text) if c not in self.stoi))
