"""
Tests for :obj:`ccm.state.lease`: one holder at a time, with fences, on a
real ``redis-server``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from ccm.state.lease import Lease, LeaseKeeper
from ccm.state.redis import RedisStore
from tests.redisserver import start_redis
from tests.state.test_redis import connect, eventually


class LeaseTests(unittest.TestCase):
    """
    A lease has one holder at a time; each new holder gets a larger fence.
    """

    timeout = 60

    @inlineCallbacks
    def test_one_holder(self) -> Any:
        """
        The first process to ask holds the lease and can renew it; another
        is refused until the holder releases it, then gets a larger fence.
        """
        server = yield start_redis(self)
        first, second = connect(self, server), connect(self, server)
        yield eventually(lambda: first.connected and second.connected)
        mine, theirs = Lease(first, "job", 30), Lease(second, "job", 30)
        fence = yield mine.acquire()
        self.assertGreater(fence, 0)
        self.assertEqual((yield mine.acquire()), fence)
        self.assertEqual((yield theirs.acquire()), 0)
        self.assertFalse((yield theirs.release()))
        self.assertEqual((yield theirs.acquire()), 0)
        self.assertTrue((yield mine.release()))
        self.assertEqual((yield theirs.acquire()), fence + 1)

    @inlineCallbacks
    def test_expiry(self) -> Any:
        """
        A holder that stops renewing loses the lease once its time to live
        has passed, and the next holder's fence is larger.
        """
        server = yield start_redis(self)
        first, second = connect(self, server), connect(self, server)
        yield eventually(lambda: first.connected and second.connected)
        fence = yield Lease(first, "job", 0.3).acquire()
        theirs = Lease(second, "job", 0.3)
        self.assertEqual((yield theirs.acquire()), 0)
        for _ in range(100):
            taken = yield theirs.acquire()
            if taken:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(taken, fence + 1)

    @inlineCallbacks
    def test_keeper_takes_over(self) -> Any:
        """
        Of two keepers one holds the lease; when it stops, the other takes
        over (told through ``gained``), and the first was told ``lost``.
        """
        server = yield start_redis(self)
        first, second = connect(self, server), connect(self, server)
        events: list[tuple[str, str]] = []

        def make_keeper(name: str, store: RedisStore) -> LeaseKeeper:
            return LeaseKeeper(
                Lease(store, "usage", 0.6),
                reactor,
                gained=lambda fence: events.append((name, "gained")),
                lost=lambda: events.append((name, "lost")),
            )

        keepers = [make_keeper(name, store) for name, store in (("first", first), ("second", second))]
        yield eventually(lambda: first.connected and second.connected)
        for keeper in keepers:
            keeper.startService()
            self.addCleanup(keeper.stopService)
        yield eventually(lambda: any(k.held for k in keepers))
        holder, other = keepers if keepers[0].held else keepers[::-1]
        self.assertFalse(other.held)
        fence = holder.fence
        yield holder.stopService()
        yield eventually(lambda: other.held)
        self.assertGreater(other.fence, fence)
        names = {id(keepers[0]): "first", id(keepers[1]): "second"}
        self.assertEqual(
            events,
            [(names[id(holder)], "gained"), (names[id(holder)], "lost"), (names[id(other)], "gained")],
        )
