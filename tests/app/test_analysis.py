"""The numpy helpers behind the panels (no Qt)."""

from __future__ import annotations

import numpy as np

from app.panels.analysis import (
    chunk_spans,
    false_runs,
    geometric_line,
    log_levels,
    most_active_unit,
    positive_for_log,
    saturation,
    tick_stride,
)
from app.panels.series import RateMeter, Series, Snapshots
from app.window.schedule import InstrumentSchedule


def test_saturation_counts_shut_and_open_steps_per_unit_ignoring_padding():
    gate = np.array([[0.05, 0.5], [0.95, 0.5], [0.05, 0.99], [0.5, 0.0]])
    valid = np.array([True, True, True, False])
    shut, open_ = saturation(gate, valid)
    np.testing.assert_allclose(shut, [2 / 3, 0])
    np.testing.assert_allclose(open_, [1 / 3, 1 / 3])


def test_false_runs_and_chunks():
    assert false_runs(np.array([1, 1, 0, 0, 1, 0], bool)) == [(2, 4), (5, 6)]
    assert false_runs(np.ones(4, bool)) == []
    assert chunk_spans(10, 3) == [(3, 6), (9, 10)]
    assert chunk_spans(10, None) == [] and chunk_spans(10, 0) == [] and chunk_spans(5, 5) == []


def test_geometric_line_ends_at_the_last_value():
    line = geometric_line(2.0, 0.5, 4)
    np.testing.assert_allclose(line, [0.25, 0.5, 1.0, 2.0])  # vanishing backwards in t
    assert geometric_line(2.0, None, 4) is None
    assert geometric_line(0.0, 0.5, 4) is None
    assert np.isnan(geometric_line(1.0, 1e-300, 5)[0])  # underflow is nan, not 0 on a log axis


def test_log_helpers():
    np.testing.assert_array_equal(np.isnan(positive_for_log(np.array([1.0, 0.0, -1.0, np.inf]))),
                                  [False, True, True, True])
    assert log_levels(np.array([-30.0, -2.0, 0.0, np.nan])) == (-12.0, 0.0)
    assert log_levels(np.array([np.nan])) == (-1.0, 0.0)


def test_most_active_unit_and_tick_stride():
    h = np.zeros((5, 3))
    h[:, 2] = np.arange(5)
    assert most_active_unit(h) == 2
    assert tick_stride(10, 1000, 4) == 1
    assert tick_stride(200, 400, 4) in (10, 20, 25)


def test_series_grows_and_snapshots_stay_bounded():
    s = Series("step", "loss", capacity=2)
    for i in range(5):
        s.append(i, i * 0.5)
    np.testing.assert_array_equal(s.column("step"), np.arange(5))
    snaps = Snapshots(limit=3)
    for step in range(5):
        snaps.append(step, np.full(4, step))
    assert snaps.image().shape == (4, 3)
    np.testing.assert_array_equal(snaps.steps(), [2, 3, 4])
    snaps.append(9, np.zeros(6))  # the probe length changed: start over
    assert snaps.image().shape == (6, 1)


def test_rate_meter_and_schedule_with_a_fake_clock():
    now = [0.0]
    meter = RateMeter(window=2.0, clock=lambda: now[0])
    for step in range(11):
        meter.mark(step)
        now[0] += 0.1
    assert abs(meter.rate() - 10.0) < 1e-6
    schedule = InstrumentSchedule({"gradients": 2.0}, clock=lambda: now[0])
    assert schedule.due({"gradients"}) == {"gradients"}
    assert schedule.due({"gradients"}) == set()
    now[0] += 0.5
    assert schedule.due({"gradients"}) == {"gradients"}
