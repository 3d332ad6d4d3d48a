"""The `fl-crb` command line: one subcommand per module of `fl_crb.commands`.

Each subcommand reads as load → build → run → report; the work itself lives in the
packages, so the command modules only parse arguments and print.

Errors reach the user as one line, `fl-crb CMD: message`, never a traceback, when they
are the user's to fix: a bad flag (argparse, exit 2, from `fl_crb.commands.arguments`),
a bad topology, run folder, checkpoint or other input (`ValueError`, exit 2), a file
that is missing, unreadable or in the way (an `OSError` that names its file, exit 1).
Ctrl-C prints `fl-crb CMD: interrupted` and exits 130. Anything else is a bug and shows
its traceback; FL_CRB_TRACEBACK=1 shows the traceback of the user errors too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fl_crb.commands import (
    compare_sim,
    emulate,
    evaluate,
    federate,
    keys,
    netcheck,
    reproduce,
    roles,
    run_local,
    simulate,
    study,
    sweep,
    train,
)
from fl_crb.topology import TopologyError

SUBCOMMANDS = (
    simulate,
    train,
    evaluate,
    reproduce,
    sweep,
    emulate,
    netcheck,
    run_local,
    compare_sim,
    federate,
    roles,
    keys,
    study,
)
"""Command modules, in the order `fl-crb --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fl-crb",
        description="Federated edge emulation for DRL task offloading (CRB-DRQN).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(commands)
    return parser


INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


def main(argv: Sequence[str] | None = None) -> int:
    command = "fl-crb"
    try:
        args = build_parser().parse_args(argv)
        command = f"fl-crb {args.command}"
        return args.run(args)
    except KeyboardInterrupt:
        fresh_line = "\n" if sys.stderr.isatty() else ""  # after a progress bar's `\r`
        print(f"{fresh_line}{command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except (TopologyError, ValueError) as error:
        if os.environ.get("FL_CRB_TRACEBACK"):
            raise
        print(f"{command}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        about_a_file = error.filename is not None or isinstance(error, FILE_ERRORS)
        if not about_a_file or os.environ.get("FL_CRB_TRACEBACK"):
            raise  # a network or system failure: shown in full
        print(f"{command}: {_file_error(error)}", file=sys.stderr)
        return 1


FILE_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
"""`OSError`s about a path the user gave, even when raised with a message of our own."""


def _file_error(error: OSError) -> str:
    """`PATH: No such file or directory` (and the second path of a rename or link)."""
    if error.filename is None:
        return str(error)
    where = f"{error.filename} -> {error.filename2}" if error.filename2 else f"{error.filename}"
    return f"{where}: {error.strerror or error}"


if __name__ == "__main__":
    sys.exit(main())
