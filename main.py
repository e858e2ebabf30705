"""RNN Explorer command line: argument parsing and dispatch only.

``python main.py`` opens the desktop app; other subcommands run headless. Each command
lives in a module exposing ``register(subparsers)``, which adds its parser and sets
``run=callable(args) -> int``; they are imported here by name (COMMANDS), so a broken one
fails loudly. Those modules import nothing heavy at module level, so ``--help`` is instant
and the window can appear before torch is loaded.
"""

from __future__ import annotations

import argparse
import logging
import sys

from app.cli import bench, export, gui
from core.cli import ablate, decode, dynamics, probe, train

COMMANDS = (gui, export, train, decode, probe, ablate, dynamics, bench)  # in the order --help lists them

EXIT_USAGE = 2
# What the commands import, by import name (pyproject.toml lists them as distributions).
DEPENDENCIES = ("numpy", "torch", "safetensors", "platformdirs", "PySide6", "pyqtgraph")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), as every other refusal is."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python main.py",
        description="RNN Explorer: see how recurrent networks learn. Without a command, opens the app.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log details to stderr")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch threads for headless commands (default 1, or $RNN_EXPLORER_THREADS)")
    parser.add_argument("--install-desktop", action="store_true",
                        help="add RNN Explorer to the desktop's application menu and open .rnnx files "
                             "with it (Linux: a freedesktop.org .desktop entry, icon and MIME type)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def missing_dependencies() -> list[str]:
    """The DEPENDENCIES this Python cannot import (found without importing them: torch is slow)."""
    from importlib.util import find_spec

    return [name for name in DEPENDENCIES if find_spec(name) is None]


def environment_hint(missing: list[str]) -> str:
    """One line: what is missing, and how to run inside the project's environment."""
    return (f"error: {', '.join(missing)} not installed for {sys.executable}: run commands inside the "
            f"project's environment, e.g. .venv/bin/python main.py ... after 'make' (or 'source "
            f".venv/bin/activate' first), or install the app with 'pip install .'")


def with_command(argv: list[str]) -> list[str]:
    """``FILE.rnnx`` alone (a file manager's double-click) means ``gui FILE.rnnx``."""
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if first is not None and argv[first].lower().endswith(".rnnx"):
        return [*argv[:first], "gui", *argv[first:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = with_command(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, or a bad argument already reported in one line
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    missing = missing_dependencies()
    if missing:  # e.g. the system's python instead of the venv's: one line, not a traceback
        print(environment_hint(missing), file=sys.stderr)
        return EXIT_USAGE
    from core.logs import setup_logging

    setup_logging(verbose=args.verbose)
    if args.command is None and args.install_desktop:
        from app.cli.desktop import run_install_desktop

        args.run, args.command = lambda _: run_install_desktop(), "--install-desktop"
    elif args.command is None:
        args = parser.parse_args([*argv, "gui"])
    try:
        if args.command != "gui":  # the app sets its own threads, after the window shows
            from core.cli.runtime import configure_threads

            configure_threads(args.threads)
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the boundary: one line for the user, details in the log
        from core.errors import UserError

        logging.getLogger("rnn_explorer").exception("command %s failed", args.command)
        if isinstance(err, (UserError, ValueError, OSError)):
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USAGE
        print(f"error: {type(err).__name__}: {err} (details in the log file)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
