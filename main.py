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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, or a bad argument already reported in one line
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    from core.logs import setup_logging

    setup_logging(verbose=args.verbose)
    if args.command is None:
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
