"""Presets: every shipped preset loads; bad files fail with PresetError naming the problem.

The slow tests train parity-gru and sort-attention and check what their descriptions claim.
"""

import math

import numpy as np
import pytest
import torch

from core.config import TASKS, USER_ONLY_TASKS
from core.decoding.text import decode_text
from core.errors import PresetError
from core.names import EOS, PAD
from core.presets import GROUPS, list_presets, load_preset, parse_preset
from tests.outcomes import first_step_below, lowest_mean, more, outcome, train

REQUIRED = ["adding-rnn", "adding-lstm", "adding-gru", "copy-lstm", "charlm-lstm", "sine-gru", "padding-gru",
            "parity-gru", "sort-attention"]


def test_required_presets_exist_and_load():
    names = {p.name for p in list_presets()}
    assert set(REQUIRED) <= names
    for p in list_presets():
        assert p.group in GROUPS and len(p.description) > 40


def test_every_task_has_a_preset():
    """Otherwise users reach the task only through the Task field, with no story to follow.
    (The tasks on a user's own file or model start from File > Open Data/Model instead.)"""
    assert {p.experiment.task for p in list_presets()} == set(TASKS) - set(USER_ONLY_TASKS)


def test_adding_presets_differ_only_in_cell():
    exps = {n: load_preset(f"adding-{n}").experiment for n in ("rnn", "lstm", "gru")}
    assert {e.cell for e in exps.values()} == {"rnn", "lstm", "gru"}
    assert len({e.replace(cell="lstm") for e in exps.values()}) == 1


def test_unknown_preset_lists_known_ones():
    with pytest.raises(PresetError, match="unknown preset 'nope'; known presets: .*adding-lstm"):
        load_preset("nope")


@pytest.mark.parametrize("text,match", [
    ("schema = 2\n", "schema must be 1; got 2"),
    ("not toml [", "not a valid TOML preset"),
    ('schema = 1\nname = "x"\ntitle = "t"\ngroup = "g"\ndescription = "d"\n', "group must be one of"),
    ('schema = 1\nname = "x"\ntitle = "t"\ngroup = "gates"\ndescription = "d"\n[experiment]\nhidden_size = 0\n',
     "hidden_size must be an integer from 1 to 4096; got 0"),
    ('schema = 1\ntitle = "t"\n', "'name' must be a non-empty string"),
])
def test_bad_preset_text_raises_preset_error(text, match):
    with pytest.raises(PresetError, match=match):
        parse_preset(text, "bad.toml")


# ------------------------------------------------------------------ slow: training presets
def accuracy_by_step(trainer) -> np.ndarray:
    """[T] share of 1000 fresh parity sequences answered right at each time step."""
    batch = trainer.task.sample(1000, torch.Generator().manual_seed(99))
    with torch.no_grad():
        out, state = trainer.model.run(batch)
        return (trainer.model.predict(out, state).argmax(-1) == batch.y).float().mean(1).numpy()


@pytest.mark.slow
@pytest.mark.trained
def test_parity_gated_cells_leave_the_plateau_hundreds_of_steps_before_the_rnn():
    """parity-gru's claims (about 30 CPU-seconds). Measured over seeds 0-4, 1 thread: the
    GRU leaves the log 2 plateau (10-step mean < 0.9 log 2) at step 256-342, the LSTM at
    258-325; the LSTM is below the target (0.02) at 327-408; the GRU is below it at 333-418
    in seeds 1-4, while with seed 0 it gets down to 0.026 and then falls back to the plateau,
    so for the GRU only its lowest 10-step mean (at most 0.026) is asserted. The RNN leaves
    the plateau at step 751-931 (seeds 0, 3, 4) or not within the 1000 (seeds 1, 2), at least
    409 steps after both gated cells of the same seed; with seed 4 it then solves the task
    too. On the plateau, at step 200, the GRU answers t = 0 right (accuracy 1.0) and the last
    10 steps at chance (0.494-0.502)."""
    exp = load_preset("parity-gru").experiment
    gru, losses = train(exp, 200)
    plateau, target = math.log(2), gru.task.target
    accuracy = accuracy_by_step(gru)
    on_plateau = outcome("parity-gru/gru/accuracy_at_200", {"t0": accuracy[0], "last_10": accuracy[-10:].mean()})
    curves = {"gru": np.concatenate([losses, more(gru, exp.steps - 200)]),
              "lstm": train(exp.replace(cell="lstm"), 600)[1], "rnn": train(exp.replace(cell="rnn"))[1]}
    seen = {cell: outcome(f"parity-gru/{cell}", {"leaves_plateau": first_step_below(losses, 0.9 * plateau),
                                                 "reaches_target": first_step_below(losses, target),
                                                 "lowest_10_step_mean": lowest_mean(losses)})
            for cell, losses in curves.items()}
    gru, lstm, rnn = seen["gru"], seen["lstm"], seen["rnn"]
    assert 150 <= gru["leaves_plateau"] <= 500 and 150 <= lstm["leaves_plateau"] <= 500, seen
    assert lstm["reaches_target"] <= 550 and gru["lowest_10_step_mean"] <= 0.1, seen
    assert rnn["leaves_plateau"] >= max(600, gru["leaves_plateau"] + 250, lstm["leaves_plateau"] + 250), seen
    assert on_plateau["t0"] >= 0.95 and on_plateau["last_10"] <= 0.6, on_plateau


@pytest.mark.slow
@pytest.mark.trained
def test_copy_lstm_drops_to_the_memoryless_plateau_and_stays_on_it():
    """copy-lstm's claim (about 12 s): the loss falls to the memoryless baseline within a
    few hundred steps and stays on it for the budget. Measured over seeds 0-4, 1 thread:
    within 5% of the baseline at step 103-120; after that the lowest 100-step mean is
    0.978-1.001 times the baseline (seed 4 the lowest)."""
    trainer, losses = train(load_preset("copy-lstm").experiment)
    baseline = trainer.task.baseline
    reached = outcome("copy-lstm/reaches_plateau", first_step_below(losses, 1.05 * baseline))
    after = int(min(reached, len(losses) - 100))
    lowest = outcome("copy-lstm/lowest_100_step_mean_over_baseline", lowest_mean(losses[after:], 100) / baseline)
    assert reached <= 1000 and lowest >= 0.9, (reached, lowest)


LONG = "exact_match_len_12-16"  # by_length=(11,): 3-11 and 12-16 characters


def held_out(trainer) -> dict[str, float]:
    """Held-out exact match, overall and on strings of 3-11 and 12-16 characters."""
    return trainer.task.evaluate(trainer.model, by_length=(11,))


@pytest.fixture(scope="module")
def sort_run():
    """sort-attention trained for its budget (about 70 s on one thread), evaluated at step
    1500 and at the end: (trainer, losses, {step: held-out result})."""
    exp = load_preset("sort-attention").experiment
    trainer, losses, results = train(exp, 0)[0], [], {}
    for step in (1500, 3000, exp.steps):
        losses.append(more(trainer, step - trainer.step_count))
        results[step] = held_out(trainer)
    return trainer, np.concatenate(losses), results


NO_ATTENTION_STEPS = 3000  # where the contrasts are widest; by 4000 some seeds catch up on sorting


@pytest.fixture(scope="module")
def no_attention_runs():
    """sort-attention with attention off, on sorting and on reversal, with the same seed, for
    3000 of its 4000 steps (about 65 s each on one thread): {task: held-out result}."""
    exp = load_preset("sort-attention").experiment.replace(attention="none")
    return {task: outcome(f"sort-attention/no_attention/{task}_at_{NO_ATTENTION_STEPS}",
                          held_out(train(exp.replace(task=task), NO_ATTENTION_STEPS)[0]))
            for task in ("sort", "reverse")}


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.timeout(1200)  # trains minutes of CPU; a busy machine takes longer
def test_sort_attention_reaches_high_exact_match_and_leads_no_attention_on_long_strings(
        sort_run, no_attention_runs):
    """Measured over seeds 0-2, 1 thread: the loss is below the target at step 814-924;
    held-out exact match 0.78-0.82 at step 1500 and 0.918-0.965 at the end, 0.832-0.931 on
    strings of 12-16 characters (another CPU gave 0.867 there). At step 3000 attention scores
    0.78-0.85 on those, no attention 0.27-0.36: a lead of 0.42-0.52. (At the end the lead is
    0.22-0.44: without attention seed 2 reaches 0.71, so the end is not where to compare.)"""
    trainer, losses, results = sort_run
    reached = outcome("sort-attention/reaches_target", first_step_below(losses, trainer.task.target))
    _, middle, end = (outcome(f"sort-attention/at_{step}", result) for step, result in results.items())
    lead = outcome("sort-attention/long_lead_over_no_attention_at_3000",
                   middle[LONG] - no_attention_runs["sort"][LONG])
    assert 500 <= reached <= 2000, reached
    assert end["exact_match"] >= 0.85 and end[LONG] >= 0.7, end
    assert lead >= 0.25, (middle, no_attention_runs["sort"])


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.timeout(1200)  # trains minutes of CPU; a busy machine takes longer
def test_sort_attention_looks_where_each_character_sits(sort_run):
    """Teacher-forced on the held-out split, the most attended source position holds the
    character being written for most outputs; on the probe, repeated t's share their weight.
    Measured over seeds 0-1, 1 thread: the argmax holds it for 0.889-0.894 of the outputs;
    the probe comes out sorted, its 2, 4 and a fetched from the only positions holding them,
    and each t puts at least 0.20-0.22 of its weight on every t."""
    trainer = sort_run[0]
    task, model = trainer.task, trainer.model
    batch = task.batch(task.heldout)
    with torch.no_grad():
        _, weights = model(batch.src, batch.lengths, batch.tgt_in)  # [U, B, S]
    fetched = batch.src.T.gather(1, weights.argmax(-1).T).T  # [U, B] source id at the argmax
    written = (batch.tgt_out != PAD) & (batch.tgt_out != EOS)
    share = outcome("sort-attention/argmax_holds_the_character", (fetched == batch.tgt_out)[written].float().mean())

    result = decode_text(trainer, task.probe_text)  # "attention42"
    source, best = result.source, result.hypotheses[0]
    fetched_from = [int(j) for j in result.attention.argmax(1)[:3]]  # the "2", "4" and "a"
    t_positions = [j for j, c in enumerate(source) if c == "t"]
    t_rows = [row for row, token in zip(result.attention, best.tokens, strict=True) if token == "t"]
    probe = outcome("sort-attention/probe", {
        "sorted": best.text == "".join(sorted(source)),
        "first_three_fetched_where_they_sit": fetched_from == [10, 9, 0],
        "least_weight_of_a_t_on_a_t": min((row[t_positions].min() for row in t_rows), default=0.0)})
    assert share >= 0.8, share
    assert probe["sorted"] and probe["first_three_fetched_where_they_sit"], (best.text, fetched_from)
    assert probe["least_weight_of_a_t_on_a_t"] > 0.1, t_rows
    assert f'"{source}" -> "{best.text}"' in load_preset("sort-attention").description


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.timeout(1200)  # trains minutes of CPU; a busy machine takes longer
def test_sort_without_attention_suffers_less_on_long_strings_than_reversal(no_attention_runs):
    """Both with attention off and the same seed, at step 3000; sorting needs only the
    counts of each character, reversal their order. Measured over seeds 0-2, 1 thread: on
    strings of 12-16 characters sorting scores 0.27-0.36, reversal 0.028-0.078, a margin of
    0.22-0.32 (at step 4000: 0.48-0.71 against 0.12-0.20)."""
    sort, reverse = no_attention_runs["sort"], no_attention_runs["reverse"]
    margin = outcome("sort-attention/no_attention/long_margin", sort[LONG] - reverse[LONG])
    assert margin >= 0.12 and reverse[LONG] <= 0.2, (sort, reverse)
