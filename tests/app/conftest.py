"""Fixtures for the app tests: tiny experiments (fast on 2 cores), real trainer records, a window."""

from __future__ import annotations

import pytest

from core.config import Experiment


def tiny(**changes) -> Experiment:
    """A small experiment: a step takes milliseconds."""
    base = dict(task="adding", cell="lstm", hidden_size=8, seq_len=12, batch_size=8, lr=0.01, steps=100000)
    base.update(changes)
    return Experiment(**base)


@pytest.fixture
def tiny_experiment() -> Experiment:
    return tiny()


def train(experiment: Experiment, steps: int):
    """(run info, records): the build snapshot and ``steps`` records, the last fully instrumented."""
    from app.training.engine import make_trainer, run_info
    from app.window.offscreen import train_records

    trainer = make_trainer(experiment)
    return run_info(trainer), train_records(trainer, steps)


def fed(qtbot, name: str, run, *, theme: str = "light", size: tuple[int, int] = (800, 600), show: bool = False):
    """The real panel ``name``, sized, reset for ``run``'s info, fed its records and drawn."""
    from app.panels import panel_class
    from app.theme import get_theme

    info, records = run
    panel = panel_class(name)(get_theme(theme))
    qtbot.addWidget(panel)
    panel.resize(*size)
    if show:
        panel.show()
    panel.reset(info)
    for record in records:
        panel.update_record(record)
    assert panel.refresh()  # new data: it draws
    return panel


@pytest.fixture(scope="session")
def lstm_run():
    return train(tiny(), 6)


@pytest.fixture(scope="session")
def gru_padding_run():
    return train(tiny(task="padding", cell="gru", masking="on"), 4)


@pytest.fixture(scope="session")
def rnn_run():
    return train(tiny(cell="rnn", num_layers=2, tbptt=4), 4)


@pytest.fixture
def window(qtbot, tiny_experiment):
    """The real main window, shown offscreen, with its worker built and the first probe drawn."""
    from app.window.main_window import MainWindow

    w = MainWindow(experiment=tiny_experiment)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.run_info is not None, timeout=60_000)
    qtbot.waitUntil(lambda: w.panels["hidden"].probe is not None, timeout=30_000)
    yield w
    w.close()


def ask(qtbot, controller, fn):
    """fn(trainer) in the training process, as the panels' jobs run; returns its value."""
    answers = []
    controller.call(fn, answers.append)
    qtbot.waitUntil(lambda: bool(answers), timeout=60_000)
    assert answers[0].failure is None, answers[0].failure
    return answers[0].value
