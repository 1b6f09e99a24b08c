"""
Tests for :obj:`ccm.state.usage`: usage counters shared by several
processes through a real ``redis-server``.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.defer import fail, gatherResults, inlineCallbacks
from twisted.trial import unittest

from ccm.accounting.counters import UsageSnapshot
from ccm.state.redis import RedisStore
from ccm.state.usage import SharedUsageCounters
from tests.accounting.samples import sample_book
from tests.fixtures import clock_at, counts, record
from tests.redisserver import start_redis
from tests.state.test_redis import connect, eventually


def requests(snapshot: UsageSnapshot) -> int:
    """
    How many requests ``snapshot`` counts in all.
    """
    return sum(c.total.request_count for c in snapshot.combinations)


class LostAnswers:
    """
    Wraps a store's ``evaluate`` so that the next ``count`` scripts run on
    the server but their answers are lost, as when a reply times out.
    """

    def __init__(self, store: RedisStore, count: int) -> None:
        self.count = count
        self._evaluate = store.evaluate
        store.evaluate = self.evaluate  # type: ignore[method-assign]

    def evaluate(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        ran = self._evaluate(script, keys, args)
        if self.count <= 0:
            return ran
        self.count -= 1
        return ran.addCallback(lambda _: fail(TimeoutError("reply lost")))


class SharedUsageCountersTests(unittest.TestCase):
    """
    Each process adds its counts; every process reads the cluster's totals;
    nothing is counted twice, even when an answer is lost.
    """

    timeout = 60

    @inlineCallbacks
    def two(self, prefix: str) -> Any:
        server = yield start_redis(self)
        stores = [connect(self, server, key_prefix=prefix) for _ in range(2)]
        yield eventually(lambda: all(store.connected for store in stores))
        clock = clock_at()
        return server, [SharedUsageCounters(store, "a", clock) for store in stores]

    @inlineCallbacks
    def test_totals_of_all(self) -> Any:
        """
        Counts recorded in two processes add up in Redis, and after a flush
        each shows the cluster's totals, per combination and per user;
        what is counted locally shows at once, before its flush.
        """
        server, (first, second) = yield self.two("u1:")
        record(first, user="alice", input_tokens=10, output_tokens=2)
        record(second, user="bob", input_tokens=5, output_tokens=1)
        record(second, user="alice", input_tokens=1, output_tokens=1)
        self.assertEqual(requests(first.snapshot()), 1)
        self.assertEqual((yield first.flush()), True)
        self.assertEqual((yield second.flush()), True)
        self.assertEqual(first.unflushed, 0)
        yield first.flush()
        for counters in (first, second):
            (combination,) = counters.snapshot().combinations
            self.assertEqual(combination.total, counts(3, 3, 16, 4))
            self.assertEqual(combination.by_user["alice"], counts(2, 2, 11, 3))
            self.assertEqual(combination.by_user["bob"], counts(1, 1, 5, 1))

    @inlineCallbacks
    def test_lost_answer_not_counted_twice(self) -> Any:
        """
        A flush whose answer is lost keeps its delta; the retry sends the
        same addition again, which Redis recognizes: counted once.  What
        was recorded meanwhile goes in the next addition.
        """
        server, (first, second) = yield self.two("u2:")
        record(first, input_tokens=7)
        LostAnswers(first._store, 1)
        self.assertEqual((yield first.flush()), False)
        self.assertEqual(first.unflushed, 1)
        record(first, input_tokens=3)
        self.assertEqual((yield first.flush()), True)
        self.assertEqual(first.unflushed, 1)
        yield first.flush()
        yield second.flush()
        self.assertEqual(first.unflushed, 0)
        for counters in (first, second):
            (combination,) = counters.snapshot().combinations
            self.assertEqual(combination.total, counts(2, 2, 10))

    @inlineCallbacks
    def test_counting_while_away(self) -> Any:
        """
        While Redis is away a flush fails (once logged), counting goes on
        locally and shows; when Redis is back the buffered counts are added.
        """
        server, (first, second) = yield self.two("u3:")
        yield server.stop()
        yield eventually(lambda: not first._store.connected)
        record(first, input_tokens=4)
        self.assertEqual((yield first.flush()), False)
        record(first, input_tokens=4)
        self.assertEqual((yield first.flush()), False)
        self.assertEqual(first.unflushed, 2)
        self.assertEqual(requests(first.snapshot()), 2)
        yield server.start()
        yield eventually(lambda: first._store.connected and second._store.connected, timeout=20)
        yield first.flush()
        yield first.flush()
        yield second.flush()
        self.assertEqual(first.unflushed, 0)
        self.assertEqual(second.snapshot().combinations[0].total, counts(2, 2, 8))

    @inlineCallbacks
    def test_import_once(self) -> Any:
        """
        Two processes importing the same file at once: one does, the other
        is refused, and the file's counts are in Redis once; until then the
        file's counts show on top of the totals.
        """
        server, (first, second) = yield self.two("u4:")
        loaded = sample_book().snapshot()
        first._loaded = loaded
        self.assertEqual(requests(first.snapshot()), requests(loaded))
        results = yield gatherResults([first.import_file(loaded), second.import_file(loaded)])
        self.assertEqual(sorted(results), [False, True])
        yield first.flush()
        yield second.flush()
        self.assertTrue(first.imported and second.imported)
        for counters in (first, second):
            snapshot = counters.snapshot()
            self.assertEqual(
                [(c.model, c.context_window, c.week_start_unix, c.total, c.by_user) for c in snapshot.combinations],
                [(c.model, c.context_window, c.week_start_unix, c.total, c.by_user) for c in loaded.combinations],
            )
            self.assertEqual(snapshot.last_updated_ns, round(loaded.last_updated * 1e9))  # type: ignore[operator]

    @inlineCallbacks
    def test_flush_while_flushing(self) -> Any:
        """
        A flush asked for while one is in flight runs after it, so that
        what was recorded in between is added too.
        """
        server, (first, second) = yield self.two("u5:")
        record(first)
        one = first.flush()
        record(first)
        two = first.flush()
        yield one
        yield two
        self.assertEqual(first.unflushed, 0)
        yield second.flush()
        self.assertEqual(requests(second.snapshot()), 2)
