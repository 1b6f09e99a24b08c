# -*- test-case-name: tests.state.test_sessions -*-
"""
A balancer's maps of ids to credentials (its sticky sessions, and the
request ids and sub-agents of :obj:`ccm.pool.affinity`) shared by every
process of one Redis.

Each process keeps the whole map in memory (a :obj:`MemorySessionTable`)
and answers from it, so no request waits for Redis.  Changes go behind,
gathered per reactor turn into one Lua script that writes the keys (one
string per id, expiring after the idle time) and publishes what it decided
to the other processes, which apply it to their copies.  A new assignment
is a claim (``SET NX``): when another process placed the same id first,
its credential wins, and this process adopts it from the next request on.
A use refreshes the key's expiry at most once per :obj:`REFRESH_SECONDS`.

On each (re)connection a process pushes its copy (what it assigned while
Redis was away comes back; where Redis holds another credential, Redis
wins) and then reads every key of the map (``SCAN``, at most the table's
bound): a process started later knows every session at once, rather than
learning each at its first request, which would already have been placed.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ccm.pool.sessions import MemorySessionTable
from ccm.state.redis import RedisStore

log = Logger()

#: A use of an id refreshes its key's expiry at most this often.
REFRESH_SECONDS = 60.0
#: Operations per script call.
BATCH = 500

# KEYS: one key per operation.  ARGV: the channel, the sender, the tags of
# the credentials whose ids were all forgotten (JSON list), then four per
# operation: mode, id, tag, time to live in ms.  Modes: c claims (the value
# held wins), s sets, t refreshes a use (sets when absent, the value held
# wins), d deletes (only when it holds ``tag``, unless ``tag`` is empty).
# Returns, per operation, '=' and the tag the id is on now ('=' alone: on
# none), and publishes the same to the other processes.
_APPLY = """
local out, changes = {}, {}
for i, key in ipairs(KEYS) do
  local at = 3 + (i - 1) * 4
  local mode, id, tag, ttl = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local held = redis.call('GET', key)
  local result = ''
  if mode == 'd' then
    if held and (tag == '' or held == tag) then
      redis.call('DEL', key)
    elseif held then
      result = held
    end
  elseif mode == 's' or not held then
    redis.call('SET', key, tag, 'PX', ttl)
    result = tag
  else
    redis.call('PEXPIRE', key, ttl)
    result = held
  end
  out[i] = '=' .. result
  changes[i] = {id, result}
end
local message = {p = ARGV[2], m = changes, g = cjson.decode(ARGV[3])}
redis.call('PUBLISH', ARGV[1], cjson.encode(message))
return out
"""

# KEYS: keys found by SCAN.  Returns key, '=' and value, milliseconds to
# live, for each that still exists.
_READ = """
local out = {}
for _, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value then
    out[#out + 1] = key
    out[#out + 1] = '=' .. value
    out[#out + 1] = redis.call('PTTL', key)
  end
end
return out
"""


def glob_escape(text: str) -> str:
    """
    ``text`` as a literal in a Redis ``MATCH`` pattern.
    """
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _tag(reply: Any) -> str:
    # '=' guards tags that look like numbers from the client's conversion.
    return str(reply)[1:]


class RedisSessionTable:
    """
    The map ``kind`` (``session``, ``request``, ``agent``) of balancer
    ``pool``, shared through ``store``: a :obj:`ccm.pool.sessions.SessionTable`.
    Ids idle for ``idle_seconds`` are forgotten, here and in Redis; at most
    ``max_entries`` are kept.
    """

    def __init__(
        self,
        store: RedisStore,
        clock: IReactorTime,
        kind: str,
        pool: str,
        idle_seconds: float,
        max_entries: int,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._kind = kind
        self._idle_seconds = idle_seconds
        self._max_entries = max_entries
        self._refresh_seconds = refresh_seconds
        self._local = MemorySessionTable(idle_seconds, max_entries)
        self._prefix = store.key(kind, pool, "")
        self._channel = store.key("events", kind, pool)
        # When each id's key expiry was last refreshed, as far as we know.
        self._pushed: dict[str, float] = {}
        # Operations not sent yet: mode, id, tag.
        self._ops: list[tuple[str, str, str]] = []
        self._gone: list[str] = []
        # Forgotten while Redis was away: pushed when it returns.
        self._unsent: dict[str, str] = {}
        self._unsent_gone: set[str] = set()
        self._flush_call: IDelayedCall | None = None
        self._complained = False
        store.subscribe(self._channel, self._received)
        store.when_connected(self._reconnected)
        store.when_connected(self._read, listening=True)
        if store.connected:
            # Built after the connection was made: catch up now.
            clock.callLater(0, self._reconnected)

    # SessionTable

    def credential_of(self, session_id: str, now: float) -> str | None:
        """
        The tag of the credential ``session_id`` is on, from this process's copy.
        """
        return self._local.credential_of(session_id, now)

    def lookup(self, session_id: str, now: float) -> str | None:
        """
        What :obj:`credential_of` would answer; nothing changes.
        """
        return self._local.lookup(session_id, now)

    def assign(self, session_id: str, tag: str, now: float) -> None:
        """
        Put ``session_id`` on ``tag`` here, and behind in Redis: a claim
        when it was on none, a move when on another, a refresh of its
        expiry (at most once per interval) when on the same.
        """
        previous = self._local.lookup(session_id, now)
        self._local.assign(session_id, tag, now)
        if not session_id:
            return
        if previous is None:
            mode = "c"
        elif previous != tag:
            mode = "s"
        elif now - self._pushed.get(session_id, float("-inf")) < self._refresh_seconds:
            return
        else:
            mode = "t"
        self._queue(mode, session_id, tag, now)

    def forget(self, session_id: str) -> None:
        """
        Unassign ``session_id``, here and for every process.
        """
        self._local.forget(session_id)
        if session_id:
            self._queue("d", session_id, "")

    def forget_credential(self, tag: str) -> None:
        """
        Unassign every session on ``tag``, here and for every process.
        """
        now = self._clock.seconds()
        on_it = [session for session, _ in self._local.sessions_on(tag, now)]
        self._local.forget_credential(tag)
        for session in on_it:
            self._queue("d", session, tag)
        self._gone.append(tag)
        self._schedule()

    def sessions_on(self, tag: str, now: float) -> list[tuple[str, float]]:
        """
        The sessions on ``tag``, of every process, from this process's copy.
        """
        return self._local.sessions_on(tag, now)

    def __len__(self) -> int:
        """
        How many ids are assigned.
        """
        return len(self._local)

    # Writing behind

    def _queue(self, mode: str, session_id: str, tag: str, now: float | None = None) -> None:
        if mode == "d":
            self._pushed.pop(session_id, None)
        else:
            self._pushed[session_id] = self._clock.seconds() if now is None else now
            if len(self._pushed) > 2 * self._max_entries:
                known = {entry[0] for entry in self._local.entries(self._clock.seconds())}
                self._pushed = {k: v for k, v in self._pushed.items() if k in known}
        self._ops.append((mode, session_id, tag))
        self._schedule()

    def _schedule(self) -> None:
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        """
        Send what changed since the last turn, in batches.
        """
        self._flush_call = None
        ops, self._ops = self._ops, []
        gone, self._gone = self._gone, []
        ttl = max(1, int(self._idle_seconds * 1000))
        for start in range(0, max(len(ops), 1 if gone else 0), BATCH):
            batch = [(mode, id_, tag, ttl) for mode, id_, tag in ops[start : start + BATCH]]
            self._send(batch, gone if start == 0 else [])

    def _send(self, batch: list[tuple[str, str, str, int]], gone: list[str]) -> None:
        if not self._store.connected:
            self._keep(batch, gone)
            return
        keys = [self._prefix + id_ for _, id_, _, _ in batch]
        args: list[Any] = [self._channel, self._store.process_id, json.dumps(gone)]
        for op in batch:
            args.extend(op)
        d = self._store.evaluate(_APPLY, keys, args)
        d.addCallbacks(self._applied, self._failed, callbackArgs=(batch,), errbackArgs=(batch, gone))

    def _keep(self, batch: list[tuple[str, str, str, int]], gone: list[str]) -> None:
        """
        Remember what was forgotten while Redis is away; assignments come
        back with the push of the whole copy on reconnection.
        """
        for mode, id_, tag, _ in batch:
            if mode == "d" and len(self._unsent) < self._max_entries:
                self._unsent[id_] = tag
        self._unsent_gone.update(gone)

    def _applied(self, results: list[Any], batch: list[tuple[str, str, str, int]]) -> None:
        """
        Adopt what Redis decided where it differs from this copy: another
        process placed the id first, or moved it.
        """
        now = self._clock.seconds()
        for (mode, id_, tag, _), result in zip(batch, results):
            held = _tag(result)
            mine = self._local.lookup(id_, now)
            if held and mine != held and (mine == tag or mine is None):
                log.info(
                    "{kind} {id} is on credential {held}, as another ccm process placed it",
                    kind=self._kind,
                    id=id_[:40],
                    held=held,
                )
                self._local.assign(id_, held, now)

    def _failed(self, failure: Failure, batch: list[tuple[str, str, str, int]], gone: list[str]) -> None:
        self._keep(batch, gone)
        if not self._complained:
            self._complained = True
            log.warn(
                "Shared {kind} table: could not write to Redis ({why}); serving from this "
                "process's copy",
                kind=self._kind,
                why=failure.getErrorMessage(),
            )

    # Following the others

    def _received(self, message: str) -> None:
        """
        Apply another process's changes to this copy.
        """
        try:
            document = json.loads(message)
            if document.get("p") == self._store.process_id:
                return
            gone, changes = document.get("g") or [], document.get("m") or []
            pairs = [(str(id_), str(tag)) for id_, tag in changes]
        except (ValueError, TypeError, AttributeError):
            log.warn("Shared {kind} table: ignored a malformed message", kind=self._kind)
            return
        now = self._clock.seconds()
        for tag in gone if isinstance(gone, list) else []:
            self._local.forget_credential(str(tag))
        for id_, tag in pairs:
            if tag:
                self._local.assign(id_, tag, now)
                # The other process has just refreshed the key's expiry.
                self._pushed[id_] = now
            else:
                self._local.forget(id_)
                self._pushed.pop(id_, None)

    def _reconnected(self) -> None:
        """
        Push this copy (and what was forgotten meanwhile), then read every
        key of the map.
        """
        self._complained = False
        now = self._clock.seconds()
        unsent, self._unsent = self._unsent, {}
        for id_, tag in unsent.items():
            self._ops.append(("d", id_, tag))
        self._gone.extend(sorted(self._unsent_gone))
        self._unsent_gone = set()
        for id_, tag, used in self._local.entries(now):
            self._ops.append(("t", id_, tag))
            self._pushed[id_] = now
        self._flush()
        self._read()

    def _read(self) -> None:
        """
        Read every key of the map: on each connection, and again once this
        process listens to the others (what they published before is lost).
        """
        if self._store.connected:
            # What changed this turn goes before the read, which then sees it.
            if self._flush_call is not None:
                self._flush_call.cancel()
                self._flush()
            self._load().addErrback(self._failed, [], [])

    @inlineCallbacks
    def _load(self) -> Any:
        """
        Read every key of the map, at most the table's bound, in batches
        of a ``SCAN`` each.
        """
        cursor, read = "0", 0
        pattern = glob_escape(self._prefix) + "*"
        started = self._clock.seconds()
        seen: set[str] = set()
        while True:
            cursor, keys = yield self._store.command(
                "SCAN", cursor, "MATCH", pattern, "COUNT", BATCH
            )
            if keys:
                found = yield self._store.evaluate(_READ, [str(k) for k in keys], [])
                seen.update(self._loaded(found))
                read += len(keys)
            if read >= self._max_entries:
                return
            if str(cursor) == "0":
                break
        # What this copy holds and Redis does not, unused since the read
        # began, was forgotten or expired elsewhere (this copy was pushed
        # before): a message saying so may have come before this process
        # listened again.
        now = self._clock.seconds()
        for id_, _, used in list(self._local.entries(now)):
            if id_ not in seen and used < started:
                self._local.forget(id_)
                self._pushed.pop(id_, None)

    def _loaded(self, found: list[Any]) -> set[str]:
        """
        Take the keys read into this copy; the ids they hold.
        """
        now = self._clock.seconds()
        entries = []
        for at in range(0, len(found) - 2, 3):
            key, value, left = str(found[at]), _tag(found[at + 1]), int(found[at + 2])
            if left > 0 and key.startswith(self._prefix):
                used = now - max(0.0, self._idle_seconds - left / 1000)
                entries.append((used, key[len(self._prefix) :], value))
        for used, id_, tag in sorted(entries):
            if self._local.lookup(id_, now) != tag:
                self._local.assign(id_, tag, used)
        return {id_ for _, id_, _ in entries}
