"""Every command refuses bad input in one line (exit 2) naming the value and what is allowed,
never with a traceback; the traceback goes to the rotating log file, and --verbose also
sends the log to stderr."""

from __future__ import annotations

import logging
import logging.handlers

import pytest

import main
from core.logs import LOG_FILE, LOGGER, setup_logging

TRAIN = ["train", "--preset", "adding-lstm"]
DECODE = ["decode", "--preset", "reverse-attention"]
EXPORT = ["export", "--preset", "adding-lstm", "--out", "{tmp}/export"]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


BAD = [  # (argv, what the one line must say)
    (["nope"], "invalid choice: 'nope' (choose from 'gui', "),
    (["presets", "--bogus"], "unrecognized arguments: --bogus"),
    (["train"], "give --preset NAME, --data FILE, --model FILE or --session FILE"),
    (["train", "--preset", "adding-lstm", "--session", "x.rnnx"], "--session: not allowed with argument --preset"),
    (["train", "--preset", "nope"], "unknown preset 'nope'; known presets: adding-gru, "),
    (["train", "--session", "{tmp}/missing.rnnx"], "missing.rnnx: no such file"),
    ([*TRAIN, "--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
    ([*TRAIN, "--steps", "0"], "steps must be an integer from 1 to 1000000; got 0"),
    ([*TRAIN, "--steps", "-5"], "steps must be an integer from 1 to 1000000; got -5"),
    ([*TRAIN, "--lr", "100"], "lr must be a number from 1e-06 to 10; got 100.0"),
    ([*TRAIN, "--lr", "0"], "lr must be a number from 1e-06 to 10; got 0.0"),
    ([*TRAIN, "--lr", "nan"], "lr must be a number from 1e-06 to 10; got nan"),
    ([*TRAIN, "--lr", "inf"], "lr must be a number from 1e-06 to 10; got inf"),
    ([*TRAIN, "--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    ([*TRAIN, "--clip", "-1"], "clip must be a number from 0 to 1000000; got -1.0"),
    ([*TRAIN, "--seed", "-1"], "seed must be an integer from 0 to 2147483647; got -1"),
    ([*TRAIN, "--seed", "99999999999"], "seed must be an integer from 0 to 2147483647; got 99999999999"),
    ([*TRAIN, "--cell", "transformer"], "cell must be one of rnn, lstm, gru; got 'transformer'"),
    ([*TRAIN, "--device", "tpu"], "device must be one of cpu, cuda; got 'tpu'"),
    pytest.param([*TRAIN, "--device", "cuda"], "device 'cuda' was requested but CUDA is not available",
                 marks=pytest.mark.skipif("_cuda()", reason="CUDA is available here")),
    ([*TRAIN, "--save", "{tmp}/no/such/folder/x.rnnx"], "the folder {tmp}/no/such/folder does not exist"),
    ([*TRAIN, "--save", "{tmp}"], "that is a folder; give a file name"),
    ([*DECODE, "--beam", "0"], "--beam must be an integer from 1 to 64; got 0"),
    ([*DECODE, "--beam", "wide"], "argument --beam: invalid int value: 'wide'"),
    ([*DECODE, "--max-len", "100000"], "--max-len must be an integer from 1 to 500; got 100000"),
    ([*DECODE, "--length-penalty", "nan"], "--length-penalty must be a finite number; got nan"),
    ([*DECODE, "--steps", "-1"], "--steps must be an integer >= 0; got -1"),
    ([*DECODE, "--input", "   "], "input is empty: type the text to translate"),
    (["decode", "--preset", "adding-lstm"], "trains the adding task, not a translation task"),
    (["train", "--data", "{tmp}/missing.txt"], "missing.txt: cannot read the data file"),
    (["train", "--data", "{tmp}/notes.xyz"], "cannot tell the task from the suffix '.xyz'"),
    (["train", "--preset", "adding-lstm", "--task", "series"], "--task applies to --data"),
    ([*TRAIN, "--export-model", "{tmp}/m.onnx"], "expected a .safetensors, .pt or .pth file name"),
    (["probe", "--input", "x"], "give the model to probe: --model FILE, --preset NAME or --session FILE"),
    (["probe", "--preset", "adding-lstm", "--input", "abc"], "the adding task reads numbers, not text"),
    (["probe", "--model", "{tmp}/m.safetensors"], "an opened model has no probe of its own: give --input TEXT"),
    (["probe", "--preset", "adding-lstm", "--input", "1", "--input-file", "{tmp}/s.csv"],
     "argument --input-file: not allowed with argument --input"),
    (["gui", "--preset", "nope"], "unknown preset 'nope'"),
    (["gui", "--theme", "pink"], "argument --theme: invalid choice: 'pink' (choose from 'light', 'dark')"),
    (["shot", "--out", "{tmp}/x.png", "--steps", "many"], "argument --steps: invalid int value: 'many'"),
    (["shot", "--out", "{tmp}/x.jpg"], "out must be a .png file"),
    (["shot", "--out", "{tmp}/x.png", "--steps", "-5"], "steps must be 0 or more; got -5"),
    ([*EXPORT, "--steps", "-1"], "--steps must be 0 or more; got -1"),
    ([*EXPORT, "--size", "1x1"], "size must be from 320x240 to 7680x4320; got 1x1"),
    ([*EXPORT, "--scale", "0"], "scale must be from 0.25 to 16; got 0.0"),
    ([*EXPORT, "--scale", "nan"], "scale must be from 0.25 to 16; got nan"),
    ([*EXPORT, "--formats", "gif"], "unknown format 'gif'; choose from png, "),
    ([*EXPORT, "--panels", "nope"], "unknown panel 'nope'; choose from training, "),
    ([*EXPORT, "--theme", "pink"], "theme must be one of light, dark, slide; got 'pink'"),
    (["bench", "--only", "nope"], "unknown benchmark 'nope'; choose from training-lstm, "),
]


@pytest.mark.parametrize("argv, says", BAD)
def test_bad_invocations_exit_2_with_one_line_naming_value_and_range(tmp_path, capsys, argv, says):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = main.main(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err  # exactly one line
    assert err.startswith("error: ") and says.replace("{tmp}", str(tmp_path)) in err, err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "export").exists() and not (tmp_path / "x.png").exists()  # nothing half-made


def log_text() -> str:
    from core.logs import data_dir

    return (data_dir() / LOG_FILE).read_text(encoding="utf-8")


def test_a_refused_command_is_one_line_for_the_user_and_a_traceback_in_the_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNN_EXPLORER_HOME", str(tmp_path / "home"))
    assert main.main(["train", "--preset", "nope"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert (tmp_path / "home" / LOG_FILE).is_file()
    text = log_text()
    assert "ERROR rnn_explorer: command train failed" in text
    assert "Traceback (most recent call last)" in text and "PresetError: unknown preset 'nope'" in text


def test_a_bug_in_a_command_says_so_in_one_line_and_logs_the_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("core.cli.train.run_train", broken)
    assert main.main(["train", "--preset", "adding-lstm"]) == 1
    err = capsys.readouterr().err
    assert err == "error: RuntimeError: simulated bug (details in the log file)\n"
    text = log_text()
    assert "in broken" in text and "RuntimeError: simulated bug" in text


def test_verbose_logs_to_stderr_and_only_when_asked(capsys):
    assert main.main(["--verbose", "train", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert "ERROR rnn_explorer: command train failed" in err and "Traceback" in err
    assert err.splitlines()[-1].startswith("error: unknown preset 'nope'")
    assert main.main(["train", "--preset", "nope"]) == 2  # the next command, without --verbose
    assert capsys.readouterr().err.count("\n") == 1


def test_the_log_file_rotates_and_follows_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("RNN_EXPLORER_HOME", str(tmp_path / "a"))
    assert setup_logging() == tmp_path / "a" / LOG_FILE
    monkeypatch.setenv("RNN_EXPLORER_HOME", str(tmp_path / "b"))
    path = setup_logging()
    assert path == tmp_path / "b" / LOG_FILE
    handlers = [h for h in logging.getLogger(LOGGER).handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert len(handlers) == 1
    log = logging.getLogger(LOGGER + ".test")
    for i in range(1200):
        log.info("line %d %s", i, "x" * 1000)
    assert path.stat().st_size <= 1_000_000 and path.with_name(LOG_FILE + ".1").is_file()
    assert not path.with_name(LOG_FILE + ".4").exists()  # three old files at most
