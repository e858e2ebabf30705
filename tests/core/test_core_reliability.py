"""Reliability of the engine: divergence goes back to the last good state and can continue,
configurations too big for memory are refused before allocating, long sequences are kept
whole, and the headless ``train`` says what happened in strict JSON with exit code 3."""

from __future__ import annotations

import json
import math

import pytest
import torch

import main
from core.cli.common import EXIT_DIVERGED
from core.config import TASKS, USER_ONLY_TASKS, Experiment
from core.errors import ResourceError
from core.presets import load_preset
from core.training import resources
from core.training.rollback import GOOD_FACTOR, LastGood
from core.training.trainer import Trainer
from tests.outcomes import outcome, seeded

SMALL = Experiment(task="adding", cell="lstm", hidden_size=8, seq_len=10, batch_size=8, lr=0.01)


def exploding(**changes) -> Experiment:
    """Preset exploding-rnn without clipping at a learning rate that diverges in a few steps."""
    return load_preset("exploding-rnn").experiment.replace(**{"lr": 10.0, "clip": 0.0, **changes})


def copies(trainer: Trainer) -> tuple[list[torch.Tensor], list[dict]]:
    params = [p.detach().clone() for p in trainer.model.parameters()]
    state = [{k: v.clone() for k, v in trainer.optimizer.state.get(p, {}).items()}
             for p in trainer.model.parameters()]
    return params, state


def assert_state_is(trainer: Trainer, params, state) -> None:
    for p, kept in zip(trainer.model.parameters(), params, strict=True):
        assert torch.equal(p, kept)
    for p, kept in zip(trainer.model.parameters(), state, strict=True):
        live = trainer.optimizer.state.get(p, {})
        assert set(live) == set(kept) and all(torch.equal(live[k], kept[k]) for k in kept)


# ------------------------------------------------------------------------------ divergence
@pytest.mark.trained
def test_divergence_goes_back_to_the_last_good_state_and_training_continues_from_it():
    """Measured over seeds 0-4, 1 thread: the 8th update diverges, after the loss climbed to
    10^31.5-10^34.9; the 25 updates after the restore stay below 1.4-4.0."""
    trainer = Trainer(seeded(exploding()))
    records = list(trainer.run(200))
    last = records[-1]
    outcome("exploding-rnn/lr_10/diverged_after", len(records))
    outcome("exploding-rnn/lr_10/log10_highest_loss", math.log10(max(r.loss for r in records[:-1])))
    outcome("exploding-rnn/lr_10/last_good_loss", trainer.last_good.loss)
    assert last.diverged and not math.isfinite(last.loss)  # lr 10, no clipping: inf within a few steps
    assert len(records) < 30 and max(r.loss for r in records[:-1]) > 1e20  # it climbed first
    assert last.restored_step is not None and last.restored_step < last.step == trainer.step_count
    assert trainer.last_good.loss < 2.0  # the state it went back to had a sane loss
    trainer.set_learning_rate(0.1)
    trainer.set_clip(1.0)
    more = list(trainer.run(25))
    assert len(more) == 25 and not any(r.diverged for r in more)
    assert [r.step for r in more] == list(range(last.step + 1, last.step + 26))  # the count goes on
    highest = outcome("exploding-rnn/lr_10/highest_loss_after_restore", max(r.loss for r in more))
    assert highest < 10  # not the ruined weights of loss 1e30


def test_the_restored_state_is_exactly_the_one_before_the_last_sane_update():
    trainer = Trainer(SMALL)
    trainer.step()
    trainer.step()
    params, state = copies(trainer)  # Adam's moments included
    trainer.step()
    assert trainer.last_good.step == 2
    with torch.no_grad():
        trainer.model.readout.weight.fill_(float("nan"))
    record = trainer.step()
    assert record.diverged and record.restored_step == 2 and trainer.step_count == 3
    assert_state_is(trainer, params, state)
    assert trainer.step().diverged is False


def test_a_first_step_that_diverges_has_nothing_to_go_back_to():
    trainer = Trainer(SMALL)
    with torch.no_grad():
        trainer.model.readout.bias.fill_(float("inf"))
    record = trainer.step()
    assert record.diverged and record.restored_step is None and trainer.step_count == 0


def test_a_climbing_loss_is_not_kept_as_good():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    good = LastGood()
    for step, loss in enumerate([1.0, 0.8, 0.9, 0.8 * GOOD_FACTOR * 1.5, 1e3, 1e9]):
        good.offer(model, optimizer, step, loss)
    assert good.step == 2 and good.loss == 0.9


def test_the_memory_estimate_counts_what_training_really_holds():
    for exp in (SMALL, SMALL.replace(cell="gru", hidden_size=64, num_layers=2), exploding()):
        trainer = Trainer(exp)
        trainer.step()
        trainer.step()
        held = [*trainer.model.parameters(), *trainer.last_good._params,
                *(v for s in trainer.optimizer.state.values() for v in s.values()),
                *(v for s in trainer.last_good._state for v in s.values())]
        grads = sum(p.numel() for p in trainer.model.parameters())  # while a step runs
        nbytes = sum(t.numel() * t.element_size() for t in held) + 4 * grads
        assert nbytes <= resources.estimate_memory(exp)["weights"]


# ------------------------------------------------------------------------------ resources
def test_a_configuration_beyond_a_safe_share_of_memory_is_refused_with_the_estimate():
    big = SMALL.replace(hidden_size=1024, seq_len=500, batch_size=64)
    parts = resources.check_resources(big, available=1 << 40)  # 1 TiB: fine
    assert set(parts) == {"weights", "activations", "traces"}
    with pytest.raises(ResourceError) as refused:
        resources.check_resources(big, available=1 << 30)
    message = str(refused.value)
    total = sum(parts.values()) / 2**30
    assert message.startswith(f"this configuration needs about {total:.1f} GiB (weights ")
    assert "more than the safe 0.5 GiB of this machine" in message
    assert "hidden_size (1024), batch_size (64) or seq_len (500)" in message and "\n" not in message


def test_the_trainer_refuses_before_allocating_anything(monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda: 1 << 20)  # 1 MiB left

    def no_allocation(*_args, **_kwargs):
        raise AssertionError("the task and model were built although the estimate was refused")

    monkeypatch.setattr("core.training.trainer.make_task", no_allocation)
    with pytest.raises(ResourceError, match="this configuration needs about"):
        Trainer(SMALL)


@pytest.mark.parametrize("task", [t for t in TASKS if t not in USER_ONLY_TASKS])
def test_a_sequence_of_2000_steps_is_kept_whole(task):
    trainer = Trainer(Experiment(task=task, cell="gru", hidden_size=4, embed_size=4, seq_len=2000, batch_size=2))
    probe = trainer.probe()
    extra = 20 if task == "copy" else 0  # copy: ten symbols, T blanks, ten recalled
    assert probe.T == 2000 + extra and probe.hidden[0].shape == (2000 + extra, 4)
    if task == "adding":
        assert math.isfinite(trainer.step().loss)  # and it trains at that length


# ------------------------------------------------------------------------------ headless train
def strict_lines(text: str) -> list[dict]:
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def test_train_json_reports_divergence_exits_3_and_the_saved_session_continues(tmp_path, capsys):
    saved = tmp_path / "diverged.rnnx"
    code = main.main(["train", "--preset", "exploding-rnn", "--lr", "10", "--clip", "0", "--steps", "200",
                      "--json", "--save", str(saved)])
    out, err = capsys.readouterr()
    assert code == EXIT_DIVERGED == 3
    lines = strict_lines(out)
    summary = lines[-1]["summary"]
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == summary["steps"] + 1
    assert summary["restored_step"] is not None and summary["restored_step"] < summary["steps"]
    assert "not applied" in summary["message"] and summary["saved"] == str(saved)
    assert lines[-2]["diverged"] is True and lines[-2]["loss"] is None  # inf is null, not Infinity
    assert not any(line["diverged"] for line in lines[:-2])

    code = main.main(["train", "--session", str(saved), "--lr", "0.1", "--clip", "1", "--steps", "20", "--json"])
    lines = strict_lines(capsys.readouterr().out)
    assert code == 0 and lines[-1]["summary"]["status"] == "ok"
    assert lines[0]["step"] == summary["steps"] + 1 and len(lines) == 21
    assert all(line["loss"] is not None and line["loss"] < 10 for line in lines[:-1])
