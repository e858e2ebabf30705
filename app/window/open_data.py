"""File > Open Data..., Open Model..., Export Model..., and files dropped on the window.

Open Data shows the file (name, size, first lines) and asks what to learn from it (the task,
a series' input and target columns, characters or words); the training process fits the
sequence length to the file, then the experiment is rebuilt with the rest kept. Open Model
asks the training process what the file holds (its recurrent stacks, and the keys that could
be an embedding or a head), shows it, and builds a trainer around the chosen weights: on the
open data file (fine-tuning) or on typed inputs alone. Anything refused is one line in the
status bar and a message box; the model and data already open stay as they were.
"""

from __future__ import annotations

import csv
import io
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QVBoxLayout,
)

from app.training.engine import export_weights, inspect_weights, prepare_data
from app.training.messages import JobResult, ModelFile
from core.config import DATA_TASKS, ConfigError, Experiment
from core.datafiles import MAX_DATA_BYTES, DataError, human_size, read_file, text_of

DATA_FILTER = "Data (*.txt *.csv *.tsv);;All files (*)"
MODEL_FILTER = "Models (*.safetensors *.pt *.pth)"
MODEL_SUFFIXES = (".safetensors", ".pt", ".pth")
TASKS_OF = {".txt": ("charlm",), ".csv": ("series", "classify"), ".tsv": ("pairs", "classify")}
PREVIEW_LINES = 8


def preview(path: str, limit: int = MAX_DATA_BYTES) -> tuple[str, str]:
    """(one line: name and size, the first lines) of a data file; DataError if unreadable."""
    df = read_file(path, limit)
    lines = text_of(df).split("\n")
    head = "\n".join(line[:120] for line in lines[:PREVIEW_LINES])
    more = f" · {len(lines):,} lines" if len(lines) > 1 else ""
    return f"{Path(path).name} · {human_size(df.size)}{more}", head


def header_columns(text: str) -> list[str]:
    """The column names of a CSV's first row."""
    first = next(csv.reader(io.StringIO(text)), [])
    return [c.strip() for c in first]


class DataDialog(QDialog):
    """What to learn from a data file: the task and its settings, with the file previewed."""

    def __init__(self, path: str, base: Experiment, summary: str, head: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Open Data")
        self.setObjectName("open-data")
        self.path, self.base = path, base
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(summary))
        text = QPlainTextEdit(head)
        text.setReadOnly(True)
        text.setObjectName("data-preview")
        text.setMaximumHeight(text.fontMetrics().lineSpacing() * (PREVIEW_LINES + 1) + 12)
        layout.addWidget(text)
        form = QFormLayout()
        suffix = Path(path).suffix.lower()
        self.task = QComboBox()
        self.task.setObjectName("data-task")
        self.task.addItems(list(TASKS_OF.get(suffix, DATA_TASKS)))
        self.columns, self.target = QLineEdit(base.columns), QLineEdit(base.target)
        self.columns.setObjectName("data-columns")
        self.target.setObjectName("data-target")
        names = header_columns(head) if suffix == ".csv" else []
        self.columns.setPlaceholderText("every numeric column but time" if names else "")
        self.target.setPlaceholderText("the input columns")
        self.tokens = QComboBox()
        self.tokens.addItems(["char", "word"])
        self.tokens.setCurrentText(base.tokens)
        form.addRow("Task", self.task)
        if names:
            form.addRow("Columns in the file", QLabel(", ".join(names)))
        form.addRow("Input columns", self.columns)
        form.addRow("Target columns", self.target)
        form.addRow("Tokens", self.tokens)
        layout.addLayout(form)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.task.currentTextChanged.connect(self._update)
        self._update(self.task.currentText())

    def _update(self, task: str) -> None:
        self.columns.setEnabled(task == "series")
        self.target.setEnabled(task == "series")
        self.tokens.setEnabled(task in ("pairs", "classify"))

    def experiment(self) -> Experiment:
        """The base experiment on this file (ConfigError for a bad field)."""
        task = self.task.currentText()
        changes = {"task": task, "data": self.path, "probe": "",
                   "columns": self.columns.text() if task == "series" else "",
                   "target": self.target.text() if task == "series" else "",
                   "tokens": self.tokens.currentText()}
        if task == "pairs" and not self.base.is_seq2seq:
            changes.update(attention="additive", embed_size=self.base.embed_size)
        return self.base.replace(**changes)


class ModelDialog(QDialog):
    """What to load from a model file: the stack (prefix), embedding, head, vocabulary."""

    def __init__(self, path: str, info: Any, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Open Model")
        self.setObjectName("open-model")
        self.path, self.info = path, info
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"{Path(path).name}: {len(info.keys)} tensors"))
        form = QFormLayout()
        self.stack = QComboBox()
        self.stack.setObjectName("model-stack")
        for prefix, stack in info.stacks.items():
            self.stack.addItem(stack.describe(), prefix)
        self.embedding, self.head = QComboBox(), QComboBox()
        self.embedding.setObjectName("model-embedding")
        self.head.setObjectName("model-head")
        self.vocab = QLineEdit()
        self.vocab.setPlaceholderText("vocab.json (text input; optional)")
        beside = Path(path).with_name("vocab.json")
        if beside.is_file():
            self.vocab.setText(str(beside))
        browse = QAction("Browse…", self)
        browse.triggered.connect(self._browse)
        self.vocab.addAction(browse, QLineEdit.TrailingPosition)
        self.nonlinearity = QComboBox()
        self.nonlinearity.addItems(["tanh", "relu"])
        form.addRow("Recurrent stack", self.stack)
        form.addRow("Embedding", self.embedding)
        form.addRow("Head", self.head)
        form.addRow("Vocabulary", self.vocab)
        form.addRow("RNN nonlinearity", self.nonlinearity)
        layout.addLayout(form)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.stack.currentIndexChanged.connect(self._fill)
        self._fill()

    def _fill(self) -> None:
        prefix = self.stack.currentData()
        for combo, keys, ours in ((self.embedding, self.info.embeddings, "embedding.weight"),
                                  (self.head, self.info.heads, "head.weight")):
            combo.clear()
            combo.addItem("none", None)
            for key in keys.get(prefix, []):
                shape = "×".join(str(n) for n in self.info.keys[key][0])
                combo.addItem(f"{key} [{shape}]", key)
            candidates = keys.get(prefix, [])
            pick = ours if ours in candidates else (candidates[0] if len(candidates) == 1 else None)
            combo.setCurrentIndex(max(0, combo.findData(pick)))
        self.nonlinearity.setEnabled(self.info.stacks[prefix].kind == "rnn")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Vocabulary", str(Path(self.path).parent), "JSON (*.json)")
        if path:
            self.vocab.setText(path)

    def source(self, experiment: Experiment) -> ModelFile:
        return ModelFile(Path(self.path), experiment, self.stack.currentData(), self.embedding.currentData(),
                         self.head.currentData(), self.vocab.text().strip() or None,
                         self.nonlinearity.currentText() if self.nonlinearity.isEnabled() else None)


class OpenActions(QObject):
    """The File menu's Open Data / Open Model / Export Model, and dropped files."""

    def __init__(self, window: Any):
        super().__init__(window)
        self.window = window
        menu = window.menus["file"]  # after the sessions' actions, before Export
        first = next((a for a in menu.actions() if a.text().startswith("Export")), None)
        self.actions = {}
        for name, text, slot in (("open-data", "Open Data…", self.open_data_dialog),
                                 ("open-model", "Open Model…", self.open_model_dialog),
                                 ("export-model", "Export Model…", self.export_model_dialog)):
            action = QAction(text, window)
            action.setObjectName(name)
            action.triggered.connect(slot)
            menu.insertAction(first, action)
            self.actions[name] = action
        menu.insertSeparator(first)
        self.dialog: QDialog | None = None
        self._pending_model = False
        window.run_built.connect(self._built)
        window.setAcceptDrops(True)

    def _built(self, info: Any) -> None:
        """A run built from a model file: the form shows its experiment (cell, sizes, task);
        one on a data file: the dock adds what was read (rows, vocabulary, normalisation)."""
        self.window.form.show_summary(info.data)
        if self._pending_model:
            self._pending_model = False
            self.window.form.set_experiment(info.experiment)
            self.window.status.showMessage(f"Opened {Path(self.window.opened_model).name}: type an input "
                                           "under Probe input to see the model on it", 10000)

    # -- data ----------------------------------------------------------------------------------
    def open_data_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open Data", "", DATA_FILTER)
        if path:
            self.open_data(path)

    def open_data(self, path: str, accept: bool = False) -> DataDialog | None:
        """Preview ``path`` and ask what to learn from it; ``accept`` takes the defaults."""
        try:
            summary, head = preview(path)
        except DataError as err:
            self.refuse(str(err), "Cannot open the data")
            return None
        dialog = DataDialog(path, self.window.form.experiment, summary, head, self.window)
        self.dialog = dialog
        dialog.accepted.connect(lambda: self._data_chosen(dialog))
        if accept:
            dialog.accept()
        else:
            dialog.open()
        return dialog

    def _data_chosen(self, dialog: DataDialog) -> None:
        try:
            experiment = dialog.experiment()
        except ConfigError as err:
            self.refuse(str(err), "Cannot open the data")
            return
        if self.window.controller is None:
            self.window.start()
        self.window.controller.call(partial(prepare_data, experiment), self._data_fitted)

    def _data_fitted(self, result: JobResult) -> None:
        if result.failure is not None:
            self.refuse(result.failure.message, "Cannot open the data")
            return
        experiment = result.value
        self.window.form.set_experiment(experiment)
        self.window.apply_experiment(experiment)
        self.window.status.showMessage(f"Training on {Path(experiment.data).name} ({experiment.task})", 8000)

    # -- models --------------------------------------------------------------------------------
    def open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open Model", "", MODEL_FILTER)
        if path:
            self.open_model(path)

    def open_model(self, path: str, accept: bool = False) -> None:
        """Ask the training process what ``path`` holds, then show it (``accept``: take the defaults)."""
        if self.window.controller is None:
            self.window.start()
        self.window.controller.call(partial(inspect_weights, str(path)),
                                    lambda result: self._model_inspected(str(path), result, accept))

    def _model_inspected(self, path: str, result: JobResult, accept: bool) -> None:
        if result.failure is not None:
            self.refuse(result.failure.message, "Cannot open the model")
            return
        dialog = ModelDialog(path, result.value, self.window)
        self.dialog = dialog
        dialog.accepted.connect(lambda: self._model_chosen(dialog))
        if accept:
            dialog.accept()
        else:
            dialog.open()

    def _model_chosen(self, dialog: ModelDialog) -> None:
        window = self.window
        experiment = window.form.experiment
        if experiment.task not in DATA_TASKS or not experiment.data or experiment.is_seq2seq:
            experiment = experiment.replace(task="inputs", data="")
        window.status.set_state("building")
        window.status.showMessage(f"Opening {Path(dialog.path).name}…", 3000)
        window.opened_model = dialog.path
        self._pending_model = True
        window.controller.build(dialog.source(experiment))

    # -- export --------------------------------------------------------------------------------
    def export_model_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Export Model", "model.safetensors",
                                              "safetensors (*.safetensors);;PyTorch (*.pt)")
        if path:
            self.export_model(path)

    def export_model(self, path: str) -> None:
        if self.window.controller is None or self.window.run_info is None:
            self.refuse("there is no model yet: build an experiment first", "Cannot export the model")
            return
        self.window.controller.call(partial(export_weights, str(path)), self._exported)

    def _exported(self, result: JobResult) -> None:
        if result.failure is not None:
            self.refuse(result.failure.message, "Cannot export the model")
            return
        names = ", ".join(Path(p).name for p in result.value)
        self.window.status.showMessage(f"Exported {names} (torch.nn's names: load_state_dict in plain torch)", 10000)

    # -- drops ---------------------------------------------------------------------------------
    def drop(self, path: str) -> None:
        """A file dropped on the window: a model, a session, or data."""
        suffix = Path(path).suffix.lower()
        if suffix in MODEL_SUFFIXES:
            self.open_model(path)
        elif suffix == ".rnnx":
            self.window.sessions.open(path)
        else:
            self.open_data(path)

    def refuse(self, message: str, title: str) -> None:
        """One line in the status bar and a non-modal box; nothing else changes."""
        self.window.status.showMessage(message, 15000)
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self.window)
        box.setObjectName("refusal")
        box.setModal(False)
        box.show()
        self.dialog = box
