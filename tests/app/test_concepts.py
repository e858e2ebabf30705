"""The concepts' controls and panel elements, fed real trainer records: the running median of
the gradient norm and the clip helper, held-out exact match teacher-forced vs free running,
both directions of a bidirectional encoder, Help > Techniques and the CLI flags."""

from __future__ import annotations

import re

import numpy as np
import pytest

from app.panels.median import MEDIAN_WINDOW, RunningMedian, suggested_clip
from core.names import HELDOUT_METRICS
from tests.app.conftest import fed, tiny, train


@pytest.fixture(scope="module")
def translation_run():
    """A tiny bidirectional encoder-decoder past its first held-out evaluation (step 50)."""
    return train(tiny(task="reverse", cell="lstm", seq_len=12, embed_size=5, attention="dot",
                      bidirectional="on", teacher_forcing=0.5), 52)


# -------------------------------------------------------------------------- running median
def test_running_median_against_numpy_over_a_sliding_window():
    rng = np.random.default_rng(0)
    values = np.exp(rng.normal(size=400) * 3)
    values[[17, 230]] = np.nan  # a diverged step's norm: skipped
    median = RunningMedian(window=50)
    finite = []
    for v in values:
        got = median.append(float(v))
        if np.isfinite(v):
            finite.append(v)
        assert got == pytest.approx(np.median(finite[-50:]))
    assert len(median) == 50 and np.isnan(RunningMedian().value)
    with pytest.raises(ValueError, match="window must be >= 1; got 0"):
        RunningMedian(0)


@pytest.mark.parametrize("median,k,expected", [(21.37, 5, 110), (0.0123, 2, 0.025), (7.0, 1, 7.0),
                                               (float("nan"), 5, None), (3.0, 0, None)])
def test_suggested_clip_is_k_times_the_median_to_two_digits(median, k, expected):
    assert suggested_clip(median, k) == expected


def test_training_panel_draws_the_running_median_and_the_clip_line(qtbot, lstm_run):
    info, records = lstm_run
    panel = fed(qtbot, "training", lstm_run)
    norms = [r.grad_norm for r in records if hasattr(r, "grad_norm")]
    x, y = panel.median_curve.getData()
    assert len(y) == len(norms)
    expected = [np.median(norms[max(0, i + 1 - MEDIAN_WINDOW): i + 1]) for i in range(len(norms))]
    np.testing.assert_allclose(10 ** y, expected, rtol=1e-6)  # log axis
    assert "median ‖∇‖ (last" in panel.note.text()
    assert not panel._eval_shown and panel.eval_plot.scene() is None  # not a translation task


def test_training_panel_shows_held_out_scores_both_ways(qtbot, translation_run):
    info, records = translation_run
    panel = fed(qtbot, "training", translation_run)
    assert panel._eval_shown and panel.eval_plot.scene() is not None
    evaluated = [r for r in records if hasattr(r, "metrics") and HELDOUT_METRICS[0] in r.metrics]
    assert [r.step for r in evaluated] == [50]
    for curve, key in zip(panel.eval_curves, HELDOUT_METRICS, strict=True):
        x, y = curve.getData()
        assert list(x) == [50] and list(y) == [evaluated[0].metrics[key]]
    forced, free, exact = (evaluated[0].metrics[k] for k in HELDOUT_METRICS)
    note = panel.note.text()
    assert (f"held-out at step 50: tokens teacher-forced {forced:.1%}, free running {free:.1%}; "
            f"exact match {exact:.1%}") in note
    assert "teacher forcing" in note  # the ratio this step used
    data = panel.export_data()
    assert list(data["heldout_step"]) == [50] and list(data[HELDOUT_METRICS[1]]) == [free]
    panel.reset(info.__class__(**{**info.__dict__, "experiment": tiny()}))
    assert not panel._eval_shown


def test_decoding_panel_shows_both_token_accuracies_side_by_side(qtbot, translation_run):
    panel = fed(qtbot, "decoding", translation_run)
    forced, free, exact = (next(r for r in translation_run[1] if HELDOUT_METRICS[0] in getattr(r, "metrics", {}))
                           .metrics[k] for k in HELDOUT_METRICS)
    text = panel.heldout.text()
    assert f"teacher-forced {forced:.1%}" in text and f"free running (greedy) {free:.1%}" in text
    assert f"gap {100 * (forced - free):+.1f} points" in text and f"exact match {exact:.1%}" in text


# ---------------------------------------------------------------------------- bidirectional
def test_hidden_panel_shows_forward_and_backward_halves(qtbot, translation_run):
    info, records = translation_run
    probe = [r.probe for r in records if getattr(r, "probe", None) is not None][-1]
    assert probe.bidirectional
    panel = fed(qtbot, "hidden", translation_run)
    H = probe.hidden[0].shape[1]
    image = panel.heatmap.image.image  # units x time
    np.testing.assert_array_equal(image, np.concatenate([probe.hidden[0], probe.backward.hidden[0]], 1).T)
    assert panel.halves.isVisible() and panel.halves.value() == H - 0.5
    assert f"units 0-{H - 1} forward, {H}-{2 * H - 1} backward" in panel.note.text()
    panel.select_unit(H + 1)
    panel.refresh(force=True)
    assert [label.text for _, label in panel.trace_plot.legend.items] == ["unit 1 (backward)"]
    np.testing.assert_array_equal(panel.traces[0].getData()[1], probe.backward.hidden[0][:, 1])
    data = panel.export_data()
    np.testing.assert_array_equal(data["hidden_l0_reverse"], probe.backward.hidden[0])
    assert "unmasked_hidden_l0_reverse" in data and "cell_l0_reverse" in data


@pytest.mark.parametrize("name", ["gates", "cell"])
def test_panels_showing_one_direction_say_which(qtbot, translation_run, name):
    panel = fed(qtbot, name, translation_run)
    assert "forward direction" in panel.note.text()


def test_hidden_panel_of_a_unidirectional_net_has_no_halves(qtbot, lstm_run):
    panel = fed(qtbot, "hidden", lstm_run)
    assert not panel.halves.isVisible() and "backward" not in panel.note.text()


# -------------------------------------------------------------------- the Experiment dock
def test_clip_helper_sets_k_times_the_running_median_and_the_run_goes_on(qtbot, lstm_run):
    from app.window.experiment_form import ExperimentForm

    info, records = lstm_run
    form = ExperimentForm()
    qtbot.addWidget(form)
    form.set_experiment(info.experiment)
    assert not form.clip_button.isEnabled() and form.clip_from_median() is None
    steps = [r for r in records if hasattr(r, "grad_norm")]
    for r in steps:
        form.note_step(r)
    median = float(np.median([r.grad_norm for r in steps]))
    assert form.clip_button.isEnabled()
    assert form.median_label.text() == f"median ‖∇‖ of the last {len(steps)} steps: {median:.3g}"
    form.clip_k.setValue(2.0)
    form.clip_button.click()
    assert float(form.fields["clip"].text()) == suggested_clip(median, 2.0)
    with qtbot.waitSignal(form.retuned, timeout=1000) as signal:  # a live field: no rebuild
        assert form.apply()
    assert signal.args[0].clip == suggested_clip(median, 2.0)
    form.note_run()
    assert form.median_label.text() == "median ‖∇‖: no steps yet"


def test_the_clip_helper_does_not_widen_the_dock(qtbot):
    """Wider than the dock, the form scrolls sideways and the right-aligned numbers leave view."""
    from PySide6.QtWidgets import QScrollArea, QWidget

    from app.window.experiment_form import ExperimentForm

    form = ExperimentForm()
    qtbot.addWidget(form)
    body = form.findChild(QScrollArea).widget()
    helper = body.findChild(QWidget, "clip-helper")
    helper.hide()
    without = body.minimumSizeHint().width()
    helper.show()
    assert body.minimumSizeHint().width() <= without


def test_new_fields_are_greyed_out_where_they_do_nothing(qtbot):
    from app.window.experiment_form import ExperimentForm

    form = ExperimentForm()
    qtbot.addWidget(form)
    form.set_experiment(tiny(cell="gru"))
    enabled = {n: form.fields[n].editor.isEnabled() for n in ("forget_bias", "bidirectional", "teacher_forcing",
                                                             "tf_schedule")}
    assert not any(enabled.values())
    form.set_experiment(tiny(cell="lstm", task="reverse", seq_len=8))
    assert form.fields["forget_bias"].editor.isEnabled() and form.fields["bidirectional"].editor.isEnabled()
    assert not form.fields["tf_schedule"].editor.isEnabled()  # ratio 1: nothing to schedule
    form.fields["teacher_forcing"].editor.setText("0.5")
    assert form.fields["tf_schedule"].editor.isEnabled()


# -------------------------------------------------------------------------------- Help, CLI
def test_techniques_help_names_presets_that_exist():
    from app.window.help import TECHNIQUES_HTML
    from core.presets import preset_names

    named = set(re.findall(r"Preset:\s+<code>([a-z0-9-]+)</code>", TECHNIQUES_HTML))
    assert len(named) == 5 and named <= set(preset_names())


@pytest.mark.parametrize("argv,message", [
    (["train", "--preset", "adding-rnn", "--forget-bias", "1"], "--forget-bias applies to lstm cells"),
    (["train", "--preset", "adding-lstm", "--teacher-forcing", "0.5"], "--teacher-forcing applies to translation"),
    (["train", "--preset", "dates-attention", "--tf-schedule", "cosine"],
     "tf_schedule must be one of constant, linear, inverse-sigmoid; got 'cosine'"),
    (["train", "--preset", "dates-attention", "--teacher-forcing", "2"], "teacher_forcing must be a number from 0 to 1"),
])
def test_cli_refuses_new_flags_in_one_line(capsys, argv, message):
    from main import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_sets_the_new_fields(capsys):
    import json

    from main import main

    assert main(["train", "--preset", "reverse-attention", "--steps", "2", "--json", "--bidirectional", "on",
                 "--teacher-forcing", "0.25", "--tf-schedule", "linear"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    experiment = lines[-1]["summary"]["experiment"]
    assert (experiment["bidirectional"], experiment["teacher_forcing"], experiment["tf_schedule"]) == ("on", 0.25,
                                                                                                      "linear")
    assert lines[0]["teacher_forcing"] == 1.0 and "token_accuracy_teacher_forced" in lines[-1]["summary"]
    assert main(["train", "--preset", "adding-lstm", "--steps", "1", "--json", "--forget-bias", "1"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]["experiment"]["forget_bias"] == 1.0
