"""
Tests for :obj:`ccm.state.usagesaver`: one process at a time writes a
shared usages file, from the totals in a real ``redis-server``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial import unittest

from twisted.internet.task import Clock

from ccm.accounting.book import UsageBook
from ccm.accounting.document import serialize
from ccm.accounting.usagefile import UsageFile, UsageSaverService
from ccm.config.state import StateConfig
from ccm.state.redis import RedisStore
from ccm.state.shared import SharedState
from ccm.state.usage import SharedUsageCounters
from ccm.state.usagesaver import SharedUsageSaver
from tests.accounting.samples import sample_book
from tests.fixtures import record
from tests.redisserver import start_redis
from tests.state.test_redis import connect, eventually


def file_requests(path: str) -> int:
    """
    The requests a usages file counts in all, 0 when there is none.
    """
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(c["total"]["request_count"] for c in json.load(f)["combinations"])


class SharedUsageSaverTests(unittest.TestCase):
    """
    The lease holder imports the file once and writes it; the others only
    add their counts; the last to stop writes the full totals.
    """

    timeout = 60

    @inlineCallbacks
    def savers(self, prefix: str, paths: list[str]) -> Any:
        """
        A started saver per path, each in its own "process" (store), with
        short intervals; all count usage file ``a``.
        """
        server = yield start_redis(self)
        stores = [connect(self, server, key_prefix=prefix) for _ in paths]
        yield eventually(lambda: all(store.connected for store in stores))
        savers = []
        for store, path in zip(stores, paths):
            usage_file = UsageFile(path, reactor)
            counters = SharedUsageCounters(store, "a", reactor, usage_file.load().snapshot())
            saver = SharedUsageSaver(
                usage_file, counters, store, reactor, interval=0.3, flush_interval=0.05, lease_seconds=0.6
            )
            saver.startService()

            def stop(s: SharedUsageSaver = saver) -> object:
                return s.running and s.stopService()

            self.addCleanup(stop)
            savers.append(saver)
        return savers

    def paths(self, count: int) -> list[str]:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        return [os.path.join(directory, f"usages-{n}.json") for n in range(count)]

    @inlineCallbacks
    def test_holder_writes_totals(self) -> Any:
        """
        Only the lease holder writes its file, and it holds every process's
        counts; the other file is never written.
        """
        paths = self.paths(2)
        savers = yield self.savers("s1:", paths)
        yield eventually(lambda: any(s.keeper.held for s in savers))
        holder, other = savers if savers[0].keeper.held else savers[::-1]
        for _ in range(3):
            record(holder)
        for _ in range(2):
            record(other)
        yield eventually(lambda: file_requests(holder._file.path) == 5)
        self.assertFalse(os.path.exists(other._file.path))

    @inlineCallbacks
    def test_import_once_then_count_on(self) -> Any:
        """
        The existing file (sing-box's format) is imported once by the first
        holder: the file then holds its old counts plus the new ones, not
        the old ones twice, though both processes loaded it.
        """
        (path,) = self.paths(1)
        book = sample_book()
        with open(path, "wb") as f:
            f.write(serialize(book.snapshot()))
        before = file_requests(path)
        savers = yield self.savers("s2:", [path, path])
        for saver in savers:
            record(saver)
        yield eventually(lambda: file_requests(path) == before + 2)
        for saver in savers:
            yield eventually(lambda s=saver: s.shared.imported)
        self.assertEqual(file_requests(path), before + 2)

    @inlineCallbacks
    def test_takeover(self) -> Any:
        """
        When the holder stops, another takes the lease and writes the file;
        the last to stop writes the full totals (its final save takes the
        lease freed by the others).
        """
        (path,) = self.paths(1)
        savers = yield self.savers("s3:", [path, path, path])
        yield eventually(lambda: any(s.keeper.held for s in savers))
        holder = next(s for s in savers if s.keeper.held)
        rest = [s for s in savers if s is not holder]
        record(holder)
        yield holder.stopService()
        self.assertEqual(file_requests(path), 1)
        yield eventually(lambda: any(s.keeper.held for s in rest))
        record(rest[0])
        record(rest[1])
        yield eventually(lambda: file_requests(path) == 3)
        for saver in rest:
            record(saver)
        for saver in rest:
            yield saver.stopService()
        self.assertEqual(file_requests(path), 5)

    @inlineCallbacks
    def test_stopped_with_the_store(self) -> Any:
        """
        Stopped together with its store, as the service stops its
        background parts, the saver still adds its last counts and writes
        the file: the store stays open until the saver is done.
        """
        (path,) = self.paths(1)
        (saver,) = yield self.savers("s4:", [path])
        yield eventually(lambda: saver.keeper.held)
        record(saver)
        yield gatherResults([saver.stopService(), saver._store.stopService()])
        self.assertEqual(file_requests(path), 1)
        self.assertEqual(saver.shared.unflushed, 0)


class ChoiceTests(unittest.SynchronousTestCase):
    """
    :obj:`SharedState.usage_saver` gives the shared saver only with a store.
    """

    def test_choice(self) -> None:
        """
        Without a store the saver of today (its own book, loaded from the
        file); with one, the shared saver over counters of that tag.
        """
        clock = Clock()
        path = os.path.join(os.path.abspath(self.mktemp()), "usages.json")
        os.makedirs(os.path.dirname(path))
        alone = SharedState(None, clock).usage_saver("a", UsageFile(path, clock))
        self.assertIs(type(alone), UsageSaverService)
        self.assertIsInstance(alone.counters, UsageBook)
        store = RedisStore(StateConfig(host="127.0.0.1"), clock)
        shared = SharedState(store, clock).usage_saver("a", UsageFile(path, clock))
        self.assertIsInstance(shared, SharedUsageSaver)
        self.assertIsInstance(shared.counters, SharedUsageCounters)
        self.assertEqual(shared.counters.tag, "a")  # type: ignore[attr-defined]
