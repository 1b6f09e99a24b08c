# -*- test-case-name: tests.cli.test_usage -*-
"""
``ccm usage FILE... [--by user|model|week|credential|all] [--json]``: what
usages files hold, as tables with costs.

One file gives its report (:obj:`ccm.accounting.report.format_report`);
several give one team report over them all, with a table by credential
(:obj:`ccm.accounting.team.format_team_report`).  ``--json`` prints one
file's document with its costs computed now.  The files are only read; a
file that cannot be used is named in one line, and nothing is printed.

When a share file (``FILE.shares``) sits beside a usages file, the tables
by user are followed by a "Shares" table (:obj:`ccm.shares.report`: each
user's share, use, what remains and the next reset); a
share file that cannot be used is named in one line on stderr and its
table left out, the rest of the report is still printed.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING

from ccm.accounting.counters import UsageSnapshot
from ccm.accounting.document import serialize
from ccm.accounting.report import format_report
from ccm.accounting.team import TEAM_SECTIONS, format_team_report
from ccm.cli.terminal import Terminal
from ccm.cli.usagefiles import read_usage
from ccm.shares.files import shares_path
from ccm.shares.ledger import ShareBook
from ccm.shares.report import format_shares, read_share_file

if TYPE_CHECKING:
    from ccm.cli.terminal import Subcommands


def register(commands: Subcommands) -> None:
    """
    Add ``usage`` to the subcommands.
    """
    command = commands.add_parser(
        "usage",
        help="show usages files (usages_path) as tables",
        description=(
            "Show the usage recorded in usages files by user, model and week, with costs; "
            "several files (one per credential) are shown as one team, with a table by "
            "credential too. The files are only read."
        ),
    )
    command.add_argument("paths", metavar="FILE", nargs="+", help="a usages file (a usages_path of the configuration)")
    command.add_argument(
        "--by",
        choices=(*TEAM_SECTIONS, "all"),
        default="all",
        help="show only the table by user, model, week or credential (default: all)",
    )
    command.add_argument(
        "--json",
        action="store_true",
        help="print the file's JSON with costs computed now, for scripts (one file only)",
    )
    command.set_defaults(run=run)


def _read_all(paths: list[str], terminal: Terminal) -> list[tuple[str, UsageSnapshot]] | None:
    """
    Every file's snapshot, or ``None`` once one could not be used (it is
    named on stderr).  The same file given twice is refused: its usage
    would be counted twice.
    """
    files: list[tuple[str, UsageSnapshot]] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            usage = read_usage(path)
        except OSError as error:
            terminal.error("usage", f"cannot read {path!r}: {error.strerror or error}")
            return None
        except ValueError as error:
            terminal.error("usage", f"cannot use {path!r}: {error}")
            return None
        real = os.path.realpath(path)
        if real in seen:
            terminal.error("usage", f"{path!r} is the same file as {seen[real]!r}; give each file once")
            return None
        seen[real] = path
        files.append((path, usage))
    return files


def _labelled(files: list[tuple[str, UsageSnapshot]]) -> list[tuple[str, UsageSnapshot]]:
    """
    The files named in the table by credential by the shortest ends of
    their paths that tell them apart (``a.json``, or ``one/a.json`` and
    ``two/a.json``): long paths cut short would all look the same.
    """
    parts = [os.path.normpath(path).split(os.sep) for path, _ in files]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = [os.sep.join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return [(name, usage) for name, (_, usage) in zip(names, files)]
    return files


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    """
    Print the report of the files.

    :return: 0; 1 when a file cannot be used; 2 for ``--json`` with
        several files.
    """
    paths: list[str] = arguments.paths
    if arguments.json and len(paths) > 1:
        terminal.error("usage", "--json prints one file; give one FILE")
        return 2
    files = _read_all(paths, terminal)
    if files is None:
        return 1
    if arguments.json:
        output = serialize(files[0][1], terminal.tz).decode("utf-8") + "\n"
    elif len(files) == 1 and arguments.by != "credential":
        output = format_report(files[0][1], files[0][0], arguments.by, terminal.tz)
    else:
        output = format_team_report(_labelled(files), arguments.by, terminal.tz)
    if not arguments.json and arguments.by in ("all", "user"):
        output += _shares_table(paths, terminal, time.time())
    terminal.stdout.write(output)
    return 0


def _shares_table(paths: list[str], terminal: Terminal, now: float) -> str:
    """
    The "Shares" table of the share files beside ``paths``, preceded by an
    empty line; empty when there is none, or when one cannot be used (it
    is named on stderr).
    """
    book = ShareBook()
    found = []
    users = {}
    for path in paths:
        share_file = shares_path(path)
        if not os.path.lexists(share_file):
            continue
        try:
            users[path] = read_share_file(book, path, share_file, now)
        except ValueError as error:
            terminal.error("usage", f"ignoring the shares of {path!r}: {share_file!r} {error}")
            return ""
        found.append(path)
    if not found:
        return ""
    return "\n" + "\n".join(format_shares(book, found, now, terminal.tz, users)) + "\n"
