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

from ccm.pool.sessions import MemorySessionTable, SessionTable
from ccm.state.redis import RedisStore


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
