"""The cell equations as the diagram shows them, and what each value at (unit, t) is.

Equations are torch.nn's (see core.models.recurrent), written in the course notes' notation:
r = input size, s = hidden size, t = output size; a subscript t is the time step.
``cell_values`` reads one unit at one time step out of a ProbeRecord (plain lookups and a
few scalar products, so the panel holds no numerics).
"""

from __future__ import annotations

import math

from app.theme import LEVELS
from core.names import TANH_GATES
from core.records import ProbeRecord

_H_PREV = "<i>h</i><sub>t−1</sub>"


def _affine(gate: str, fn: str, symbol: str) -> str:
    """e.g. 'f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)' in HTML."""
    return (f"<i>{symbol}</i><sub>t</sub> = {fn}(<i>W</i><sub>i{symbol}</sub><i>x</i><sub>t</sub> + "
            f"<i>b</i><sub>i{symbol}</sub> + <i>W</i><sub>h{symbol}</sub>{_H_PREV} + <i>b</i><sub>h{symbol}</sub>)")


# kind -> rows (key, name, equation html), in torch.nn's gate order, then the states.
EQUATIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "lstm": (
        ("input", "input gate", _affine("input", "σ", "i")),
        ("forget", "forget gate", _affine("forget", "σ", "f")),
        ("cell", "cell candidate", _affine("cell", "tanh", "g")),
        ("output", "output gate", _affine("output", "σ", "o")),
        ("c", "cell state", "<i>c</i><sub>t</sub> = <i>f</i><sub>t</sub> ⊙ <i>c</i><sub>t−1</sub> + "
                            "<i>i</i><sub>t</sub> ⊙ <i>g</i><sub>t</sub>"),
        ("h", "hidden state", "<i>h</i><sub>t</sub> = <i>o</i><sub>t</sub> ⊙ tanh(<i>c</i><sub>t</sub>)"),
    ),
    "gru": (
        ("reset", "reset gate", _affine("reset", "σ", "r")),
        ("update", "update gate", _affine("update", "σ", "z")),
        ("new", "new gate", "<i>n</i><sub>t</sub> = tanh(<i>W</i><sub>in</sub><i>x</i><sub>t</sub> + "
                            "<i>b</i><sub>in</sub> + <i>r</i><sub>t</sub> ⊙ (<i>W</i><sub>hn</sub>"
                            f"{_H_PREV} + <i>b</i><sub>hn</sub>))"),
        ("h", "hidden state", "<i>h</i><sub>t</sub> = (1 − <i>z</i><sub>t</sub>) ⊙ <i>n</i><sub>t</sub> + "
                              f"<i>z</i><sub>t</sub> ⊙ {_H_PREV}"),
    ),
    "rnn": (
        ("h", "hidden state", "<i>h</i><sub>t</sub> = tanh(<i>W</i><sub>ih</sub><i>x</i><sub>t</sub> + "
                              "<i>b</i><sub>ih</sub> + <i>W</i><sub>hh</sub>" + _H_PREV + " + <i>b</i><sub>hh</sub>)"),
    ),
}

_BLOCKS = {"lstm": "4", "gru": "3", "rnn": ""}


def notation_html(kind: str, sizes: tuple[int, int] | None = None) -> str:
    """The notation line under the equations, with the run's sizes when known."""
    r, s = sizes if sizes else ("r", "s")
    sized = f" (here r = {r}, s = {s})" if sizes else ""
    k = _BLOCKS[kind]
    stacked = f" (torch.nn stacks them: weight_ih ∈ ℝ<sup>{k}s×r</sup>)" if k else ""
    weights = "<i>W</i><sub>i·</sub>" if k else "<i>W</i><sub>ih</sub>"
    recurrent = "<i>W</i><sub>h·</sub>" if k else "<i>W</i><sub>hh</sub>"
    return (f"<b>Notation</b> (course notes): r = input size, s = hidden size, t = output size{sized}; "
            f"a subscript t is the time step.<br>"
            f"<i>x</i><sub>t</sub> ∈ ℝ<sup>r</sup>, <i>h</i><sub>t</sub> ∈ ℝ<sup>s</sup>; "
            f"{weights} ∈ ℝ<sup>s×r</sup>, {recurrent} ∈ ℝ<sup>s×s</sup>, <i>b</i> ∈ ℝ<sup>s</sup>"
            f"{stacked}; σ = logistic sigmoid, ⊙ = elementwise product; <i>h</i><sub>0</sub> = "
            f"{'<i>c</i><sub>0</sub> = ' if kind == 'lstm' else ''}0.")

def levels_of(key: str) -> tuple[float, float]:
    """Colour levels of a value: [0, 1] for sigmoid gates, [-1, 1] for tanh values and h,
    the cell-state levels for c (the same fixed levels as the gates panel)."""
    if key in ("c", "c_prev", "c_sum", "fc", "ig"):
        return LEVELS["cell_state"]
    if key in ("input", "forget", "output", "reset", "update", "one_minus_z"):
        return LEVELS["unit"]
    return LEVELS["signed"]


def cell_values(probe: ProbeRecord, layer: int, unit: int, t: int) -> dict[str, float]:
    """Every value of the diagram for one unit at time step t of one layer.

    Keys: the gate names, 'h' and 'h_prev' (h_{t-1}, 0 at t = 0), and for lstm 'c', 'c_prev'.
    """
    values = {gate: float(v[t, unit]) for gate, v in probe.gates[layer].items()}
    hidden = probe.hidden[layer]
    values["h"] = float(hidden[t, unit])
    values["h_prev"] = float(hidden[t - 1, unit]) if t > 0 else 0.0
    if probe.cell is not None:
        cell = probe.cell[layer]
        values["c"] = float(cell[t, unit])
        values["c_prev"] = float(cell[t - 1, unit]) if t > 0 else 0.0
    return values


def op_notes(kind: str, v: dict[str, float]) -> dict[str, str]:
    """What flows out of each pointwise operation, e.g. 'f ⊙ c_{t-1} = 0.31' (HTML)."""
    return {key: html.replace("= -", "= −") for key, html in _notes(kind, v).items()}


def _notes(kind: str, v: dict[str, float]) -> dict[str, str]:
    if kind == "lstm" and "forget" in v:
        return {"fc": f"<i>f</i>⊙<i>c</i><sub>t−1</sub> = {v['forget'] * v['c_prev']:+.3f}",
                "ig": f"<i>i</i>⊙<i>g</i> = {v['input'] * v['cell']:+.3f}",
                "tanh_c": f"tanh(<i>c</i><sub>t</sub>) = {math.tanh(v['c']):+.3f}"}
    if kind == "gru" and "update" in v:
        z = v["update"]
        return {"zh": f"<i>z</i>⊙{_H_PREV} = {z * v['h_prev']:+.3f}",
                "one_minus_z": f"1 − <i>z</i> = {1 - z:.3f}",
                "zn": f"(1 − <i>z</i>)⊙<i>n</i> = {(1 - z) * v['new']:+.3f}"}
    return {}


def is_signed(key: str) -> bool:
    return key in TANH_GATES or levels_of(key)[0] < 0
