"""core.bench.dynamics: the result is complete and sane (the target itself is in `bench`)."""

import pytest

from core.bench.dynamics import bench_dynamics


def test_bench_reports_every_number():
    r = bench_dynamics(hidden=6, starts=8, train_steps=2, repeats=1)
    assert r["search_s"] > 0 and r["probe_s"] > 0
    assert r["ratio"] == pytest.approx(r["search_s"] / r["probe_s"])
    assert r["fixed_points"] >= 1 and r["iterations"] >= 1 and (r["hidden"], r["starts"]) == (6, 8)
    assert r["train_s"] > 0 and r["train_steps"] == 2


def test_bench_rejects_bad_settings():
    with pytest.raises(ValueError, match="repeats and threads must be >= 1; got 0, 1"):
        bench_dynamics(repeats=0)
