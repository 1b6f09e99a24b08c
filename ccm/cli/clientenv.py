# -*- test-case-name: tests.cli.test_clientenv -*-
"""
``ccm client-env --url URL --token TOKEN [--shell sh|fish|powershell|json]``:
what a remote Claude Code needs to use ccm, as lines to paste into its
user's shell (or the ``env`` object of Claude Code's ``settings.json``).

The variables are those docs/clients.md describes: ``ANTHROPIC_BASE_URL``
and ``ANTHROPIC_AUTH_TOKEN``; ``ANTHROPIC_API_KEY`` unset, since a real API
key beside the ccm token gets every request refused; and
``ENABLE_PROMPT_CACHING_1H=1``, which gives back the one-hour prompt cache a
subscription's Claude Code uses (``--no-cache-1h`` leaves it out).
``--only-ccm`` adds ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``, so the
client talks to nothing but ccm.  Values are quoted for the shell chosen.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ccm.cli.terminal import Terminal

if TYPE_CHECKING:
    from ccm.cli.terminal import Subcommands

SHELLS = ("sh", "fish", "powershell", "json")


class InputError(ValueError):
    """
    A URL or token that no client could use, with the reason for people.
    """


def base_url(url: str) -> str:
    """
    ``url`` as ``ANTHROPIC_BASE_URL``: an ``http`` or ``https`` URL of a host
    (and port), without a trailing slash.

    :raises InputError: for anything else, such as a path (ccm serves the
        API at its root) or credentials in the URL.
    """
    if not url.isprintable() or any(c.isspace() for c in url):
        raise InputError("the URL holds white space or control characters")
    try:
        parts = urlsplit(url)
        parts.port
    except ValueError as error:
        raise InputError(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise InputError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise InputError("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise InputError("the URL must not hold a user or password; the token is given apart")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InputError("the URL must have no path, query or fragment: ccm serves the API at its root")
    return f"{parts.scheme}://{parts.netloc}"


def check_token(token: str) -> str:
    """
    ``token``, when it could be a user's ``token`` in a configuration.

    :raises InputError: otherwise (the token itself is never repeated).
    """
    if not token:
        raise InputError("the token is empty")
    if token != token.strip() or not token.isprintable() or any(c.isspace() for c in token):
        raise InputError("the token holds white space or control characters")
    return token


def variables(url: str, token: str, cache_1h: bool, only_ccm: bool) -> dict[str, str | None]:
    """
    The client's variables, in order: a value to set, or ``None`` to unset.
    """
    env: dict[str, str | None] = {
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_AUTH_TOKEN": token,
        "ANTHROPIC_API_KEY": None,
    }
    if cache_1h:
        env["ENABLE_PROMPT_CACHING_1H"] = "1"
    if only_ccm:
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    return env


def _fish_quote(value: str) -> str:
    # In fish's single quotes, only \\ and \' are escapes.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _powershell_quote(value: str) -> str:
    # In PowerShell's single quotes, a quote is doubled; nothing else is special.
    return "'" + value.replace("'", "''") + "'"


def render(env: dict[str, str | None], shell: str) -> str:
    """
    The lines that apply ``env`` in ``shell`` (one of :obj:`SHELLS`), ending
    with a newline; for ``json``, the ``env`` object of ``settings.json``.
    """
    if shell == "json":
        settings = {name: value for name, value in env.items() if value is not None}
        return json.dumps({"env": settings}, indent=2) + "\n"
    lines = []
    for name, value in env.items():
        if shell == "sh":
            lines.append(f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}")
        elif shell == "fish":
            lines.append(f"set -e {name}" if value is None else f"set -gx {name} {_fish_quote(value)}")
        elif shell == "powershell":
            lines.append(
                f"Remove-Item Env:{name} -ErrorAction SilentlyContinue"
                if value is None
                else f"$env:{name} = {_powershell_quote(value)}"
            )
        else:
            raise ValueError(f"unknown shell {shell!r}")
    return "\n".join(lines) + "\n"


def register(commands: Subcommands) -> None:
    """
    Add ``client-env`` to the subcommands.
    """
    command = commands.add_parser(
        "client-env",
        help="print the environment of a remote Claude Code",
        description=(
            "Print the lines that point a remote Claude Code at ccm: the base URL, the "
            "user's token, ANTHROPIC_API_KEY unset, and the one-hour prompt cache "
            "(see docs/clients.md)."
        ),
    )
    command.add_argument("--url", required=True, help="ccm's base URL as clients reach it, e.g. http://ccm-host:8080")
    command.add_argument("--token", required=True, help="the user's ccm token; '-' reads it from stdin")
    command.add_argument("--shell", choices=SHELLS, default="sh", help="the syntax of the lines (default: sh, for bash and zsh too)")
    command.add_argument(
        "--no-cache-1h",
        dest="cache_1h",
        action="store_false",
        help="leave out ENABLE_PROMPT_CACHING_1H=1 (keep Claude Code's 5-minute cache)",
    )
    command.add_argument(
        "--only-ccm",
        action="store_true",
        help="add CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1: the client contacts nothing but ccm",
    )
    command.set_defaults(run=run)


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    """
    Print the client's variables.

    :return: 0; 1 for a URL or token no client could use.
    """
    token: str = arguments.token
    if token == "-":
        token = (terminal.stdin or sys.stdin).readline().rstrip("\r\n")
    try:
        url = base_url(arguments.url)
        check_token(token)
    except InputError as error:
        terminal.error("client-env", str(error))
        return 1
    terminal.stdout.write(render(variables(url, token, arguments.cache_1h, arguments.only_ccm), arguments.shell))
    return 0
