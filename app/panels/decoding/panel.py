"""Decoding: greedy and beam search on typed text, the beam's tree, and attention.

For translation presets only (the encoder-decoder tasks). "Run" decodes the input with the
live model (in the training process, between steps: the controller's ``call``) and shows the
whole beam tree; "Next expansion" shows it growing one expansion at a time, from one
decode. Click a finished hypothesis (in the tree or the list) to highlight its path and see
its attention rows; click any node on its path to outline that token's row. Greedy's
path is overlaid on the tree, so it is plain where greedy and beam search part.

Above the tree, what the trainer last measured on the held-out split: token accuracy
teacher-forced (every token predicted from the true prefix) beside free running (greedy
decoding on its own outputs; the gap is what exposure bias costs), and exact match.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
)

from app.panels.base import Panel
from app.panels.decoding.attention_view import AttentionPlot
from app.panels.decoding.tree_view import GREEDY_COLOR, BeamTreePlot
from app.panels.plots import message
from app.theme import FONT_POINTS, Theme, ui_font
from app.training.jobs import DecodeRequest, DecodeView, decode_view, finished_so_far
from core.names import HELDOUT_METRICS
from core.presets import translation_presets
from core.records import ProbeRecord, StepRecord

WIDE = 900  # pixels: from this width the tree has the table and attention beside it, else above them
NO_ATTENTION = ("This model has no attention (attention = none):\n"
                "the decoder sees the source only through the encoder's final state.")


def signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")


def heldout_text(step: int, forced: float, free: float, exact: float) -> str:
    """One line: the two held-out token accuracies side by side, their gap, and exact match."""
    return (f"Held-out at step {step:,}:   tokens right teacher-forced {forced:.1%}   |   free running "
            f"(greedy) {free:.1%}   (gap {100 * (forced - free):+.1f} points: exposure bias)   ·   "
            f"exact match {exact:.1%}")


class DecodingPanel(Panel):
    name = "decoding"
    title = "Decoding"
    draws = frozenset({StepRecord, ProbeRecord})

    def build(self) -> None:
        self.input = QLineEdit()
        self.input.setPlaceholderText("text to translate")
        self.input.setMinimumWidth(260)
        self.input.returnPressed.connect(self.run_all)
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Decode the input with the current model and show the whole beam tree")
        self.run_button.clicked.connect(self.run_all)
        self.next_button = QPushButton("Next expansion")
        self.next_button.setToolTip("Show the beam search one expansion (one output token) further")
        self.next_button.clicked.connect(self.next_expansion)
        self.beam = QSpinBox()
        self.beam.setRange(1, 64)
        self.beam.setValue(4)
        self.beam.setPrefix("width ")
        self.penalty = QDoubleSpinBox()
        self.penalty.setRange(0.0, 5.0)
        self.penalty.setSingleStep(0.1)
        self.penalty.setValue(1.0)
        self.penalty.setPrefix("length penalty ")
        self.penalty.setToolTip(
            "Length penalty α: here a hypothesis scores sum(log p) / len^α, len counting eos "
            "(Hugging Face's convention). α = 0 is the raw sum, which favours short outputs; a "
            "larger α favours longer ones. GNMT (Wu et al. 2016) divides by ((5 + len) / 6)^α, "
            "typically α = 0.6-0.7.")
        self.max_len = QSpinBox()
        self.max_len.setRange(0, 500)
        self.max_len.setSpecialValueText("max length auto")
        self.max_len.setPrefix("max length ")
        self.max_len.setToolTip("Most output tokens, eos included (auto: the task's longest target + 1)")
        for w in (QLabel("Input"), self.input, self.run_button, self.next_button, self.beam, self.penalty,
                  self.max_len):
            self.options.addWidget(w)
        # a changed setting means a new decode, which Next expansion starts from step 1
        self.input.textChanged.connect(self._settings_changed)
        for box in (self.beam, self.penalty, self.max_len):
            box.valueChanged.connect(self._settings_changed)
        self.notice = QLabel("")
        self.notice.setObjectName("decoding-notice")
        self.notice.setWordWrap(True)
        self.layout().addWidget(self.notice)
        self.heldout = QLabel("")
        self.heldout.setObjectName("decoding-heldout")
        self.heldout.setWordWrap(True)  # one line was ~920 px: the window's minimum grew past a laptop's screen
        self.heldout.setToolTip("Token accuracy on held-out sources: teacher-forced = the share of target "
                                "tokens that are the model's first choice given the true previous tokens; free "
                                "running = the share greedy decoding, its own outputs fed back, gets right in "
                                "place. The gap is what exposure bias costs: after one wrong token the decoder "
                                "must go on from its own mistake. Exact match is the same either way: every "
                                "token right given the true prefix is exactly when greedy decoding is right.")
        self.layout().addWidget(self.heldout)
        split = self.split = QSplitter(Qt.Horizontal)
        self.tree = BeamTreePlot(self.theme)
        self.tree.node_clicked.connect(self.select_node)
        self._views.append(self.tree)
        split.addWidget(self.tree)
        right = self.right = QSplitter(Qt.Vertical)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(("", "output", "score", "tokens"))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.setFont(ui_font(FONT_POINTS + 1))
        self.table.viewport().installEventFilter(self)  # a new width: show the tokens column if it fits
        self.table.cellClicked.connect(lambda row, _col: self.select_row(row))
        right.addWidget(self.table)
        self.attention = AttentionPlot(self.theme)
        self._views.append(self.attention)
        right.addWidget(self.attention)
        right.setSizes([230, 770])
        split.addWidget(right)
        split.setSizes([1100, 800])
        for splitter in (split, right):
            splitter.setChildrenCollapsible(False)
        self.layout().addWidget(split, 1)
        self._wide: bool | None = None
        self.tree_message = message(self.tree.plot, self.theme)
        self.engine = None
        self.view: DecodeView | None = None
        self.shown_steps = 0
        self.hypotheses: list[int] = []  # finished node ids listed in the table, best first
        self.selected: int | None = None  # a finished node id, or -1 for greedy
        self._tag = 0
        self._pending_steps: int | None = None
        self._model_step = 0

    # -- engine ---------------------------------------------------------------------------------
    def connect_engine(self, controller) -> None:
        """``controller``: the window's TrainingController (decodes run where the model lives)."""
        self.engine = controller

    @property
    def available(self) -> bool:
        return self.run is not None and self.run.experiment.is_seq2seq

    def request(self) -> DecodeRequest:
        return DecodeRequest(self.input.text(), self.beam.value(), round(self.penalty.value(), 6),
                             self.max_len.value() or None)

    def run_all(self) -> None:
        """Decode (again if the model or the settings changed) and show the whole tree."""
        self._decode(None, reuse=False)

    def next_expansion(self) -> None:
        """Show one more expansion of the current decode (a new decode if the settings changed)."""
        self._decode(self.shown_steps + 1, reuse=True)

    def _decode(self, steps: int | None, reuse: bool) -> None:
        if not self.available:
            return
        request, view = self.request(), self.view
        if view is not None and view.request == request and (reuse or view.model_step == self._model_step):
            self._show(view, steps if steps is not None else view.result.tree[-1].step)
            return
        if self.engine is None:
            self._say("No model to decode with yet.", error=True)
            return
        self._tag += 1  # a decode the user replaces is dropped when it arrives
        self._pending_steps = 1 if reuse else None
        self._say("decoding…")
        self.engine.call(partial(decode_view, request=request), partial(self._job_done, self._tag))

    def _settings_changed(self) -> None:
        self.next_button.setEnabled(self.available)

    def _job_done(self, tag: int, result) -> None:
        if tag != self._tag:
            return  # a decode the user has since replaced
        if result.failure is not None:
            self._say(result.failure.message, error=True)
            return
        view = result.value
        self._show(view, self._pending_steps if self._pending_steps is not None else view.result.tree[-1].step)

    def decode_now(self, trainer, steps: int | None = None) -> DecodeView:
        """Decode synchronously with ``trainer`` (screenshots, scripts); the GUI uses the engine."""
        view = decode_view(trainer, self.request())
        self._show(view, steps if steps is not None else view.result.tree[-1].step)
        return view

    def prepare_shot(self, trainer) -> None:
        if self.available:
            self.decode_now(trainer)

    # -- frames (export --frames, and animations over expansions) ------------------------------
    def frame_count(self) -> int:
        """One frame per expansion of the decode shown (0 before a decode)."""
        return self.view.result.tree[-1].step if self.view is not None else 0

    def show_frame(self, i: int) -> None:
        """Frame ``i``: the tree after ``i + 1`` expansions of the same decode."""
        if self.view is not None:
            self._show(self.view, i + 1)

    def current_frame(self) -> int | None:
        return self.shown_steps - 1 if self.view is not None else None

    # -- showing --------------------------------------------------------------------------------
    def _say(self, text: str, error: bool = False) -> None:
        color = self.theme.invalid if error else self.theme.muted
        self.notice.setStyleSheet(f"color: {color}; font-weight: {'bold' if error else 'normal'};")
        self.notice.setText(text)

    def _show(self, view: DecodeView, steps: int) -> None:
        """Show ``view`` after ``steps`` expansions (clamped to the decode's)."""
        last = view.result.tree[-1].step
        steps = min(max(steps, 1), last)
        if view is not self.view:
            self.view = view
            self.tree.set_view(view)
            self.selected = None
        self.shown_steps = steps
        self.tree.show_steps(steps)
        r = view.result
        self.hypotheses = finished_so_far(r.tree, steps, r.beam, r.length_penalty)
        self._fill_table()
        if self.selected not in (*self.hypotheses, -1):
            self.selected = self.hypotheses[0] if self.hypotheses else None
        self._select(self.selected)
        self.next_button.setEnabled(steps < last)
        self._say(r.notice or "")
        self._note()

    def _note(self) -> None:
        view = self.view
        r = view.result
        parts = [f"decoded at step {view.model_step}", f"expansion {self.shown_steps} of {r.tree[-1].step}",
                 f"{self.tree.count} of {len(r.tree)} nodes"]
        if self.shown_steps == r.tree[-1].step and r.hypotheses:
            best = r.hypotheses[0]
            parts.append("greedy = best beam" if best.ids == r.greedy.ids else
                         f"beam beats greedy ({signed(best.score)} vs {signed(r.greedy.score)})"
                         if best.score > r.greedy.score else "greedy and beam differ")
        if view.model_step != self._model_step:
            parts.append(f"model now at step {self._model_step}: Run decodes again")
        self.note.setText("  ·  ".join(parts))

    def _fill_table(self) -> None:
        r = self.view.result
        tree, texts, lp = r.tree, r.token_texts, r.length_penalty
        rows = [("greedy", r.greedy.text, r.greedy.score, " ".join(r.greedy.tokens), GREEDY_COLOR)]
        for rank, node_id in enumerate(self.hypotheses, 1):
            node = tree[node_id]
            path = self._path(node_id)[1:]
            tokens = [texts[tree[i].token] for i in path]
            text = "".join(t for t in tokens if not t.startswith("<"))
            rows.append((f"beam {rank}", text, node.cum_log_prob / node.step ** lp, " ".join(tokens), None))
        self.table.setRowCount(len(rows))
        for i, (name, text, score, tokens, color) in enumerate(rows):
            for j, value in enumerate((name, text, signed(score), tokens)):
                item = QTableWidgetItem(value)
                item.setToolTip(f"{name}: {tokens}")
                if j == 0 and color:
                    item.setForeground(QColor(color))
                if j == 1:
                    item.setFont(ui_font(FONT_POINTS + 2, bold=True))
                self.table.setItem(i, j, item)
        self._fit_table()

    # -- layout ---------------------------------------------------------------------------------
    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        wide = self.width() >= WIDE
        if wide != self._wide:  # beside each other when there is room, else the tree on top
            self._wide = wide
            self.split.setOrientation(Qt.Horizontal if wide else Qt.Vertical)
            self.right.setOrientation(Qt.Vertical if wide else Qt.Horizontal)
            self.split.setSizes([1100, 800] if wide else [600, 400])
            self.right.setSizes([230, 770] if wide else [450, 550])

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt naming)
        if watched is self.table.viewport() and event.type() == event.Type.Resize:
            self._fit_table()
        return False

    def _fit_table(self) -> None:
        """Every hypothesis whole: the tokens column (also each row's tooltip) only when it
        fits beside the others, and room for three rows and the header."""
        table = self.table
        table.setColumnHidden(3, False)
        widths = [max(table.sizeHintForColumn(j), table.horizontalHeader().sectionSizeFromContents(j).width())
                  for j in range(table.columnCount())]
        table.setColumnHidden(3, sum(widths) > table.viewport().width())
        rows = table.rowHeight(0) if table.rowCount() else table.fontMetrics().height() + 8
        table.setMinimumHeight(table.horizontalHeader().height() + 3 * rows + 2 * table.frameWidth() + 2)

    def _path(self, node_id: int) -> list[int]:
        from core.decoding.tree import path_to

        return path_to(self.view.result.tree, node_id)

    # -- selection ----------------------------------------------------------------------------------
    def select_row(self, row: int) -> None:
        """Table row 0 is greedy, row i the i-th finished hypothesis."""
        self._select(-1 if row == 0 else self.hypotheses[row - 1])

    def select_node(self, node_id: int) -> None:
        """A click on a tree node: a finished one is selected; a node on a finished path
        selects that hypothesis (the best such) and outlines the node's token row."""
        tree = self.view.result.tree
        node = tree[node_id]
        if node.status == "root":
            return
        candidates = [h for h in self.hypotheses if node_id in self._path(h)]
        if node.status == "finished" and node.step <= self.shown_steps:
            candidates = [node_id]
        if not candidates:
            self.tree.select(node_id)
            self.attention.set(None, (), (), explanation="This branch has not finished\n(no attention to show).")
            self.selected = None
            return
        self._select(candidates[0], row=node.step - 1)

    def _select(self, selected: int | None, row: int | None = None) -> None:
        self.selected = selected
        view = self.view
        r = view.result
        if selected == -1:
            self.tree.select(None)
            weights, target = view.greedy_attention, r.greedy.tokens
        elif selected is not None:
            self.tree.select(selected)
            path = self._path(selected)[1:]
            weights, target = view.attention.get(selected), tuple(r.token_texts[r.tree[i].token] for i in path)
        else:
            self.tree.select(None)
            weights, target = None, ()
        if row is None:
            row = len(target) - 1 if target else None
        explanation = NO_ATTENTION if not view.has_attention else "No hypothesis has finished yet."
        name = "greedy" if selected == -1 else (f"beam {self.hypotheses.index(selected) + 1}"
                                                 if selected in self.hypotheses else "")
        text = "".join(t for t in target if not t.startswith("<"))
        title = f"Attention of {name} “{text}”: each row sums to 1" if name and weights is not None else ""
        self.attention.set(weights, r.source_tokens, target, row, explanation, title)
        table_row = 0 if selected == -1 else (self.hypotheses.index(selected) + 1 if selected in self.hypotheses
                                              else -1)
        self.table.blockSignals(True)
        if table_row >= 0:
            self.table.selectRow(table_row)
        else:
            self.table.clearSelection()
        self.table.blockSignals(False)

    # -- the Panel contract ---------------------------------------------------------------------------
    def clear(self) -> None:
        self.view, self.selected, self.hypotheses = None, None, []
        self._tag += 1  # a decode still on its way belongs to the old run
        self.shown_steps = 0
        self._model_step = self.run.step if self.run else 0
        self.tree.clear_tree()
        self.table.setRowCount(0)
        self.attention.set(None, (), ())
        self.note.setText("")
        self.heldout.setText("")
        available = self.available
        for w in (self.input, self.run_button, self.next_button, self.beam, self.penalty, self.max_len):
            w.setEnabled(available)
        self.input.clear()
        if available:
            self.tree_message.hide()
            self._say("Type a source text (or keep the probe's) and press Run, or step with Next expansion.")
        else:
            self.tree_message.setText("Decoding needs a translation preset:\nchoose one of "
                                      + ", ".join(translation_presets()) + ".")
            self.tree_message.setPos(0.5, 0.5)
            self.tree.plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            self.tree_message.show()
            self._say("")

    def on_step(self, record) -> None:
        self._model_step = record.step
        if HELDOUT_METRICS[0] in record.metrics:
            self.heldout.setText(heldout_text(record.step, *(record.metrics[k] for k in HELDOUT_METRICS)))

    def on_probe(self, record) -> None:
        if self.available and not self.input.text():
            self.input.setText("".join(record.labels))  # the probe's source text (padding is "")

    def redraw(self) -> None:
        if self.view is not None:
            self._note()

    def export_data(self) -> dict[str, np.ndarray]:
        if self.view is None:
            return {}
        tree = self.view.result.tree[: self.tree.count]
        out = {name: np.array([getattr(n, name) for n in tree]) for name in ("id", "parent", "token", "cum_log_prob")}
        out["x"], out["y"] = self.view.positions[: self.tree.count].T.copy()
        if self.attention.weights.size:
            out["attention"] = self.attention.weights.copy()
        return out

    def on_theme(self, theme: Theme) -> None:
        self.attention.apply_theme(theme)
        self.tree_message.setColor(theme.muted)
        self.tree.apply_theme(theme)
