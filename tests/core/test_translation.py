"""Translation tasks: every date format parses back (datetime.strptime) to its ISO target,
reversal/sorting targets are right, batches are padded and shifted correctly, the held-out
split is disjoint from training and reproducible from the seed."""

import datetime as dt
import math
import random
import re

import pytest
import torch

from core.batch import TranslationBatch
from core.config import Experiment
from core.errors import UserError
from core.names import BOS, EOS, PAD, UNK
from core.tasks import make_task
from core.tasks.translation import DATE_FORMATS, FIRST_DATE, LAST_DATE
from core.tasks.vocab import Vocab

# An independent reading of every format: a strptime pattern (C locale English names).
PATTERNS = {
    "d MMMM yyyy": "%d %B %Y",
    "MMMM d, yyyy": "%B %d, %Y",
    "mm/dd/yy": "%m/%d/%y",
    "m/d/yyyy": "%m/%d/%Y",
    "ddd, d MMM yyyy": "%a, %d %b %Y",
    "d.m.yyyy": "%d.%m.%Y",
    "dd.mm.yy": "%d.%m.%y",
    "yyyy mmmm dth": "%Y %B %d",
    "yyyy-mm-dd": "%Y-%m-%d",
    "yyyymmdd": "%Y%m%d",
    "DD MMM YYYY": "%d %b %Y",
    "d mmm yy": "%d %b %y",
    "the dth of MMMM yyyy": "the %d of %B %Y",
    "dddd d MMMM yyyy": "%A %d %B %Y",
    "dddd, MMMM d, yyyy": "%A, %B %d, %Y",
    "ctime": "%a %b %d %H:%M:%S %Y",
    "iso datetime": "%Y-%m-%dT%H:%M:%S",
    "mm/dd/yyyy HH:MM": "%m/%d/%Y %H:%M",
    "MMMM d, yyyy at h:MM": "%B %d, %Y at %I:%M %p",
}
ORDINAL = re.compile(r"(\d)(st|nd|rd|th)\b")


def parse(text: str, name: str) -> dt.datetime:
    """The moment ``text`` names under format ``name``; two-digit years mean 1950-2049."""
    parsed = dt.datetime.strptime(ORDINAL.sub(r"\1", text), PATTERNS[name])
    if "%y" in PATTERNS[name] and parsed.year >= 2050:  # strptime's window is 1969-2068
        parsed = parsed.replace(year=parsed.year - 100)
    return parsed


def random_moments(n: int, seed: int = 0):
    rng = random.Random(seed)
    span = (LAST_DATE - FIRST_DATE).days
    edges = [dt.datetime(1950, 1, 1), dt.datetime(2049, 12, 31, 23, 59, 59),
             dt.datetime(2000, 2, 29, 12, 0), dt.datetime(1968, 12, 31, 0, 0, 1)]
    return edges + [dt.datetime.combine(FIRST_DATE, dt.time()) + dt.timedelta(
        days=rng.randint(0, span), seconds=rng.randint(0, 86399)) for _ in range(n)]


def test_every_format_has_a_reference_pattern():
    assert set(PATTERNS) == set(DATE_FORMATS)


@pytest.mark.parametrize("name", sorted(DATE_FORMATS))
def test_each_date_format_round_trips_through_strptime(name):
    render = DATE_FORMATS[name]
    for when in random_moments(300):
        text = render(when)
        back = parse(text, name)
        assert back.date() == when.date(), (name, text)
        if "%H" in PATTERNS[name] or "%I" in PATTERNS[name]:
            assert (back.hour, back.minute) == (when.hour, when.minute), text
        if "%A" in PATTERNS[name] or "%a" in PATTERNS[name]:  # strptime ignores the weekday
            day_name = when.strftime("%A" if "%A" in PATTERNS[name] else "%a")
            assert text.startswith(day_name), text


def test_dates_task_examples_map_to_their_iso_date():
    task = make_task(Experiment(task="dates", seq_len=30))
    g = torch.Generator().manual_seed(3)
    for _ in range(500):
        src, tgt = task.example(g)
        dates = set()
        for name in PATTERNS:
            try:
                dates.add(parse(src, name).date())
            except ValueError:
                pass
        assert dates == {dt.date.fromisoformat(tgt)}, (src, tgt)
        assert 1 <= len(src) <= 30 and FIRST_DATE <= dt.date.fromisoformat(tgt) <= LAST_DATE


def test_dates_task_keeps_only_formats_that_fit_and_refuses_too_short_lengths():
    task = make_task(Experiment(task="dates", seq_len=10))
    g = torch.Generator().manual_seed(0)
    assert all(len(task.example(g)[0]) <= 10 for _ in range(300))
    assert {name for name, _ in task.formats} >= {"yyyymmdd", "yyyy-mm-dd", "mm/dd/yy"}
    with pytest.raises(UserError, match="the dates task needs seq_len >= 8; got 7"):
        make_task(Experiment(task="dates", seq_len=7))


@pytest.mark.parametrize("name,transform", [("reverse", lambda s: s[::-1]),
                                            ("sort", lambda s: "".join(sorted(s)))])
def test_reverse_and_sort_targets(name, transform):
    task = make_task(Experiment(task=name, seq_len=9))
    g = torch.Generator().manual_seed(1)
    lengths = set()
    for _ in range(400):
        src, tgt = task.example(g)
        assert tgt == transform(src) and set(src) <= set(task.alphabet)
        lengths.add(len(src))
    assert lengths == set(range(3, 10))
    assert sorted("b3a1") == list(make_task(Experiment(task="sort", seq_len=9)).transform("b3a1"))


def test_batch_is_padded_masked_and_shifted():
    task = make_task(Experiment(task="dates", seq_len=30))
    batch = task.sample(16, torch.Generator().manual_seed(0))
    assert isinstance(batch, TranslationBatch)
    S, B = batch.src.shape
    assert B == 16 and S == int(batch.lengths.max())
    assert torch.equal(batch.valid, batch.src != PAD)
    assert torch.equal(batch.valid.sum(0), batch.lengths) and batch.src_lengths is batch.lengths
    assert batch.x.shape == (S, B, len(task.src_vocab))
    assert torch.equal(batch.x.argmax(-1)[batch.valid], batch.src[batch.valid])
    assert torch.all(batch.x[~batch.valid] == 0)
    assert torch.all(batch.tgt_in[0] == BOS)
    real = batch.tgt_out != PAD
    assert torch.equal(batch.tgt_in[1:][real[1:]], batch.tgt_out[:-1][real[1:]])
    assert torch.equal(batch.tgt_out.gather(0, (real.sum(0) - 1)[None])[0], torch.full((B,), EOS))
    assert batch.y is batch.tgt_out
    first = "".join(task.src_vocab.itos[i] for i in batch.src[:batch.lengths[0], 0])
    assert "".join(batch.labels) == first and len(batch.labels) == S
    moved = batch.to("cpu")
    assert isinstance(moved, TranslationBatch) and torch.equal(moved.tgt_in, batch.tgt_in)


def test_probe_batch_is_the_probe_text_padded_to_T():
    task = make_task(Experiment(task="dates", seq_len=30))
    probe = task.probe_batch()
    assert task.probe_text == "Tuesday, November 24, 1987"
    assert probe.src.shape == (30, 1) and int(probe.lengths[0]) == len(task.probe_text)
    assert probe.labels[len(task.probe_text)] == "" and not bool(probe.valid[-1, 0])


def test_heldout_is_disjoint_from_training_and_reproducible_by_seed():
    exp = Experiment(task="reverse", seq_len=3)  # 26**3 sources: collisions would happen
    task = make_task(exp)
    held = {src for src, _ in task.heldout}
    assert len(held) == len(task.heldout) == 400
    g = torch.Generator().manual_seed(exp.seed)
    for _ in range(50):
        batch = task.sample(64, g)
        for b in range(64):
            src = "".join(task.src_vocab.itos[i] for i in batch.src[:batch.lengths[b], b])
            assert src not in held
    again = make_task(exp)
    assert again.heldout == task.heldout
    a, b = (again.sample(8, torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a.src, b.src) and torch.equal(a.tgt_out, b.tgt_out)
    assert make_task(exp.replace(seed=1)).heldout != task.heldout


def test_baseline_is_the_cross_entropy_of_target_unigram_guessing():
    task = make_task(Experiment(task="sort", seq_len=8))
    counts = torch.zeros(len(task.tgt_vocab))
    for _, tgt in task.heldout:
        for i in [*task.tgt_vocab.encode(tgt), EOS]:
            counts[i] += 1
    p = counts / counts.sum()
    ce = -sum(float(c * math.log(q)) for c, q in zip(counts, p, strict=True) if c > 0) / float(counts.sum())
    assert task.baseline == pytest.approx(ce, rel=1e-6)
    assert 0 < task.target < task.baseline


def test_vocab_round_trip_and_unknown_characters():
    vocab = Vocab("abc")
    assert vocab.itos[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert vocab.encode("cab") == [6, 4, 5]
    assert vocab.decode([*vocab.encode("cab"), EOS, 4]) == "cab"
    assert vocab.encode("aXb") == [4, UNK, 5]
    assert vocab.unknown("aXbYX") == ["X", "Y"]


def test_the_task_registry_and_the_config_name_the_same_tasks():
    from core.config import SEQ2SEQ_TASKS, TASKS
    from core.tasks import task_classes

    classes = task_classes()
    assert sorted(classes) == sorted(TASKS)
    assert {n for n, c in classes.items() if c.model_kind == "seq2seq"} == set(SEQ2SEQ_TASKS)
