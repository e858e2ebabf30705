"""The architecture's contracts hold (pyproject.toml [tool.importlinter]; docs/ARCHITECTURE.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.contracts import private_imports

ROOT = Path(__file__).resolve().parents[1]


def test_lint_imports_keeps_every_contract():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "BROKEN" not in result.stdout


def test_the_private_names_contract_sees_a_private_name_taken_across_packages(tmp_path, monkeypatch):
    for path, text in {
        "pkg/__init__.py": "",
        "pkg/a/__init__.py": "",
        "pkg/a/one.py": "_secret = 1\npublic = 2\n",
        "pkg/a/two.py": "from pkg.a.one import _secret\n",  # a sibling: allowed
        "pkg/b/__init__.py": "",
        "pkg/b/three.py": "from pkg.a.one import public\nfrom pkg.a.one import (\n    _secret,\n)\n",
    }.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert private_imports("pkg.a.two") == []
    assert private_imports("pkg.b.three") == [(2, "pkg.a.one", "_secret")]


def test_the_architecture_page_shows_the_rooms_imports_as_they_are():
    """docs/ARCHITECTURE.md embeds `python -m tests.contracts`; regenerate it when this fails."""
    from tests.contracts import mermaid

    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert "```mermaid\n" + mermaid() + "\n```" in page
