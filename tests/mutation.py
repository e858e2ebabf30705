"""Mutation testing of the modules that carry the science: ``make mutate`` (mutmut).

Each module is mutated on its own, against only the test files that cover it, so a run
stays tractable on a small machine: ``python -m tests.mutation [MODULE ...]`` (names from
``MODULES``, default all). For each module a scratch copy of the working tree goes to
``.mutmut/<name>/`` with a ``[tool.mutmut]`` section for that module alone (mutmut reads its
configuration from ``pyproject.toml``), mutmut runs there, and the surviving mutants are
printed with their diffs (also written to ``.mutmut/<name>/survivors.txt``). A survivor is
a change to the code that no test noticed: kill it with a test, or argue why it is
equivalent (it cannot change behaviour). Slow tests (training to a threshold) are left out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / ".mutmut"

# module -> the test files that cover it (all run with -m "not slow")
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "recurrent": ("core/models/recurrent.py", ("tests/core/test_recurrent.py", "tests/core/test_recurrent_paths.py",
                                              "tests/core/test_truncation.py")),
    "bptt": ("core/instruments/bptt.py", ("tests/core/test_bptt.py", "tests/core/test_bptt_reference.py",
                                          "tests/core/test_gradient_lens.py",
                                          "tests/core/test_recurrent.py::test_one_direction_instruments_refuse_a_bidirectional_stack_in_one_line")),
    "jacobians": ("core/instruments/jacobians.py", ("tests/core/test_bptt.py", "tests/core/test_bptt_reference.py",
                                                    "tests/core/test_step_jacobians.py", "tests/core/test_gradient_lens.py",
                                                    "tests/core/test_dynamics.py::test_jacobian_equals_central_differences")),
    "search": ("core/decoding/search.py", ("tests/core/test_decoding.py", "tests/core/test_beam_reference.py",
                                           "tests/core/test_search_rules.py")),
    "seq2seq": ("core/models/seq2seq.py", ("tests/core/test_seq2seq.py", "tests/core/test_seq2seq_reference.py")),
    "sequence": ("core/models/sequence.py", ("tests/core/test_sequence_model.py", "tests/core/test_truncation.py",
                                            "tests/core/test_trainer.py")),
    "snapshot": ("core/session/snapshot.py", ("tests/core/test_session.py", "tests/core/test_snapshot_state.py")),
}


# Statements left alone: the wording of error messages and logs (the tests match the part
# of a message that names the value; "XX" around the rest is noise that costs a test run).
NOT_MUTATED = (r"^\s*raise \w+\(", r"^\s*log\.\w+\(")


def _toml_list(items) -> str:
    return "[" + ", ".join(f"'{item}'" for item in items) + "]"


def _scratch_copy(name: str) -> Path:
    """A copy of the working tree's files (tracked and new, not ignored) in .mutmut/<name>.

    An earlier copy is updated, not wiped: mutmut keeps each mutant's result beside it
    (mutants/*.meta) and tests again only the mutants of functions that changed."""
    where = SCRATCH / name
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        source = ROOT / rel
        if source.is_file():
            target = where / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return where


def _configure(where: Path, module: str, tests: tuple[str, ...]) -> None:
    section = f"""
[tool.mutmut]
source_paths = ["core/"]
only_mutate = ["{module}"]
also_copy = ["app/", "resources/", "main.py"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:randomly", "-q"]
pytest_add_cli_args_test_selection = {_toml_list([*tests, "-m", "not slow"])}
do_not_mutate_patterns = {_toml_list(NOT_MUTATED)}
process_isolation = "forkserver"
"""
    pyproject = where / "pyproject.toml"
    pyproject.write_text(pyproject.read_text(encoding="utf-8") + section, encoding="utf-8")


def _mutmut(where: Path, *args: str, capture: bool = False) -> str:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH="")
    command = [sys.executable, "-m", "mutmut", *args]
    done = subprocess.run(command, cwd=where, env=env, text=True, check=False,
                          stdout=subprocess.PIPE if capture else None)
    return done.stdout or ""


def survivors(where: Path, statuses: tuple[str, ...] = ("survived",)) -> list[str]:
    """Names of the mutants whose last result is one of ``statuses`` (mutmut's words)."""
    out = _mutmut(where, "results", capture=True)
    return [line.split(":")[0].strip() for line in out.splitlines()
            if line.strip().rsplit(": ", 1)[-1] in statuses]


def run(name: str, children: int, rerun: bool = False, only: tuple[str, ...] = ()) -> list[str]:
    """Mutate one module; ``rerun``: test again only the mutants that survived or timed out
    last time (after new tests, or on a machine less loaded than the one that timed out);
    ``only``: mutant-name globs (e.g. ``*_cannot_improve*``), to test some functions first."""
    module, tests = MODULES[name]
    print(f"== {name}: mutating {module} against {', '.join(tests)}", flush=True)
    where = _scratch_copy(name)
    _configure(where, module, tests)
    again = survivors(where, ("survived", "timeout", "suspicious")) if rerun else list(only)
    if rerun and not again:
        print("nothing to test again", flush=True)
    else:
        _mutmut(where, "run", "--max-children", str(children), *again)
    alive = survivors(where)
    timeouts = survivors(where, ("timeout",))
    report = [f"{len(alive)} surviving mutants of {module} ({len(timeouts)} timed out)"]
    for mutant in alive:
        report.append(_mutmut(where, "show", mutant, capture=True))
    text = "\n".join(report)
    (where / "survivors.txt").write_text(text, encoding="utf-8")
    print(text, flush=True)
    return alive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"any of: {', '.join(MODULES)} (default: all)")
    parser.add_argument("--children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--only", metavar="GLOBS", help="comma-separated mutant-name globs to test")
    parser.add_argument("--rerun", action="store_true",
                        help="test again only the mutants that survived or timed out in the last run")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; choose from {', '.join(MODULES)}")
    only = tuple(args.only.split(",")) if args.only else ()
    total = {name: len(run(name, args.children, args.rerun, only)) for name in args.modules or MODULES}
    print("surviving mutants: " + ", ".join(f"{name} {n}" for name, n in total.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
