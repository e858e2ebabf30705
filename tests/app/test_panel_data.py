"""What each panel draws is the record it was fed: curve y-values, image pixels and bar
lengths, for every layer, unit, gate and time-cursor selection.

Exported arrays are the record's own copies, so checking them cannot catch a panel that
draws the wrong layer; these tests read the plot items themselves (``ImageItem.image``,
``PlotDataItem.getData()``, ``BarGraphItem.opts``) and compare them with the record's
arrays, computed here without the panels' helpers.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.names import GATES, TANH_GATES
from core.records import GradientRecord, ProbeRecord, SpectrumRecord, StepRecord
from tests.app.conftest import fed, tiny, train


@pytest.fixture(scope="module")
def lstm2_run():
    return train(tiny(num_layers=2, hidden_size=6, seq_len=9), 3)


@pytest.fixture(scope="module")
def gru2_padding_run():
    return train(tiny(task="padding", cell="gru", num_layers=2, hidden_size=5, seq_len=10, masking="on"), 3)


def last(records, kind):
    """The last record of ``kind`` in a run, attached to a StepRecord or lone."""
    found = None
    for r in records:
        for item in ((r, r.probe, r.gradients, r.spectrum) if isinstance(r, StepRecord) else (r,)):
            if isinstance(item, kind):
                found = item
    return found


def select_layer(panel, layer: int) -> None:
    panel.layer.setCurrentIndex(layer)  # redraws at once (the combo's signal)
    assert panel.layer.currentIndex() == layer


def curve_y(item) -> np.ndarray:
    return np.asarray(item.getData()[1] if item.yData is None else item.yData)


@pytest.mark.parametrize("run_name", ["lstm2_run", "gru2_padding_run"])
def test_hidden_panel_draws_the_chosen_layers_states_and_units(qtbot, request, run_name):
    info, records = request.getfixturevalue(run_name)
    probe = last(records, ProbeRecord)
    panel = fed(qtbot, "hidden", (info, records))
    assert len(probe.hidden) == 2 and not np.allclose(probe.hidden[0], probe.hidden[1])
    for layer in (0, 1):
        select_layer(panel, layer)
        np.testing.assert_array_equal(panel.heatmap.image.image, probe.hidden[layer].T)  # units x time
        for units in ([0], [3, 1], [4, 2, 0]):
            panel.select_unit(units[0])
            for u in units[1:]:
                panel.select_unit(u, add=True)
            assert panel.units == units
            for trace, u in zip(panel.traces, units, strict=False):
                assert trace.isVisible()
                np.testing.assert_array_equal(curve_y(trace), probe.hidden[layer][:, u])
                np.testing.assert_array_equal(trace.getData()[0], np.arange(probe.T))
            if probe.cell is not None:
                for trace, u in zip(panel.cell_traces, units, strict=False):
                    np.testing.assert_array_equal(curve_y(trace), probe.cell[layer][:, u])
            assert [row.getRegion() for row in panel.rows[:len(units)]] == [(u - 0.5, u + 0.5) for u in units]
    if probe.unmasked_hidden is not None:  # masking off shows the unmasked run of the same layer
        panel.unmasked.setChecked(True)
        for layer in (0, 1):
            select_layer(panel, layer)
            np.testing.assert_array_equal(panel.heatmap.image.image, probe.unmasked_hidden[layer].T)


def shut_and_open(values: np.ndarray, valid: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, fraction of real steps below 0.1 and above 0.9 (tanh gates read on (x+1)/2)."""
    v = (values + 1) / 2 if signed else values
    v = v[valid]
    return (v < 0.1).sum(0) / len(v), (v > 0.9).sum(0) / len(v)


@pytest.mark.parametrize("run_name", ["lstm2_run", "gru2_padding_run"])
def test_gates_panel_draws_every_gate_of_the_chosen_layer_and_its_saturation(qtbot, request, run_name):
    info, records = request.getfixturevalue(run_name)
    probe = last(records, ProbeRecord)
    panel = fed(qtbot, "gates", (info, records))
    kind = probe.kind
    assert panel.gate_names == (*GATES[kind], *(("c",) if kind == "lstm" else ()))
    for layer in (0, 1):
        select_layer(panel, layer)
        for row in panel.rows:
            values = probe.cell[layer] if row.gate == "c" else probe.gates[layer][row.gate]
            np.testing.assert_array_equal(row.heatmap.image.image, values.T)
            if row.gate == "c":
                continue
            shut, open_ = shut_and_open(values, probe.valid, row.gate in TANH_GATES)
            np.testing.assert_allclose(row.shut.opts["width"], shut)
            np.testing.assert_allclose(row.shut.opts["x0"], -shut)
            np.testing.assert_allclose(row.open.opts["width"], open_)
            np.testing.assert_array_equal(row.shut.opts["y"], np.arange(values.shape[1]))


def test_gradients_panel_draws_each_layers_norms_and_the_top_layers_history(qtbot, lstm2_run, rnn_run):
    for info, records in (lstm2_run, rnn_run):
        panel = fed(qtbot, "gradients", (info, records))
        grads = [r for r in (getattr(r, "gradients", r) for r in records) if isinstance(r, GradientRecord)]
        record = grads[-1]
        assert len(panel.curves) == len(record.norms) == 2
        for curve, norms in zip(panel.curves, record.norms, strict=True):
            np.testing.assert_allclose(curve_y(curve), np.where(norms > 0, norms, np.nan))
        # one history row per gradient snapshot, oldest first: log10 of the top layer's norms
        history = panel.history.image.image  # [snapshots, T]
        with np.errstate(divide="ignore"):
            expected = np.stack([np.log10(g.norms[-1]) for g in grads])
        finite = np.isfinite(history)
        assert history.shape == expected.shape and finite.any()
        np.testing.assert_array_equal(finite, np.isfinite(expected))
        np.testing.assert_allclose(history[finite], expected[finite], rtol=1e-6)
        np.testing.assert_array_equal(panel.snapshots.steps(), [g.step for g in grads])


def test_spectrum_panel_draws_the_chosen_layers_singular_values_and_every_radius(qtbot, lstm2_run, rnn_run):
    for info, records in (lstm2_run, rnn_run):
        panel = fed(qtbot, "spectrum", (info, records))
        spectra = [r for r in (getattr(r, "spectrum", r) for r in records) if isinstance(r, SpectrumRecord)]
        record = spectra[-1]
        for layer in (0, 1):
            select_layer(panel, layer)
            blocks = {k.split("/", 1)[1]: v for k, v in record.blocks.items() if k.startswith(f"layer{layer}/")}
            shown = [c for c in panel.sv_curves if c.isVisible()]
            wanted = list(blocks.values()) or [record.singular_values[layer]]
            assert len(shown) == len(wanted)
            for curve, values in zip(shown, wanted, strict=True):
                np.testing.assert_array_equal(curve_y(curve), values)
                np.testing.assert_array_equal(curve.getData()[0], np.arange(1, len(values) + 1))
        steps = sorted({s.step for s in spectra})
        for i, curve in enumerate(panel.radius_curves):
            by_step = {s.step: s.radius[i] for s in spectra}
            np.testing.assert_array_equal(curve.xData, steps)
            np.testing.assert_allclose(curve.yData, [by_step[s] for s in steps])


def test_training_panel_draws_every_steps_loss_and_gradient_norm(qtbot, lstm2_run):
    info, records = lstm2_run
    steps = [r for r in records if isinstance(r, StepRecord)]
    panel = fed(qtbot, "training", lstm2_run)
    np.testing.assert_array_equal(panel.loss_curve.xData, [r.step for r in steps])
    for box, curve, key in ((panel.log_loss, panel.loss_curve, "loss"),
                            (panel.log_grad, panel.grad_curve, "grad_norm")):
        for log in (True, False):
            box.setChecked(log)
            np.testing.assert_allclose(curve.yData, [getattr(r, key) for r in steps], rtol=1e-12)


@pytest.mark.parametrize("run_name", ["lstm2_run", "gru2_padding_run"])
def test_cell_panel_shows_the_chosen_layer_unit_and_time_step(qtbot, request, run_name):
    info, records = request.getfixturevalue(run_name)
    probe = last(records, ProbeRecord)
    panel = fed(qtbot, "cell", (info, records))
    for layer in (0, 1):
        select_layer(panel, layer)
        for unit, t in ((0, 0), (2, 3), (4, probe.T - 1)):
            panel.unit.setValue(unit)
            panel.set_time_cursor(t)
            panel.refresh(force=True)
            values = panel.values
            for gate in GATES[probe.kind]:
                assert values[gate] == pytest.approx(float(probe.gates[layer][gate][t, unit]), abs=0)
            assert values["h"] == float(probe.hidden[layer][t, unit])
            assert values["h_prev"] == (float(probe.hidden[layer][t - 1, unit]) if t else 0.0)
            if probe.cell is not None:
                assert values["c"] == float(probe.cell[layer][t, unit])
            key = panel.vector_key
            vector = probe.gates[layer][key] if key in probe.gates[layer] else probe.hidden[layer]
            np.testing.assert_array_equal(panel.bars.opts["height"], vector[t])


def test_exports_hold_the_records_numbers(qtbot, lstm2_run):
    """Export (CSV/NPZ) writes what the panels were fed, for every layer."""
    info, records = lstm2_run
    steps = [r for r in records if isinstance(r, StepRecord)]
    probe, grads, spectrum = last(records, ProbeRecord), last(records, GradientRecord), last(records, SpectrumRecord)
    data = {name: fed(qtbot, name, lstm2_run).export_data() for name in ("training", "hidden", "gates",
                                                                         "gradients", "spectrum")}
    np.testing.assert_array_equal(data["training"]["loss"], [r.loss for r in steps])
    np.testing.assert_array_equal(data["training"]["grad_norm"], [r.grad_norm for r in steps])
    for layer in (0, 1):
        np.testing.assert_array_equal(data["hidden"][f"hidden_l{layer}"], probe.hidden[layer])
        np.testing.assert_array_equal(data["hidden"][f"cell_l{layer}"], probe.cell[layer])
        for gate in GATES["lstm"]:
            np.testing.assert_array_equal(data["gates"][f"{gate}_l{layer}"], probe.gates[layer][gate])
        np.testing.assert_array_equal(data["gradients"][f"norm_l{layer}"], grads.norms[layer])
        np.testing.assert_array_equal(data["spectrum"][f"singular_values_l{layer}"], spectrum.singular_values[layer])
