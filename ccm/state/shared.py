# -*- test-case-name: tests.state.test_shared -*-
"""
What a service keeps of its state, for the builder: the in-memory (and
file) implementation of each seam without a ``state`` key, the Redis one
with it.  Each seam's memory implementation lives in its own room; this
module only chooses.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime

from ccm.accounting.usagefile import UsageFile, UsageSaverService
from ccm.config.model import UserConfig
from ccm.credentials.credential import Credential
from ccm.credentials.lock import RefreshLocking
from ccm.credentials.store import CredentialStore
from ccm.limits.gate import UserLimits
from ccm.pool.affinity import AffinityTable, MemoryAffinityTable
from ccm.pool.sessions import MAX_SESSIONS, SESSION_IDLE_SECONDS, MemorySessionTable, SessionTable
from ccm.pool.windows import MemoryWindowState, WindowState
from ccm.shares.ledger import ShareBook
from ccm.state.affinity import RedisAffinityTable
from ccm.state.credentials import SharedCredentialStore
from ccm.state.lease import Lease, LeaseKeeper
from ccm.state.limits import HolderService, SharedLimits
from ccm.state.pauses import SharedPauses
from ccm.state.redis import RedisStore
from ccm.state.sessions import RedisSessionTable
from ccm.state.shares import SharedShareBook, ShareSync
from ccm.state.tokensync import TokenSync, fernet_from_file
from ccm.state.usage import SharedUsageCounters
from ccm.state.usagesaver import SharedUsageSaver
from ccm.state.windows import RedisWindowState

#: How long the lease of the share files' writer lives unrenewed.
SHARE_FILES_LEASE_SECONDS = 30.0


class SharedState:
    """
    The state of one service: its own (``store`` None) or shared through
    ``store`` with the other processes of the same Redis and key prefix.
    """

    def __init__(self, store: RedisStore | None, clock: IReactorTime) -> None:
        self.store = store
        self._clock = clock
        #: The services that keep the shared copies in step, the store
        #: first (so that it stops last).
        self.services: list[IService] = [store] if store is not None else []
        #: The shared credentials' tokens and poll leases.
        self.tokens: TokenSync | None = None
        if store is not None:
            self.tokens = TokenSync(store, clock, fernet_from_file(store.config.encryption_key_file))
            self.services.append(self.tokens)

    @property
    def shared(self) -> bool:
        """
        Whether state is shared with other processes.
        """
        return self.store is not None

    def session_table(self, pool: str) -> SessionTable:
        """
        The sticky sessions of balancer ``pool``.
        """
        if self.store is None:
            return MemorySessionTable()
        return RedisSessionTable(
            self.store, self._clock, "session", pool, SESSION_IDLE_SECONDS, MAX_SESSIONS
        )

    def affinity_table(self, pool: str) -> AffinityTable:
        """
        The request ids and sub-agents of balancer ``pool``.
        """
        if self.store is None:
            return MemoryAffinityTable()
        return RedisAffinityTable(self.store, self._clock, pool)

    def window_state(self, tag: str) -> WindowState:
        """
        The window state and cooldowns of credential ``tag``.
        """
        if self.store is None:
            return MemoryWindowState(tag)
        return RedisWindowState(self.store, self._clock, tag)

    def connected(self) -> bool | None:
        """
        Whether the shared state is reachable now; None without one.
        """
        return None if self.store is None else self.store.connected

    def share_book(self, tags: Sequence[str]) -> ShareBook:
        """
        The users' share charges on credentials ``tags``: this process's,
        or the cluster's (kept in step by a :obj:`ShareSync`).
        """
        if self.store is None:
            return ShareBook()
        book = SharedShareBook(self.store, self._clock, tags)
        self.services.append(ShareSync(book, self.store, self._clock))
        return book

    def writes_share_files(self) -> Callable[[], bool]:
        """
        Whether this process writes the share files now: always alone; with
        others, while it holds their lease (one writer, the cluster's
        charges).
        """
        if self.store is None:
            return lambda: True
        keeper = LeaseKeeper(
            Lease(self.store, "share-files", SHARE_FILES_LEASE_SECONDS), self._clock
        )
        self.services.append(keeper)
        return lambda: keeper.held

    def user_limits(
        self, users: Iterable[UserConfig], on_refusal: Callable[[str, str], None]
    ) -> UserLimits:
        """
        The users' ``requests_per_minute`` and ``max_concurrent``: counted
        here, or across the processes while Redis answers.
        """
        if self.store is None:
            return UserLimits(self._clock, users, on_refusal=on_refusal)
        limits = SharedLimits(self.store, self._clock, users, on_refusal)
        self.services.append(HolderService(limits, self.store, self._clock))
        return limits

    def credential_store(
        self, tag: str, local: CredentialStore, lock: RefreshLocking | None
    ) -> tuple[CredentialStore, RefreshLocking | None]:
        """
        Where credential ``tag`` keeps its tokens and what it takes around
        a refresh: ``local`` (its file or keychain item) and Claude Code's
        ``lock`` alone, or, shared, the tokens in Redis and the refresh
        lease before that lock (:obj:`ccm.state.credentials`).
        """
        if self.tokens is None:
            return local, lock
        return self.tokens.credential(tag, local, lock)

    def follow_credentials(self, credentials: Sequence[Credential]) -> None:
        """
        Reload each shared credential when another process stored a newer
        token, and keep the admins' pauses the same in every process.
        """
        for credential in credentials:
            if isinstance(credential.store, SharedCredentialStore):
                credential.store.changed = credential.reload
        if self.store is not None:
            self.services.append(SharedPauses(self.store, {c.tag: c for c in credentials}))

    def polls(self) -> Callable[[str], bool] | None:
        """
        Whether this process polls a credential's usage (by tag), or None
        when it polls them all (nothing shared).
        """
        return self.tokens.polls if self.tokens is not None else None

    def usage_saver(self, tag: str, usage_file: UsageFile) -> UsageSaverService:
        """
        The recorder and saver of credential ``tag``'s usage file, loaded
        here: its own book, or the counters shared with the other processes
        (the file written by one of them at a time).
        """
        book = usage_file.load()
        if self.store is None:
            return UsageSaverService(usage_file, book, self._clock)
        counters = SharedUsageCounters(self.store, tag, self._clock, book.snapshot())
        return SharedUsageSaver(usage_file, counters, self.store, self._clock)


def local_store(store: Any) -> Any:
    """
    The file (or keychain item) behind ``store``: itself, unless shared.
    """
    return store.local if isinstance(store, SharedCredentialStore) else store
