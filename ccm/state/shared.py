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

from ccm.pool.affinity import AffinityTable, MemoryAffinityTable
from ccm.pool.windows import MemoryWindowState, WindowState
from ccm.pool.sessions import MAX_SESSIONS, SESSION_IDLE_SECONDS, MemorySessionTable, SessionTable
from ccm.state.affinity import RedisAffinityTable
from ccm.state.redis import RedisStore
from ccm.state.sessions import RedisSessionTable
from ccm.state.windows import RedisWindowState


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
