"""Work the window asks of the engine, run where the model lives (the training process):
decoding for the decoding panel, and the interventions and ablation sweep of the What if dock.

``decode_view(trainer, request)`` calls core.seq2seq.decode_text (greedy and beam search
with its whole tree) and adds what drawing needs, so the GUI thread only draws: the tree
layout (core.decoding.tree_layout), the attention rows of every hypothesis the search ever
finished and of greedy, and where greedy's path runs through the beam tree. Everything
returned is plain data.

The beam tree is stepped in the panel from the tree itself: core.decoding.BeamSearch.step()
adds exactly the nodes of one depth (``TreeNode.step``), so showing the nodes with
``step <= k`` shows the search after k expansions, from one consistent decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DecodeRequest:
    """What to decode: the text and the beam settings (max_len None = the task's default)."""

    text: str
    beam: int = 4
    length_penalty: float = 1.0
    max_len: int | None = None


@dataclass(frozen=True)
class DecodeView:
    """A decode, ready to draw.

    result: core.seq2seq.DecodeResult (hypotheses, greedy, tree, token texts, notice).
    positions: [N, 2] (x = step, y = row) of tree node i (core.decoding.tree_layout).
    attention: finished node id -> [len(path) - 1, S] weights along its path; empty without
        attention. greedy_attention: [len(greedy), S] or None.
    greedy_nodes: ids of the tree nodes greedy's tokens follow from the root (root included)
        until greedy leaves the tree; greedy_rest: greedy's tokens after that.
    model_step: the training step of the model that decoded.
    """

    request: DecodeRequest
    result: Any
    positions: np.ndarray
    attention: dict[int, np.ndarray]
    greedy_attention: np.ndarray | None
    greedy_nodes: tuple[int, ...]
    greedy_rest: tuple[int, ...]
    model_step: int

    @property
    def has_attention(self) -> bool:
        return self.greedy_attention is not None


def decode_view(trainer: Any, request: DecodeRequest) -> DecodeView:
    """Decode ``request.text`` with ``trainer``'s model (call in the thread that trains it)."""
    import torch

    from core.decoding.text import attention_for_node, decode_text
    from core.decoding.tree import tree_layout

    with torch.no_grad():
        result = decode_text(trainer, request.text, beam=request.beam,
                             length_penalty=request.length_penalty, max_len=request.max_len)
        layout = tree_layout(result.tree)
        positions = np.array([layout[node.id] for node in result.tree], dtype=np.float64)
        attention: dict[int, np.ndarray] = {}
        greedy_attention = None
        if result.attention is not None:
            for node in result.tree:
                if node.status == "finished":
                    attention[node.id] = attention_for_node(trainer, result, node.id)
            src = torch.tensor(result.source_ids, device=next(trainer.model.parameters()).device)
            greedy_attention = trainer.model.attention_for(src, len(result.source_ids), result.greedy.ids)
    nodes, rest = greedy_path(result.tree, result.greedy.ids)
    return DecodeView(request, result, positions, attention, greedy_attention, nodes, rest,
                      int(trainer.step_count))


def greedy_path(tree, tokens) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Follow ``tokens`` from the root through the tree's children: (node ids, tokens left).

    Greedy's first token is always in the tree (the search considers the best 2 x width
    continuations of the root); later ones only while greedy's prefix stayed in the beam.
    """
    children: dict[int, dict[int, int]] = {}
    for node in tree:
        if node.parent >= 0:
            children.setdefault(node.parent, {}).setdefault(node.token, node.id)
    path, at = [0], 0
    for i, token in enumerate(tokens):
        nxt = children.get(at, {}).get(token)
        if nxt is None:
            return tuple(path), tuple(tokens[i:])
        path.append(nxt)
        at = nxt
    return tuple(path), ()


def finished_so_far(tree, steps: int, width: int, length_penalty: float) -> list[int]:
    """Ids of the finished hypotheses after ``steps`` expansions, best first (at most
    ``width``): the search's finished list at that point (scores normalised by length)."""
    done = [n for n in tree if n.status == "finished" and n.step <= steps]
    done.sort(key=lambda n: n.cum_log_prob / n.step ** length_penalty, reverse=True)
    return [n.id for n in done[:width]]


# -- what if: interventions and the ablation sweep ----------------------------------------------
def set_interventions(trainer: Any, edits: tuple, lesion: bool) -> Any:
    """Apply ``edits`` (core.interventions.Intervention; checked, all or nothing) and return
    the fresh CounterfactualRecord, or None when no edit is enabled."""
    trainer.set_interventions(edits, lesion)
    return trainer.counterfactual()


def rank_units(trainer: Any, layer: int, method: str = "exact") -> Any:
    """The ablation sweep of ``layer`` (a core.records.AblationRecord), exact or first-order."""
    return trainer.ablation((layer,), method)[0]

def dynamics_under(trainer: Any, input_name: str) -> Any:
    """The trainer's dynamics (core.records.DynamicsRecord, or None for encoder-decoders) with
    fixed points under ``input_name``, which live updates keep using from now on; a name
    that is not an input of the task fails with the choices."""
    trainer.choose_dynamics_input(input_name)
    return trainer.dynamics()
