"""File > Open Data / Open Model / Export Model in the real window: the run is rebuilt on the
user's file or weights, typed input reaches the panels, bad files are refused in one line
and the run that was open is kept."""

import json

import pytest
import safetensors.torch
import torch
from torch import nn

VOCAB = list("abcdefgh ")


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text("a bad cafe had a big bag. " * 60)
    return path


@pytest.fixture
def torch_model(tmp_path):
    """A torch.nn GRU language model with an embedding and a head, and its vocabulary."""
    torch.manual_seed(3)
    state = {"emb.weight": torch.randn(len(VOCAB), 4), **{f"rnn.{k}": v for k, v in nn.GRU(4, 6).state_dict().items()},
             "fc.weight": torch.randn(len(VOCAB), 6), "fc.bias": torch.randn(len(VOCAB))}
    path = tmp_path / "lm.safetensors"
    safetensors.torch.save_file(state, path)
    (tmp_path / "vocab.json").write_text(json.dumps(VOCAB))
    return path, state


def built_again(qtbot, window, before):
    qtbot.waitUntil(lambda: window.run_info is not before and window.run_info is not None, timeout=60_000)
    return window.run_info


def test_open_data_trains_on_the_file_and_shows_it_in_the_dock(qtbot, window, text_file):
    before = window.run_info
    dialog = window.open_files.open_data(str(text_file))
    assert dialog.task.currentText() == "charlm"
    dialog.accept()
    info = built_again(qtbot, window, before)
    assert info.experiment.task == "charlm" and info.experiment.data == str(text_file)
    assert info.experiment.hidden_size == before.experiment.hidden_size  # the rest is kept
    assert "story.txt" in window.form.data_label.text() and window.form.data_label.isVisible()
    window.step(2)
    qtbot.waitUntil(lambda: window.last_step is not None and window.last_step.step == 2, timeout=30_000)


def test_bad_data_is_refused_in_one_line_and_the_run_is_kept(qtbot, window, tmp_path):
    before = window.run_info
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\x00\x01binary")
    drop_file(window, bad)  # dropped on the window, as a user would
    message = window.status.currentMessage()
    assert message.startswith(str(bad)) and "binary file" in message and "\n" not in message
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n" + "4,5\n" * 80)
    window.open_files.open_data(str(ragged)).accept()
    qtbot.waitUntil(lambda: "line 3: 1 cells; the header has 2" in window.status.currentMessage(), timeout=30_000)
    assert window.run_info is before and window.form.experiment == before.experiment


def test_an_opened_model_shows_typed_input_and_exports_for_plain_torch(qtbot, window, torch_model, tmp_path):
    from tests.app.conftest import ask

    path, state = torch_model
    before = window.run_info
    window.open_files.open_model(str(path), accept=True)
    info = built_again(qtbot, window, before)
    e = info.experiment
    assert (e.task, e.cell, e.hidden_size, e.embedding, e.embed_size) == ("inputs", "gru", 6, "on", 4)
    assert window.form.experiment == e
    window.form.fields["probe"].editor.setText("cab bad")
    assert window.form.apply()
    qtbot.waitUntil(lambda: window.panels["hidden"].probe is not None
                    and window.panels["hidden"].probe.labels == tuple("cab bad"), timeout=30_000)
    ids = torch.tensor([VOCAB.index(c) for c in "cab bad"]).unsqueeze(1)
    ref = nn.GRU(4, 6)
    ref.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("rnn.")})
    with torch.no_grad():
        expected = ref(state["emb.weight"][ids])[0][:, 0]
    torch.testing.assert_close(torch.as_tensor(window.panels["hidden"].probe.hidden[0]), expected,
                               atol=1e-5, rtol=0)
    assert window.run_info.step == 0  # typed input does not rebuild or train
    out = tmp_path / "out" / "again.safetensors"
    out.parent.mkdir()
    window.open_files.export_model(str(out))
    qtbot.waitUntil(lambda: "Exported again.safetensors, vocab.json" in window.status.currentMessage(), timeout=30_000)
    exported = safetensors.torch.load_file(out)
    plain = nn.GRU(4, 6)
    plain.load_state_dict({k: v for k, v in exported.items() if "." not in k})
    torch.testing.assert_close(exported["embedding.weight"], state["emb.weight"])
    torch.testing.assert_close(exported["head.weight"], state["fc.weight"])
    assert json.loads((out.parent / "vocab.json").read_text()) == VOCAB
    assert ask(qtbot, window.controller, _step_refused) == "refused"


def _step_refused(trainer):
    from core.errors import UserError

    try:
        trainer.step()
    except UserError as err:
        assert "opened without training data" in str(err)
        return "refused"
    return "trained"


def test_a_model_file_with_objects_is_refused_and_the_run_is_kept(qtbot, window, tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"weight_hh_l0": torch.zeros(4, 4), "config": Opaque()}, path)
    before = window.run_info
    window.open_files.open_model(str(path))
    qtbot.waitUntil(lambda: "contains Python objects" in window.status.currentMessage(), timeout=30_000)
    assert window.run_info is before


class Opaque:
    pass


def drop_file(window, path) -> None:
    """A real drop event of one local file on the window."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(200, 200), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.dropEvent(event)
    assert event.isAccepted()
