"""The user's own files: every bad input is refused in one line naming the file, the line or
column and what was expected; good files become tasks; sessions keep the data exactly."""

import json
import math

import pytest
import torch

import main
from core.config import Experiment
from core.datafiles import DataError, DataFile, parse_vocab, read_file, text_of
from core.errors import SessionError
from core.session.format import open_session, save_session
from core.tasks import make_task
from core.tasks.files import parse_labelled, parse_pairs, parse_series
from core.training.trainer import Trainer


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


def refused(reader, path, expected: str):
    with pytest.raises(DataError) as err:
        reader(read_file(path))
    message = str(err.value)
    assert message.startswith(path) and expected in message and "\n" not in message, message
    return message


# -------------------------------------------------------------------------------- readers
def test_bad_text_files(tmp_path):
    refused(text_of, write(tmp_path, "b.txt", b"PK\x03\x04\x00\x00binary"), "line 1: a NUL byte; this looks like "
            "a binary file, expected a UTF-8 text file")
    refused(text_of, write(tmp_path, "l.txt", "ok\nfine\ncaf\xe9".encode("latin-1")),
            "line 3: byte 0xe9 is not UTF-8")
    refused(text_of, write(tmp_path, "e.txt", " \n\n"), "the file is empty")


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = write(tmp_path, "big.txt", "x" * 2000)
    monkeypatch.setattr("core.datafiles.MAX_DATA_BYTES", 1000)
    with pytest.raises(DataError, match=r"big.txt: 2.0 KiB is more than the 1000 bytes a data file may have"):
        read_file(path, limit=1000)
    with pytest.raises(DataError, match="cannot read the data file"):
        read_file(str(tmp_path / "absent.txt"))


@pytest.mark.parametrize(("content", "expected"), [
    ("a,b\n1,2\n3\n", "line 3: 1 cells; the header has 2"),
    ("a,b\n1,2\n3,x\n", "line 3, column 'b': 'x' is not a number"),
    ("a,b\n1,2\nnan,1\n", "line 3, column 'a': 'nan' is not a finite number"),
    ("a,b\n1,inf\n3,4\n", "line 2, column 'b': 'inf' is not a finite number"),
    ("1,2\n3,4\n", "line 1: expected a header row of column names; got numbers"),
    ("a,a\n1,2\n3,4\n", "column 'a' appears twice"),
    ("a\n1\n", "1 data row(s); expected at least 2"),
])
def test_bad_csv_series(tmp_path, content, expected):
    refused(parse_series, write(tmp_path, "s.csv", content), expected)


def test_a_missing_column_names_the_columns_there_are(tmp_path):
    path = write(tmp_path, "s.csv", "time,a,b\n0,1,2\n1,3,4\n")
    refused(lambda df: parse_series(df, ("a", "c")), path, "input column 'c' is not in the file; it has: time, a, b")
    refused(lambda df: parse_series(df, (), ("z",)), path, "target column 'z' is not in the file")


def test_a_series_reads_its_columns_and_skips_the_time_column(tmp_path):
    path = write(tmp_path, "s.csv", "date,a,b,note\n2020-01-01,1,2,x\n2020-01-02,3,4,y\n")
    s = parse_series(read_file(path), ("a", "b"), ("b",))
    assert s.time == ("2020-01-01", "2020-01-02") and s.inputs == (1, 2) and s.targets == (2,)
    assert [row[1:3] for row in s.values] == [[1.0, 2.0], [3.0, 4.0]]  # the text column is not read


@pytest.mark.parametrize(("content", "expected"), [
    ("abc\tcba\nno tab here\n", "line 2: no TAB; expected one 'source TAB target' pair a line"),
    ("a\tb\tc\n", "line 1: 2 TABs"),
    ("abc\t \n", "line 1: the target is empty"),
])
def test_bad_pairs(tmp_path, content, expected):
    refused(parse_pairs, write(tmp_path, "p.tsv", content), expected)


def test_bad_labelled_lines(tmp_path):
    refused(parse_labelled, write(tmp_path, "c.tsv", "good film\tpos\nbad film\n"), "line 2: no TAB")
    refused(parse_labelled, write(tmp_path, "c.tsv", "good\tpos\nfine\tpos\n"), "every line has the label 'pos'")
    refused(parse_labelled, write(tmp_path, "c.csv", "text,label\n\"a, b\",x,y\n"), "line 2: 3 cells")
    lines = parse_labelled(read_file(write(tmp_path, "ok.csv", 'text,label\n"great, really",pos\nawful,neg\n')))
    assert lines == [("great, really", "pos"), ("awful", "neg")]


@pytest.mark.parametrize(("content", "expected"), [
    ('["a", "b", "a"]', "token 'a' appears twice"),
    ('{"a": 0, "b": 2}', "key 'b': id 2 is not a whole number in 0..1"),
    ('{"a": 0, "b": 0}', "key 'b': id 0 is also the id of 'a'"),
    ('["a", 3]', "entry 1 is int"),
    ("[1, 2", "not valid JSON"),
    ('"abc"', "holds a JSON str"),
])
def test_bad_vocabularies(tmp_path, content, expected):
    refused(parse_vocab, write(tmp_path, "v.json", content), expected)


def test_a_vocabulary_as_token_to_id_map():
    assert parse_vocab(DataFile.of("v.json", b'{"b": 1, "a": 0}')) == ["a", "b"]


# ---------------------------------------------------------------------------------- tasks
def test_tasks_on_files_refuse_what_they_cannot_learn(tmp_path):
    with pytest.raises(DataError, match=r"s.csv: 3 rows; seq_len 50 needs at least 51 \(lower seq_len"):
        make_task(Experiment(task="series", data=write(tmp_path, "s.csv", "a\n1\n2\n3\n")))
    with pytest.raises(DataError, match="pair 2: the source has 6 characters; seq_len is 5"):
        make_task(Experiment(task="pairs", seq_len=5, data=write(tmp_path, "p.tsv", "ab\tba\nabcdef\tfedcba\n")))
    with pytest.raises(Exception, match="task 'classify' learns from your own file"):
        make_task(Experiment(task="classify"))


def test_series_normalisation_uses_the_training_rows_only(tmp_path):
    rows = "\n".join(f"{i},{i * 2.0}" for i in range(100))
    task = make_task(Experiment(task="series", seq_len=10, data=write(tmp_path, "s.csv", "t,v\n" + rows)))
    assert task.cut == 80 and task.input_size == 1
    train = torch.arange(80, dtype=torch.float64) * 2
    assert task.describe()["normalisation"]["v"] == pytest.approx({"mean": float(train.mean()),
                                                                  "std": float(train.std(unbiased=False))})
    batch = task.sample(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch.y[:-1], batch.x[1:])  # next-step targets of one column
    assert batch.labels[0].isdigit()


def test_classify_reads_at_the_last_real_step_and_holds_lines_out(tmp_path):
    lines = "".join(f"{'ab' * (1 + i % 3)}\t{'long' if i % 2 else 'short'}\n" for i in range(20))
    task = make_task(Experiment(task="classify", seq_len=8, data=write(tmp_path, "c.tsv", lines)))
    assert task.class_names == ("long", "short") and len(task.heldout) == 4 and len(task.train) == 16
    batch = task.sample(6, torch.Generator().manual_seed(0))
    assert batch.x.shape == (8, 6, 2) and batch.y.shape == (6,) and batch.lengths is not None
    assert torch.equal(batch.valid.sum(0), batch.lengths)


def test_a_typed_probe_goes_through_the_vocabulary(tmp_path):
    text = write(tmp_path, "t.txt", "hello world " * 30)
    task = make_task(Experiment(task="charlm", seq_len=8, data=text, probe="low"))
    assert task.probe_batch().labels == ("l", "o", "w")
    with pytest.raises(DataError, match=r"probe: 'z' never occur in"):
        make_task(Experiment(task="charlm", seq_len=8, data=text, probe="zoo")).probe_batch()


# ------------------------------------------------------------------------------- sessions
def test_a_session_keeps_its_data_and_resumes_exactly_without_the_file(tmp_path):
    text = write(tmp_path, "t.txt", "the cat sat on the mat. " * 40)
    exp = Experiment(task="charlm", data=text, hidden_size=8, seq_len=12, batch_size=4)
    straight = Trainer(exp)
    losses = [r.loss for r in straight.run(6)]
    first = Trainer(exp)
    list(first.run(3))
    save_session(first, tmp_path / "s.rnnx")
    (tmp_path / "t.txt").unlink()  # the session holds the bytes
    again = open_session(tmp_path / "s.rnnx")
    assert [r.loss for r in again.run(3)] == losses[3:]


def test_a_session_above_the_store_limit_refuses_a_changed_file_naming_both_hashes(tmp_path, monkeypatch):
    monkeypatch.setattr("core.session.data.MAX_STORED_BYTES", 10)
    path = write(tmp_path, "s.csv", "a\n" + "\n".join(str(math.sin(i)) for i in range(60)))
    trainer = Trainer(Experiment(task="series", data=path, hidden_size=4, seq_len=8, batch_size=2))
    list(trainer.run(2))
    save_session(trainer, tmp_path / "s.rnnx")
    before = read_file(path).sha256
    assert open_session(tmp_path / "s.rnnx").step_count == 2  # the same file: resumes
    write(tmp_path, "s.csv", "a\n" + "\n".join(str(math.cos(i)) for i in range(60)))
    with pytest.raises(SessionError) as err:
        open_session(tmp_path / "s.rnnx")
    after = read_file(path).sha256
    assert f"{path} has changed since the session was saved: its SHA-256 was {before}, now {after}" in str(err.value)


# -------------------------------------------------------------------------------- the CLI
def test_train_on_data_exports_and_the_cli_refuses_bad_data_in_one_line(tmp_path, capsys):
    lines = "".join(f"{w} {w}\t{'a' if w < 'm' else 'z'}\n" for w in ("apple", "zoo", "banana", "yak", "cat", "xen"))
    data = write(tmp_path, "c.tsv", lines)
    code = main.main(["train", "--data", data, "--task", "classify", "--steps", "3", "--hidden-size", "4",
                      "--json", "--export-model", str(tmp_path / "m.safetensors")])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert code == 0 and summary["experiment"]["seq_len"] == 13  # fitted: the longest line
    assert summary["data"]["classes"] == ["a", "z"] and summary["exported"][1].endswith("vocab.json")
    bad = write(tmp_path, "bad.csv", "a,b\n1,2\n1,oops\n")
    assert main.main(["train", "--data", bad, "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad}: line 3, column 'b': 'oops' is not a number\n"


def test_typed_numbers_or_a_csv_of_rows_become_the_probe_and_a_refusal_changes_nothing(tmp_path):
    trainer = Trainer(Experiment(task="adding", hidden_size=4, seq_len=6, batch_size=2))
    trainer.use_probe("0.5, 1; 0.25, 0; 0.75, 1")
    assert trainer.probe().inputs.tolist() == [[0.5, 1.0], [0.25, 0.0], [0.75, 1.0]]
    rows = write(tmp_path, "steps.csv", "value,mark\n0.1,0\n0.2,1\n")
    trainer.use_probe(rows)
    assert trainer.probe().inputs.ravel().tolist() == pytest.approx([0.1, 0.0, 0.2, 1.0])
    with pytest.raises(DataError, match="input: row 1 has 3 values; the model takes 2 inputs a step"):
        trainer.use_probe("1, 2, 3")
    assert trainer.experiment.probe == rows and trainer.probe().T == 2  # the last good input stays
    trainer.use_probe("")
    assert trainer.probe().T == 6  # the task's own probe again
