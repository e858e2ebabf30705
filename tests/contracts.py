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
