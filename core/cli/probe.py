"""The ``probe`` command (minimal): a preset's hidden states and gates on its probe, as JSON.

    python main.py probe --preset adding-lstm --steps 300 --json
    python main.py probe --preset charlm-lstm --steps 200 --input "Alice was" --json

``--input`` gives a character-level task's model typed text (other tasks probe their own
probe sequence). ``--json`` prints ONE object::

    {"tokens": [t], "hidden": [layer][t][unit], "cell": [layer][t][unit] or null,
     "gates": {layer: {gate: [t][unit]}}, "output": [t][o] or null, "kind": "lstm"}

With ``--intervene`` it prints {"interventions", "factual", "counterfactual"} instead
(core.cli.intervene). Exit codes as for ``train`` (core.cli.common).
"""

from __future__ import annotations

import argparse
import json
import sys

from core.cli.common import progress
from core.cli.intervene import add_intervention_flags, intervened_probe, parse_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="print a model's hidden states and gates on its probe (or typed text)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", metavar="NAME", help="a preset's model (trained for --steps)")
    source.add_argument("--session", metavar="FILE", help="a saved session's model")
    p.add_argument("--steps", type=int, default=0, metavar="N", help="with --preset: train N steps first (default 0)")
    p.add_argument("--input", metavar="TEXT", help="text for a character-level task (default: the task's probe)")
    add_intervention_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_probe)


def probe_trainer(args: argparse.Namespace):
    """The trainer whose model is probed, not trained yet (--preset, or --session)."""
    from core.presets import load_preset
    from core.training.trainer import Trainer

    if args.session:
        from core.session.format import open_session

        return open_session(args.session)
    if args.steps < 0:
        raise ValueError(f"--steps must be an integer >= 0; got {args.steps}")
    return Trainer(load_preset(args.preset).experiment)


def train(trainer, steps: int) -> None:
    every = max(1, steps // 200)
    for record in trainer.run(steps):
        if record.step % every == 0 or record.diverged:
            progress(record.step, steps, record.loss)
    if steps:
        sys.stderr.write("\n")


def text_batch(task, text: str):
    """Typed text as a probe batch of a character-level task: inputs text[:-1], targets text[1:]."""
    import torch

    from core.batch import Batch

    vocab = getattr(task, "vocab", None)
    if vocab is None or task.model_kind != "sequence":
        raise ValueError(f"--input applies to character-level tasks (charlm); the {task.name} task probes "
                         "its own sequence: leave --input out")
    if len(text) < 2:
        raise ValueError(f"--input needs at least 2 characters (inputs and next-character targets); got {text!r}")
    index = {c: i for i, c in enumerate(vocab)}
    unknown = sorted({c for c in text if c not in index})
    if unknown:
        raise ValueError(f"--input: {unknown[0]!r} is not in the task's {len(vocab)} characters "
                         f"({''.join(vocab)[:60]}...)")
    ids = torch.tensor([index[c] for c in text])
    x = torch.nn.functional.one_hot(ids[:-1], len(vocab)).float().unsqueeze(1)
    return Batch(x, ids[1:].unsqueeze(1), labels=tuple(text[:-1]))


def probe_json(trainer, record) -> dict:
    """The probe record as plain JSON data (see the module docstring)."""
    import torch

    model = trainer.model
    output = None
    if getattr(model, "readout_kind", None) == "all" and getattr(model, "loss_kind", "") != "norm":
        with torch.no_grad():
            top = torch.as_tensor(record.hidden[-1], device=trainer.device)
            output = model.readout(top).cpu().tolist()
    return {
        "kind": record.kind,
        "tokens": list(record.labels),
        "hidden": [h.tolist() for h in record.hidden],
        "cell": [c.tolist() for c in record.cell] if record.cell is not None else None,
        "gates": {str(layer): {name: v.tolist() for name, v in g.items()} for layer, g in enumerate(record.gates)},
        "output": output,
    }


def run_probe(args: argparse.Namespace) -> int:
    edits = parse_flags(args.intervene)
    trainer = probe_trainer(args)
    if args.input is not None:
        trainer.set_probe_batch(text_batch(trainer.task, args.input))
    if edits:
        trainer.set_interventions(edits)  # a spec that does not fit the model fails before training
    train(trainer, 0 if args.session else args.steps)
    if edits:
        data = intervened_probe(trainer, edits, probe_json)
        if args.json:
            print(json.dumps(data))
            return 0
        print(f"{len(edits)} intervention(s): " + "; ".join(e.describe() for e in trainer.interventions))
        print(f"probe loss: factual {data['factual']['loss']:.4g}, counterfactual {data['counterfactual']['loss']:.4g}")
        return 0
    record = trainer.probe()
    data = probe_json(trainer, record)
    if args.json:
        print(json.dumps(data))
        return 0
    top = record.hidden[-1]
    print(f"{record.kind.upper()}, {len(record.hidden)} layer(s) of {top.shape[1]} units, {top.shape[0]} steps "
          "(top layer; --json gives every layer, the cell state and the gates)")
    shown = min(top.shape[1], 8)
    print(f"{'t':>4}  {'token':<10} {'|h|':>7}  h[0:{shown}]")
    for t in range(top.shape[0]):
        units = " ".join(f"{v:+.3f}" for v in top[t, :shown])
        print(f"{t:>4}  {record.labels[t]!r:<10} {float((top[t] ** 2).sum()) ** 0.5:7.3f}  {units}")
    return 0
