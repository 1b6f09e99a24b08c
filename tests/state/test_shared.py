"""
Tests for :obj:`ccm.state.shared`: which implementation of each seam a
service gets.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ccm.config.state import StateConfig
from ccm.pool.sessions import MemorySessionTable
from ccm.state.redis import RedisStore
from ccm.state.shared import SharedState


class SharedStateTests(SynchronousTestCase):
    """
    Without a store everything stays in memory and nothing runs; with one
    the store is the first service.
    """

    def test_alone(self) -> None:
        """
        Without a ``state`` key the service shares nothing: no service to
        run, sessions in memory.
        """
        state = SharedState(None, Clock())
        self.assertFalse(state.shared)
        self.assertEqual(state.services, [])
        self.assertIsInstance(state.session_table("pool"), MemorySessionTable)

    def test_shared(self) -> None:
        """
        With a store, it is the first of the services (so it stops last).
        """
        clock = Clock()
        store = RedisStore(StateConfig(host="127.0.0.1"), clock)  # type: ignore[arg-type]
        state = SharedState(store, clock)
        self.assertTrue(state.shared)
        self.assertIs(state.services[0], store)
