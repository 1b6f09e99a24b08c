# -*- test-case-name: tests.state.test_shared -*-
"""
What a service keeps of its state, for the builder: the in-memory (and
file) implementation of each seam without a ``state`` key, the Redis one
with it.  Each seam's memory implementation lives in its own room; this
module only chooses.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime

from ccm.accounting.usagefile import UsageFile, UsageSaverService
from ccm.pool.sessions import MemorySessionTable, SessionTable
from ccm.state.redis import RedisStore
from ccm.state.usage import SharedUsageCounters
from ccm.state.usagesaver import SharedUsageSaver


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
        return MemorySessionTable()

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
