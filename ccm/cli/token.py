# -*- test-case-name: tests.cli.test_token -*-
"""
``ccm token [--name NAME]``: a new ccm token for a user, and the ``users``
entry to paste into the configuration.

The token is 32 random bytes from :obj:`secrets` (256 bits), URL-safe
base64, after the prefix ``ak-ccm-`` that makes it recognisable wherever it
turns up (a shell history, a leaked file).  It is written to stdout only:
stderr gets the instructions, and nothing is logged or saved.
"""

from __future__ import annotations

import argparse
import json
import secrets
from typing import TYPE_CHECKING

from ccm.cli.terminal import Terminal

if TYPE_CHECKING:
    from ccm.cli.terminal import Subcommands

#: What every token ``ccm token`` makes starts with.
TOKEN_PREFIX = "ak-ccm-"
#: The random bytes of a token: 256 bits.
TOKEN_BYTES = 32
#: The name of the entry when ``--name`` is not given, to be replaced.
PLACEHOLDER_NAME = "NAME"


def new_token() -> str:
    """
    A new ccm token: :obj:`TOKEN_PREFIX` and :obj:`TOKEN_BYTES` random bytes.
    """
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def register(commands: Subcommands) -> None:
    """
    Add ``token`` to the subcommands.
    """
    command = commands.add_parser(
        "token",
        help="make a new user token and its users entry",
        description=(
            "Print a new random ccm token (256 bits) on the first line and the "
            "entry to add to the configuration's users list on the second. "
            "Nothing is saved or logged."
        ),
    )
    command.add_argument("--name", default="", help="the user's name in the entry (default: NAME, to replace)")
    command.set_defaults(run=run)


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    """
    Print a new token and its ``users`` entry.

    :return: 0; 1 for a name that no configuration accepts.
    """
    name: str = arguments.name.strip() if arguments.name else PLACEHOLDER_NAME
    if not name.isprintable():
        terminal.error("token", "--name must be printable text")
        return 1
    token = new_token()
    entry = json.dumps({"name": name, "token": token}, ensure_ascii=False)
    terminal.stdout.write(f"{token}\n{entry}\n")
    whom = "NAME's" if name == PLACEHOLDER_NAME else f"{name}'s"
    terminal.stderr.write(
        "Add the second line to the users list of the configuration (and reload ccm with "
        f"SIGHUP); give the token on the first line to its user, as {whom} ANTHROPIC_AUTH_TOKEN, "
        "by a private channel.\n"
    )
    return 0
