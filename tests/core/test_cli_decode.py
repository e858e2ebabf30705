"""The decode command: --json prints one object with the documented keys; bad arguments give
one line naming the value and what is allowed, before any training."""

import json

import pytest

from main import main


def decode(capsys, *argv):
    code = main(["decode", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_one_object_with_the_documented_keys(capsys):
    code, out, err = decode(capsys, "--preset", "reverse-attention", "--steps", "3",
                            "--input", "abcd", "--beam", "3", "--json")
    assert code == 0, err
    data = json.loads(out)  # exactly one JSON document on stdout
    assert {"source", "source_tokens", "notice", "hypotheses", "greedy", "tree", "attention",
            "steps", "evaluation", "beam", "length_penalty", "max_len"} <= set(data)
    assert data["source"] == "abcd" and data["steps"] == 3 and data["notice"] is None
    assert len(data["hypotheses"]) == 3
    for h in [*data["hypotheses"], data["greedy"]]:
        assert set(h) == {"tokens", "text", "score"}
    node = data["tree"][1]
    # the tree's sum of log-probs is not a (length-normalised) score: its own name (issue 15)
    assert set(node) == {"id", "parent", "token", "text", "log_prob", "cum_log_prob", "step", "status"}
    best = data["hypotheses"][0]
    end = [n for n in data["tree"] if n["status"] == "finished" and n["step"] == len(best["tokens"])]
    assert any(abs(n["cum_log_prob"] / n["step"] ** data["length_penalty"] - best["score"]) < 1e-6 for n in end)
    assert data["tree"][0]["status"] == "root" and data["tree"][0]["text"] == "<bos>"
    assert len(data["attention"]) == len(data["hypotheses"][0]["tokens"])
    assert all(len(row) == 4 for row in data["attention"])
    assert "exact_match" in data["evaluation"]
    assert "] 3/3" in err  # the progress bar


def test_readable_summary_defaults_to_the_probe_example(capsys):
    code, out, _ = decode(capsys, "--preset", "dates-noattention", "--steps", "0", "--beam", "2")
    assert code == 0
    assert "input:   Tuesday, November 24, 1987" in out
    assert "greedy:" in out and "beam search (width 2, length penalty 1)" in out
    assert "attention: none" in out


def test_notices_for_unknown_and_too_long_input(capsys):
    code, out, _ = decode(capsys, "--preset", "reverse-attention", "--steps", "0", "--json",
                          "--input", "ab?" + "c" * 40)
    assert code == 0
    notice = json.loads(out)["notice"]
    assert notice.startswith("input truncated to 16 characters") and "'?' read as <unk>" in notice


@pytest.mark.parametrize("argv,message", [
    (["--preset", "reverse-attention", "--beam", "0"], "--beam must be an integer from 1 to 64; got 0"),
    (["--preset", "reverse-attention", "--max-len", "0"], "--max-len must be an integer from 1 to 500; got 0"),
    (["--preset", "reverse-attention", "--length-penalty", "inf"], "--length-penalty must be a finite number; got inf"),
    (["--preset", "reverse-attention", "--steps", "-2"], "--steps must be an integer >= 0; got -2"),
    (["--preset", "reverse-attention", "--input", "  "], "input is empty"),
    (["--preset", "adding-lstm"], "preset 'adding-lstm' trains the adding task, not a translation task; "
                                  "decode works with: "),
    (["--preset", "nope"], "unknown preset 'nope'"),
])
def test_bad_arguments_give_one_line(capsys, argv, message):
    code, out, err = decode(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "[" not in err  # refused before any training


def test_session_decodes_the_saved_model_without_training_unless_asked(capsys, tmp_path):
    path = str(tmp_path / "rev.zip")
    assert main(["train", "--preset", "reverse-attention", "--steps", "2", "--save", path]) == 0
    capsys.readouterr()
    code, out, err = decode(capsys, "--session", path, "--input", "abc", "--json")
    assert code == 0, err
    assert json.loads(out)["steps"] == 2 and "[" not in err
    code, out, err = decode(capsys, "--session", path, "--steps", "1", "--json")
    assert code == 0 and json.loads(out)["steps"] == 3 and "] 1/1" in err
    code, out, err = decode(capsys, "--session", path, "--seed", "3")
    assert code == 2 and "cannot change a saved session" in err
