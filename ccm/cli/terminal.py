# -*- test-case-name: tests.cli.test_main -*-
"""
What every subcommand of ``ccm`` is given besides its arguments: where its
output and its errors go, and the time zone of the dates it shows.
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TextIO

#: The command's name in its messages and its usage lines.
PROG = "ccm"


@dataclass(frozen=True)
class Terminal:
    """
    The streams and time zone a subcommand runs with.

    :ivar stdout: the command's result (reports, tokens, shell lines).
    :ivar stderr: warnings, problems and errors; never a secret.
    :ivar tz: the time zone of the dates shown; the local one when ``None``.
    :ivar stdin: where a secret asked for as ``-`` is read; the process's
        when ``None``.
    """

    stdout: TextIO
    stderr: TextIO
    tz: datetime.tzinfo | None = None
    stdin: TextIO | None = None

    def error(self, command: str, message: str) -> None:
        """
        Write one error line, ``ccm COMMAND: message``, to :obj:`stderr`.
        """
        self.stderr.write(f"{PROG} {command}: {message}\n")


#: A subcommand: runs with its parsed arguments and returns the exit status.
Command = Callable[[argparse.Namespace, Terminal], int]

if TYPE_CHECKING:
    #: What ``add_subparsers`` returns, where each subcommand adds its parser.
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]
