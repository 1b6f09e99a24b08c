# -*- test-case-name: tests.state.test_limits -*-
"""
Per-user limits counted by every process of one Redis:
:obj:`SharedLimits`, a :obj:`ccm.limits.gate.UserLimits` whose
``requests_per_minute`` and ``max_concurrent`` are the cluster's, and
:obj:`HolderService`, which keeps this process's slots alive.

A user with limits costs one Lua script at admission (the minute's log and
a slot, atomically) and one when the request ends; a user without limits
costs nothing.  Each process's slots are a field of the user's in-flight
hash, counted only while the process's *holder* key lives: a killed
process's slots free themselves once it expires (:obj:`HOLDER_TTL_MS`).
The holder is renewed, and this process's fields rewritten from what it
knows, every :obj:`RENEW_SECONDS`, which also repairs a release lost while
Redis was away.  A request refused a slot waits in this process's queue
and asks again when any process ends a request of that user (a channel)
and every :obj:`RETRY_SECONDS`.

While Redis cannot be asked, each process counts alone (the limits of
:obj:`UserLimits`, per process).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ccm.config.model import UserConfig
from ccm.limits.gate import FREE, QUEUE_WAIT_SECONDS, Ticket, UserLimits
from ccm.limits.refusals import (
    MAX_CONCURRENT,
    REQUESTS_PER_MINUTE,
    queue_full_refusal,
    queue_timeout_refusal,
    rate_refusal,
)
from ccm.state.redis import RedisStore

HOLDER_TTL_MS = 15_000
RENEW_SECONDS = 5.0
RETRY_SECONDS = 1.0

# A slot of ARGV[1] (process) under ARGV[2] (most at once), counting only
# the fields whose holder key (ARGV[3] .. process) lives.
_SLOT = f"""
local function slot(key, process, most, holders)
  redis.call('SET', holders .. process, '1', 'PX', {HOLDER_TTL_MS})
  local fields = redis.call('HGETALL', key)
  local total = 0
  for i = 1, #fields, 2 do
    if redis.call('EXISTS', holders .. fields[i]) == 1 then
      total = total + tonumber(fields[i + 1])
    else
      redis.call('HDEL', key, fields[i])
    end
  end
  if total >= most then return 0 end
  redis.call('HINCRBY', key, process, 1)
  redis.call('PEXPIRE', key, 86400000)
  return 1
end
"""

# KEYS: the minute's log, the in-flight hash.  ARGV: process, holder
# prefix, requests a minute (0 none), most at once (0 none), log entry.
# Returns {0} admitted, {1, seconds} over the rate, {2} no slot (the
# entry stays in the log).
_ADMIT = _SLOT + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, most = tonumber(ARGV[3]), tonumber(ARGV[4])
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60)
  local n = redis.call('ZCARD', KEYS[1])
  if n >= rate then
    local oldest = redis.call('ZRANGE', KEYS[1], n - rate, n - rate, 'WITHSCORES')
    return {1, tostring(math.max(tonumber(oldest[2]) + 60 - now, 0.001))}
  end
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], 61000)
end
if most > 0 and slot(KEYS[2], ARGV[1], most, ARGV[2]) == 0 then return {2} end
return {0}
"""

# KEYS: the in-flight hash.  ARGV: process, holder prefix, most at once.
_ACQUIRE = _SLOT + "return slot(KEYS[1], ARGV[1], tonumber(ARGV[3]), ARGV[2])"

# KEYS: the in-flight hash.  ARGV: process, channel, user.
_RELEASE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return 1
"""


class _SharedTicket(Ticket):
    """A request's slot in Redis, given back there once."""

    def __init__(self, limits: "SharedLimits", user: str) -> None:
        super().__init__()
        self._limits: SharedLimits | None = limits
        self._user = user

    def release(self) -> None:
        limits, self._limits = self._limits, None
        if limits is not None:
            limits._release(self._user)


class SharedLimits(UserLimits):
    """
    :obj:`UserLimits` counted in Redis across processes while it is
    reachable, per process while it is not.
    """

    log = Logger()

    def __init__(
        self,
        store: RedisStore,
        clock: IReactorTime,
        users: Iterable[UserConfig] = (),
        on_refusal: Callable[[str, str], None] = lambda user, limit: None,
    ) -> None:
        super().__init__(clock, users, on_refusal)
        self._store = store
        self._channel = store.key("events", "limits")
        self._holders = store.key("limits", "holder", "")
        self._entries = itertools.count(1)
        #: This process's slots in Redis, by user.
        self.held: dict[str, int] = {}
        self._waiting: dict[str, list[tuple[Deferred[Ticket], IDelayedCall]]] = {}
        store.subscribe(self._channel, self._freed)

    def _key(self, kind: str, user: str) -> str:
        return self._store.key("limits", kind, user)

    def admit(self, user: str) -> Deferred[Ticket]:
        rate = self._rates.get(user, 0)
        most = self._concurrency.get(user, 0)
        if not user or not (rate or most) or not self._store.connected:
            return super().admit(user)
        entry = f"{self._store.process_id}:{next(self._entries)}"
        d = self._store.evaluate(
            _ADMIT,
            [self._key("rate", user), self._key("inflight", user)],
            [self._store.process_id, self._holders, rate, most, entry],
        )

        inner: list[Deferred[Ticket]] = []
        cancelled: list[bool] = []

        def cancel(_: Deferred[Ticket]) -> None:
            if inner:
                inner[0].cancel()
            else:
                cancelled.append(True)

        result: Deferred[Ticket] = Deferred(cancel)

        def answered(reply: list[Any]) -> Deferred[Ticket] | Ticket:
            if cancelled:
                # The client went away while Redis answered: give back
                # what it took.
                if reply[0] == 0 and most:
                    self._granted(user).release()
                if reply[0] != 1 and rate:
                    self._give_back(user, entry)
                return FREE
            if reply[0] == 1:
                error = rate_refusal(user, rate, float(reply[1]))
                return self._refuse(user, REQUESTS_PER_MINUTE, error)
            if reply[0] == 2:
                inner.append(self._queue(user, most, entry))
                return inner[0]
            return self._granted(user)

        def unreachable(failure: Failure) -> Deferred[Ticket]:
            self.log.warn(
                "Limits: Redis did not answer, counting here: {why}", why=failure.getErrorMessage()
            )
            inner.append(super(SharedLimits, self).admit(user))
            return inner[0]

        def deliver(outcome: Any) -> None:
            if cancelled:
                return
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)

        d.addCallbacks(answered, unreachable).addBoth(deliver)
        return result

    def _granted(self, user: str) -> Ticket:
        self.held[user] = self.held.get(user, 0) + 1
        return _SharedTicket(self, user)

    def _give_back(self, user: str, entry: str) -> None:
        self._store.command("ZREM", self._key("rate", user), entry).addErrback(lambda f: None)

    def _queue(self, user: str, most: int, entry: str) -> Deferred[Ticket]:
        waiting = self._waiting.setdefault(user, [])
        if len(waiting) >= most:
            self._give_back(user, entry)
            return self._refuse(user, MAX_CONCURRENT, queue_full_refusal(user, most, len(waiting)))
        started = self._clock.seconds()

        def forget(d: Deferred[Ticket]) -> None:
            for item in list(waiting):
                if item[0] is d:
                    waiting.remove(item)
                    if item[1].active():
                        item[1].cancel()

        def timed_out() -> None:
            forget(d)
            error = queue_timeout_refusal(user, most, self._clock.seconds() - started)
            self._count_refusal(user, MAX_CONCURRENT, error)
            d.errback(error)

        def ended(failure: Failure) -> Failure:
            # Timed out, cancelled or closed: it never reached the upstream.
            self._give_back(user, entry)
            return failure

        d: Deferred[Ticket] = Deferred(forget)
        waiting.append((d, self._clock.callLater(QUEUE_WAIT_SECONDS, timed_out)))
        self.log.info(
            "{user} waits for one of {limit} requests in flight to end (max_concurrent)",
            user=user, limit=most, waiting=len(waiting),
        )
        return d.addErrback(ended)

    def _freed(self, user: str) -> None:
        if user in self._waiting:
            self.retry(user)

    def retry(self, user: str) -> None:
        """Ask Redis for a slot for the first of ``user``'s waiting requests."""
        waiting = self._waiting.get(user)
        if not waiting:
            self._waiting.pop(user, None)
            return
        most = self._concurrency.get(user, 0)
        if not most:
            for d, timer in list(waiting):
                timer.cancel()
                d.callback(self._granted(user))
            waiting.clear()
            return
        d = self._store.evaluate(
            _ACQUIRE, [self._key("inflight", user)], [self._store.process_id, self._holders, most]
        )

        def answered(got: int) -> None:
            if got and waiting:
                first, timer = waiting.pop(0)
                timer.cancel()
                first.callback(self._granted(user))
                self.retry(user)
            elif got:
                self._granted(user).release()

        d.addCallbacks(answered, lambda failure: None)

    def retry_all(self) -> None:
        """Ask again for every user with requests waiting (a lost notice)."""
        for user in list(self._waiting):
            self.retry(user)

    def _release(self, user: str, publish: bool = True) -> None:
        self.held[user] = max(0, self.held.get(user, 0) - 1)
        d = self._store.evaluate(
            _RELEASE,
            [self._key("inflight", user)],
            [self._store.process_id, self._channel if publish else "", user],
        )
        # Lost while Redis is away: the next renewal writes the right count.
        d.addErrback(lambda failure: None)

    def renew(self) -> Deferred[Any]:
        """
        Keep this process's holder key alive and write its slots as it
        knows them (repairing releases Redis missed).
        """
        process = self._store.process_id
        sent = [self._store.command("SET", self._holders + process, "1", "PX", HOLDER_TTL_MS)]
        for user, count in list(self.held.items()):
            if count:
                sent.append(self._store.command("HSET", self._key("inflight", user), process, count))
            else:
                sent.append(self._store.command("HDEL", self._key("inflight", user), process))
                del self.held[user]
        return gatherResults(sent, consumeErrors=True)

    def close(self, error: Any) -> None:
        super().close(error)
        for user, waiting in list(self._waiting.items()):
            while waiting:
                d, timer = waiting.pop(0)
                timer.cancel()
                d.errback(error)


class HolderService(Service):
    """
    Renews ``limits``'s holder every :obj:`RENEW_SECONDS` (and at each
    reconnection), and asks again for waiting requests every
    :obj:`RETRY_SECONDS`.
    """

    log = Logger()

    def __init__(self, limits: SharedLimits, store: RedisStore, clock: IReactorTime) -> None:
        self.limits = limits
        self._renew = LoopingCall(self._safely, limits.renew)
        self._renew.clock = clock
        self._retry = LoopingCall(self._safely, limits.retry_all)
        self._retry.clock = clock
        store.when_connected(lambda: self._safely(limits.renew))

    def _safely(self, job: Callable[[], Any]) -> None:
        try:
            result = job()
        except Exception:
            self.log.failure("Limits: keeping the shared counts")
            return
        if isinstance(result, Deferred):
            result.addErrback(lambda failure: None)

    def startService(self) -> None:
        super().startService()
        self._renew.start(RENEW_SECONDS, now=False)
        self._retry.start(RETRY_SECONDS, now=False)

    def stopService(self) -> None:
        super().stopService()
        for loop in (self._renew, self._retry):
            if loop.running:
                loop.stop()
