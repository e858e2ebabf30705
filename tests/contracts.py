"""A custom import-linter contract: no module imports a private name from another package.

``from core.session.readers import read_member`` is fine; ``from core.models.recurrent
import _mask_from`` in core.instruments is not: a leading underscore says "this package's
business", and reaching across a package boundary for it couples two rooms through a detail.
Within one package (a module and its siblings) private names may be shared.

Registered in pyproject.toml (``[tool.importlinter] contract_types``) and run by
``lint-imports`` with the other contracts (tests/test_architecture.py runs it).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import grimp
from importlinter import Contract, ContractCheck, fields, output


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def private_imports(module: str) -> list[tuple[int, str, str]]:
    """(line, imported module, name) for every ``from X import _name`` in ``module`` where
    X is outside the module's own package."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    own = _package_of(module, spec.submodule_search_locations is not None)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), spec.origin)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level or node.module is None:
            continue
        source = node.module
        if source == own or source.rpartition(".")[0] == own:
            continue  # the module's own package, or a sibling module in it
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append((node.lineno, source, alias.name))
    return found


class PrivateNamesContract(Contract):
    """Options: ``containers``, the packages whose modules are checked."""

    type_name = "private_names"
    containers = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        violations = []
        for module in sorted(graph.modules):
            if any(module == c or module.startswith(c + ".") for c in self.containers):
                violations += [(module, *found) for found in private_imports(module)]
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, line, source, name in check.metadata["violations"]:
            output.print_error(f"{module}:{line} imports the private name {name} from {source}")
            output.new_line()


ROOMS = {
    "core": ["cli", "bench", "session", "training", "instruments", "decoding", "models", "tasks"],
    "app": ["cli", "bench", "window", "export", "panels", "training"],
}


def room_graph() -> dict[str, set[str]]:
    """Room -> the rooms it imports directly (e.g. "core.training" -> {"core.models", ...}),
    with each package's top-level modules as one room ("core", "app")."""
    graph = grimp.build_graph("core", "app")

    def room(module: str) -> str:
        top, _, rest = module.partition(".")
        sub = rest.partition(".")[0]
        return f"{top}.{sub}" if sub in ROOMS.get(top, ()) else top

    arrows: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = room(module), room(imported)
            if a != b:
                arrows.setdefault(a, set()).add(b)
    return arrows


def mermaid() -> str:
    """The room graph as a Mermaid flowchart (GitHub renders it), leaving out the arrows to
    the top-level modules of core and app, which every room may use."""
    lines = ["flowchart TD"]
    for a, targets in sorted(room_graph().items()):
        lines += [f"    {a.replace('.', '_')}[{a}] --> {b.replace('.', '_')}[{b}]"
                  for b in sorted(targets) if b not in ROOMS]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tests.contracts: the picture in docs/ARCHITECTURE.md
    print(mermaid())
