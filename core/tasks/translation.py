"""Toy translation tasks for the encoder-decoder: reversal, sorting and date normalisation.

Everything is generated here, no downloads. Text is character-level: each task has a source
and a target :class:`Vocab` whose first four ids are the specials ``<pad>`` (0), ``<bos>`` (1),
``<eos>`` (2) and ``<unk>`` (3).

* ``reverse``: a random lowercase string -> the same string backwards.
* ``sort``:    a random string of digits and lowercase letters -> its characters sorted.
* ``dates``:   a date between 1950 and 2049 written in one of many human formats
  ("3 March 2021", "03/03/21", "Wed, 3 Mar 2021", "2021 march 3rd", ...) -> ISO "YYYY-MM-DD"
  (the classic attention demo). Two-digit years mean 1950-2049; "/" dates are US style
  (month first), "." dates European (day first), so no string is ambiguous.

``exp.seq_len`` is the maximum source length. A held-out split (``task.heldout``), drawn from
its own generator seeded by ``exp.seed``, holds a few hundred distinct sources; training
batches never contain them (``sample`` redraws any it meets), so ``evaluate`` measures
exact-match accuracy on inputs the model has never seen.
"""

from __future__ import annotations

import datetime as dt
import math
import string
from collections import Counter
from collections.abc import Callable, Sequence

import torch

from core.batch import TranslationBatch
from core.config import Experiment
from core.errors import UserError
from core.names import BOS, EOS, PAD
from core.tasks.base import Task
from core.tasks.vocab import Vocab

HELDOUT_SALT = 0x5EED  # the held-out generator's seed is derived from exp.seed with it


class TranslationTask(Task):
    """Base of the text-to-text tasks. Subclasses set the vocabularies and ``example``."""

    model_kind = "seq2seq"
    readout, loss_kind = "all", "ce"
    baseline_label = "unigram entropy of the target characters"
    heldout_size = 400
    src_vocab: Vocab
    tgt_vocab: Vocab

    def __init__(self, exp: Experiment):
        super().__init__(exp)
        self.input_size, self.output_size = len(self.src_vocab), len(self.tgt_vocab)
        seed = (exp.seed * 1_000_003 + HELDOUT_SALT) % 2**63
        self.heldout = self._distinct(min(self.heldout_size, self.space_size() // 10),
                                      torch.Generator().manual_seed(seed))
        self._heldout_sources = frozenset(src for src, _ in self.heldout)
        counts = Counter(c for _, tgt in self.heldout or [self.probe_pair()] for c in tgt + "\n")
        total = sum(counts.values())  # "\n" stands for eos here
        self._entropy = -sum(k / total * math.log(k / total) for k in counts.values())

    # -------------------------------------------------------------- what subclasses define
    def examples(self, n: int, generator: torch.Generator) -> list[tuple[str, str]]:
        """``n`` random (source, target) pairs, sources of 1..T characters."""
        raise NotImplementedError

    def example(self, generator: torch.Generator) -> tuple[str, str]:
        return self.examples(1, generator)[0]

    def space_size(self) -> int:
        """How many distinct sources exist (bounds the held-out split)."""
        raise NotImplementedError

    def probe_pair(self) -> tuple[str, str]:
        """The fixed example the panels show and ``decode`` uses by default."""
        raise NotImplementedError

    @property
    def max_target_len(self) -> int:
        """Longest target in characters (decoding stops one token, eos, after it)."""
        return self.T

    # ------------------------------------------------------------------ the Task contract
    @property
    def baseline(self) -> float:
        """Cross-entropy (nats/token, eos included) of guessing from target unigram counts."""
        return self._entropy

    @property
    def target(self) -> float:
        return 0.05 * self._entropy

    def sample(self, batch_size: int, generator: torch.Generator) -> TranslationBatch:
        return self.batch(self._training_examples(batch_size, generator))

    def probe_batch(self) -> TranslationBatch:
        return self.batch([self.probe_pair()], pad_to=self.T)

    def evaluate(self, model, by_length: Sequence[int] = ()) -> dict[str, float]:
        """The held-out split decoded both ways (batched, no grad).

        Returns ``exact_match`` (greedy decoding: the whole output, eos included, equals
        the target), ``token_accuracy`` (greedy decoding, free running: position-wise over
        target tokens and eos) and ``token_accuracy_teacher_forced`` (the share of target
        tokens, eos included, that are the argmax given the true prefix, as teacher-forced
        training sees them). The gap between the two token accuracies is what exposure bias
        costs: one wrong token fed back derails the tokens after it. Exact match has no
        teacher-forced twin: it is the same either way (every argmax right given the true
        prefix is exactly when greedy decoding, fed its own and so the true tokens, is right).
        ``by_length`` = bucket edges, e.g. (12, 20): adds ``exact_match_len_1-12``,
        ``..._13-20``, ``..._21-30`` (free running, by source length; empty buckets left out).
        """
        if not self.heldout:
            return {}
        was_training = model.training
        model.eval()
        batch = self.batch(self.heldout).to(next(model.parameters()).device)
        predicted = model.greedy_batch(batch.src, batch.lengths, self.max_target_len + 1)  # [B, P]
        forced = model.teacher_forced_batch(batch.src, batch.lengths, batch.tgt_in)  # [U, B]
        model.train(was_training)
        real_forced = batch.tgt_out != PAD
        forced_right = ((forced == batch.tgt_out) & real_forced).sum()
        target = batch.tgt_out.T  # [B, U]
        width = max(predicted.shape[1], target.shape[1])
        predicted = torch.nn.functional.pad(predicted, (0, width - predicted.shape[1]), value=PAD)
        target = torch.nn.functional.pad(target, (0, width - target.shape[1]), value=PAD)
        same, real = predicted == target, target != PAD
        exact = same.all(1).cpu()
        result = {"exact_match": float(exact.float().mean()),
                  "token_accuracy": float((same & real).sum() / real.sum()),
                  "token_accuracy_teacher_forced": float(forced_right / real_forced.sum())}
        lengths = batch.lengths.cpu()
        edges = [0, *sorted(by_length), self.T]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            chosen = (lengths > lo) & (lengths <= hi)
            if by_length and chosen.any():
                result[f"exact_match_len_{lo + 1}-{hi}"] = float(exact[chosen].float().mean())
        return result

    # --------------------------------------------------------------------------- batches
    @property
    def probe_text(self) -> str:
        return self.probe_pair()[0]

    def batch(self, pairs: Sequence[tuple[str, str]], pad_to: int | None = None) -> TranslationBatch:
        """Pad (source, target) pairs into a time-major batch (sources of 1..T characters)."""
        src_ids = [self.src_vocab.encode(s) for s, _ in pairs]
        tgt_ids = [self.tgt_vocab.encode(t) for _, t in pairs]
        lengths = torch.tensor([len(s) for s in src_ids])
        if int(lengths.min()) < 1 or int(lengths.max()) > self.T:
            raise ValueError(f"source lengths must lie in 1..{self.T}; got {lengths.tolist()}")
        S = pad_to or int(lengths.max())
        U = max(len(t) for t in tgt_ids) + 1
        src = torch.tensor([s + [PAD] * (S - len(s)) for s in src_ids]).T.contiguous()
        tgt_in = torch.tensor([[BOS, *t] + [PAD] * (U - 1 - len(t)) for t in tgt_ids]).T.contiguous()
        tgt_out = torch.tensor([[*t, EOS] + [PAD] * (U - 1 - len(t)) for t in tgt_ids]).T.contiguous()
        valid = torch.arange(S).unsqueeze(1) < lengths.unsqueeze(0)
        x = torch.nn.functional.one_hot(src, len(self.src_vocab)).float() * valid.unsqueeze(-1)
        first = pairs[0][0]
        labels = tuple(first[t] if t < len(first) else "" for t in range(S))
        return TranslationBatch(x, tgt_out, valid, lengths, labels, False, src, tgt_in, tgt_out)

    def _training_examples(self, n: int, generator: torch.Generator) -> list[tuple[str, str]]:
        """``n`` examples, each drawn again while it is in the held-out split."""
        pairs = self.examples(n, generator)
        for _ in range(1000):
            again = [i for i, (src, _) in enumerate(pairs) if src in self._heldout_sources]
            if not again:
                return pairs
            for i, pair in zip(again, self.examples(len(again), generator), strict=True):
                pairs[i] = pair
        raise RuntimeError(f"{self.name}: could not draw training examples outside the held-out split")

    def _distinct(self, n: int, generator: torch.Generator) -> list[tuple[str, str]]:
        found: dict[str, str] = {}
        for _ in range(50):
            if len(found) == n:
                break
            for src, tgt in self.examples(n - len(found), generator):
                found.setdefault(src, tgt)
        return list(found.items())


def _randint(lo: int, hi: int, n: int, generator: torch.Generator) -> list[int]:
    """``n`` uniform integers in lo..hi (inclusive) from ``generator``."""
    return torch.randint(lo, hi + 1, (n,), generator=generator).tolist()


class _StringTask(TranslationTask):
    """Random strings of ``min_len``..T characters from ``alphabet`` -> ``transform(source)``."""

    alphabet = ""
    probe_source = ""
    transform: Callable[[str], str]

    def __init__(self, exp: Experiment):
        self.src_vocab = self.tgt_vocab = Vocab(self.alphabet)
        self.min_len = min(3, exp.seq_len)
        super().__init__(exp)

    def examples(self, n, generator):
        lengths = _randint(self.min_len, self.T, n, generator)
        idx = torch.randint(0, len(self.alphabet), (n, self.T), generator=generator).tolist()
        sources = ["".join(self.alphabet[i] for i in row[:k]) for row, k in zip(idx, lengths, strict=True)]
        return [(src, self.transform(src)) for src in sources]

    def space_size(self) -> int:
        return sum(len(self.alphabet) ** n for n in range(self.min_len, self.T + 1))

    def probe_pair(self):
        src = self.probe_source[:self.T]
        return src, self.transform(src)


class ReverseTask(_StringTask):
    """Reverse a lowercase string: "recurrent" -> "tnerrucer"."""

    name, title = "reverse", "Sequence reversal"
    alphabet = string.ascii_lowercase
    probe_source = "recurrent"

    @staticmethod
    def transform(src: str) -> str:
        return src[::-1]


class SortTask(_StringTask):
    """Sort the characters of a string of digits and lowercase letters: "b3a1" -> "13ab"."""

    name, title = "sort", "Sorting characters"
    alphabet = string.digits + string.ascii_lowercase
    probe_source = "attention42"

    @staticmethod
    def transform(src: str) -> str:
        return "".join(sorted(src))


# ----------------------------------------------------------------------------------- dates
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FIRST_DATE, LAST_DATE = dt.date(1950, 1, 1), dt.date(2049, 12, 31)  # two-digit years: 50-49


def ordinal(day: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 23rd, ..., 31st."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _names(d: dt.date) -> tuple[str, str, str, str]:
    month, weekday = MONTHS[d.month - 1], WEEKDAYS[d.weekday()]
    return month, month[:3], weekday, weekday[:3]


def _clock12(t: dt.datetime) -> str:
    return f"{(t.hour - 1) % 12 + 1}:{t.minute:02} {'AM' if t.hour < 12 else 'PM'}"


# name -> how a moment is written (the target is its date). English names are spelled out
# here, so no locale is involved. The last four also give a time of day, as logs and
# e-mails do: its digits are distractors the model must learn to skip.
DATE_FORMATS: dict[str, Callable[[dt.datetime], str]] = {
    "d MMMM yyyy":          lambda d: f"{d.day} {_names(d)[0]} {d.year}",              # 3 March 2021
    "MMMM d, yyyy":         lambda d: f"{_names(d)[0]} {d.day}, {d.year}",             # March 3, 2021
    "mm/dd/yy":             lambda d: f"{d.month:02}/{d.day:02}/{d.year % 100:02}",    # 03/03/21
    "m/d/yyyy":             lambda d: f"{d.month}/{d.day}/{d.year}",                   # 3/3/2021
    "ddd, d MMM yyyy":      lambda d: f"{_names(d)[3]}, {d.day} {_names(d)[1]} {d.year}",  # Wed, 3 Mar 2021
    "d.m.yyyy":             lambda d: f"{d.day}.{d.month}.{d.year}",                   # 3.3.2021
    "dd.mm.yy":             lambda d: f"{d.day:02}.{d.month:02}.{d.year % 100:02}",    # 03.03.21
    "yyyy mmmm dth":        lambda d: f"{d.year} {_names(d)[0].lower()} {ordinal(d.day)}",  # 2021 march 3rd
    "yyyy-mm-dd":           lambda d: d.date().isoformat(),                            # 2021-03-03
    "yyyymmdd":             lambda d: f"{d.year}{d.month:02}{d.day:02}",               # 20210303
    "DD MMM YYYY":          lambda d: f"{d.day:02} {_names(d)[1].upper()} {d.year}",   # 03 MAR 2021
    "d mmm yy":             lambda d: f"{d.day} {_names(d)[1].lower()} {d.year % 100:02}",  # 3 mar 21
    "the dth of MMMM yyyy": lambda d: f"the {ordinal(d.day)} of {_names(d)[0]} {d.year}",
    "dddd d MMMM yyyy":     lambda d: f"{_names(d)[2]} {d.day} {_names(d)[0]} {d.year}",
    "dddd, MMMM d, yyyy":   lambda d: f"{_names(d)[2]}, {_names(d)[0]} {d.day}, {d.year}",
    "ctime":                lambda d: f"{_names(d)[3]} {_names(d)[1]} {d.day:2} {d:%H:%M:%S} {d.year}",
    "iso datetime":         lambda d: d.isoformat(timespec="seconds"),                 # 2021-03-03T14:05:59
    "mm/dd/yyyy HH:MM":     lambda d: f"{d.month:02}/{d.day:02}/{d.year} {d:%H:%M}",
    "MMMM d, yyyy at h:MM": lambda d: f"{_names(d)[0]} {d.day}, {d.year} at {_clock12(d)}",
}
TIMED_FORMATS = ("ctime", "iso datetime", "mm/dd/yyyy HH:MM", "MMMM d, yyyy at h:MM")


def _longest(render: Callable[[dt.datetime], str]) -> int:
    """Longest text a format produces (longest weekday and month names, two-digit day)."""
    return max(len(render(dt.datetime(2000, m, d, h, 59, 59)))
               for m in (5, 9) for d in range(24, 31) for h in (10, 23))


class DatesTask(TranslationTask):
    """Human-written dates -> ISO 8601 "YYYY-MM-DD" (only formats that fit in T characters)."""

    name, title = "dates", "Date normalisation"
    days = (LAST_DATE - FIRST_DATE).days + 1

    def __init__(self, exp: Experiment):
        self.formats = [(k, f) for k, f in DATE_FORMATS.items() if _longest(f) <= exp.seq_len]
        if not self.formats:
            shortest = min(_longest(f) for f in DATE_FORMATS.values())
            raise UserError(f"the dates task needs seq_len >= {shortest}; got {exp.seq_len}")
        chars = set(string.digits)
        for _, render in self.formats:
            for offset in range(0, 366):  # every month, weekday and day of a leap year
                chars.update(render(dt.datetime(2000, 1, 1, 9 + offset % 6) + dt.timedelta(days=offset)))
        self.src_vocab = Vocab(sorted(chars))
        self.tgt_vocab = Vocab(string.digits + "-")
        super().__init__(exp)

    @property
    def max_target_len(self) -> int:
        return 10

    def examples(self, n, generator):
        days = _randint(0, self.days - 1, n, generator)
        formats = _randint(0, len(self.formats) - 1, n, generator)
        seconds = _randint(0, 86399, n, generator)
        start = dt.datetime.combine(FIRST_DATE, dt.time())
        pairs = []
        for day, k, second in zip(days, formats, seconds, strict=True):
            when = start + dt.timedelta(days=day, seconds=second)
            pairs.append((self.formats[k][1](when), when.date().isoformat()))
        return pairs

    def space_size(self) -> int:
        return self.days * len(self.formats)

    def probe_pair(self):
        when = dt.datetime(1987, 11, 24, 18, 30)
        dated = [f for f in self.formats if f[0] not in TIMED_FORMATS] or self.formats
        _, render = max(dated, key=lambda f: len(f[1](when)))
        return render(when), when.date().isoformat()


TRANSLATION_TASKS: tuple[type[TranslationTask], ...] = (ReverseTask, SortTask, DatesTask)
