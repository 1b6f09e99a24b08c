# -*- test-case-name: tests.state.test_usagesaver -*-
"""
The saver of a usages file shared by several ccm processes: each adds what
it counts to Redis every second (:obj:`ccm.state.usage`), and the one
holding the file's lease writes the file, in the format of today, from the
totals it reads back.

The holder writes what it last read from Redis plus its own unconfirmed
counts, and only while its lease holds (it judges the lease from its own
side, so it stops before Redis would give it to another).  While Redis is
away nobody else can get the lease, and the holder stops writing once its
lease would have expired: the file then stays as last written, and every
process keeps counting locally until Redis returns.  A file is never
written from two views at once, so nothing in it is counted twice.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ccm.accounting.counters import UsageRecord
from ccm.accounting.usagefile import SAVE_INTERVAL_SECONDS, UsageFile, UsageSaverService
from ccm.state.lease import Lease, LeaseKeeper
from ccm.state.redis import RedisStore
from ccm.state.usage import SharedUsageCounters

#: How often each process adds its counts to Redis and reads the totals.
FLUSH_INTERVAL_SECONDS = 1.0
#: How long the lease of a usage file lasts without renewal: how long a
#: killed writer keeps the file from the others.
LEASE_SECONDS = 15.0


class SharedUsageSaver(UsageSaverService):
    """
    The recorder of one usages file shared through ``store``: counts in
    :obj:`SharedUsageCounters`, flushed every ``flush_interval`` seconds
    and at shutdown; the file is written (every ``interval`` seconds, when
    the lease is gained, at shutdown) only by the lease holder, once the
    file's earlier counts are in Redis (the first holder imports them).
    """

    log = Logger()

    def __init__(
        self,
        file: UsageFile,
        counters: SharedUsageCounters,
        store: RedisStore,
        clock: IReactorTime,
        interval: float = SAVE_INTERVAL_SECONDS,
        flush_interval: float = FLUSH_INTERVAL_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        super().__init__(file, counters, clock, interval)
        self.shared = counters
        self._store = store
        self.lease = Lease(store, "usage-file:" + counters.tag, lease_seconds)
        self.keeper = LeaseKeeper(self.lease, clock, gained=self._gained)
        self._flush_interval = flush_interval
        self._flusher = LoopingCall(self._flush)
        self._flusher.clock = clock
        self._write_soon = False
        # Whether the final save may write, the lease taken for it.
        self._final_write = False

    def startService(self) -> None:
        super().startService()
        self.keeper.startService()
        self._flusher.start(self._flush_interval, now=False)

    def stopService(self) -> Deferred[None]:
        """
        Flush, write the file when this process holds the lease or can take
        it now (so the last of several processes to stop writes the full
        totals), then give the lease up; the store stays open until then.
        """
        stopped: Deferred[None] = self._stop()
        self._store.keep_open_until(stopped)
        return stopped

    @inlineCallbacks
    def _stop(self) -> Any:
        if self._flusher.running:
            self._flusher.stop()
        yield self.shared.flush()
        fence = 0
        if not self.keeper.held:
            try:
                fence = yield self.lease.acquire()
            except Exception:
                fence = 0
        self._final_write = bool(fence)
        if self.keeper.held or fence:
            yield self._import()
        yield super().stopService()
        yield self.keeper.stopService()
        if fence:
            try:
                yield self.lease.release()
            except Exception:
                # It expires by itself.
                pass
        if self.shared.unflushed:
            self.log.error(
                "Stopping with {requests} requests of {tag} not added to the shared state "
                "(unreachable): their usage is lost",
                requests=self.shared.unflushed,
                tag=self.shared.tag,
            )

    def record(self, record: UsageRecord) -> None:
        """
        Count a response's usage; once stopped, flush and save it at once.
        """
        self.shared.record(record)
        if not self.running:
            self.shared.flush().addCallback(lambda _: self._save())

    def _gained(self, fence: int) -> None:
        self._write_soon = True

    def _save(self, only_if_changed: bool = False) -> None:
        """
        Write the file, only while holding its lease and once its earlier
        counts are in Redis.
        """
        if (self.keeper.held or self._final_write) and self.shared.imported:
            super()._save(only_if_changed)

    @inlineCallbacks
    def _flush(self) -> Any:
        try:
            answered = yield self.shared.flush()
            if answered and self.keeper.held:
                yield self._import()
            if not (self.keeper.held and self.shared.imported):
                return
            quiet = self._last_save is None or self._clock.seconds() - self._last_save >= self.step
            if self._write_soon or (self.unsaved and quiet):
                self._write_soon = False
                self._save()
        except Exception:
            self.log.failure("Sharing the usage of {tag}", tag=self.shared.tag)

    @inlineCallbacks
    def _import(self) -> Any:
        """
        Add the file's counts to Redis unless some process did already
        (the first holder, at the first start with shared state), then read
        the totals back.  Never fails.
        """
        if self.shared.imported:
            return
        try:
            yield self.shared.import_file(self._file.load().snapshot())
            yield self.shared.flush()
        except Exception as error:
            self.log.warn(
                "Cannot import the usage file {path} into the shared state: {why}",
                path=self._file.path,
                why=str(error),
            )
