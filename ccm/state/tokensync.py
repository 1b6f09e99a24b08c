# -*- test-case-name: tests.state.test_credentials -*-
"""
Keeping one process's shared credentials in step with the others: each
new version announced on ``<prefix>events:credentials`` is read at once,
and at every (re)connection each credential offers what Redis may lack
and reads what it missed.  Also the poll leases: one process at a time
polls each credential's usage (``<prefix>lease:poll:<tag>``).
"""

from __future__ import annotations

import json
from typing import Any, Callable

from cryptography.fernet import Fernet
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ccm.credentials.lock import RefreshLocking
from ccm.state.credentials import SharedCredentialStore
from ccm.state.refreshlock import SharedRefreshLock
from ccm.state.lease import Lease, LeaseKeeper
from ccm.state.redis import RedisStore
from ccm.state.tokens import TokenVault

#: How long a poll lease lasts without renewal: a killed poller's
#: credential is polled by another process within this.
POLL_LEASE_SECONDS = 30.0
#: How often each credential's version is read again, in case an
#: announcement was missed (one sent while this process's listening
#: connection was being remade).
VERSION_CHECK_SECONDS = 30.0


def fernet_from_file(path: str) -> Fernet | None:
    """
    The key in ``path`` (checked at start-up by :obj:`ccm.config.state`),
    or None without a file.
    """
    if not path:
        return None
    with open(path, "rb") as key:
        return Fernet(key.read().strip())


class TokenSync(MultiService):
    """
    The shared credentials of one process, on ``store``; its child
    services are the poll leases' keepers.
    """

    log = Logger()

    def __init__(
        self,
        store: RedisStore,
        clock: IReactorTime,
        fernet: Fernet | None,
        check_every: float = VERSION_CHECK_SECONDS,
    ) -> None:
        super().__init__()
        self._store = store
        self._clock = clock
        self.vault = TokenVault(store, fernet)
        self.stores: dict[str, SharedCredentialStore] = {}
        self._keepers: dict[str, LeaseKeeper] = {}
        self._waiting: list[Deferred[bool]] = []
        store.subscribe(self.vault.channel, self._announced)
        store.when_connected(self._reconnected)
        self._check_every = check_every
        self._checks = LoopingCall(self._check)
        self._checks.clock = clock

    def credential(
        self, tag: str, local: Any, lock: RefreshLocking | None
    ) -> tuple[SharedCredentialStore, SharedRefreshLock]:
        """
        The shared store and refresh lock of credential ``tag``, whose
        file (or keychain item) on this host is ``local``, guarded by
        Claude Code's lock ``lock``.
        """
        shared = SharedCredentialStore(tag, self.vault, local, self._clock)
        shared.local_lock = lock
        self.stores[tag] = shared
        keeper = LeaseKeeper(Lease(self._store, f"poll:{tag}", POLL_LEASE_SECONDS), self._clock)
        self._keepers[tag] = keeper
        keeper.setServiceParent(self)
        return shared, SharedRefreshLock(shared, lock, self._clock, self.connected)

    def polls(self, tag: str) -> bool:
        """
        Whether this process polls ``tag``'s usage now: it holds the poll
        lease, or Redis is away (then each process polls for itself).
        """
        keeper = self._keepers.get(tag)
        return keeper is None or keeper.held or not self._store.connected

    def connected(self, timeout: float) -> Deferred[bool]:
        """
        Fires with whether Redis is reachable: at once when it is, else
        once it connects or ``timeout`` seconds have passed.
        """
        d: Deferred[bool] = Deferred()
        if self._store.connected:
            d.callback(True)
            return d
        self._waiting.append(d)

        def give_up() -> None:
            if d in self._waiting:
                self._waiting.remove(d)
                d.callback(False)

        call = self._clock.callLater(timeout, give_up)

        def settled(result: bool) -> bool:
            if call.active():
                call.cancel()
            return result

        return d.addCallback(settled)

    def startService(self) -> None:
        super().startService()
        self._checks.start(self._check_every, now=False)

    def _check(self) -> None:
        for shared in self.stores.values():
            shared.push()
            shared.refetch()

    def stopService(self) -> Any:
        if self._checks.running:
            self._checks.stop()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(False)
        return super().stopService()

    def _reconnected(self) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(True)
        self._check()

    def _announced(self, message: str) -> None:
        try:
            news = json.loads(message)
            tag, version, sender = news["tag"], int(news["version"]), news["from"]
        except (ValueError, KeyError, TypeError):
            self.log.warn("Ignored a malformed message on {channel}", channel=self.vault.channel)
            return
        shared = self.stores.get(tag)
        if shared is None or sender == self._store.process_id or version == shared.version:
            return
        shared.refetch()

