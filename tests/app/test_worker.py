"""The training process, through its controller: commands, instruments, failures, shutdown, stress."""

from __future__ import annotations

import time

import pytest

from app.training.controller import TrainingController
from app.training.loop import INSTRUMENTS
from app.training.messages import Failure
from core.records import GradientRecord, ProbeRecord, SpectrumRecord, StepRecord
from tests.app import remote
from tests.app.conftest import tiny


class Collector:
    """Keeps everything a controller emits (on the GUI thread)."""

    def __init__(self, controller: TrainingController):
        self.built, self.records, self.states, self.failures = [], [], [], []
        controller.built.connect(self.built.append)
        controller.records_ready.connect(self.records.extend)
        controller.state_changed.connect(self.states.append)
        controller.failed.connect(self.failures.append)

    @property
    def steps(self) -> list[StepRecord]:
        return [r for r in self.records if isinstance(r, StepRecord)]


@pytest.fixture
def controller():
    made = []

    def make(factory=None):
        c = TrainingController(factory)
        made.append(c)
        return c

    yield make
    for c in made:
        assert c.shutdown(timeout=5.0)


def test_build_emits_run_info_and_a_snapshot_then_steps_on_request(qtbot, controller):
    c = controller()
    got = Collector(c)
    c.build(tiny())
    qtbot.waitUntil(lambda: bool(got.built) and got.states[-1:] == ["idle"], timeout=60_000)
    assert got.built[0].kind == "lstm" and got.built[0].step == 0
    assert [type(r) for r in got.records] == [ProbeRecord, SpectrumRecord, GradientRecord]
    c.step(3, instruments={"probe"})
    qtbot.waitUntil(lambda: len(got.steps) == 3 and got.states[-1:] == ["paused"], timeout=30_000)
    assert [r.step for r in got.steps] == [1, 2, 3]
    assert [r.probe is not None for r in got.steps] == [False, False, True]
    assert got.steps[-1].gradients is None and got.steps[-1].spectrum is None
    assert got.failures == []


def test_a_run_stops_at_the_step_budget(qtbot, controller):
    c = controller()
    got = Collector(c)
    c.build(tiny(steps=5))
    qtbot.waitUntil(lambda: bool(got.built), timeout=60_000)
    c.run()
    qtbot.waitUntil(lambda: got.states[-1:] == ["paused"], timeout=30_000)
    assert got.steps[-1].step == 5 and "running" in got.states


def test_a_refused_experiment_names_its_field(qtbot, controller):
    c = controller(remote.refuse)
    got = Collector(c)
    c.build(tiny())
    qtbot.waitUntil(lambda: bool(got.failures), timeout=10_000)
    assert got.failures[0] == Failure("hidden_size must be an integer from 1 to 4096; got 0", "hidden_size")
    assert got.built == []


def test_divergence_and_errors_pause_the_run(qtbot, controller):
    c = controller(remote.diverge_at_3_fail_at_5)
    got = Collector(c)
    c.build(tiny())
    qtbot.waitUntil(lambda: bool(got.built), timeout=60_000)
    c.run()
    qtbot.waitUntil(lambda: "diverged" in got.states, timeout=30_000)
    assert len(got.steps) == 3 and got.steps[-1].diverged
    c.run()
    qtbot.waitUntil(lambda: bool(got.failures), timeout=30_000)
    assert "RuntimeError" in got.failures[0].message and "simulated failure" in got.failures[0].message


def test_shutdown_while_running_is_prompt(qtbot, controller):
    c = controller()
    got = Collector(c)
    c.build(tiny())
    qtbot.waitUntil(lambda: bool(got.built), timeout=60_000)
    c.run()
    qtbot.waitUntil(lambda: len(got.steps) > 2, timeout=30_000)
    start = time.perf_counter()
    assert c.shutdown(timeout=2.0)
    assert time.perf_counter() - start < 2.0
    assert not c.is_alive and not c.reader.isRunning()


def test_shutdown_during_a_long_instrument_stops_the_process_in_time(qtbot, controller):
    """Gradients through time on a big model can take many seconds and cannot be
    interrupted from inside; closing must not wait for them."""
    c = controller(remote.slow_gradients)
    got = Collector(c)
    c.build(tiny())
    qtbot.waitUntil(lambda: [type(r) for r in got.records] == [ProbeRecord, SpectrumRecord], timeout=60_000)
    time.sleep(0.2)  # inside the minute-long gradients now
    start = time.perf_counter()
    assert c.shutdown(timeout=1.0) is False  # it did not end by itself ...
    assert time.perf_counter() - start < 2.5  # ... so it was stopped
    assert not c.is_alive and c.process.exitcode is not None and not c.reader.isRunning()


def test_a_crashed_process_is_reported_and_the_next_build_starts_a_new_one(qtbot, controller):
    c = controller()
    got = Collector(c)
    c.build(tiny())
    qtbot.waitUntil(lambda: got.states[-1:] == ["idle"], timeout=60_000)
    first = c.process
    first.kill()  # as if torch had crashed the interpreter
    qtbot.waitUntil(lambda: bool(got.failures), timeout=10_000)
    assert "training process ended unexpectedly" in got.failures[0].message
    assert got.states[-1] == "idle" and not c.is_alive
    c.build(tiny())
    qtbot.waitUntil(lambda: len(got.built) == 2 and got.states[-1:] == ["idle"], timeout=60_000)
    assert c.process is not first and c.is_alive
    c.step(1)
    qtbot.waitUntil(lambda: [r.step for r in got.steps] == [1], timeout=30_000)


def test_a_job_must_be_picklable(controller):
    c = controller()
    with pytest.raises(TypeError, match="must be picklable"):
        c.call(lambda trainer: trainer.step_count, print)


def test_stress_every_panel_updated_2000_times_through_the_real_worker(qtbot, controller):
    """Guards against binding crashes on records from another thread and repeated setData
    (PySide6 6.12.0's none_dealloc abort, PYSIDE-3124)."""
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    from app.panels import PANELS

    host = QWidget()
    qtbot.addWidget(host)
    layout = QVBoxLayout(host)
    panels = [cls() for cls in PANELS]
    for p in panels:
        layout.addWidget(p)
    host.resize(640, 1200)
    host.show()
    updates = {"n": 0}

    def on_records(records):
        for record in records:
            if updates["n"] >= 2000:  # drawing each record is slower than training it: the
                return  # lists grow while the GUI draws (back-pressure); what is left is not needed
            for p in panels:
                p.update_record(record)
                p.refresh()
            updates["n"] += 1

    c = controller()
    c.built.connect(lambda info: [p.reset(info) for p in panels])
    c.records_ready.connect(on_records)
    c.attach_always(INSTRUMENTS)
    c.set_speed(100)  # small lists at first, one record per emission
    c.build(tiny(hidden_size=4, seq_len=5, batch_size=2, task="padding", cell="gru", masking="on"))
    qtbot.waitUntil(lambda: updates["n"] >= 3, timeout=60_000)
    c.run()
    qtbot.waitUntil(lambda: updates["n"] >= 2000, timeout=150_000)
    assert c.shutdown()  # before the panels go: no record may arrive after them
    mine = {"training", "hidden", "gates", "gradients", "spectrum"}
    assert all(p.export_data() for p in panels if p.name in mine)
    assert panels[0].series.column("step")[-1] >= 1990
