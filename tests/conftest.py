"""Shared test set-up: offscreen Qt, a private data directory, strict Qt logging, leak checks.

QT_QPA_PLATFORM must be set before any Qt module is imported, hence at the top here.
"""

from __future__ import annotations

import os
import time
import traceback
import weakref

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from tests import outcomes  # noqa: E402

# Harmless messages of the offscreen platform plugin.
QT_LOG_IGNORE = (r"This plugin does not support propagateSizeHints\(\)",
                 r"This plugin does not support raise\(\)",
                 r"This plugin does not support grabbing the keyboard")  # an open menu or list grabs it


def pytest_configure(config):
    """One torch thread unless RNN_EXPLORER_TEST_THREADS says otherwise (tests/outcomes.py),
    as the headless commands use (core.cli.runtime): on a busy 2-core machine two OpenMP threads
    waiting on each other make training 10x slower, and the slow tests' budgets were
    measured with one."""
    import torch

    try:  # a bad value stops the run here, not in the first trained test
        outcomes.seed_shift()
        threads = outcomes.threads()
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    torch.set_num_threads(threads)


def pytest_report_header(config):
    return f"rnn-explorer: {outcomes.environment()}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report says what it ran with: a trained outcome may differ with any
    of these (rerun with the same RNN_EXPLORER_TEST_SEED and _THREADS to reproduce). With
    RNN_EXPLORER_OUTCOMES set, a trained test's set-up and call wall times go there too."""
    report = yield
    if report.failed:
        report.sections.append(("rnn-explorer environment", outcomes.environment()))
    if report.when != "teardown" and item.get_closest_marker("trained"):
        outcomes.append(f"seconds/{report.when}/{item.nodeid}", report.duration, item.nodeid)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With RNN_EXPLORER_OUTCOMES set, a trained test's CPU seconds (set-up, call and
    teardown; its module fixtures' training included): its cost on a busy machine, where
    wall time also counts the others' processes."""
    start = time.process_time()
    result = yield
    if item.get_closest_marker("trained"):
        outcomes.append(f"cpu_seconds/{item.nodeid}", time.process_time() - start, item.nodeid)
    return result


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory, monkeypatch):
    """Logs and autosaves go to a temporary directory, never the user's."""
    monkeypatch.setenv("RNN_EXPLORER_HOME", str(tmp_path_factory.mktemp("home")))


def pytest_collection_modifyitems(config, items):
    """Qt warnings fail the app tests (pytest-qt reads these markers)."""
    for item in items:
        if "tests/app" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.qt_log_level_fail("WARNING"))
            item.add_marker(pytest.mark.qt_log_ignore(*QT_LOG_IGNORE))


@pytest.fixture(autouse=True)
def _no_leaked_qthreads(request):
    """Fail a test that leaves a QThread or a child process running (napari's fixture, simplified).

    Every QThread started during the test is remembered with where it was started; at the
    end each must have finished.
    """
    if "tests/app" not in str(request.node.fspath).replace(os.sep, "/"):
        yield
        return
    from PySide6.QtCore import QThread

    started: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    original = QThread.start

    def start(self, *args, **kwargs):
        started[self] = "".join(traceback.format_stack(limit=8)[:-1])
        return original(self, *args, **kwargs)

    QThread.start = start
    try:
        yield
    finally:
        QThread.start = original
    leaked = []
    for thread, where in list(started.items()):
        try:
            if thread.isRunning():
                leaked.append(where)
        except RuntimeError:  # the C++ object is gone: it cannot be running
            pass
    if leaked:
        pytest.fail(f"{len(leaked)} QThread(s) still running after the test; started at:\n" + "\n".join(leaked))
    import multiprocessing

    children = multiprocessing.active_children()  # the training processes (app.training.controller)
    for child in children:
        child.kill()
    if children:
        pytest.fail(f"{len(children)} process(es) still running after the test: {children}")
