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
from ccm.limits.gate import UserLimits
from ccm.shares.ledger import ShareBook
from ccm.state.limits import HolderService, SharedLimits
from ccm.state.shared import SharedState
from ccm.state.shares import SharedShareBook, ShareSync


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

    def test_shares_and_limits_alone(self) -> None:
        """
        Alone, the share book and the limits are this process's own, the
        share files are always written, and nothing runs.
        """
        state = SharedState(None, Clock())
        self.assertIs(type(state.share_book(["a"])), ShareBook)
        self.assertIs(type(state.user_limits([], lambda user, limit: None)), UserLimits)
        self.assertTrue(state.writes_share_files()())
        self.assertEqual(state.services, [])

    def test_shares_and_limits_shared(self) -> None:
        """
        Shared, the book and the limits are Redis's, kept by services of
        their own; the share files wait for their lease.
        """
        clock = Clock()
        store = RedisStore(StateConfig(host="127.0.0.1"), clock)  # type: ignore[arg-type]
        state = SharedState(store, clock)
        self.assertIsInstance(state.share_book(["a"]), SharedShareBook)
        self.assertIsInstance(state.user_limits([], lambda user, limit: None), SharedLimits)
        self.assertFalse(state.writes_share_files()())
        kinds = [type(service) for service in state.services]
        self.assertIn(ShareSync, kinds)
        self.assertIn(HolderService, kinds)
