"""What if, headless: the ``--intervene`` flags and the factual/counterfactual JSON of ``probe``.

    python main.py probe --preset adding-lstm --steps 1500 \\
        --intervene "gate=forget,layer=0,units=3,t=10:,op=set,value=0" --json

prints ONE object: ``interventions`` (each in its text form), ``factual`` and
``counterfactual``, each in the ``probe --json`` layout (kind, tokens, hidden, cell, gates,
output) plus ``loss`` (the task's loss on the probe) and ``prediction`` (the readout: [O]
for a model that reads out once at the end, [T][O] otherwise). Both runs come from the same
loop, so they are equal up to the first edited step. The spec's fields are those of
core.interventions; a bad one is refused in one line naming the field and what is allowed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

SPEC_HELP = ("an edit inside the recurrence, e.g. 'gate=forget,layer=0,units=3,t=10:,op=set,value=0' "
             "(fields: target hidden|cell|gate, layer, units 3|3;5|0-7|all, gate, t start[:stop], "
             "op set|add|scale|zero, value); repeat for more")


def add_intervention_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--intervene", action="append", default=[], metavar="SPEC", help=SPEC_HELP)


def parse_flags(texts: list[str]) -> tuple:
    """The --intervene texts read (syntax only: before any training time is spent)."""
    from core.interventions import parse_intervention

    return tuple(parse_intervention(text) for text in texts)


def intervened_probe(trainer: Any, edits: tuple, probe_json: Callable[[Any, Any], dict]) -> dict:
    """{"interventions", "factual", "counterfactual"} for ``trainer``'s probe with ``edits``
    (checked against the model and the probe first). ``probe_json(trainer, record)`` is the
    probe command's layout for one ProbeRecord."""
    trainer.set_interventions(edits)
    record = trainer.counterfactual()
    sides = {}
    for i, (name, probe) in enumerate((("factual", record.factual), ("counterfactual", record.counterfactual))):
        sides[name] = {**probe_json(trainer, probe), "loss": record.loss[i],
                       "prediction": record.prediction[i].tolist()}
    return {"interventions": list(record.interventions), **sides}
