# -*- test-case-name: tests.state.test_credentials -*-
"""
What a shared credential takes around a refresh: the refresh lease, so
that one process refreshes at a time, then Claude Code's lock on a host
with the credentials file.  Without Redis, a host with the file refreshes
under Claude Code's lock alone; one without waits.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ccm.credentials.lock import HeldLock, LockBusy, RefreshLocking
from ccm.state.credentials import REFRESH_LEASE_SECONDS, SharedCredentialStore
from ccm.state.lease import Lease
from ccm.state.redis import StateUnavailable

#: How long a refresh waits for Redis before refreshing from the local
#: file alone (or giving up, without one): the first connection at start.
CONNECT_WAIT_SECONDS = 5.0


class _HeldShared:
    """
    The refresh lease (when Redis answered) and Claude Code's lock (when
    this host has the file), held for one refresh.
    """

    def __init__(
        self,
        store: SharedCredentialStore,
        lease: Lease | None,
        local: HeldLock | None,
        until: float,
        clock: IReactorTime,
    ) -> None:
        self._store = store
        self._lease = lease
        self._local = local
        self._until = until
        self._clock = clock

    @property
    def compromised(self) -> str | None:
        if self._local is not None and self._local.compromised is not None:
            return self._local.compromised
        if self._lease is not None and self._clock.seconds() >= self._until:
            return "the refresh lease expired"
        return None

    def release(self) -> None:
        if self._local is not None:
            self._local.release()
            self._local = None
        self._store.fence = 0
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release().addErrback(lambda failure: None)


class SharedRefreshLock:
    """
    What a shared credential takes around a refresh: the lease
    ``refresh:<tag>`` then Claude Code's lock ``local`` (on a host with the
    file); without Redis, Claude Code's lock alone, on a host with the file.

    :param connected: fires with whether Redis is reachable, waiting a
        little for it when it is not (yet).
    """

    def __init__(
        self,
        store: SharedCredentialStore,
        local: RefreshLocking | None,
        clock: IReactorTime,
        connected: Callable[[float], Deferred[bool]],
    ) -> None:
        self._store = store
        self._local = local
        self._clock = clock
        self._connected = connected
        self.lease = Lease(store.vault.store, f"refresh:{store.tag}", REFRESH_LEASE_SECONDS)

    def acquire(self) -> Deferred[HeldLock]:
        return Deferred.fromCoroutine(self._acquire())

    async def _acquire(self) -> HeldLock:
        fence: int | None = None
        if await self._connected(CONNECT_WAIT_SECONDS):
            try:
                fence = await self.lease.acquire()
            except StateUnavailable:
                fence = None
        if fence == 0:
            raise LockBusy("another ccm process is refreshing this credential")
        if fence is None and not self._store.has_local:
            raise LockBusy(
                "the shared state is unreachable and this host has no credentials file to "
                "refresh from: waiting for the shared state"
            )
        until = self._clock.seconds() + REFRESH_LEASE_SECONDS
        held_local: HeldLock | None = None
        if self._local is not None and self._store.has_local:
            try:
                held_local = await self._local.acquire()
            except Exception:
                if fence:
                    self.lease.release().addErrback(lambda failure: None)
                raise
        self._store.fence = fence or 0
        return _HeldShared(self._store, self.lease if fence else None, held_local, until, self._clock)
