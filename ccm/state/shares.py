# -*- test-case-name: tests.state.test_shares -*-
"""
The users' share charges shared by every process of one Redis:
:obj:`SharedShareBook`, a :obj:`ccm.shares.ledger.ShareBook` whose charges
are the cluster's, and :obj:`ShareSync`, the service that sends this
process's charges to Redis and brings the others' back.

Attribution.  Each process sees only its own answers, so two processes
would both charge the rise from 10 % to 12 % they each read.  The last
utilization any process read of each credential's window is kept in Redis
(its *mark*); a Lua script moves it up to a new reading and returns only
the rise nobody charged yet (a compare-and-set max), which the process
charges to its own requests of the interval.  So each rise is charged
once, to the requests of the process that first read it: when two
processes ran requests in the same interval, the one that answered first
gets all of it (an approximation that evens out over many requests).
Until the script answers (one round trip), the interval waits; when Redis
cannot be asked, the process charges the rise it read itself.  Only a
later reset time starts a new window here: a lower reading is taken for
an older answer of another process (its headers read before the mark's).

Charges.  Each settled charge is a delta kept locally and sent every
:obj:`FLUSH_SECONDS` (and when stopping) with HINCRBYFLOAT into the
window's hash, keyed by credential, window and the window's reset, so that
a new window starts empty; the hash expires an hour after its reset.  A
batch carries a sequence number, applied once per process: a batch whose
outcome is unknown is sent again as it was and not counted twice.  The
flush reads back the cluster's totals; a user's use is those totals plus
what this process has not sent yet.  Others are told of a flush on a
channel, and refresh at their next tick.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ccm.pool.figures import Window, WindowName
from ccm.shares.ledger import (
    RESET_MOVE_SECONDS,
    WINDOWS,
    ShareBook,
    _Credential,
    _Interval,
)
from ccm.state.redis import RedisStore, StateUnavailable

#: How often charges are sent and the cluster's totals read back.
FLUSH_SECONDS = 0.5
#: How often the totals are read back when nothing happened here.
REFRESH_SECONDS = 10.0
#: How long a charges hash and a mark outlive their window's reset.
KEEP_PAST_RESET_SECONDS = 3600
#: How long Redis remembers a process's last applied batch.
APPLIED_TTL_MS = 86_400_000

# KEYS: each window's mark.  ARGV: now, then per window: utilization,
# reset (whole seconds), the rise this process read.  Returns per window
# {the rise to charge, the window's reset}, as strings.
_CLAIM = f"""
local now = tonumber(ARGV[1])
local out = {{}}
for i, key in ipairs(KEYS) do
  local util, reset, rise = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local mark = redis.call('HMGET', key, 'util', 'reset')
  local charge
  if not mark[1] then
    charge = math.min(rise, util)
  else
    local before, known = tonumber(mark[1]), tonumber(mark[2])
    if reset > known + {RESET_MOVE_SECONDS} or known <= now then
      charge = util
    elseif util > before then
      charge = util - before
      reset = known
    else
      charge = 0
      util = before
      reset = known
    end
  end
  redis.call('HSET', key, 'util', tostring(util), 'reset', string.format('%d', reset))
  redis.call('PEXPIREAT', key, string.format('%d', (reset + {KEEP_PAST_RESET_SECONDS}) * 1000))
  out[i] = {{tostring(charge), string.format('%d', reset)}}
end
return out
"""

# KEYS: this process's last applied batch.  ARGV: prefix, batch number,
# now, channel, process, count of windows, then per window: tag, name,
# reset known here; then per charge: tag, name, reset, user, units.
# Applies the batch once, then returns per window {reset, {user, total...}}.
_FLUSH = f"""
local prefix, seq, now, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[6])
local function mark(tag, name)
  return redis.call('HGET', prefix .. 'shares:mark:' .. tag .. ':' .. name, 'reset')
end
local function charges(tag, name, reset)
  return prefix .. 'shares:charges:' .. tag .. ':' .. name .. ':' .. string.format('%d', reset)
end
local i = 7 + 3 * n
if i <= #ARGV and tonumber(redis.call('GET', KEYS[1]) or '0') < seq then
  while i <= #ARGV do
    local tag, name, reset = ARGV[i], ARGV[i+1], tonumber(ARGV[i+2])
    local known = mark(tag, name)
    if known and math.abs(tonumber(known) - reset) <= 2 * {RESET_MOVE_SECONDS} then
      reset = tonumber(known)
    end
    if reset > now then
      if not known then
        -- Charged while Redis was away (or lost its data): the window's
        -- reset, so that the others find these charges.
        local at = prefix .. 'shares:mark:' .. tag .. ':' .. name
        redis.call('HSET', at, 'reset', string.format('%d', reset))
        redis.call('PEXPIREAT', at, string.format('%d', (reset + {KEEP_PAST_RESET_SECONDS}) * 1000))
      end
      local key = charges(tag, name, reset)
      redis.call('HINCRBYFLOAT', key, ARGV[i+3], ARGV[i+4])
      redis.call('PEXPIREAT', key, string.format('%d', (reset + {KEEP_PAST_RESET_SECONDS}) * 1000))
    end
    i = i + 5
  end
  redis.call('SET', KEYS[1], seq, 'PX', {APPLIED_TTL_MS})
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
local out = {{}}
for j = 0, n - 1 do
  local tag, name = ARGV[7 + 3*j], ARGV[8 + 3*j]
  local reset = tonumber(mark(tag, name) or ARGV[9 + 3*j])
  if reset > 0 then
    out[j + 1] = {{string.format('%d', reset), redis.call('HGETALL', charges(tag, name, reset))}}
  else
    out[j + 1] = {{'0', {{}}}}
  end
end
return out
"""

_Delta = tuple[str, WindowName, int, str]


class SharedShareBook(ShareBook):
    """
    A :obj:`ShareBook` whose rises are claimed in Redis and whose charges
    are the cluster's (see the module docstring).

    :param tags: the credentials whose totals are read back.
    """

    log = Logger()

    def __init__(self, store: RedisStore, clock: IReactorTime, tags: Sequence[str]) -> None:
        super().__init__()
        self._store = store
        self._clock = clock
        self.tags = list(tags)
        #: Charged here, not sent yet.
        self.pending: dict[_Delta, float] = {}
        #: Sent, outcome not known yet (or unknown: sent again).
        self.sending: dict[_Delta, float] = {}
        #: The cluster's totals: per credential and window, its reset and
        #: each user's charges.
        self.cluster: dict[tuple[str, WindowName], tuple[float, dict[str, float]]] = {}
        # The window's reset as Redis knows it, once a claim said.
        self._resets: dict[tuple[str, WindowName], int] = {}

    def _claim(
        self,
        credential: _Credential,
        interval: _Interval,
        readings: Mapping[WindowName, Window],
        now: float,
    ) -> None:
        names = list(readings)
        if not any(interval.rises.get(name, 0.0) > 0 for name in names):
            # Nothing rose here: nothing to charge, so nothing to ask (the
            # usual answer: the headers move in steps of a whole percent).
            return
        tag = credential.tag
        keys = [self._store.key("shares", "mark", tag, name.value) for name in names]
        args: list[Any] = [repr(now)]
        for name in names:
            reading = readings[name]
            args += [repr(reading.utilization), str(int(reading.resets_at)), repr(interval.rises[name])]
        interval.claimed = False

        def claimed(replies: list[list[str]]) -> None:
            for name, (rise, reset) in zip(names, replies):
                interval.rises[name] = max(0.0, float(rise))
                self._resets[(tag, name)] = int(reset)

        def unknown(failure: Any) -> None:
            # The rise read here is charged (as one process alone would).
            if not failure.check(StateUnavailable):
                self.log.warn("Shares: claiming a rise failed: {why}", why=failure.getErrorMessage())

        def settle(_: object) -> None:
            interval.claimed = True
            self._settle(credential)

        d = self._store.evaluate(_CLAIM, keys, args)
        d.addCallbacks(claimed, unknown).addBoth(settle)

    def _add_charge(
        self, credential: _Credential, name: WindowName, user: str, units: float
    ) -> None:
        super()._add_charge(credential, name, user, units)
        tag = credential.tag
        reset = self._resets.get((tag, name)) or int(credential.windows[name].resets_at)
        delta = (tag, name, reset, user)
        self.pending[delta] = self.pending.get(delta, 0.0) + units

    def charged(self, user: str, tag: str, name: WindowName, now: float) -> float:
        """
        ``user``'s charges on ``tag``'s current ``name`` window in every
        process: the cluster's totals last read, and what this process has
        not sent yet.
        """
        total = 0.0
        reset, charges = self.cluster.get((tag, name), (0.0, {}))
        if reset > now:
            total += charges.get(user, 0.0)
        for deltas in (self.pending, self.sending):
            for (t, n, at, u), units in deltas.items():
                if t == tag and n is name and u == user and at > now:
                    total += units
        return total

    def resets_at(self, tag: str, name: WindowName, now: float) -> float:
        """
        When ``tag``'s ``name`` window resets: as read here, else as the
        cluster knows it (a credential this process did not use yet).
        """
        mine = super().resets_at(tag, name, now)
        reset = self.cluster.get((tag, name), (0.0, {}))[0]
        return mine or (reset if reset > now else 0.0)

    def snapshot(self) -> dict[str, Any]:
        """
        As :obj:`ShareBook.snapshot`, with the cluster's charges (for the
        share file one process writes).
        """
        saved = super().snapshot()
        now = self._clock.seconds()
        for tag in self.tags:
            for name in WINDOWS:
                reset, charges = self.cluster.get((tag, name), (0.0, {}))
                if tag in saved and reset > now:
                    users = set(charges) | {d[3] for d in self.pending if d[0] == tag}
                    saved[tag][name.value]["charges"] = {
                        user: self.charged(user, tag, name, now) for user in users
                    }
        return saved


class ShareSync(Service):
    """
    Sends ``book``'s charges every :obj:`FLUSH_SECONDS` and when stopping,
    and reads the cluster's totals back after each send, on a notice of
    another process's, and every :obj:`REFRESH_SECONDS` anyway.
    """

    log = Logger()

    def __init__(self, book: SharedShareBook, store: RedisStore, clock: IReactorTime) -> None:
        self.book = book
        self._store = store
        self._clock = clock
        self._channel = store.key("events", "shares")
        self._batch = 0
        self._flushing: Deferred[None] | None = None
        self._stale = True
        self._refreshed = 0.0
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock
        store.subscribe(self._channel, self._heard)
        store.when_connected(self._reconnected)

    def _heard(self, sender: str) -> None:
        if sender != self._store.process_id:
            self._stale = True

    def _reconnected(self) -> None:
        self._stale = True

    def startService(self) -> None:
        super().startService()
        self._loop.start(FLUSH_SECONDS, now=True)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        # The last charges go out before the store closes its connection.
        last = self.flush()
        self._store.keep_open_until(last)
        return last

    def _tick(self) -> None:
        due = self._clock.seconds() - self._refreshed >= REFRESH_SECONDS
        if self.book.pending or self.book.sending or self._stale or due:
            self.flush()

    def flush(self) -> Deferred[None]:
        """
        Send what is charged (the batch whose outcome is unknown first, as
        it was) and read the totals back.  Never fails.
        """
        if self._flushing is not None or not self._store.connected:
            return self._flushing or succeed(None)
        book = self.book
        if not book.sending and book.pending:
            book.sending, book.pending = book.pending, {}
            self._batch += 1
        args: list[Any] = [
            self._store.key(), str(self._batch), repr(self._clock.seconds()),
            self._channel, self._store.process_id, str(len(book.tags) * len(WINDOWS)),
        ]
        for tag in book.tags:
            for name in WINDOWS:
                args += [tag, name.value, str(book._resets.get((tag, name), 0))]
        for (tag, name, reset, user), units in book.sending.items():
            args += [tag, name.value, str(reset), user, repr(units)]
        applied = self._store.key("shares", "applied", self._store.process_id)
        self._stale = False
        d = self._store.evaluate(_FLUSH, [applied], args)
        d.addCallbacks(self._read, self._failed)
        self._flushing = d

        def done(_: object) -> None:
            self._flushing = None

        d.addBoth(done)
        return d

    def _read(self, replies: list[list[Any]]) -> None:
        self.book.sending = {}
        windows = [(tag, name) for tag in self.book.tags for name in WINDOWS]
        for (tag, name), (reset, flat) in zip(windows, replies):
            charges = {flat[i]: float(flat[i + 1]) for i in range(0, len(flat), 2)}
            self.book.cluster[(tag, name)] = (float(reset), charges)
        self._refreshed = self._clock.seconds()

    def _failed(self, failure: Any) -> None:
        # The batch stays in ``sending``, to be sent again as it is.
        self._stale = True
        if not failure.check(StateUnavailable):
            self.log.warn("Shares: sending charges failed: {why}", why=failure.getErrorMessage())
