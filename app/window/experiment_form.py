"""The Experiment dock: a preset picker and one field per ``core.config.FIELDS`` entry.

Fields are built from the spec table (label, help, range or choices), never hand-written,
so a new experiment field appears here on its own. Input is validated as it is typed with
the same functions ``Experiment`` uses; an invalid field gets a red border and its message
(with the allowed range) under it, and Apply stays disabled. Nothing reaches the trainer
until Apply (or a preset choice), which emits a complete, valid ``Experiment``: ``applied``
to build it, or ``retuned`` when only a learning rate or clip norm changed (the run goes on).

Under Clip norm, "clip = k × median" fills the field with k times the running median of the
gradient norm over the last steps the window received (app.panels.median; Pascanu et al.
2013 found half to ten times the typical norm to work), for the user to Apply.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QVBoxLayout,
    QWidget,
)

from app.panels.median import MEDIAN_WINDOW, RunningMedian, suggested_clip
from app.theme import LIGHT, Theme
from app.training.engine import LIVE_FIELDS
from core.config import (
    DATA_TASKS,
    FIELDS,
    SEQ2SEQ_TASKS,
    ConfigError,
    Experiment,
    coerce,
    validate_field,
)
from core.presets import grouped

# Layout of the form (any FIELDS entry not listed lands in "More").
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Task", ("task", "seq_len", "batch_size", "padding", "truncation", "masking")),
    ("Model", ("cell", "nonlinearity", "hidden_size", "num_layers", "init", "spectral_radius", "forget_bias")),
    ("Training", ("optimizer", "lr", "clip", "tbptt", "steps", "seed", "device")),
    ("Translation", ("attention", "embed_size", "bidirectional", "teacher_forcing", "tf_schedule")),
    ("Your data and model", ("data", "columns", "target", "tokens", "vocab", "probe", "embedding", "bias")),
)
TEXT_TASKS = ("charlm", "classify", "inputs")
CLIP_K = 5.0  # the helper's default multiple of the median gradient norm


def field_applies(name: str, values: dict[str, Any]) -> bool:
    """Whether a field has an effect given the other fields (others are greyed out)."""
    if name == "nonlinearity":
        return values.get("cell") == "rnn"
    if name == "spectral_radius":
        return values.get("init") in ("identity", "spectral")
    if name == "forget_bias":
        return values.get("cell") == "lstm"
    task = values.get("task")
    if name in ("attention", "bidirectional", "teacher_forcing"):
        return task in SEQ2SEQ_TASKS
    if name == "tf_schedule":  # from 1 down to the ratio: nothing to schedule at ratio 1
        return task in SEQ2SEQ_TASKS and values.get("teacher_forcing", 1.0) < 1.0
    if name == "embed_size":
        return task in SEQ2SEQ_TASKS or values.get("embedding") == "on"
    if name == "data":
        return task in DATA_TASKS
    if name in ("columns", "target"):
        return task == "series"
    if name == "tokens":
        return task in ("pairs", "classify")
    if name in ("vocab", "embedding"):
        return task in TEXT_TASKS
    return True


class Field:
    """One experiment field: its editor, its hint/error line and its validity."""

    def __init__(self, name: str, on_change):
        self.name = name
        self.spec = FIELDS[name]
        if self.spec.text:
            self.editor: QWidget = QLineEdit()
            self.editor.setPlaceholderText("(none)")
            self.editor.textChanged.connect(lambda _: on_change(self))
        elif self.spec.choices is not None:
            self.editor = QComboBox()
            self.editor.addItems(list(self.spec.choices))
            self.editor.currentIndexChanged.connect(lambda _: on_change(self))
        else:
            self.editor = QLineEdit()
            self.editor.setAlignment(Qt.AlignRight)
            self.editor.textChanged.connect(lambda _: on_change(self))
        self.editor.setObjectName(f"field-{name}")
        self.editor.setToolTip(f"{self.spec.help} ({self.spec.describe()})")
        numeric = self.spec.choices is None and not self.spec.text
        self.hint = QLabel(self.spec.describe() if numeric else "")
        self.hint.setObjectName(f"hint-{name}")
        self.hint.setWordWrap(True)
        self.hint.setVisible(numeric)
        self.error: str | None = None

    def text(self) -> str:
        if isinstance(self.editor, QComboBox):
            return self.editor.currentText()
        return self.editor.text()

    def set_value(self, value: Any) -> None:
        self.editor.blockSignals(True)
        if isinstance(self.editor, QComboBox):
            self.editor.setCurrentText(str(value))
        else:
            self.editor.setText(f"{value:g}" if isinstance(value, float) else str(value))
        self.editor.blockSignals(False)

    def parse(self) -> Any:
        """The typed value, or raise ConfigError naming the field and the allowed range."""
        value = coerce(self.name, self.text())
        validate_field(self.name, value)
        return value


class PresetCombo(QComboBox):
    """The preset picker: the list shows each preset's title, the closed box its name
    ("vanishing-rnn", as the command line spells it): a title ran past a laptop-sized dock,
    and the title opens the description under the box anyway."""

    def shown_text(self) -> str:
        """What the closed box draws."""
        return str(self.currentData(Qt.UserRole) or self.currentText().strip())

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        option.currentText = self.shown_text()
        painter.drawComplexControl(QStyle.CC_ComboBox, option)
        painter.drawControl(QStyle.CE_ComboBoxLabel, option)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        hint = super().minimumSizeHint()
        names = [str(self.itemData(i, Qt.UserRole)) for i in range(self.count()) if self.itemData(i, Qt.UserRole)]
        width = max((self.fontMetrics().horizontalAdvance(n) for n in names), default=0) + 40
        return QSize(min(hint.width(), width), hint.height())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        return self.minimumSizeHint()


class FieldsScroll(QScrollArea):
    """The fields' scroll area: it scrolls up and down only, so it is never narrower than its
    fields' least width (a QScrollArea asks for none, and a squeezed dock clipped the
    right-aligned numbers out of sight: "Sequence length" showed an empty box at 1280x720)."""

    def setWidget(self, body: QWidget) -> None:  # noqa: N802 (Qt naming)
        super().setWidget(body)
        body.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        if event.type() == QEvent.LayoutRequest and watched is self.widget():
            self.updateGeometry()  # fields shown or hidden (a translation task's): a new least width
        return super().eventFilter(watched, event)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        hint = super().minimumSizeHint()
        body = self.widget()
        if body is None:
            return hint
        width = body.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
        return QSize(max(hint.width(), width), hint.height())


class ExperimentForm(QWidget):
    """Preset picker + fields + Apply. Emits ``applied(Experiment)`` with valid input only."""

    applied = Signal(object)  # Experiment: build it (training restarts at step 0)
    retuned = Signal(object)  # Experiment differing only in LIVE_FIELDS: the run goes on with it
    preset_chosen = Signal(object)  # Preset

    def __init__(self, theme: Theme = LIGHT, parent: QWidget | None = None):
        super().__init__(parent)
        self.theme = theme
        self.experiment = Experiment()
        self.presets: dict[str, Any] = {}
        self.grad_median = RunningMedian()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.addWidget(self._preset_box())
        scroll = FieldsScroll()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # rows wrap instead (see _section)
        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 4, 0)
        self.fields: dict[str, Field] = {}
        listed = {n for _, names in SECTIONS for n in names}
        sections = list(SECTIONS) + [("More", tuple(n for n in FIELDS if n not in listed))]
        for title, names in sections:
            names = tuple(n for n in names if n in FIELDS)
            if names:
                body_layout.addWidget(self._section(title, names))
        body_layout.addStretch(1)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        self.message = QLabel("")
        self.message.setObjectName("form-message")
        self.message.setWordWrap(True)
        outer.addWidget(self.message)
        buttons = QHBoxLayout()
        self.revert_button = QPushButton("Revert")
        self.revert_button.setToolTip("Put back the values of the running experiment")
        self.revert_button.clicked.connect(lambda: self.set_experiment(self.experiment))
        self.apply_button = QPushButton("Apply")
        self.apply_button.setObjectName("apply")
        self.apply_button.setDefault(True)
        self.apply_button.setToolTip("Rebuild the model with these settings (training restarts at step 0); "
                                     "a new learning rate or clip norm alone continues the run with its weights")
        self.apply_button.clicked.connect(self.apply)
        buttons.addStretch(1)
        buttons.addWidget(self.revert_button)
        buttons.addWidget(self.apply_button)
        outer.addLayout(buttons)
        self.set_experiment(self.experiment)

    # -- construction ------------------------------------------------------------------------
    def _preset_box(self) -> QWidget:
        box = QGroupBox("Preset")
        layout = QVBoxLayout(box)
        self.preset_combo = PresetCombo()
        self.preset_combo.setObjectName("preset")
        self.preset_combo.setModel(QStandardItemModel(self.preset_combo))
        self.preset_combo.activated.connect(self._preset_activated)
        self.description = QLabel("")
        self.description.setWordWrap(True)
        self.description.setObjectName("preset-description")
        self.description.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.preset_combo)
        # A long story scrolls within 7 lines, so the fields stay in view.
        story = QScrollArea()
        story.setObjectName("preset-story")
        story.setWidgetResizable(True)
        story.setFrameShape(QScrollArea.NoFrame)
        story.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        story.setWidget(self.description)
        story.setFixedHeight(self.description.fontMetrics().lineSpacing() * 7 + 6)
        layout.addWidget(story)
        self.data_label = QLabel("")
        self.data_label.setObjectName("data-preview")
        self.data_label.setWordWrap(True)
        self.data_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.data_label.setVisible(False)
        layout.addWidget(self.data_label)
        return box

    def _own(self, text: str) -> None:
        """No preset describes the user's own data or model: say so instead."""
        self.preset_combo.setCurrentIndex(-1)
        self.description.setText(text)

    def show_summary(self, data: dict) -> None:
        """Add what the training process read from the file (e.g. a series' normalisation)."""
        if not data or self.data_label.isHidden():
            return
        norm = data.get("normalisation", {})
        lines = [f"{html.escape(k)}: mean {v['mean']:.4g}, std {v['std']:.4g}" for k, v in norm.items()]
        rest = [f"{html.escape(k.replace('_', ' '))}: {html.escape(str(v))}" for k, v in data.items()
                if k != "normalisation"]
        text = self.data_label.text().split("<br><i>")[0]
        extra = "; ".join(rest) + ("<br>normalised (training rows): " + "; ".join(lines) if lines else "")
        self.data_label.setText(f"{text}<br><i>{extra}</i>")

    def show_data(self, experiment: Experiment) -> None:
        """The data file in use: name, size and its first lines (hidden for built-in data)."""
        from app.window.open_data import preview
        from core.datafiles import DataError

        if not experiment.data or experiment.task not in DATA_TASKS:
            self.data_label.setVisible(False)
            if experiment.task == "inputs":
                self._own("Your model on your inputs: type them under Probe input.")
            return
        self._own("Your own data (File > Open Data…); choose a preset to go back to the built-in tasks.")
        try:
            summary, head = preview(experiment.data)
        except DataError as err:
            summary, head = str(err), ""
        lines = "<br>".join(html.escape(line[:60]) for line in head.split("\n")[:4])
        self.data_label.setText(f"<b>Data</b>: {html.escape(summary)}<br><tt>{lines}</tt>")
        self.data_label.setVisible(True)

    def _section(self, title: str, names: tuple[str, ...]) -> QWidget:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # a narrow dock puts the label above its field
        form.setVerticalSpacing(4)
        for name in names:
            f = Field(name, self._changed)
            self.fields[name] = f
            column = QVBoxLayout()
            column.setSpacing(0)
            column.addWidget(f.editor)
            column.addWidget(f.hint)
            label = QLabel(f.spec.label)
            label.setToolTip(f.spec.help)
            label.setBuddy(f.editor)
            form.addRow(label, column)
            if name == "clip":  # a row of its own: as wide as the form, no wider
                form.addRow(self._clip_helper())
        return box

    def _clip_helper(self) -> QWidget:
        helper = QWidget()
        helper.setObjectName("clip-helper")
        rows = QVBoxLayout(helper)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.setSpacing(0)
        row = QHBoxLayout()
        row.setSpacing(4)
        self.clip_k = QDoubleSpinBox()
        self.clip_k.setObjectName("clip-k")
        self.clip_k.setRange(0.5, 10.0)
        self.clip_k.setSingleStep(0.5)
        self.clip_k.setDecimals(1)
        self.clip_k.setValue(CLIP_K)
        self.clip_k.setPrefix("k ")
        self.clip_button = QPushButton("clip = k × median")
        self.clip_button.setObjectName("clip-from-median")
        tip = (f"Set Clip norm to k times the median gradient norm (before clipping) of the last "
               f"{MEDIAN_WINDOW} steps: Pascanu et al. (2013) found half to ten times the typical norm "
               "to work. Then Apply: the run goes on with the new clip norm.")
        self.clip_button.setToolTip(tip)
        self.clip_k.setToolTip(tip)
        self.clip_button.clicked.connect(self.clip_from_median)
        self.median_label = QLabel("")
        self.median_label.setObjectName("grad-median")
        self.median_label.setStyleSheet(f"color: {self.theme.muted};")
        row.addWidget(self.clip_k)
        row.addWidget(self.clip_button, 1)
        rows.addLayout(row)
        rows.addWidget(self.median_label)
        self._show_median()
        return helper

    def note_step(self, record: Any) -> None:
        """A StepRecord the window received: its gradient norm joins the running median."""
        self.grad_median.append(record.grad_norm)
        self._show_median()

    def note_run(self) -> None:
        """A new run: the median starts again."""
        self.grad_median.clear()
        self._show_median()

    def _show_median(self) -> None:
        median = self.grad_median.value
        text = (f"median ‖∇‖ of the last {len(self.grad_median)} steps: {median:.3g}" if median == median
                else "median ‖∇‖: no steps yet")
        if self.median_label.text() != text:
            self.median_label.setText(text)
        self.clip_button.setEnabled(median == median)

    def clip_from_median(self) -> float | None:
        """Put k × median into the Clip norm field (not applied); returns the value."""
        value = suggested_clip(self.grad_median.value, self.clip_k.value())
        if value is None:
            self.message.setText("No gradient norms yet: train a few steps first.")
            return None
        self.fields["clip"].editor.setText(f"{value:g}")
        self.message.setText(f"Clip norm {value:g} = {self.clip_k.value():g} × the median gradient norm "
                             f"{self.grad_median.value:.3g} of the last {len(self.grad_median)} steps; Apply to use it.")
        self.message.setStyleSheet(f"color: {self.theme.muted};")
        return value

    # -- presets ---------------------------------------------------------------------------------
    def set_presets(self, presets: list[Any], current: str | None = None) -> None:
        """Fill the picker, grouped by ``preset.group``; headers are not selectable."""
        model: QStandardItemModel = self.preset_combo.model()
        model.clear()
        self.presets = {p.name: p for p in presets}
        bold = QFont()
        bold.setBold(True)
        for group, items in grouped(presets):
            header = QStandardItem(group.capitalize())
            header.setFlags(Qt.NoItemFlags)
            header.setFont(bold)
            model.appendRow(header)
            for p in items:
                item = QStandardItem(f"   {p.title}")
                item.setData(p.name, Qt.UserRole)
                item.setToolTip(p.description)
                model.appendRow(item)
        if current:
            self.show_preset(current)

    def show_preset(self, name: str) -> None:
        """Select ``name`` in the picker and show its description (no signal)."""
        for row in range(self.preset_combo.count()):
            if self.preset_combo.itemData(row, Qt.UserRole) == name:
                self.preset_combo.setCurrentIndex(row)
        preset = self.presets.get(name)
        self.description.setText(f"<b>{html.escape(preset.title)}</b><br>{html.escape(' '.join(preset.description.split()))}"
                                 if preset else "")

    def _preset_activated(self, row: int) -> None:
        name = self.preset_combo.itemData(row, Qt.UserRole)
        if name in self.presets:
            self.show_preset(name)
            preset = self.presets[name]
            self.set_experiment(preset.experiment)
            self.preset_chosen.emit(preset)
            self.applied.emit(preset.experiment)

    # -- fields ---------------------------------------------------------------------------------
    def set_experiment(self, experiment: Experiment) -> None:
        """Show ``experiment`` as the current, applied one."""
        if experiment.data != self.experiment.data or self.data_label.isHidden():
            self.show_data(experiment)
        self.experiment = experiment
        for name, f in self.fields.items():
            f.set_value(getattr(experiment, name))
            self._mark(f, None)
        self.message.setText("")
        self._update_state()

    def values(self) -> dict[str, Any]:
        """The fields' parsed values; invalid ones are left out."""
        out = {}
        for name, f in self.fields.items():
            try:
                out[name] = f.parse()
            except ConfigError:
                pass
        return out

    def _changed(self, f: Field) -> None:
        try:
            f.parse()
            self._mark(f, None)
        except ConfigError as err:
            self._mark(f, str(err))
        self._update_state()

    def _mark(self, f: Field, error: str | None) -> None:
        f.error = error
        f.editor.setProperty("invalid", error is not None)
        f.editor.setStyleSheet(f"border: 2px solid {self.theme.invalid}; border-radius: 3px;" if error else "")
        if (f.spec.choices is None and not f.spec.text) or error:
            f.hint.setVisible(True)
            f.hint.setText(error or f.spec.describe())
            f.hint.setStyleSheet(f"color: {self.theme.invalid if error else self.theme.muted};")
        else:
            f.hint.setVisible(False)
        f.editor.setToolTip(error or f"{f.spec.help} ({f.spec.describe()})")

    def flag(self, field: str | None, message: str) -> None:
        """Show an error from outside (e.g. the trainer refused the experiment)."""
        if field in self.fields:
            self._mark(self.fields[field], message)
        self.message.setText(message)
        self.message.setStyleSheet(f"color: {self.theme.invalid};")
        self._update_state()

    @property
    def invalid_fields(self) -> list[str]:
        return [n for n, f in self.fields.items() if f.error is not None]

    def _update_state(self) -> None:
        values = self.values()
        changed = any(values.get(n) != getattr(self.experiment, n) for n in values)
        valid = not self.invalid_fields
        self.apply_button.setEnabled(valid and changed)
        self.revert_button.setEnabled(changed or not valid)
        merged = {**self.experiment.to_dict(), **values}
        for name, f in self.fields.items():
            f.editor.setEnabled(field_applies(name, merged))

    def apply(self) -> bool:
        """Emit ``applied`` with the edited experiment; False (and flagged) if any field is invalid."""
        if self.invalid_fields:
            self.message.setText("Fix the fields marked in red first.")
            self.message.setStyleSheet(f"color: {self.theme.invalid};")
            return False
        changes = {n: v for n, v in self.values().items() if v != getattr(self.experiment, n)}
        try:
            experiment = self.experiment.replace(**changes)
        except ConfigError as err:
            self.flag(err.field, str(err))
            return False
        self.set_experiment(experiment)
        if changes and set(changes) <= LIVE_FIELDS:
            self.retuned.emit(experiment)  # e.g. after a divergence: continue, lose nothing
        else:
            self.applied.emit(experiment)
        return True

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        for f in self.fields.values():
            self._mark(f, f.error)
