"""core.bench.ablation: the numbers are complete and the batched sweep is the one measured."""

import pytest

from core.bench.ablation import bench_ablation


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_bench_reports_every_number_and_the_same_effects(kind):
    r = bench_ablation(hidden_size=12, seq_len=15, kind=kind, repeats=1, sampled_units=3)
    assert r["same_effects"] is True
    for key in ("sweep_s", "probe_s", "separate_s"):
        assert r[key] > 0
    assert r["ratio"] == pytest.approx(r["sweep_s"] / r["probe_s"])
    assert r["batching_speedup"] == pytest.approx(r["separate_s"] / r["sweep_s"])


def test_bench_rejects_nonsense():
    with pytest.raises(ValueError, match="repeats and sampled_units must be >= 1"):
        bench_ablation(repeats=0)
