"""
Tests for :obj:`ccm.state.shared`: which implementation of each seam a
service gets.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ccm.config.state import StateConfig
from ccm.metrics.registry import ServiceMetrics
from ccm.pool.affinity import MemoryAffinityTable
from ccm.pool.sessions import MemorySessionTable
from ccm.pool.windows import MemoryWindowState
from ccm.state.affinity import RedisAffinityTable
from ccm.state.sessions import RedisSessionTable
from ccm.state.windows import RedisWindowState
from ccm.web.health import health
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
        store = RedisStore(StateConfig(host="127.0.0.1"), clock)
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
        store = RedisStore(StateConfig(host="127.0.0.1"), clock)
        state = SharedState(store, clock)
        self.assertIsInstance(state.share_book(["a"]), SharedShareBook)
        self.assertIsInstance(state.user_limits([], lambda user, limit: None), SharedLimits)
        self.assertFalse(state.writes_share_files()())
        kinds = [type(service) for service in state.services]
        self.assertIn(ShareSync, kinds)
        self.assertIn(HolderService, kinds)

class SeamTests(SynchronousTestCase):
    """
    Each seam is in memory without a store and shared with one.
    """

    def test_seams(self) -> None:
        """
        Sessions, affinity and window state: memory alone, Redis-backed
        with a store; only a store has a connection to report.
        """
        clock = Clock()
        alone = SharedState(None, clock)
        self.assertIsInstance(alone.affinity_table("pool"), MemoryAffinityTable)
        self.assertIsInstance(alone.window_state("a"), MemoryWindowState)
        self.assertNotIsInstance(alone.window_state("a"), RedisWindowState)
        self.assertIsNone(alone.connected())
        store = RedisStore(StateConfig(host="127.0.0.1"), clock)
        shared = SharedState(store, clock)
        self.assertIsInstance(shared.session_table("pool"), RedisSessionTable)
        self.assertIsInstance(shared.affinity_table("pool"), RedisAffinityTable)
        self.assertIsInstance(shared.window_state("a"), RedisWindowState)
        self.assertIs(shared.connected(), False)


class ConnectionStatusTests(SynchronousTestCase):
    """
    Health and metrics say whether the shared state is reachable.
    """

    def test_health_says_state_only_when_shared(self) -> None:
        """
        The health document gains ``state`` only with a shared state, and
        its status code does not depend on it.
        """
        self.assertNotIn("state", health({}, 0.0)[1])
        code, document = health({}, 0.0, connected=False)
        self.assertEqual((code, document["state"]), (health({}, 0.0)[0], "disconnected"))
        self.assertEqual(health({}, 0.0, connected=True)[1]["state"], "connected")

    def test_gauge(self) -> None:
        """
        ``ccm_state_connected`` is 1 while connected and 0 while not, read at
        each scrape.
        """
        metrics = ServiceMetrics([], Clock())
        up = [True]
        metrics.follow_state(lambda: up[0])
        self.assertEqual(metrics.registry.get_sample_value("ccm_state_connected"), 1.0)
        up[0] = False
        self.assertEqual(metrics.registry.get_sample_value("ccm_state_connected"), 0.0)
