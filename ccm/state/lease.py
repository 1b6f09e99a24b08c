# -*- test-case-name: tests.state.test_lease -*-
"""
Leases: one process at a time does a job (writes the usage file, polls a
credential's usage, refreshes its token), and another takes over when the
holder stops renewing, for instance because it was killed.

A lease is a Redis key holding its holder's name, which expires unless the
holder renews it.  Each time a process gains a lease it gets a *fence*: a
number that only grows, kept beside the lease.  A write that must never
come from a former holder (a refreshed token) checks, in the same Lua
script, that the fence it carries is still the current one; so a process
that stalled past its lease cannot write over the work of the next.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ccm.state.redis import RedisStore, StateUnavailable

# KEYS: the lease, its fence counter.  ARGV: holder, time to live in ms.
# Returns the fence when the caller holds the lease now, else 0.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
return 0
"""

# KEYS: the lease.  ARGV: holder.  Deletes it only when the caller holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """
    The lease named ``name`` (for example ``usage-file:a``), as seen by the
    process ``store`` speaks for.
    """

    def __init__(self, store: RedisStore, name: str, ttl: float) -> None:
        self._store = store
        self.name = name
        self.ttl = ttl
        self.key = store.key("lease", name)
        self.fence_key = store.key("fence", name)

    def acquire(self) -> Deferred[int]:
        """
        Take the lease, or renew it when this process holds it already:
        fires with its fence, or 0 when another process holds it.
        """
        d = self._store.evaluate(
            _ACQUIRE,
            [self.key, self.fence_key],
            [self._store.process_id, int(self.ttl * 1000)],
        )
        return d.addCallback(int)

    def release(self) -> Deferred[bool]:
        """
        Give the lease up, if this process holds it, so another can take it
        at once.
        """
        d = self._store.evaluate(_RELEASE, [self.key], [self._store.process_id])
        return d.addCallback(bool)


class LeaseKeeper(Service):
    """
    Holds lease ``lease`` whenever it can: tries to take or renew it every
    third of its time to live, calls ``gained(fence)`` when this process
    starts holding it and ``lost()`` when it stops (another took it, or
    Redis could not confirm the renewal before the lease would expire).
    Released when the service stops.
    """

    log = Logger()

    def __init__(
        self,
        lease: Lease,
        clock: IReactorTime,
        gained: Callable[[int], None] = lambda fence: None,
        lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.lease = lease
        self._clock = clock
        self._gained = gained
        self._lost = lost
        #: The fence of the lease while this process holds it, else 0.
        self.fence = 0
        # When the lease held would expire, judged from this side: the time
        # the last successful renewal was sent, plus the time to live.
        self._expires = 0.0
        self._loop = LoopingCall(self._renew)
        self._loop.clock = clock

    @property
    def held(self) -> bool:
        """
        Whether this process holds the lease now.
        """
        return self.fence > 0 and self._clock.seconds() < self._expires

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.lease.ttl / 3, now=True)

    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        if self.fence:
            self._set(0)
            try:
                yield self.lease.release()
            except Exception:
                # It expires by itself.
                pass

    @inlineCallbacks
    def _renew(self) -> Any:
        sent = self._clock.seconds()
        try:
            fence = yield self.lease.acquire()
        except StateUnavailable:
            fence = None
        except Exception as error:
            self.log.warn(
                "Could not renew lease {lease}: {why}", lease=self.lease.name, why=str(error)
            )
            fence = None
        if not self.running:
            return
        if fence is None:
            # Unconfirmed: hold on until it would have expired.
            if self.fence and self._clock.seconds() >= self._expires:
                self._set(0)
            return
        if fence:
            self._expires = sent + self.lease.ttl
        self._set(fence)

    def _set(self, fence: int) -> None:
        before, self.fence = self.fence, fence
        if fence == before:
            return
        try:
            if fence and not before:
                self.log.info("This process now holds lease {lease}", lease=self.lease.name)
                self._gained(fence)
            elif before and not fence:
                self.log.info("This process no longer holds lease {lease}", lease=self.lease.name)
                self._lost()
            else:
                # Lost and regained between two renewals: a new term.
                self._lost()
                self._gained(fence)
        except Exception:
            self.log.failure("Following lease {lease}", lease=self.lease.name)
