"""The ``probe`` command: hidden states and gates of a model on an input, as text or JSON.

    python main.py probe --model lstm.safetensors --vocab vocab.json --input "hello" --json
    python main.py probe --preset charlm-lstm --steps 200 --input "Alice was"
    python main.py probe --session run.rnnx --input-file steps.csv

The model is an opened torch.nn state dict (core.models.io.load_model), a preset trained for
``--steps`` (default: none), or a session. Text goes through the vocabulary; a CSV (a header
row, then one row per time step, one column per input feature) gives numbers. ``--json``
prints ONE object::

    {"tokens": [t], "hidden": [layer][t][unit], "cell": [layer][t][unit] or null,
     "gates": {layer: {gate: [t][unit]}}, "output": [t][o] or null, "kind": "lstm"}

``output`` is the head's output at every step (null when the model reads out once, at the
end, or has no head). Without ``--input``/``--input-file`` a preset or session shows its
task's own probe. With ``--intervene`` it prints {"interventions", "factual",
"counterfactual"} instead (core.cli.intervene). Exit codes as for ``train`` (core.cli.common).
"""

from __future__ import annotations

import argparse
import json

from core.cli.common import add_model_flags, check_steps, end_progress, progress
from core.cli.intervene import add_intervention_flags, intervened_probe, parse_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="print a model's hidden states and gates on an input")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", metavar="NAME", help="a preset's model (trained for --steps)")
    source.add_argument("--session", metavar="FILE", help="a saved session's model")
    add_model_flags(p)
    p.add_argument("--steps", type=int, default=0, metavar="N", help="with --preset: train N steps first (default 0)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--input", metavar="TEXT",
                      help="text, through the model's vocabulary (default for a preset or session: its probe)")
    what.add_argument("--input-file", metavar="FILE.csv", help="numbers: a header row, one row per time step")
    add_intervention_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_probe)


def probe_trainer(args: argparse.Namespace):
    """The trainer whose model is probed (--model, --preset, or --session), not trained yet."""
    from core.cli.common import model_trainer
    from core.presets import load_preset
    from core.training.trainer import Trainer

    if args.model:
        if args.preset or args.session:
            raise ValueError("give one of --model, --preset and --session")
        if not (args.input or args.input_file):
            raise ValueError("an opened model has no probe of its own: give --input TEXT or --input-file FILE.csv")
        args = argparse.Namespace(**{**vars(args), "data": None, "task": None, "seed": None})
        return model_trainer(args)
    if not args.preset and not args.session:
        raise ValueError("give the model to probe: --model FILE, --preset NAME or --session FILE")
    if args.vocab:
        raise ValueError("--vocab applies to --model; a preset or session has its own vocabulary")
    if args.session:
        from core.session.format import open_session

        return open_session(args.session)
    check_steps(args.steps)
    return Trainer(load_preset(args.preset).experiment)


def train(trainer, steps: int) -> None:
    """``steps`` training steps, with a progress bar on stderr."""
    for record in trainer.run(steps):
        progress(record.step, steps, record.loss)
    if steps:
        end_progress()


def input_batch(task, args: argparse.Namespace):
    """The probe batch: typed text through the task's vocabulary, or the CSV's rows."""
    from core.tasks.typed import encode_probe

    if args.input_file:
        from core.datafiles import read_file
        from core.tasks.files import parse_series

        series = parse_series(read_file(args.input_file), min_rows=1)
        rows = [[row[k] for k in series.inputs] for row in series.values]
        return encode_probe(task, rows=rows)
    return encode_probe(task, text=args.input)


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
    edits = parse_flags(args.intervene)  # the syntax, before anything is built
    trainer = probe_trainer(args)
    if args.input or args.input_file:
        trainer.set_probe_batch(input_batch(trainer.task, args))  # an encoder-decoder: the encoder's states
    if edits:
        trainer.set_interventions(edits)  # a spec that does not fit the model fails before training
    train(trainer, args.steps if args.preset else 0)
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
