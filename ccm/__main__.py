# -*- test-case-name: tests.test_main -*-
"""
ccm's command line, for what is not the service itself (that runs under
``twistd ccm``).

``python -m ccm usage PATH [--by user|model|week|all] [--json]`` prints a
usages file as tables, or with ``--json`` as the file's document with its
costs computed now.  The file is only read, never written, moved or locked,
so it is safe to run while ccm is saving it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import sys
from collections.abc import Sequence
from typing import TextIO

from ccm.accounting.counters import UsageSnapshot
from ccm.accounting.document import UsageFileError, from_document, serialize
from ccm.accounting.report import SECTIONS, format_report
from ccm.files import JSONFileError, read_json_file

PROG = "python -m ccm"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Claude Code Multiplexer tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    usage = commands.add_parser(
        "usage",
        help="show a usages file (usages_path) as tables",
        description="Show the usage recorded in a usages file by user, model and week, with costs.",
    )
    usage.add_argument("path", metavar="PATH", help="the usages file (the usages_path of the configuration)")
    usage.add_argument(
        "--by",
        choices=(*SECTIONS, "all"),
        default="all",
        help="show only the table by user, model or week (default: all three)",
    )
    usage.add_argument(
        "--json",
        action="store_true",
        help="print the file's JSON with costs computed now, for scripts",
    )
    return parser


def read_usage(path: str) -> UsageSnapshot:
    """
    Read the usages file at ``path``, without changing anything on disk.

    :raises OSError: when it cannot be read.
    :raises ValueError: when it is not a usages file, with a message for
        people.
    """
    try:
        document = read_json_file(path, regular_file_only=True)
    except JSONFileError as error:
        if error.os_error is not None:
            raise error.os_error from None
        raise ValueError(f"it {error.reason}") from None
    try:
        return from_document(document)
    except UsageFileError as error:
        raise ValueError(f"it does not hold usage statistics ({error})")


def main(
    argv: Sequence[str],
    stdout: TextIO,
    stderr: TextIO,
    tz: datetime.tzinfo | None = None,
) -> int:
    """
    Run the command line.

    :param argv: the arguments, without the program name.
    :param stdout: where the output goes.
    :param stderr: where usage messages and errors go.
    :param tz: the time zone of the dates shown; the local one when
        ``None``.
    :return: the exit status: 0 on success, 1 when the file cannot be
        used, 2 for a wrong command line.
    """
    parser = _parser()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            arguments = parser.parse_args(list(argv))
        except SystemExit as exit:
            return exit.code if isinstance(exit.code, int) else 2
    path: str = arguments.path
    try:
        usage = read_usage(path)
        if arguments.json:
            output = serialize(usage, tz).decode("utf-8") + "\n"
        else:
            output = format_report(usage, path, arguments.by, tz)
    except OSError as error:
        stderr.write(f"{PROG} usage: cannot read {path!r}: {error.strerror or error}\n")
        return 1
    except ValueError as error:
        stderr.write(f"{PROG} usage: cannot use {path!r}: {error}\n")
        return 1
    stdout.write(output)
    return 0


if __name__ == "__main__":
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    sys.exit(main(sys.argv[1:], sys.stdout, sys.stderr))
