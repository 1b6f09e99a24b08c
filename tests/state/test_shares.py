"""
Tests for :obj:`ccm.state.shares`: share charges kept by two processes in
one real ``redis-server``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial import unittest

from ccm.pool.figures import Window
from ccm.shares.files import ShareSaverService
from ccm.shares.ledger import FIVE_HOUR, ShareBook
from ccm.shares.report import format_shares, read_share_file
from ccm.shares.standing import Entitlement, Shares
from ccm.state.redis import RedisStore
from ccm.state.shares import _CLAIM, SharedShareBook, ShareSync
from tests.redisserver import RedisServer, start_redis
from tests.state.test_redis import connect, eventually


class SharedShareBookTests(unittest.TestCase):
    """
    Two books, as two processes, on one server: rises charged once,
    totals seen by both, batches applied once, charges kept while Redis
    is away.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for its Deferred
        self.server: RedisServer = yield start_redis(self)
        self.clock = Clock()
        self.clock.advance(time.time())
        self.reset = time.time() + 3600

    @inlineCallbacks
    def book(self) -> Any:
        """A connected book on credential ``a`` and its sync."""
        store: RedisStore = connect(self, self.server, key_prefix="shares-test:")
        yield eventually(lambda: store.connected)
        book = SharedShareBook(store, self.clock, ["a"])
        return book, ShareSync(book, store, self.clock)

    def observe(self, book: SharedShareBook, percent: float) -> None:
        book.observe("a", {FIVE_HOUR: Window(percent, self.reset)}, 1.0, self.clock.seconds())

    @inlineCallbacks
    def test_rise_charged_once(self) -> Any:
        """
        Both processes read 10 % then 30 % with a request of their own
        running between: the rise of 20 is charged once, to the requests
        of the process that read it first, and after a flush each process
        sees the cluster's totals.
        """
        one, sync1 = yield self.book()
        two, sync2 = yield self.book()
        for book, user in ((one, "alice"), (two, "bob")):
            self.observe(book, 10.0)
            key = book.begin("a", user, self.clock.seconds())
            self.clock.advance(1)
            book.finish(key, 0.5, self.clock.seconds())
        self.observe(one, 30.0)
        yield eventually(lambda: one.pending)
        self.observe(two, 30.0)
        yield sync1.flush()
        yield sync2.flush()
        now = self.clock.seconds()
        for book in (one, two):
            self.assertAlmostEqual(book.used("alice", "a", FIVE_HOUR, now), 20.0)
            self.assertAlmostEqual(book.charged("bob", "a", FIVE_HOUR, now), 0.0)

    @inlineCallbacks
    def test_share_file_of_the_cluster(self) -> Any:
        """
        The share file the writer process saves from its shared book holds
        the cluster's charges, as one process's would, and the users: the
        other process charged alice's 20 units, and ``ccm usage`` reads
        them as 20.0 % of her 30 % of a 100-unit pool.
        """
        one, sync1 = yield self.book()
        two, sync2 = yield self.book()
        self.observe(one, 10.0)
        self.observe(two, 10.0)
        key = one.begin("a", "alice", self.clock.seconds())
        self.clock.advance(1)
        one.finish(key, 0.5, self.clock.seconds())
        self.observe(one, 30.0)
        yield eventually(lambda: one.pending)
        yield sync1.flush()
        yield sync2.flush()
        path = os.path.abspath(self.mktemp())
        users = {"a": {"alice": Entitlement(100.0, Shares(five_hour=30))}}
        ShareSaverService(two, {"a": path}, self.clock, users=lambda: users).save()
        book = ShareBook()
        recorded = read_share_file(book, "a", path, self.clock.seconds())
        self.assertEqual(recorded, users["a"])
        lines = format_shares(book, ["a"], self.clock.seconds(), None, {"a": recorded})
        self.assertEqual(lines[4].split()[:5], ["alice", "5-hour", "30%", "20.0%", "10.0%"])

    @inlineCallbacks
    def test_batch_applied_once(self) -> Any:
        """
        A batch whose outcome was not known is sent again as it was, and
        counted once.
        """
        one, sync1 = yield self.book()
        two, sync2 = yield self.book()
        self.observe(one, 10.0)
        delta = ("a", FIVE_HOUR, int(self.reset), "alice")
        one.pending[delta] = 7.0
        yield sync1.flush()
        # As if the reply had been lost: the same batch again.
        one.sending = {delta: 7.0}
        yield sync1.flush()
        yield sync2.flush()
        self.assertAlmostEqual(two.charged("alice", "a", FIVE_HOUR, self.clock.seconds()), 7.0)
        self.assertEqual(one.sending, {})

    @inlineCallbacks
    def test_redis_away(self) -> Any:
        """
        While Redis is away, the rise read here is charged here, counted in
        the user's use, and sent once Redis is back.
        """
        one, sync1 = yield self.book()
        two, sync2 = yield self.book()
        self.observe(one, 10.0)
        yield self.server.stop()
        yield eventually(lambda: not one._store.connected)
        key = one.begin("a", "alice", self.clock.seconds())
        one.finish(key, 0.0, self.clock.seconds())
        self.observe(one, 14.0)
        now = self.clock.seconds()
        self.assertAlmostEqual(one.used("alice", "a", FIVE_HOUR, now), 4.0)
        yield sync1.flush()
        self.assertTrue(one.pending)
        yield self.server.start()
        yield eventually(lambda: one._store.connected and two._store.connected)
        yield sync1.flush()
        yield sync2.flush()
        self.assertAlmostEqual(two.charged("alice", "a", FIVE_HOUR, now), 4.0)
        self.assertAlmostEqual(one.charged("alice", "a", FIVE_HOUR, now), 4.0)

    @inlineCallbacks
    def test_stopped_with_the_store(self) -> Any:
        """
        Stopped together with its store, as the service stops its
        background parts, the sync still sends the last charges and hears
        them confirmed: the store stays open until they are.
        """
        one, sync1 = yield self.book()
        two, sync2 = yield self.book()
        self.observe(one, 10.0)
        one.pending[("a", FIVE_HOUR, int(self.reset), "alice")] = 3.0
        sync1.startService()
        yield gatherResults([sync1.stopService(), one._store.stopService()])
        self.assertEqual((one.pending, one.sending), ({}, {}))
        yield sync2.flush()
        self.assertAlmostEqual(two.charged("alice", "a", FIVE_HOUR, self.clock.seconds()), 3.0)

    @inlineCallbacks
    def test_no_rise_asks_nothing(self) -> Any:
        """
        An answer whose figures did not rise (the usual one: the headers
        move in steps of a whole percent) claims nothing in Redis; the
        first rise does.
        """
        one, _ = yield self.book()
        claims: list[Any] = []
        evaluate = one._store.evaluate

        def counting(script: str, keys: Any, args: Any) -> Any:
            if script == _CLAIM:
                claims.append(keys)
            return evaluate(script, keys, args)

        one._store.evaluate = counting
        for _ in range(3):
            self.observe(one, 10.0)
        self.assertEqual(claims, [])
        self.observe(one, 11.0)
        self.assertEqual(len(claims), 1)
