# -*- test-case-name: tests.cli.test_credentials -*-
"""
``ccm state-key``: a new key for ``state.encryption_key_file``, which
encrypts the tokens ccm keeps in Redis (cryptography's Fernet: 32 random
bytes, URL-safe base64, 44 characters).  Written to stdout only.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet

from ccm.cli.terminal import Terminal

if TYPE_CHECKING:
    from ccm.cli.terminal import Subcommands


def register(commands: Subcommands) -> None:
    """
    Add ``state-key`` to the subcommands.
    """
    command = commands.add_parser(
        "state-key",
        help="make a key that encrypts the tokens kept in Redis",
        description=(
            "Print a new Fernet key. Save it in a file readable by ccm only, name the file "
            "in the state's encryption_key_file, and give every process the same file."
        ),
    )
    command.set_defaults(run=run)


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    """
    Print a new key.

    :return: 0.
    """
    terminal.stdout.write(Fernet.generate_key().decode("ascii") + "\n")
    terminal.stderr.write(
        "Save this line in a file only ccm can read (chmod 600), set state.encryption_key_file "
        "to it on every process before the tokens are first imported (`ccm credentials import`).\n"
    )
    return 0
