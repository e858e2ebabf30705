"""core.training.compare: three kinds on one seed equal three independent trainers; the table reads them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.config import Experiment
from core.names import CELL_KINDS as KINDS
from core.training.compare import CompareRecord, Comparison, KindInfo, steps_to_target, summarize
from core.training.trainer import Trainer


def tiny(**changes) -> Experiment:
    base = dict(task="adding", cell="lstm", hidden_size=6, seq_len=10, batch_size=4, lr=0.01, seed=3)
    base.update(changes)
    return Experiment(**base)


def test_same_seed_gives_the_losses_of_three_independent_trainers():
    exp = tiny()
    records = list(Comparison(exp).run(4))
    assert [r.kind for r in records] == list(KINDS) * 4  # round-robin
    for kind in KINDS:
        alone = Trainer(exp.replace(cell=kind))
        expected = [alone.step().loss for _ in range(4)]
        mine = [r for r in records if r.kind == kind]
        assert [r.step for r in mine] == [1, 2, 3, 4]
        assert [r.loss for r in mine] == expected
        assert all(r.seconds > 0 for r in mine)
        # only the last record of each kind carries gradients through time, equal to the trainer's
        assert [r.gradients is not None for r in mine] == [False, False, False, True]
        np.testing.assert_allclose(mine[-1].gradients.norms[-1], alone.gradients().norms[-1], rtol=1e-5)


def test_infos_name_each_kind_with_its_parameter_count_and_the_task_target():
    comparison = Comparison(tiny(), kinds=("gru", "rnn"))
    infos = comparison.infos()
    assert [i.kind for i in infos] == ["gru", "rnn"]
    assert [i.param_count for i in infos] == [Trainer(tiny(cell=k)).param_count for k in ("gru", "rnn")]
    assert infos[0].target == comparison.trainers["gru"].task.target
    assert infos[0].param_count > infos[1].param_count  # three gate blocks against one


def test_stop_ends_the_run_with_a_closing_gradient_record_per_kind():
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 4

    records = list(Comparison(tiny()).run(50, stop=stop))
    regular = [r for r in records if r.seconds > 0]
    closing = [r for r in records if r.seconds == 0]
    assert [r.kind for r in regular] == ["rnn", "lstm", "gru", "rnn"]
    assert [(r.kind, r.step) for r in closing] == [("rnn", 2), ("lstm", 1), ("gru", 1)]
    assert all(r.gradients is not None for r in closing)
    assert closing[0].loss == regular[-1].loss


def test_steps_to_target_uses_the_running_mean_not_one_lucky_batch():
    steps = np.arange(1, 9)
    losses = np.array([1.0, 0.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1])
    assert steps_to_target(steps, losses, 0.5, window=1) == 2
    assert steps_to_target(steps, losses, 0.5, window=3) == 6  # mean of steps 4-6: (1 + 0.1 + 0.1) / 3
    assert steps_to_target(steps, losses, 0.01, window=3) is None
    assert steps_to_target(steps, losses, None) is None


def test_summarize_reads_the_records():
    infos = [KindInfo("rnn", 10, 0.5, 1.0), KindInfo("gru", 30, 0.5, 1.0)]
    records = [CompareRecord("rnn", s, 1.0 / s, 0.01 * s, False) for s in range(1, 21)]
    records += [CompareRecord("gru", s, 2.0, 0.02, False) for s in range(1, 21)]
    records.append(CompareRecord("gru", 20, 2.0, 0.0, False))  # a closing record is not a step
    rnn, gru = summarize(infos, records)
    assert (rnn.kind, rnn.param_count, rnn.steps) == ("rnn", 10, 20)
    assert rnn.seconds_per_step == pytest.approx(np.median(0.01 * np.arange(1, 21)))
    assert rnn.final_loss == pytest.approx(np.mean(1.0 / np.arange(11, 21)))
    assert rnn.steps_to_target == 10  # mean of 1/1 .. 1/10 is 0.29 <= 0.5
    assert gru.steps_to_target is None and gru.final_loss == 2.0 and gru.steps == 20


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="kinds"):
        Comparison(tiny(), kinds=("lstm", "transformer"))
    with pytest.raises(ValueError, match="steps"):
        next(Comparison(tiny(), kinds=("rnn",)).run(0))
    assert math.isnan(summarize([KindInfo("rnn", 1, None, None)], [])[0].final_loss)


def test_running_mean_averages_the_last_window_values():
    from core.training.compare import running_mean

    np.testing.assert_allclose(running_mean(np.array([2.0, 4.0, 6.0, 8.0]), window=2), [2, 3, 5, 7])
    assert running_mean(np.array([])).size == 0
