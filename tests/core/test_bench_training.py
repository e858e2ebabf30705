"""core.bench.training: the result is complete and sane; the cost target is a slow test."""

import pytest

from core.bench.training import bench_training


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bench_reports_every_number(kind):
    r = bench_training(kind, hidden=8, T=6, batch=2, input_size=3, seconds=0.2, probe_hz=1000.0)
    for key in ("plain_s_per_step", "instrumented_s_per_step", "loop_s_per_step", "probe_s"):
        assert r[key] > 0
    assert r["ratio"] == pytest.approx(r["instrumented_s_per_step"] / r["plain_s_per_step"])
    assert 0 < r["probes_per_step"] <= 1 and r["steps_timed"] >= 3 and r["loop_ratio"] > 0


def test_bench_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="kind must be one of rnn, lstm, gru"):
        bench_training("transformer")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_instrumented_training_costs_at_most_a_quarter_more(kind):
    assert bench_training(kind)["ratio"] <= 1.25
