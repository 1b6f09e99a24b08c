# -*- test-case-name: tests.cli.test_main -*-
"""
The ``ccm`` command line: the parser of every subcommand and the exit
statuses.

argparse (not :obj:`twisted.python.usage`, which ``twistd ccm`` uses): the
command is a set of subcommands with their own help, its wrong command lines
exit 2 as argparse's convention has it (which the documentation promises),
and its entry (:obj:`ccm.cli.console`) must work before Twisted is known to
be importable.

Exit statuses: 0 when the command did what it was asked; 1 when it found
problems (``check``) or could not use its input (a file, a URL); 2 for a
wrong command line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import platform
from collections.abc import Sequence
from typing import TextIO, cast

import twisted

import ccm
import ccm.cli.check
import ccm.cli.clientenv
import ccm.cli.credentials
import ccm.cli.statekey
import ccm.cli.token
import ccm.cli.usage
from ccm.cli.terminal import PROG, Command, Terminal


def version_line() -> str:
    """
    What ``ccm --version`` prints: ccm's version, with Twisted's and
    Python's, as a bug report wants them.

    ccm's own is :obj:`ccm.__version__`, which setup.cfg makes the installed
    distribution's version: it is right in a checkout too, where the
    installed distribution's metadata may describe another copy.
    """
    return f"{PROG} {ccm.__version__} (Twisted {twisted.__version__}, Python {platform.python_version()})"


def parser() -> argparse.ArgumentParser:
    """
    The parser of the whole command line.
    """
    top = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "The Claude Code Multiplexer's tools; the service itself runs under "
            "'twistd ccm'. 'python -m ccm' is the same command."
        ),
        epilog="Exit status: 0 done, 1 problems found or unusable input, 2 wrong command line.",
    )
    top.add_argument("--version", action="version", version=version_line())
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        ccm.cli.check, ccm.cli.token, ccm.cli.usage, ccm.cli.clientenv, ccm.cli.credentials,
        ccm.cli.statekey,
    ):
        module.register(commands)
    return top


def main(
    argv: Sequence[str],
    stdout: TextIO,
    stderr: TextIO,
    tz: datetime.tzinfo | None = None,
    stdin: TextIO | None = None,
) -> int:
    """
    Run the command line.

    :param argv: the arguments, without the program name.
    :param stdout: where the result goes.
    :param stderr: where usage messages, warnings and errors go.
    :param tz: the time zone of the dates shown; the local one when
        ``None``.
    :param stdin: where ``--token -`` is read; the process's when ``None``.
    :return: the exit status: 0, 1 or 2 (see the module).
    """
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            arguments = parser().parse_args(list(argv))
        except SystemExit as exit:
            return exit.code if isinstance(exit.code, int) else 2
    run = cast(Command, arguments.run)
    return run(arguments, Terminal(stdout, stderr, tz, stdin))
