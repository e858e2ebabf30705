"""Reliability in the window: divergence, refused configurations, worker errors, threads under
every command, bad field values and decode inputs. Nothing blocks, nothing is lost."""

from __future__ import annotations

import pytest

from core.config import FIELDS, Experiment
from core.logs import LOG_FILE, data_dir, setup_logging
from tests.app.conftest import ask

NUMERIC_FIELDS = sorted(name for name, spec in FIELDS.items() if spec.choices is None and not spec.text)


def wait_paused_at(qtbot, window, step: int, timeout: int = 30_000) -> None:
    qtbot.waitUntil(lambda: window.last_step is not None and window.last_step.step == step
                    and window.state == "paused", timeout=timeout)


def test_a_worker_exception_is_shown_with_details_and_the_app_keeps_running(qtbot):
    from app.window.main_window import MainWindow
    from tests.app.conftest import tiny
    from tests.app.remote import bug_in_first_step

    window = MainWindow(experiment=tiny(), make_trainer=bug_in_first_step)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.run_info is not None and window.state == "idle", timeout=60_000)
    setup_logging()  # as main.py does before the app starts
    info = window.run_info
    window.step(1)
    qtbot.waitUntil(lambda: window.error_box is not None and window.error_box.isVisible(), timeout=30_000)
    box = window.error_box
    assert not box.isModal()  # nothing waits for an answer: the test (and the user) go on
    assert "RuntimeError while training: simulated bug in a step" in box.text()
    assert "Traceback" in box.detailedText() and "step_with_a_bug" in box.detailedText()
    assert "simulated bug" in window.status.currentMessage()
    qtbot.waitUntil(lambda: window.state == "paused", timeout=10_000)
    log_text = (data_dir() / LOG_FILE).read_text()
    assert "failed while training" in log_text and "simulated bug in a step" in log_text
    window.step(2)  # the same model trains on
    wait_paused_at(qtbot, window, 2)
    assert window.run_info is info and window.controller.is_alive
    window.close()


def test_divergence_pauses_is_marked_and_a_lower_learning_rate_continues_the_run(qtbot):
    """exploding-rnn with lr 10 and no clipping: inf within a few steps. The step is not
    applied, the weights go back to the last sane ones, the status bar and the training
    panel say so, and Apply with clipping continues the same run from there."""
    from PySide6.QtCore import Qt

    from app.window.main_window import MainWindow
    from app.window.status import DIVERGED
    from core.presets import load_preset

    window = MainWindow(experiment=load_preset("exploding-rnn").experiment.replace(lr=10.0, clip=0.0))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.run_info is not None, timeout=60_000)
    window.toggle_run()
    qtbot.waitUntil(lambda: window.state == "diverged" and window.last_step.diverged, timeout=120_000)
    record = window.last_step
    assert record.diverged and record.restored_step is not None and record.step > record.restored_step
    assert window.status.state == "diverged" and "diverged" in window.status.state_label.text()
    message = window.status.currentMessage()
    assert message.startswith(f"{DIVERGED} {record.step}") and f"step {record.restored_step}," in message
    assert "Lower the learning rate or set a clip norm" in message
    panel = window.panels["training"]
    panel.refresh(force=True)
    assert panel.series.column("diverged")[-1] == 1
    assert panel.divergence[0].isVisible() and panel.divergence[0].value() == record.step
    assert not panel.clip_line.isVisible()

    built = []
    window.run_built.connect(built.append)
    form = window.form
    form.fields["lr"].editor.setText("0.1")
    form.fields["clip"].editor.setText("1")
    qtbot.mouseClick(form.apply_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.run_info.experiment.clip == 1.0, timeout=30_000)
    assert window.run_info.experiment.lr == 0.1 and window.run_info.step == record.step
    assert "training goes on from step" in window.status.currentMessage()
    panel.refresh(force=True)
    assert panel.clip_line.isVisible()  # the panel knows the new clip norm, and kept its data
    shown = len(panel.series)
    assert shown == record.step + 1  # every step so far and the diverged one

    window.step(20)
    wait_paused_at(qtbot, window, record.step + 20, timeout=120_000)
    assert built == []  # never rebuilt: the same weights trained on
    steps = panel.series.column("step")[shown:]
    losses = panel.series.column("loss")[shown:]
    assert list(steps) == list(range(record.step + 1, record.step + 21))
    assert not panel.series.column("diverged")[shown:].any()
    assert losses.max() < 10  # sane: the weights before the climb, not those of loss 1e30
    window.close()


def test_a_configuration_too_big_for_memory_is_refused_with_its_estimate_and_the_run_kept(qtbot, window):
    window.step(2)
    wait_paused_at(qtbot, window, 2)
    info = window.run_info
    form = window.form
    for name, value in (("hidden_size", "4096"), ("batch_size", "1024"), ("seq_len", "2000")):
        form.fields[name].editor.setText(value)
    assert form.apply()  # valid field by field: only the whole needs too much memory
    qtbot.waitUntil(lambda: "GiB" in form.message.text(), timeout=30_000)
    message = form.message.text()
    assert message.startswith("this configuration needs about") and "reduce hidden_size (4096)" in message
    assert "GiB" in window.status.currentMessage() and window.error_box is None  # bad input, not a bug
    assert window.run_info is info  # the previous run is kept and trains on
    window.step(1)
    wait_paused_at(qtbot, window, 3)


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
def test_bad_field_values_are_flagged_at_the_field_with_value_and_range(qtbot, name):
    from app.window.experiment_form import ExperimentForm

    form = ExperimentForm()
    qtbot.addWidget(form)
    spec, field = FIELDS[name], form.fields[name]
    before = form.experiment
    integer = isinstance(getattr(Experiment(), name), int)
    below = int(spec.lo) - 1 if integer else spec.lo - 1.0
    above = int(spec.hi) + 1 if integer else spec.hi * 10
    for text in (repr(below), repr(above), "abc", "", "nan", "1e999", *(["2.5"] if integer else [])):
        field.editor.setText(text)
        assert field.error is not None, text
        assert field.error.startswith(f"{name} must be") and spec.describe() in field.error, field.error
        assert "got " in field.error and (text in field.error or "inf" in field.error), field.error
        assert field.editor.property("invalid") is True and field.hint.text() == field.error
        assert not form.apply_button.isEnabled() and form.apply() is False
    assert form.experiment == before
    field.editor.setText(repr(spec.lo if not integer else int(spec.lo)))
    assert field.error is None


def test_commands_while_training_never_deadlock_crash_or_leave_a_thread(qtbot, window, tmp_path):
    """Reset, Apply of another cell kind, Open session and closing the window, each while
    training runs; the one training process serves them all and ends with the window."""
    from PySide6.QtCore import Qt

    process = window.controller.process
    failures = []
    window.controller.failed.connect(failures.append)
    window.step(2)
    wait_paused_at(qtbot, window, 2)
    with qtbot.waitSignal(window.sessions.saved, timeout=30_000):
        assert window.sessions.save_to(tmp_path / "two.rnnx")

    def start_running() -> None:
        window.transport.run_action.trigger()
        qtbot.waitUntil(lambda: window.state == "running" and window.last_step is not None
                        and window.last_step.step >= 3, timeout=60_000)

    start_running()
    with qtbot.waitSignal(window.run_built, timeout=60_000):
        window.transport.reset_action.trigger()
    qtbot.waitUntil(lambda: window.state == "idle", timeout=10_000)
    assert window.run_info.step == 0 and window.last_step is None

    start_running()
    window.form.fields["cell"].editor.setCurrentText("gru")
    with qtbot.waitSignal(window.run_built, timeout=60_000):
        qtbot.mouseClick(window.form.apply_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.state == "idle", timeout=10_000)
    assert window.run_info.kind == "gru" and window.run_info.step == 0

    start_running()
    with qtbot.waitSignal(window.sessions.opened, timeout=60_000):
        assert window.sessions.open(tmp_path / "two.rnnx")
    qtbot.waitUntil(lambda: window.state == "idle", timeout=10_000)
    assert window.run_info.kind == "lstm" and window.run_info.step == 2

    start_running()
    assert window.controller.process is process and failures == []
    reader = window.controller.reader
    window.close()
    assert not process.is_alive() and not reader.isRunning() and window.controller is None


def test_the_decode_box_takes_empty_unknown_and_overlong_input_on_a_translation_preset(qtbot):
    from app.window.main_window import MainWindow

    window = MainWindow(preset="reverse-attention")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.run_info is not None, timeout=60_000)
    window.step(3)
    wait_paused_at(qtbot, window, 3, timeout=60_000)
    window.docks["decoding"].raise_()
    panel = window.panels["decoding"]
    T = window.run_info.experiment.seq_len
    for text, expected in (("", "input is empty"), ("   ", "input is empty"),
                           ("héllo wörld 😀\t", "read as <unk>"),
                           ("abcdefghij" * 10_000, f"input truncated to {T} characters"),
                           ("Ω" * (T + 5), f"input truncated to {T} characters")):
        panel.input.setText(text)
        panel.run_button.click()
        qtbot.waitUntil(lambda e=expected: e in panel.notice.text(), timeout=60_000)
        assert panel.notice.isVisible()
    panel.input.setText("abc")
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.view is not None and panel.view.request.text == "abc"
                    and panel.notice.text() == "", timeout=60_000)
    assert panel.view.result.source == "abc" and panel.table.rowCount() >= 2
    assert window.error_box is None and window.controller.is_alive
    window.close()


def test_records_arrive_before_the_state_they_led_to_even_when_the_gui_is_behind(qtbot):
    """The training process keeps records back while the GUI is busy (back-pressure); a
    state change (paused, diverged) must not overtake them, or the GUI would show a state
    without its step."""
    import operator
    import time

    from app.training.controller import TrainingController
    from tests.app.conftest import tiny

    controller = TrainingController()
    events = []

    def slow_gui(records):
        events.append(("records", len(records)))
        time.sleep(0.2)  # drawing takes long: meanwhile the process trains on

    controller.records_ready.connect(slow_gui)
    controller.state_changed.connect(lambda state: events.append(("state", state)))
    try:
        with qtbot.waitSignal(controller.built, timeout=60_000):
            controller.build(tiny())
        qtbot.waitUntil(lambda: ("state", "idle") in events, timeout=30_000)
        events.clear()
        controller.set_speed(100)  # paced: one step per list, 100 lists a second, more than the GUI takes
        controller.run()
        qtbot.waitUntil(lambda: sum(n for kind, n in events if kind == "records") >= 40, timeout=60_000)
        controller.pause()
        qtbot.waitUntil(lambda: ("state", "paused") in events, timeout=30_000)
        qtbot.wait(300)  # anything still on its way arrives now
        lists = [n for kind, n in events if kind == "records"]
        assert max(lists) > 1  # records were kept back and came together
        assert [e for e in events if e[0] == "state"] == [("state", "running"), ("state", "paused")]
        assert events[-1] == ("state", "paused")  # no record came after the state it led to
        assert sum(lists) == ask(qtbot, controller, operator.attrgetter("step_count"))  # and none was lost
    finally:
        assert controller.shutdown(timeout=10)
