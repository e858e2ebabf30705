"""What decoding returns, as plain data: hypotheses, the beam-search tree, its layout and paths.

No torch, no Qt: the app shows results and draws the tree from these without touching the engine.
A tree is a list of :class:`TreeNode` with ``tree[i].id == i``; the root (bos) has id 0 and
parent -1, and every other node's parent has a smaller id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

NodeStatus = Literal["root", "kept", "pruned", "finished"]


@dataclass(frozen=True)
class Hypothesis:
    """A decoded sequence: ``tokens`` (no bos; eos last if emitted), its ``score``
    (``sum(log_probs) / len(tokens) ** length_penalty``), the per-token ``log_probs`` and, for
    beam search, ``node_id``: the tree node of its last token."""

    tokens: tuple[int, ...]
    score: float
    log_probs: tuple[float, ...]
    node_id: int | None = None


@dataclass(frozen=True, slots=True)
class TreeNode:
    """One continuation the beam search considered, or the root.

    Attributes:
        id: position in the tree list.
        parent: id of the hypothesis this node extends; -1 for the root.
        token: the token appended (bos for the root).
        log_prob: ``log p(token | prefix)``; 0.0 for the root.
        cum_log_prob: cumulative sum of log-probs from the root (not length-normalised; a
            hypothesis's ``score`` is this over ``len ** length_penalty``).
        step: depth, i.e. number of generated tokens; the root is at step 0.
        status: ``"root"``; ``"kept"`` (in the beam for the next step); ``"finished"`` (ended at
            eos or max_len and entered the finished list; a better one may displace it later, so
            only ``Hypothesis.node_id`` says which made the result); ``"pruned"`` (considered at
            this step but neither kept nor finished).
    """

    id: int
    parent: int
    token: int
    log_prob: float
    cum_log_prob: float
    step: int
    status: NodeStatus


@dataclass(frozen=True)
class BeamResult:
    """Finished hypotheses (best first, at most beam_width), every node considered, steps run."""

    hypotheses: list[Hypothesis]
    tree: list[TreeNode]
    steps: int


def _by_id(tree: Sequence[TreeNode]) -> dict[int, TreeNode]:
    return {node.id: node for node in tree}


def path_to(tree: Sequence[TreeNode], node_id: int) -> list[int]:
    """Ids from the root to ``node_id`` (both included).

    Raises:
        ValueError: ``node_id`` is not in the tree, or the parents do not lead to a root.
    """
    nodes = _by_id(tree)
    if node_id not in nodes:
        raise ValueError(f"node_id {node_id} is not in the tree ({len(nodes)} nodes)")
    path = [node_id]
    while nodes[path[-1]].parent != -1:
        parent = nodes[path[-1]].parent
        if parent not in nodes or len(path) > len(nodes):
            raise ValueError(f"node {path[-1]} has parent {parent}, which does not lead to a root")
        path.append(parent)
    return path[::-1]


def tree_layout(tree: Sequence[TreeNode]) -> dict[int, tuple[float, float]]:
    """Positions for drawing the tree: ``{node_id: (x, y)}``.

    ``x`` is the step (depth). Leaves get ``y = 0, 1, 2, ...`` in depth-first order, visiting
    children by id (the order in which the search ranked them); an inner node sits at the middle
    of its subtree's leaf span, so children are centred under their parent and subtrees never
    overlap. O(number of nodes), iterative (no recursion limit).

    Raises:
        ValueError: a node's parent is not in the tree.
    """
    children: dict[int, list[int]] = {node.id: [] for node in tree}
    roots: list[int] = []
    for node in sorted(tree, key=lambda n: n.id):
        if node.parent == -1:
            roots.append(node.id)
        elif node.parent in children:
            children[node.parent].append(node.id)
        else:
            raise ValueError(f"node {node.id} has parent {node.parent}, which is not in the tree")

    span: dict[int, tuple[int, int]] = {}  # first and last leaf position under each node
    next_leaf = 0
    stack = [(root, False) for root in reversed(roots)]
    while stack:
        node_id, children_done = stack.pop()
        kids = children[node_id]
        if not kids:
            span[node_id] = (next_leaf, next_leaf)
            next_leaf += 1
        elif children_done:
            span[node_id] = (span[kids[0]][0], span[kids[-1]][1])
        else:
            stack.append((node_id, True))
            stack.extend((kid, False) for kid in reversed(kids))

    step = {node.id: node.step for node in tree}
    return {node_id: (float(step[node_id]), (lo + hi) / 2) for node_id, (lo, hi) in span.items()}
