"""Opening the user's torch.nn models and exporting ours: plain torch is the reference.

Each model here is a real torch.nn RNN/LSTM/GRU trained a few steps, saved with torch.save
and with safetensors; what we load must give its outputs (1e-5), and what we export must
load into plain torch with ``load_state_dict`` and give ours.
"""

import json

import pytest
import safetensors.torch
import torch
from torch import nn

from core.config import Experiment
from core.models.io import ModelFileError, export_model, inspect_model, load_model
from core.training.trainer import Trainer

KINDS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
VOCAB = list("abcdefg")


class TextModel(nn.Module):
    """The usual shape of a student's model: embedding -> recurrent stack -> linear head."""

    def __init__(self, kind: str, layers: int = 2, bias: bool = True, **kw):
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), 5)
        self.encoder = nn.Module()
        self.encoder.rnn = KINDS[kind](5, 8, layers, bias=bias, **kw)
        self.fc = nn.Linear(8, len(VOCAB))

    def forward(self, ids):  # ids [T, B]
        out, _ = self.encoder.rnn(self.embed(ids))
        return out, self.fc(out)


def trained(kind: str, **kw) -> TextModel:
    """A few Adam steps of next-token prediction, so the weights are not torch's initial ones."""
    torch.manual_seed(0)
    model = TextModel(kind, **kw)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    ids = torch.randint(0, len(VOCAB), (12, 4))
    for _ in range(5):
        opt.zero_grad()
        _, logits = model(ids[:-1])
        nn.functional.cross_entropy(logits.flatten(0, 1), ids[1:].flatten()).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "vocab.json").write_text(json.dumps(VOCAB))
    out = {}
    for kind in KINDS:
        model = trained(kind)
        for suffix in ("pt", "safetensors"):
            path = root / f"{kind}.{suffix}"
            if suffix == "pt":
                torch.save(model.state_dict(), path)
            else:
                safetensors.torch.save_file(model.state_dict(), path)
            out[kind, suffix] = (path, model)
    out["root"] = root
    return out


@pytest.mark.parametrize("suffix", ["pt", "safetensors"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_an_opened_torch_model_gives_that_models_own_outputs(files, kind, suffix):
    path, model = files[kind, suffix]
    info = inspect_model(path)
    stack = info.stacks["encoder.rnn."]
    assert (stack.kind, stack.input_size, stack.hidden_size, stack.num_layers, stack.bias) == (kind, 5, 8, 2, True)
    assert info.embeddings["encoder.rnn."] == ["embed.weight"] and info.heads["encoder.rnn."] == ["fc.weight"]
    loaded = load_model(path, vocab=str(files["root"] / "vocab.json"))
    x = loaded.encode("abcabgf")
    ids = torch.tensor([VOCAB.index(c) for c in "abcabgf"]).unsqueeze(1)
    with torch.no_grad():
        ref_hidden, ref_logits = model(ids)
    trace = loaded.trace(x)
    torch.testing.assert_close(trace.hidden[-1], ref_hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(loaded.outputs(x), ref_logits, atol=1e-5, rtol=0)


def test_the_probe_command_prints_the_torch_models_states_and_head_outputs(files, capsys):
    import main

    path, model = files["lstm", "safetensors"]
    code = main.main(["probe", "--model", str(path), "--vocab", str(files["root"] / "vocab.json"),
                      "--input", "gfedcba", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["tokens"] == list("gfedcba") and data["kind"] == "lstm"
    ids = torch.tensor([VOCAB.index(c) for c in "gfedcba"]).unsqueeze(1)
    with torch.no_grad():
        embedded = model.embed(ids)
        layer0, _ = nn.LSTM(5, 8).requires_grad_(False), None
        layer0.load_state_dict({k[:-1] + "0": v for k, v in model.encoder.rnn.state_dict().items() if k.endswith("l0")})
        h0, _ = layer0(embedded)
        top, logits = model(ids)
    torch.testing.assert_close(torch.tensor(data["hidden"][0]), h0[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(data["hidden"][1]), top[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(data["output"]), logits[:, 0], atol=1e-5, rtol=0)
    assert set(data["gates"]["1"]) == {"input", "forget", "cell", "output"}
    assert len(data["cell"]) == 2 and len(data["gates"]["0"]["forget"]) == 7


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_model_exported_by_us_loads_into_plain_torch_with_equal_outputs(tmp_path, kind):
    exp = Experiment(task="parity", cell=kind, hidden_size=6, num_layers=2, seq_len=9, batch_size=4)
    trainer = Trainer(exp)
    list(trainer.run(3))
    written = export_model(trainer.model, tmp_path / "ours.safetensors", vocab=["0", "1"])
    assert written == [str(tmp_path / "ours.safetensors"), str(tmp_path / "vocab.json")]
    state = safetensors.torch.load_file(tmp_path / "ours.safetensors")
    ref = KINDS[kind](1, 6, 2)
    ref.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})  # strict: exact names
    head = nn.Linear(6, 2)
    head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    batch = trainer.task.sample(3, torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = trainer.model.predict(*trainer.model.run(batch))
        theirs = head(ref(batch.x)[0])
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert json.loads((tmp_path / "vocab.json").read_text()) == ["0", "1"]


def test_an_exported_text_model_with_embedding_round_trips_through_pt(tmp_path):
    exp = Experiment(task="inputs", cell="gru", hidden_size=4, embedding="on", embed_size=3, vocab="")
    source = trained("gru", layers=1)
    torch.save(source.state_dict(), tmp_path / "in.pt")
    loaded = load_model(tmp_path / "in.pt", vocab=VOCAB)
    trainer = Trainer(exp.replace(**loaded.experiment_changes()), weights=loaded.weights())
    export_model(trainer.model, tmp_path / "out.pt", vocab=VOCAB)
    again = load_model(tmp_path / "out.pt", vocab=str(tmp_path / "vocab.json"))
    assert again.keys == {"embedding": "embedding.weight", "head": "head.weight"}
    x = again.encode("badge")
    torch.testing.assert_close(again.outputs(x), loaded.outputs(x), atol=1e-6, rtol=0)


def test_bias_free_and_relu_models_load_exactly(tmp_path):
    torch.manual_seed(1)
    net = nn.RNN(3, 4, 2, bias=False, nonlinearity="relu")
    safetensors.torch.save_file(net.state_dict(), tmp_path / "relu.safetensors")
    loaded = load_model(tmp_path / "relu.safetensors", nonlinearity="relu")
    assert loaded.info.bias is False and loaded.info.prefix == ""
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(loaded.outputs(x), net(x)[0], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ bad input
class Opaque:
    """Not a tensor: torch.load(weights_only=True) must refuse to unpickle it."""

    def __init__(self):
        self.value = 3


def save(tmp_path, name, state):
    path = tmp_path / name
    if name.endswith(".pt"):
        torch.save(state, path)
    else:
        safetensors.torch.save_file(state, path)
    return path


def lstm_state(**changes):
    state = {k: v.clone() for k, v in nn.LSTM(3, 4).state_dict().items()}
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


@pytest.mark.parametrize(("name", "state", "expected"), [
    ("unknown.safetensors", lstm_state(weight_extra_l0=torch.zeros(2)), "unknown key 'weight_extra_l0'"),
    ("missing.safetensors", lstm_state(bias_hh_l0=None), "key 'bias_hh_l0' is missing"),
    ("shapes.safetensors", lstm_state(weight_ih_l0=torch.zeros(12, 3)), "has shape [12, 3]; expected [16, input_size]"),
    ("blocks.safetensors", lstm_state(weight_hh_l0=torch.zeros(8, 4)), "2 blocks of 4 rows"),
    ("dtype.safetensors", lstm_state(bias_ih_l0=torch.zeros(16, dtype=torch.int64)), "'bias_ih_l0' is int64"),
    ("none.safetensors", {"fc.weight": torch.zeros(2, 2)}, "no recurrent weights"),
    ("two.safetensors", {**{f"a.{k}": v for k, v in lstm_state().items()},
                         **{f"b.{k}": v for k, v in lstm_state().items()}}, "2 recurrent stacks ('a.', 'b.')"),
])
def test_bad_state_dicts_are_refused_naming_the_key(tmp_path, name, state, expected):
    path = save(tmp_path, name, state)
    with pytest.raises(ModelFileError) as err:
        load_model(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value)
    assert "\n" not in str(err.value)


def test_a_pt_with_python_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"weight_ih_l0": torch.zeros(4, 3), "extra": Opaque()}, path)
    with pytest.raises(ModelFileError) as err:
        load_model(path)
    assert str(err.value) == (f"{path}: this file contains Python objects, not only tensors; re-save it with "
                              "`torch.save(model.state_dict(), ...)` or as safetensors")


def test_other_bad_model_files(tmp_path, monkeypatch):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "junk.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{junk")
    (tmp_path / "model.bin").write_bytes(b"x")
    cases = {tmp_path / "empty.safetensors": "the file is empty", tmp_path / "junk.safetensors": "not a readable "
             "safetensors file", tmp_path / "model.bin": "expected a .safetensors, .pt or .pth file",
             tmp_path / "absent.pt": "cannot read the model file"}
    for path, expected in cases.items():
        with pytest.raises(ModelFileError, match=expected):
            load_model(path)
    path = save(tmp_path, "big.safetensors", lstm_state())
    monkeypatch.setattr("core.models.io.MAX_MODEL_BYTES", 100)
    with pytest.raises(ModelFileError, match="more than the 2 GiB"):
        load_model(path)


def test_a_vocabulary_that_does_not_match_the_embedding_is_refused(files, tmp_path):
    path, _ = files["gru", "safetensors"]
    (tmp_path / "short.json").write_text(json.dumps(VOCAB[:-1]))
    with pytest.raises(ModelFileError, match=r"short.json: 6 tokens, but the embedding 'embed.weight' has 7 rows"):
        load_model(path, vocab=str(tmp_path / "short.json"))
    with pytest.raises(ModelFileError, match=r"key 'fc.weight' has shape \[7, 8\]; the embedding must be"):
        load_model(path, embedding="fc.weight")


def test_a_bad_model_in_the_cli_is_one_line_and_exit_2(files, tmp_path, capsys):
    import main

    path = save(tmp_path, "bad.safetensors", lstm_state(bias_hh_l0=None))
    assert main.main(["probe", "--model", str(path), "--input-file", "x.csv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'bias_hh_l0' is missing" in err


def test_an_opened_model_fine_tunes_on_data_from_its_own_weights(tmp_path, capsys):
    """Export a trained character model, then train on the same text from the file: the first
    loss is the trained model's, far below a fresh model's."""
    import main

    text = tmp_path / "t.txt"
    text.write_text("abc abd abe " * 80)
    flags = ["--data", str(text), "--hidden-size", "16", "--seq-len", "16", "--json"]
    assert main.main(["train", *flags, "--steps", "150", "--export-model", str(tmp_path / "m.safetensors")]) == 0
    fresh = json.loads(capsys.readouterr().out.splitlines()[0])["loss"]
    assert main.main(["train", *flags, "--steps", "2", "--model", str(tmp_path / "m.safetensors"),
                      "--vocab", str(tmp_path / "vocab.json")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["loss"] < 0.3 * fresh
    assert lines[-1]["summary"]["experiment"]["vocab"] == str(tmp_path / "vocab.json")


def test_a_session_of_an_opened_model_reopens_with_its_weights_and_typed_input(files, tmp_path):
    from core.session.format import open_session, save_session
    from core.training.opened import opened_trainer

    path, model = files["lstm", "safetensors"]
    trainer = opened_trainer(Experiment(), path, vocab=str(files["root"] / "vocab.json"))
    trainer.use_probe("gab")
    save_session(trainer, tmp_path / "opened.rnnx")
    again = open_session(tmp_path / "opened.rnnx")
    assert again.experiment.task == "inputs" and again.experiment.probe == "gab"
    ids = torch.tensor([VOCAB.index(c) for c in "gab"]).unsqueeze(1)
    with torch.no_grad():
        expected = model(ids)[0][:, 0]
    torch.testing.assert_close(torch.as_tensor(again.probe().hidden[-1]), expected, atol=1e-5, rtol=0)
