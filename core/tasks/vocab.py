"""Character vocabularies: text <-> ids, with the special tokens of core.names first."""

from __future__ import annotations

from collections.abc import Sequence

from core.names import EOS, SPECIALS, UNK


class Vocab:
    """Characters <-> ids; ids 0-3 are the specials, then ``chars`` in the given order."""

    def __init__(self, chars: Sequence[str]):
        self.itos: tuple[str, ...] = SPECIALS + tuple(chars)
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """One id per character; characters outside the vocabulary become UNK."""
        return [self.stoi.get(c, UNK) for c in text]  # a special's name is never one character

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` up to the first eos, specials dropped."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i > UNK:
                out.append(self.itos[i])
        return "".join(out)

    def unknown(self, text: str) -> list[str]:
        """Distinct characters of ``text`` the vocabulary lacks, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.stoi))
