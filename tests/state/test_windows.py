"""
Tests for :obj:`ccm.state.windows`: a credential's window state and
cooldowns shared by several processes through a real ``redis-server``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.trial import unittest

from ccm.pool.figures import WindowName
from ccm.pool.plan import Plan
from ccm.state.windows import RedisWindowState
from tests.pool.test_windows import rejection, unified
from tests.redisserver import start_redis
from tests.state.test_sessions import now, ready
from tests.state.test_redis import eventually, listened


class SnapshotTests(unittest.SynchronousTestCase):
    """
    The state travels as a document that gives back the same state.
    """

    def test_round_trip(self) -> None:
        """
        Windows, the limit (with its window), the plan and extra usage all
        survive a snapshot and restore.
        """

        class Quiet:
            connected = False
            process_id = "p"

            def key(self, *parts: str) -> str:
                return ":".join(parts)

            def subscribe(self, channel: str, receive: object) -> None:
                pass

            def when_connected(self, callback: object, listening: bool = False) -> None:
                pass

        # A clock of the test's own: the writes the observations schedule
        # must not be left on the global reactor for a later test to find.
        clock = Clock()
        source = RedisWindowState(Quiet(), clock, "a")  # type: ignore[arg-type]
        at = 1_790_000_000.0
        source.observe(unified(h5_utilization="0.42", h5_reset=str(int(at) + 600)), at)
        source.observe_rejection(rejection(claim="7d", retry_after="60"), at)
        source.apply_profile(Plan("max", "default_claude_max_20x"))
        copy = RedisWindowState(Quiet(), clock, "a")  # type: ignore[arg-type]
        heard: list[None] = []
        copy.subscribe(lambda: heard.append(None))
        copy.restore(source.snapshot())
        self.assertEqual(copy.snapshot(), source.snapshot())
        self.assertEqual(copy.window(WindowName.FIVE_HOUR, at).utilization, 42.0)
        self.assertEqual(copy.limit(at), source.limit(at))
        self.assertEqual(copy.plan, Plan("max", "default_claude_max_20x"))
        self.assertEqual(len(heard), 1)


class SharedWindowTests(unittest.TestCase):
    """
    Two processes share one credential's window state.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for its Deferred
        self.server = yield start_redis(self)

    @inlineCallbacks
    def pair(self, prefix: str) -> Any:
        first = yield ready(self, self.server, prefix)
        second = yield ready(self, self.server, prefix)
        mine, theirs = RedisWindowState(first, reactor, "a"), RedisWindowState(second, reactor, "a")
        yield listened(first, first.key("events", "window", "a"), 2)
        return first, mine, theirs

    @inlineCallbacks
    def test_limit_reaches_the_other_at_once(self) -> Any:
        """
        A 429's limit goes out at once, without waiting for the coalescing
        interval, and the other process then knows it.
        """
        store, mine, theirs = yield self.pair("w1:")
        sent: list[object] = []
        evaluate = store.evaluate

        def recording(*args: Any) -> Any:
            sent.append(args)
            return evaluate(*args)

        store.evaluate = recording
        mine.observe_rejection(rejection(claim="5h", retry_after="600"), now())
        self.assertEqual(len(sent), 1)
        yield eventually(lambda: theirs.is_limited(now()))
        self.assertEqual(theirs.limit(now()), mine.limit(now()))

    @inlineCallbacks
    def test_figures_are_coalesced_last_wins(self) -> Any:
        """
        A burst of utilization updates goes out as one write carrying the
        last figures; the hash holds them.
        """
        store, mine, theirs = yield self.pair("w2:")
        sent: list[object] = []
        evaluate = store.evaluate

        def recording(*args: Any) -> Any:
            sent.append(args)
            return evaluate(*args)

        store.evaluate = recording
        for percent in range(10, 60, 10):
            mine.apply_poll((float(percent), 0.0), None, now())
        yield eventually(lambda: theirs.five_hour.utilization == 50.0)
        self.assertEqual(len(sent), 1)
        fields = yield store.command("HGETALL", "w2:window:a")
        self.assertEqual(set(fields[::2]), {"at", "by", "state"})

    @inlineCallbacks
    def test_later_process_loads_the_hash(self) -> Any:
        """
        A process starting after the limit was set reads it from Redis.
        """
        store, mine, _ = yield self.pair("w3:")
        mine.observe_rejection(rejection(claim="5h", retry_after="600"), now())
        yield deferLater(reactor, 0.1, lambda: None)
        late_store = yield ready(self, self.server, "w3:")
        late = RedisWindowState(late_store, reactor, "a")
        yield eventually(lambda: late.is_limited(now()))

    @inlineCallbacks
    def test_learnt_while_away_is_pushed(self) -> Any:
        """
        A limit one process met while Redis was away (and lost every key)
        reaches the other once Redis returns.
        """
        store, mine, theirs = yield self.pair("w4:")
        yield self.server.stop()
        yield eventually(lambda: not store.connected)
        mine.observe_rejection(rejection(claim="5h", retry_after="600"), now())
        self.assertFalse(theirs.is_limited(now()))
        yield self.server.start()
        yield eventually(lambda: theirs.is_limited(now()), timeout=20)

    @inlineCallbacks
    def test_older_state_does_not_win(self) -> Any:
        """
        A state written before the one Redis holds is refused, and its
        writer takes the newer one instead.
        """
        store, mine, theirs = yield self.pair("w5:")
        theirs.apply_poll((70.0, 0.0), None, now())
        yield eventually(lambda: mine.five_hour.utilization == 70.0)
        mine.apply_poll((20.0, 0.0), None, now())
        mine._written_at = 1.0  # as if written long ago
        mine._flush()
        yield eventually(lambda: mine.five_hour.utilization == 70.0)
        self.assertEqual(theirs.five_hour.utilization, 70.0)
