# -*- test-case-name: tests.cli.test_credentials -*-
"""
``ccm credentials import CONFIG [--tag TAG]``: put the tokens of this
host's credentials files (or keychain item) into the Redis of the
configuration's ``state``, so the processes of other hosts can serve them.

A token is imported only when Redis has none for the credential or one
that expires earlier: importing never puts an older token over a newer
one.  One line per credential, then a final line; the tokens are never
printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import react

from ccm.cli.terminal import Terminal
from ccm.config.model import ConfigError
from ccm.config.load import load_config
from ccm.config.model import ServiceConfig
from ccm.credentials.file import CredentialFileError
from ccm.credentials.store import credential_store_for
from ccm.state.redis import RedisStore
from ccm.state.tokens import TokenVault, tokens_of
from ccm.state.tokensync import fernet_from_file

if TYPE_CHECKING:
    from ccm.cli.terminal import Subcommands

#: How long the command waits for Redis.
CONNECT_TIMEOUT_SECONDS = 10.0


def register(commands: Subcommands) -> None:
    """
    Add ``credentials import`` to the subcommands.
    """
    command = commands.add_parser(
        "credentials",
        help="manage the tokens shared through the state's Redis",
        description="Manage the credentials' tokens kept in the shared state (Redis).",
    )
    actions = command.add_subparsers(dest="action", metavar="ACTION", required=True)
    imports = actions.add_parser(
        "import",
        help="import this host's credentials into Redis",
        description=(
            "Import the tokens of this host's credentials files (or keychain item) into the "
            "Redis of CONFIG's state, where Redis has none or an older one."
        ),
    )
    imports.add_argument("config", metavar="CONFIG", help="the configuration file (as twistd ccm --config)")
    imports.add_argument("--tag", default="", help="only the credential with this tag")
    imports.set_defaults(run=run)


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    """
    Load the configuration and import, on the reactor.

    :return: 0 when every credential was imported or Redis had one as
        new; 1 otherwise.
    """
    try:
        config = load_config(arguments.config)
    except ConfigError as error:
        for line in error.problems:
            terminal.stderr.write(line + "\n")
        terminal.error("credentials", f"{arguments.config} cannot be used")
        return 1
    status = [1]

    def main(reactor: Any) -> Deferred[None]:
        work = Deferred.fromCoroutine(
            import_credentials(
                config.services[0], reactor, terminal, arguments.tag, os.environ,
                os.path.expanduser("~"), sys.platform,
            )
        )
        return work.addCallback(lambda code: status.__setitem__(0, code))

    try:
        react(main)
    except SystemExit:
        pass
    return status[0]


async def import_credentials(
    service: ServiceConfig,
    reactor: IReactorTime,
    terminal: Terminal,
    tag: str,
    environ: Mapping[str, str],
    home: str,
    platform: str,
) -> int:
    """
    Import ``service``'s credentials (only ``tag`` when given) into its
    state's Redis, saying what happened to each on ``terminal``.

    :return: the exit status.
    """
    state = service.state
    if state is None:
        terminal.error("credentials", "the configuration has no state key: nothing is shared")
        return 1
    configs = [c for c in service.default_credentials() if not tag or c.tag == tag]
    if not configs:
        terminal.error("credentials", f"no credential with tag {tag!r}")
        return 1
    store = RedisStore(state, reactor)
    connected: Deferred[None] = Deferred()

    def up() -> None:
        if not connected.called:
            connected.callback(None)

    def give_up() -> None:
        if not connected.called:
            connected.errback(TimeoutError())

    store.when_connected(up)
    timeout = reactor.callLater(CONNECT_TIMEOUT_SECONDS, give_up)
    store.startService()
    try:
        await connected
    except TimeoutError:
        await store.stopService()
        terminal.error("credentials", f"cannot reach the shared state at {state.address}")
        return 1
    finally:
        if timeout.active():
            timeout.cancel()
    vault = TokenVault(store, fernet_from_file(state.encryption_key_file))
    imported = failed = 0
    try:
        for config in configs:
            local: Any = credential_store_for(config.credential_path, environ, home, platform)
            try:
                oauth = local.read_oauth()
                expires = tokens_of(oauth, local.path).expires_at_ms
            except CredentialFileError as error:
                terminal.stdout.write(f"{config.tag}: not imported: {error}\n")
                failed += 1
                continue
            version = await vault.offer(config.tag, oauth)
            if version:
                imported += 1
                terminal.stdout.write(
                    f"{config.tag}: imported from {local.path} as version {version} "
                    f"(expires {_when(expires)})\n"
                )
            else:
                terminal.stdout.write(
                    f"{config.tag}: kept: the shared state holds a token expiring as late or "
                    f"later than {local.path}'s\n"
                )
    finally:
        await store.stopService()
    terminal.stdout.write(
        f"{imported} of {len(configs)} credentials imported into {state.address}"
        + (f", {failed} could not be read" if failed else "")
        + "\n"
    )
    return 1 if failed else 0


def _when(expires_at_ms: int) -> str:
    if not expires_at_ms:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(expires_at_ms / 1000))
