"""The spread of every trained outcome over seed shifts: run ``pytest -m trained`` once per
shift and print each measured quantity's min / median / max (see tests/outcomes.py).

    python tests/spread.py                       # shifts 0-4, 1 torch thread
    python tests/spread.py --seeds 0-1 --threads 2 -- -k parity
    python tests/spread.py --summary outcomes.jsonl [more.jsonl ...]   # no runs

Runs one pytest at a time (a trained test is timed against one core); a failing run is
reported and the others still run. Exit status 1 when any run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.outcomes import OUTCOMES_ENV, SEED_ENV, THREADS_ENV  # noqa: E402


def shifts(text: str) -> list[int]:
    """'0-4' or '0,2,5' -> the shifts."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def run(seeds: list[int], threads: int, out: Path, pytest_args: list[str]) -> list[int]:
    """Run the trained tests once per shift, appending to ``out``; the shifts that failed."""
    failed = []
    for seed in seeds:
        env = {**os.environ, SEED_ENV: str(seed), THREADS_ENV: str(threads), OUTCOMES_ENV: str(out),
               "QT_QPA_PLATFORM": "offscreen"}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "trained",
                   "--timeout=0", *pytest_args]  # no per-test timeout: a busy machine is slow
        start = time.perf_counter()
        print(f"== seed shift {seed}, {threads} thread(s): {' '.join(command[1:])}", flush=True)
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
        print(f"== seed shift {seed}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(seed)
    return failed


def summary(paths: list[Path]) -> str:
    """One row per (quantity, threads): n, min, median, max and the value at each shift."""
    values: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            values[(row["name"], row["threads"])][row["seed_shift"]] = row["value"]
    rows = [f"{'quantity':58s} {'thr':>3s} {'n':>2s} {'min':>9s} {'median':>9s} {'max':>9s}  by shift"]
    for (name, threads), by_seed in sorted(values.items()):
        v = list(by_seed.values())
        each = " ".join(f"{s}:{x:.4g}" for s, x in sorted(by_seed.items()))
        rows.append(f"{name:58s} {threads:3d} {len(v):2d} {min(v):9.4g} {statistics.median(v):9.4g} "
                    f"{max(v):9.4g}  {each}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-4", help="seed shifts, '0-4' or '0,2' (default 0-4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, help="JSON-lines file to append to (default: a new one in out/)")
    parser.add_argument("--summary", type=Path, nargs="+", help="only summarise these files")
    parser.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(args.summary))
        return 0
    out = args.out or ROOT / "out" / f"outcomes-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    failed = run(shifts(args.seeds), args.threads, out.resolve(), args.pytest_args)
    print(f"\nOutcomes in {out}\n")
    print(summary([out]))
    if failed:
        print(f"\nFailed at seed shift(s): {', '.join(map(str, failed))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
