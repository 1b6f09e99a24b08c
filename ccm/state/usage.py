# -*- test-case-name: tests.state.test_usage -*-
"""
The usage counters of one usages file shared by several ccm processes
through Redis (:obj:`ccm.accounting.counters.UsageCounters`).

Each process counts its responses in a local book and adds what it counted
to the Redis hash of the file every second or so, in one Lua script that
also hands back the totals when they changed: what every process shows is
the cluster's total.  Each addition carries a number that only grows for
its process; the script refuses a number it has already applied, so an
addition whose answer was lost is sent again, unchanged, without ever
being counted twice.  A delta leaves the local book only once Redis
confirmed it: while Redis is away, counting goes on locally.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ccm.accounting.book import UsageBook
from ccm.accounting.counters import Combination, UsageCounts, UsageRecord, UsageSnapshot
from ccm.accounting.tokens import TOKEN_FIELDS, TokenCounts
from ccm.state.redis import RedisStore, StateUnavailable

#: The counts of a statistics object, in the order they are sent.
COUNT_FIELDS = ("request_count", "messages_count", *TOKEN_FIELDS)
#: How long Redis remembers the last addition of a process: longer than
#: any outage after which that process could still send it again.
FLUSHED_TTL_MS = 7 * 86400 * 1000

# Adds ARGV[3..] to the hash KEYS[1]: ARGV[1] last_updated_ns ('' none),
# ARGV[2] the number k of combination fields (their order of first
# appearance is kept), then k combination fields, then field/delta pairs.
_ADD = """
local function add(hash, first)
  local ns = ARGV[first]
  local k = tonumber(ARGV[first + 1])
  for i = first + 2, first + 1 + k do
    if redis.call('HEXISTS', hash, ARGV[i]) == 0 then
      redis.call('HSET', hash, ARGV[i], redis.call('HINCRBY', hash, 'combinations', 1))
    end
  end
  for i = first + 2 + k, #ARGV, 2 do
    redis.call('HINCRBY', hash, ARGV[i], ARGV[i + 1])
  end
  local known = redis.call('HGET', hash, 'last_updated_ns')
  if ns ~= '' and (not known or tonumber(ns) > tonumber(known)) then
    redis.call('HSET', hash, 'last_updated_ns', ns)
  end
  redis.call('HINCRBY', hash, 'version', 1)
end
"""

# KEYS: the hash, this process's last applied addition, the import marker.
# ARGV: the addition's number (0: nothing to add), the version the caller
# knows, the time to live of KEYS[2], then the addition (see _ADD).
# Returns {applied, version, imported[, the whole hash when the version
# is not the caller's]}.
_SYNC = _ADD + """
local applied = 0
local seq = tonumber(ARGV[1])
if seq > 0 then
  if seq > tonumber(redis.call('GET', KEYS[2]) or '0') then
    add(KEYS[1], 4)
    applied = 1
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
  else
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
  end
end
local version = redis.call('HGET', KEYS[1], 'version') or '0'
local imported = redis.call('EXISTS', KEYS[3])
if version == ARGV[2] then
  return {applied, version, imported}
end
return {applied, version, imported, redis.call('HGETALL', KEYS[1])}
"""

# KEYS: the hash, the import marker.  ARGV: the importer's name, then what
# the file held (see _ADD).  Adds it once ever: returns 1, or 0 when
# another import came first.
_IMPORT = _ADD + """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
add(KEYS[1], 2)
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""


def _field(*parts: object) -> str:
    return json.dumps(list(parts), separators=(",", ":"))


def encode(snapshot: UsageSnapshot) -> list[Any]:
    """
    ``snapshot`` as the arguments of an addition: its time in nanoseconds,
    its combinations, then each count's field and value.
    """
    combinations = [_field(c.model, c.context_window, c.week_start_unix) for c in snapshot.combinations]
    pairs: list[Any] = []
    for c in snapshot.combinations:
        for user, counts in [(None, c.total), *sorted(c.by_user.items())]:
            for name in COUNT_FIELDS:
                pairs.append(_field(c.model, c.context_window, c.week_start_unix, user, name))
                pairs.append(_count(counts, name))
    return [_nanoseconds(snapshot), len(combinations), *combinations, *pairs]


def _count(counts: UsageCounts, name: str) -> int:
    if name in ("request_count", "messages_count"):
        return int(getattr(counts, name))
    return int(getattr(counts.tokens, name))


def _nanoseconds(snapshot: UsageSnapshot) -> int | str:
    if snapshot.last_updated_ns is not None:
        return snapshot.last_updated_ns
    if snapshot.last_updated is None:
        return ""
    return round(snapshot.last_updated * 1_000_000_000)


def decode(flat: Sequence[Any]) -> UsageSnapshot:
    """
    The snapshot a usage hash (``HGETALL``'s flat list) holds.
    """
    order: dict[tuple[str, int, int], int] = {}
    counts: dict[tuple[str, int, int], dict[str | None, dict[str, int]]] = {}
    nanoseconds: int | None = None
    for name, value in zip(flat[::2], flat[1::2]):
        name = str(name)
        if name == "last_updated_ns":
            nanoseconds = int(value)
        if not name.startswith("["):
            continue
        parts = json.loads(name)
        key = (str(parts[0]), int(parts[1]), int(parts[2]))
        if len(parts) == 3:
            order[key] = int(value)
        else:
            counts.setdefault(key, {}).setdefault(parts[3], {})[parts[4]] = int(value)
    combinations = []
    for key in sorted(set(order) | set(counts), key=lambda k: (order.get(k, 1 << 62), k)):
        users = counts.get(key, {})
        combination = Combination(*key, total=_counts(users.get(None, {})))
        combination.by_user = {u: _counts(c) for u, c in users.items() if u is not None}
        combinations.append(combination)
    return UsageSnapshot(
        tuple(combinations),
        last_updated=None if nanoseconds is None else nanoseconds / 1_000_000_000,
        last_updated_ns=nanoseconds,
    )


def _counts(values: dict[str, int]) -> UsageCounts:
    return UsageCounts(
        values.get("request_count", 0),
        values.get("messages_count", 0),
        TokenCounts(*(values.get(name, 0) for name in TOKEN_FIELDS)),
    )


def merged(parts: Iterable[UsageSnapshot], revision: int) -> UsageSnapshot:
    """
    The sum of ``parts``: combinations in the order first seen, the latest
    time of any.
    """
    combinations: dict[tuple[str, int, int], Combination] = {}
    latest: int | None = None
    for part in parts:
        for c in part.combinations:
            key = (c.model, c.context_window, c.week_start_unix)
            into = combinations.setdefault(key, Combination(*key))
            into.total += c.total
            for user, counts in c.by_user.items():
                into.by_user[user] = into.by_user.get(user, UsageCounts()) + counts
        ns = _nanoseconds(part)
        if ns != "" and (latest is None or int(ns) > latest):
            latest = int(ns)
    return UsageSnapshot(
        tuple(combinations.values()),
        last_updated=None if latest is None else latest / 1_000_000_000,
        last_updated_ns=latest,
        revision=revision,
    )


class SharedUsageCounters:
    """
    The counters of usage file ``tag``, shared through ``store``: the
    totals last read from Redis, plus the addition in flight, plus what
    was counted since.

    :param loaded: what the file held when this process started: shown on
        top of the totals until some process imported the file.
    """

    log = Logger()

    def __init__(
        self, store: RedisStore, tag: str, clock: IReactorTime, loaded: UsageSnapshot = UsageSnapshot()
    ) -> None:
        self._store = store
        self.tag = tag
        self._clock = clock
        self._loaded = loaded
        self.key = store.key("usage", tag)
        self.imported_key = store.key("usage", tag, "imported")
        self._flushed_key = store.key("usage", tag, "flushed", store.process_id)
        self._book = UsageBook(clock)
        self._pending: tuple[int, UsageSnapshot] | None = None
        self._sequence = 0
        self._totals = UsageSnapshot()
        self._version = ""
        self._revision = 0
        #: Whether the file's counts are in Redis (some process imported
        #: them), as of the last answer.
        self.imported = False
        self._busy = False
        self._after: list[Deferred[None]] = []
        self._complained = False

    def record(self, record: UsageRecord) -> None:
        """
        Count one response locally; the next :obj:`flush` adds it to Redis.
        """
        self._book.record(record)
        self._revision += 1

    @property
    def unflushed(self) -> int:
        """
        How many requests this process counted that Redis has not confirmed.
        """
        parts = [self._book.snapshot()] + ([self._pending[1]] if self._pending else [])
        return sum(c.total.request_count for part in parts for c in part.combinations)

    def snapshot(self) -> UsageSnapshot:
        """
        The cluster's totals as last read, with what this process counted
        since (and the file's counts while nobody has imported them yet).
        """
        parts = [self._totals]
        if not self.imported:
            parts.append(self._loaded)
        if self._pending is not None:
            parts.append(self._pending[1])
        parts.append(self._book.snapshot())
        return merged(parts, self._revision)

    def flush(self) -> Deferred[bool]:
        """
        Add what was counted to Redis and read the totals back; fires with
        whether Redis answered.  Never fails.  Called while a flush is in
        flight, it flushes again once that one is done.
        """
        if self._busy:
            after: Deferred[None] = Deferred()
            self._after.append(after)
            return after.addCallback(lambda _: self.flush())
        self._busy = True

        def done(result: bool) -> bool:
            self._busy = False
            waiting, self._after = self._after, []
            for waiter in waiting:
                waiter.callback(None)
            return result

        flushed: Deferred[bool] = self._sync()
        return flushed.addCallback(done)

    @inlineCallbacks
    def _sync(self) -> Any:
        if self._pending is None and self._book.combinations:
            self._sequence += 1
            self._pending = (self._sequence, self._book.snapshot())
            self._book = UsageBook(self._clock)
        sequence, delta = self._pending if self._pending is not None else (0, UsageSnapshot())
        try:
            reply = yield self._store.evaluate(
                _SYNC,
                [self.key, self._flushed_key, self.imported_key],
                [sequence, self._version, FLUSHED_TTL_MS, *encode(delta)],
            )
        except Exception as error:
            # The outcome is unknown: the same addition, with the same
            # number, goes again next time.
            if not self._complained:
                self._complained = True
                self.log.warn(
                    "Cannot add usage of {tag} to the shared state ({why}); counting "
                    "locally until it is back",
                    tag=self.tag,
                    why=str(error) if not isinstance(error, StateUnavailable) else "unreachable",
                )
            return False
        self._complained = False
        if sequence and self._pending is not None and self._pending[0] == sequence:
            self._pending = None
        self.imported = bool(reply[2])
        if len(reply) > 3:
            self._totals = decode(reply[3])
            self._version = str(reply[1])
            self._revision += 1
        return True

    def import_file(self, loaded: UsageSnapshot) -> Deferred[bool]:
        """
        Add what the usage file holds to Redis, unless some process already
        did: fires with whether this call imported it.
        """
        d = self._store.evaluate(
            _IMPORT, [self.key, self.imported_key], [self._store.process_id, *encode(loaded)]
        )

        def imported(result: Any) -> bool:
            if result:
                self.imported = True
                self.log.info(
                    "Imported the usage file of {tag} into the shared state", tag=self.tag
                )
            return bool(result)

        return d.addCallback(imported)
