"""Interventions ("what if?"): edits of units and gates inside the recurrence, as plain data.

An intervention changes one value the recurrence computes, for some units, over some time
steps, and the edited value feeds everything after it (the rest of the step and the next
step). ``core.models.interventions`` applies a list of them; this module only says what they
are, reads them from text or JSON and checks them against a model. No torch here: the
window builds and shows them, the training process applies them, sessions store them.

Fields (text form ``gate=forget,layer=0,units=3,t=10:,op=set,value=0``)::

    target  hidden (h_t), cell (the LSTM cell state c_t) or gate; implied by gate=...
    layer   the recurrent layer, 0 = the one reading the input (default 0)
    units   unit indices: 3 | 3;5;9 | 0-7 (inclusive) | all (default all); in the text form
            a bare number after units=3 continues the list: units=3,5,t=...
    gate    for target gate: the cell kind's gates (core.names.GATES): lstm input, forget,
            cell (the candidate g), output; gru reset, update, new. (target cell is c_t, not g.)
    t       10: (from step 10 on), 10:20 (steps 10..19), 10 (step 10 only), : or absent (all)
    op      set (to value), add (value), scale (by value), zero
    value   a finite number (not used by zero)

Edits of the same value apply in list order. Each op is affine, x -> a * x + b, so a list
compiles to one multiply and one add per edited value and step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from core.errors import UserError
from core.names import GATE_SYMBOLS, GATES

TARGETS = ("hidden", "cell", "gate")
OPS = ("set", "add", "scale", "zero")
FIELD_NAMES = ("target", "layer", "units", "gate", "t", "op", "value")
MAX_UNITS_LISTED = 100_000  # a units list longer than any layer is refused before it is built
MAX_INTERVENTIONS = 256


class InterventionError(UserError, ValueError):
    """An intervention cannot apply; ``field`` names the field at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Intervention:
    """One edit. ``units`` None = all units; ``stop`` None = to the end of the sequence
    (exclusive otherwise); ``enabled`` False keeps it listed but not applied."""

    target: str = "hidden"
    layer: int = 0
    units: tuple[int, ...] | None = None
    gate: str | None = None
    start: int = 0
    stop: int | None = None
    op: str = "zero"
    value: float = 0.0
    enabled: bool = True

    @property
    def key(self) -> str:
        """The value edited, as the recurrence names it: a gate name, "h" or "c"."""
        return self.gate if self.target == "gate" else {"hidden": "h", "cell": "c"}[self.target]

    def applies_at(self, t: int) -> bool:
        return self.start <= t and (self.stop is None or t < self.stop)

    def affine(self) -> tuple[float, float]:
        """(a, b) with edited = a * x + b."""
        return {"set": (0.0, self.value), "zero": (0.0, 0.0), "add": (1.0, self.value),
                "scale": (self.value, 0.0)}[self.op]

    # -- text ------------------------------------------------------------------------------
    def text(self) -> str:
        """The text form, which ``parse_intervention`` reads back to an equal Intervention."""
        head = f"gate={self.gate}" if self.target == "gate" else f"target={self.target}"
        parts = [head, f"layer={self.layer}", f"units={units_text(self.units)}", f"t={self.t_text()}",
                 f"op={self.op}"]
        if self.op != "zero":
            parts.append(f"value={self.value:g}")
        return ",".join(parts)

    def t_text(self) -> str:
        if self.stop is not None and self.stop == self.start + 1:
            return str(self.start)
        return f"{self.start or ''}:{'' if self.stop is None else self.stop}" if self.start or self.stop else ":"

    def describe(self) -> str:
        """For people: 'forget gate f of unit 3 (layer 0) set to 0 from t = 10'."""
        if self.target == "gate":
            what = f"{self.gate} gate {GATE_SYMBOLS.get(self.gate, self.gate)}"
            if self.gate == "cell":
                what = "cell candidate g"
        else:
            what = "h" if self.target == "hidden" else "cell state c"
        units = "all units" if self.units is None else (
            f"unit {self.units[0]}" if len(self.units) == 1 else f"units {units_text(self.units)}")
        how = {"set": f"set to {self.value:g}", "zero": "zeroed", "add": f"plus {self.value:g}",
               "scale": f"scaled by {self.value:g}"}[self.op]
        if self.stop is None:
            when = "over the whole probe" if self.start == 0 else f"from t = {self.start}"
        elif self.stop == self.start + 1:
            when = f"at t = {self.start}"
        else:
            when = f"for t = {self.start}-{self.stop - 1}"
        return f"{what} of {units} (layer {self.layer}) {how} {when}"

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "layer": self.layer,
                "units": "all" if self.units is None else list(self.units), "gate": self.gate,
                "start": self.start, "stop": self.stop, "op": self.op, "value": self.value,
                "enabled": self.enabled}


def units_text(units: tuple[int, ...] | None) -> str:
    """'all', '3', '3;5' or runs as ranges, '0-7;9'."""
    if units is None:
        return "all"
    runs: list[list[int]] = []
    for u in units:
        if runs and u == runs[-1][1] + 1:
            runs[-1][1] = u
        else:
            runs.append([u, u])
    return ";".join(str(a) if a == b else f"{a}-{b}" if b > a + 1 else f"{a};{b}" for a, b in runs)


# ------------------------------------------------------------------------------ reading
def _error(spec: str, field: str, message: str) -> InterventionError:
    return InterventionError(field, f"intervention {spec!r}: {field}: {message}")


def _integer(text: str, spec: str, field: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise _error(spec, field, f"{text!r} is not a whole number >= 0")
    if len(text) > 9:
        raise _error(spec, field, f"{text} is far too large")
    return int(text)


def _units(text: str, spec: str) -> tuple[int, ...] | None:
    text = text.strip()
    if text == "all":
        return None
    units: set[int] = set()
    for part in text.replace(";", " ").split():
        lo, dash, hi = part.partition("-")
        a = _integer(lo, spec, "units")
        b = _integer(hi, spec, "units") if dash else a
        if b < a:
            raise _error(spec, "units", f"range {part} runs backwards")
        if len(units) + (b - a + 1) > MAX_UNITS_LISTED:
            raise _error(spec, "units", f"more than {MAX_UNITS_LISTED} units listed")
        units.update(range(a, b + 1))
    if not units:
        raise _error(spec, "units", "empty; give unit numbers (3, 3;5, 0-7) or all")
    return tuple(sorted(units))


def _time(text: str, spec: str) -> tuple[int, int | None]:
    text = text.strip()
    if ":" not in text:
        start = _integer(text, spec, "t")
        return start, start + 1
    a, _, b = text.partition(":")
    start = _integer(a, spec, "t") if a.strip() else 0
    stop = _integer(b, spec, "t") if b.strip() else None
    if stop is not None and stop <= start:
        raise _error(spec, "t", f"{text} selects no step (stop must be after start)")
    return start, stop


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _error(spec, "value", f"{text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise _error(spec, "value", f"{text.strip()} is not a finite number")
    return value


def parse_intervention(spec: str) -> Intervention:
    """Read the text form (see the module docstring). Checks the syntax and the choices that
    do not depend on a model; ``check_interventions`` checks the rest against one."""
    if not isinstance(spec, str) or not spec.strip():
        raise InterventionError("intervention", "an intervention must be text like "
                                "'gate=forget,layer=0,units=3,t=10:,op=set,value=0'")
    if len(spec) > 10_000:
        raise InterventionError("intervention", f"intervention text is {len(spec)} characters; at most 10000")
    fields: dict[str, str] = {}
    last = None
    for part in spec.split(","):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not eq:
            if last == "units":  # units=3,5,7: a bare number continues the list
                fields["units"] += ";" + part
                continue
            raise _error(spec, part.strip(), f"expected name=value; fields: {', '.join(FIELD_NAMES)}")
        name = "units" if name == "unit" else name
        if name not in FIELD_NAMES:
            raise _error(spec, name, f"unknown field; allowed: {', '.join(FIELD_NAMES)}")
        if name in fields:
            raise _error(spec, name, "given twice")
        fields[name] = value
        last = name
    gate = fields["gate"].strip().lower() if "gate" in fields else None
    target = fields.get("target", "gate" if gate is not None else "hidden").strip().lower()
    if target not in TARGETS:
        raise _error(spec, "target", f"{target!r} is not allowed; allowed: {', '.join(TARGETS)}")
    if target == "gate" and gate is None:
        raise _error(spec, "gate", "target gate needs gate=NAME (lstm: input, forget, cell, output; "
                                   "gru: reset, update, new)")
    if target != "gate" and gate is not None:
        raise _error(spec, "gate", f"applies to target gate only, not {target}")
    if "op" not in fields:
        raise _error(spec, "op", f"missing; allowed: {', '.join(OPS)}")
    op = fields["op"].strip().lower()
    if op not in OPS:
        raise _error(spec, "op", f"{op!r} is not allowed; allowed: {', '.join(OPS)}")
    if op == "zero":
        value = 0.0
        if "value" in fields and _number(fields["value"], spec) != 0.0:
            raise _error(spec, "value", "op zero takes no value (use op=set for another value)")
    elif "value" not in fields:
        raise _error(spec, "value", f"op {op} needs value=NUMBER")
    else:
        value = _number(fields["value"], spec)
    start, stop = _time(fields["t"], spec) if "t" in fields else (0, None)
    return Intervention(target=target, layer=_integer(fields.get("layer", "0"), spec, "layer"),
                        units=_units(fields["units"], spec) if "units" in fields else None, gate=gate,
                        start=start, stop=stop, op=op, value=value)


def intervention_from_dict(data: Any) -> Intervention:
    """Read ``Intervention.to_dict()`` output (e.g. from a session file, so nothing is trusted)."""
    if not isinstance(data, dict):
        raise InterventionError("intervention", "an intervention must be a table of fields")
    known = {"target", "layer", "units", "gate", "start", "stop", "op", "value", "enabled"}
    stray = sorted(set(data) - known)
    if stray:
        raise InterventionError(stray[0], f"intervention: unknown field {stray[0]!r}")

    def whole(name: str, value: Any, optional: bool = False) -> int | None:
        if optional and value is None:
            return None
        if type(value) is not int or not 0 <= value < 10**9:
            raise InterventionError(name, f"intervention: {name} must be a whole number >= 0; got {value!r:.40}")
        return value

    units = data.get("units", "all")
    if units != "all":
        if not isinstance(units, list) or not units or len(units) > MAX_UNITS_LISTED:
            raise InterventionError("units", "intervention: units must be 'all' or a list of unit numbers")
        units = tuple(sorted({whole("units", u) for u in units}))
    else:
        units = None
    value = data.get("value", 0.0)
    if type(value) not in (int, float) or not math.isfinite(value):
        raise InterventionError("value", f"intervention: value must be a finite number; got {value!r:.40}")
    enabled = data.get("enabled", True)
    if type(enabled) is not bool:
        raise InterventionError("enabled", "intervention: enabled must be true or false")
    gate = data.get("gate")
    if gate is not None and not isinstance(gate, str):
        raise InterventionError("gate", "intervention: gate must be a gate name")
    target, op = data.get("target"), data.get("op")
    if target not in TARGETS:
        raise InterventionError("target", f"intervention: target {target!r:.40} is not one of {', '.join(TARGETS)}")
    if op not in OPS:
        raise InterventionError("op", f"intervention: op {op!r:.40} is not one of {', '.join(OPS)}")
    if (target == "gate") != (gate is not None):
        raise InterventionError("gate", "intervention: gate is given exactly when target is gate")
    start, stop = whole("start", data.get("start", 0)), whole("stop", data.get("stop"), optional=True)
    if stop is not None and stop <= start:
        raise InterventionError("t", "intervention: stop must be after start")
    return Intervention(target=target, layer=whole("layer", data.get("layer", 0)), units=units, gate=gate,
                        start=start, stop=stop, op=op, value=0.0 if op == "zero" else float(value),
                        enabled=enabled)


# ------------------------------------------------------------------------------ checking
def check_intervention(edit: Intervention, kind: str, num_layers: int, hidden_size: int,
                       seq_len: int | None) -> Intervention:
    """``edit`` if it applies to a ``kind`` stack of ``num_layers`` x ``hidden_size`` on a
    sequence of ``seq_len`` steps (None: any length); else InterventionError naming the field."""
    spec = edit.text()
    if edit.target == "gate" and edit.gate not in GATES[kind]:
        allowed = ", ".join(GATES[kind]) if GATES[kind] else "none (a plain RNN has no gates; use target=hidden)"
        raise _error(spec, "gate", f"{edit.gate!r} is not a gate of {kind}; allowed: {allowed}")
    if edit.target == "cell" and kind != "lstm":
        raise _error(spec, "target", f"cell (the cell state c_t) exists in lstm only; {kind} allows hidden"
                     + (", gate" if GATES[kind] else ""))
    if not 0 <= edit.layer < num_layers:
        raise _error(spec, "layer", f"{edit.layer} is out of range; allowed 0 to {num_layers - 1}")
    if edit.units is not None and edit.units[-1] >= hidden_size:
        raise _error(spec, "units", f"unit {edit.units[-1]} is out of range; allowed 0 to {hidden_size - 1} or all")
    if seq_len is not None:
        if edit.start >= seq_len:
            raise _error(spec, "t", f"{edit.start} is beyond the sequence (T = {seq_len}; steps 0 to {seq_len - 1})")
        if edit.stop is not None and edit.stop > seq_len:
            raise _error(spec, "t", f"stop {edit.stop} is beyond the sequence (T = {seq_len}; at most {seq_len})")
    return edit


def check_interventions(edits: Any, kind: str, num_layers: int, hidden_size: int,
                        seq_len: int | None) -> tuple[Intervention, ...]:
    """Every edit checked (``check_intervention``); a tuple of them."""
    edits = tuple(edits)
    if len(edits) > MAX_INTERVENTIONS:
        raise InterventionError("intervention", f"{len(edits)} interventions; at most {MAX_INTERVENTIONS}")
    for edit in edits:
        if not isinstance(edit, Intervention):
            raise InterventionError("intervention", f"not an Intervention: {edit!r:.60}")
        check_intervention(edit, kind, num_layers, hidden_size, seq_len)
    return edits


def enabled(edits: tuple[Intervention, ...]) -> tuple[Intervention, ...]:
    return tuple(e for e in edits if e.enabled)


def toggled(edit: Intervention, on: bool) -> Intervention:
    return replace(edit, enabled=bool(on))
