"""After Pause every visible panel shows the step the run stopped at, and a panel whose
instrument could not be computed says so (training goes on)."""

from __future__ import annotations

import re

from tests.app.conftest import tiny

STEP = re.compile(r"\bstep (\d[\d,]*)\b")


def shown_steps(window) -> dict[str, int]:
    """The step each visible panel's note says it shows (as a user reads the headers)."""
    out = {}
    for panel in window.visible_panels():
        found = STEP.search(panel.note.text())
        if found:
            out[panel.name] = int(found.group(1).replace(",", ""))
    return out


def test_after_pause_every_panel_shows_the_last_step(qtbot, window):
    """Six seconds after Pause the panels showed four different steps (Spectrum 1813,
    Gradients 2161, Hidden 2166, status bar 2170): instruments are sampled while running."""
    window.transport.run_action.trigger()
    qtbot.waitUntil(lambda: window.state == "running", timeout=10_000)
    qtbot.waitUntil(lambda: window.last_step is not None and window.last_step.step >= 150, timeout=60_000)
    window.transport.run_action.trigger()
    qtbot.waitUntil(lambda: window.state == "paused", timeout=10_000)
    last = window.last_step.step

    def agreed():
        steps = shown_steps(window)
        assert set(steps) >= {"hidden", "gates", "gradients", "spectrum"}, steps
        assert set(steps.values()) == {last}, (last, steps)
        assert window.status.step_label.text() == f"step {last:,}"

    qtbot.waitUntil(agreed, timeout=30_000)
    # A panel brought to the front later (a tab) catches up too.
    cell = window.docks["cell"]
    cell.raise_()
    qtbot.waitUntil(lambda: shown_steps(window).get("cell") == last, timeout=30_000)


def test_an_instrument_that_fails_is_said_in_its_panel_and_training_goes_on(qtbot):
    """linalg.eigh failing on weights training produced opened 'Something went wrong' and
    stopped training; now the panel says what is not available, at which step."""
    from app.window.main_window import MainWindow
    from tests.app.remote import failing_spectrum

    window = MainWindow(experiment=tiny(), make_trainer=failing_spectrum)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.run_info is not None and window.state == "idle", timeout=60_000)
    window.step(3)
    qtbot.waitUntil(lambda: window.last_step is not None and window.last_step.step == 3
                    and window.state == "paused", timeout=30_000)
    spectrum = window.panels["spectrum"]
    qtbot.waitUntil(lambda: "spectrum not available at step 3: RuntimeError: linalg.eigh" in spectrum.note.text(),
                    timeout=30_000)
    assert window.error_box is None  # not a bug box: the run is fine
    window.step(2)  # training goes on, and so does the note
    qtbot.waitUntil(lambda: window.last_step.step == 5 and window.state == "paused", timeout=30_000)
    qtbot.waitUntil(lambda: "not available at step 5" in spectrum.note.text(), timeout=30_000)
    assert window.panels["hidden"].note.text().startswith("step 5")
    window.close()
