# -*- test-case-name: tests.state.test_windows -*-
"""
A credential's window state (:obj:`ccm.pool.windows.WindowState`) shared by
every process of one Redis.

Each process reads its own copy, a :obj:`MemoryWindowState`.  After a write
the whole state goes to a hash per credential and to the other processes
(pub/sub), which take it in place of theirs: the newest write wins.  The
frequent writes (the figures of every response's headers) are gathered for
:obj:`COALESCE_SECONDS`, the last state winning; a 429's limit, an
extra-usage refusal and an admin's clearing of a cooldown go at once.  A
process (re)connecting reads the hash, or pushes its copy when that is newer
(what it learnt while Redis was away).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from ccm.pool.extrausage import ExtraUsage
from ccm.pool.figures import Limit, Window, WindowName
from ccm.pool.plan import Plan
from ccm.pool.windows import MemoryWindowState
from ccm.state.redis import RedisStore

log = Logger()

#: Utilization updates of one credential go out at most this often.
COALESCE_SECONDS = 0.25
#: The hash outlives the weekly window, then goes with its credential.
KEY_TTL_MS = 8 * 86400 * 1000

# KEYS: the hash.  ARGV: written at, writer, state, channel, message.
# Writes and publishes unless the hash holds a newer state; then returns
# that state and its time instead.
_WRITE = """
local held = redis.call('HMGET', KEYS[1], 'at', 'state')
if held[1] and tonumber(held[1]) > tonumber(ARGV[1]) then
  return {held[1], held[2]}
end
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'by', ARGV[2], 'state', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""


class RedisWindowState(MemoryWindowState):
    """
    The window state of credential ``tag``, shared through ``store``.
    """

    def __init__(
        self,
        store: RedisStore,
        clock: IReactorTime,
        tag: str,
        coalesce_seconds: float = COALESCE_SECONDS,
    ) -> None:
        super().__init__(tag)
        self._store = store
        self._clock = clock
        self._tag = tag
        self._coalesce_seconds = coalesce_seconds
        self._key = store.key("window", tag)
        self._channel = store.key("events", "window", tag)
        # When the state this copy holds was written, here or elsewhere.
        self._written_at = 0.0
        self._adopting = False
        self._flush_call: IDelayedCall | None = None
        self._complained = False
        super().subscribe(self._changed)
        store.subscribe(self._channel, self._received)
        store.when_connected(self._reconnected)
        # Messages published before this process listened are lost to it.
        store.when_connected(self._reconnected, listening=True)
        if store.connected:
            # Built after the connection was made: catch up now.
            clock.callLater(0, self._reconnected)

    # The writes that cannot wait

    def observe_rejection(self, headers: Headers, now: float) -> float | None:
        """
        As :obj:`MemoryWindowState.observe_rejection`; the other processes
        hear of the limit at once.
        """
        until = super().observe_rejection(headers, now)
        self._flush()
        return until

    def observe_extra_usage_refusal(self, now: float) -> float:
        """
        As :obj:`MemoryWindowState.observe_extra_usage_refusal`, told at once.
        """
        until = super().observe_extra_usage_refusal(now)
        self._flush()
        return until

    def clear_cooldown(self, now: float) -> bool:
        """
        As :obj:`MemoryWindowState.clear_cooldown`, told at once.
        """
        on = super().clear_cooldown(now)
        self._flush()
        return on

    # The state as a document

    def snapshot(self) -> dict[str, Any]:
        """
        This copy's state, as the JSON document other processes read.
        """
        limit = self._limit
        return {
            "windows": {n.value: [w.utilization, w.resets_at] for n, w in self._windows.items()},
            "updated_at": self._updated_at,
            "limit": None if limit is None else [limit.until, limit.window and limit.window.value],
            "limit_set_at": self._limit_set_at,
            "plan": [self._plan.subscription_type, self._plan.rate_limit_tier],
            "extra_usage": vars(self._extra_usage),
        }

    def restore(self, document: dict[str, Any]) -> None:
        """
        Take the state of ``document`` (see :obj:`snapshot`) in place of
        this copy's, and tell this copy's observers.

        :raises ValueError: (or ``TypeError``, ``KeyError``) for a document
            that is not one.
        """
        windows = {
            WindowName(name): Window(float(used), float(resets))
            for name, (used, resets) in document["windows"].items()
        }
        limit = document["limit"]
        extra = ExtraUsage(**document["extra_usage"])
        self._windows.update(windows)
        self._updated_at = float(document["updated_at"])
        self._limit = (
            None
            if limit is None
            else Limit(float(limit[0]), WindowName(limit[1]) if limit[1] else None)
        )
        self._limit_set_at = float(document["limit_set_at"])
        self._plan = Plan(*document["plan"])
        self._extra_usage = extra
        self._adopting = True
        try:
            self._observers.notify()
        finally:
            self._adopting = False

    # Writing behind

    def _changed(self) -> None:
        if self._adopting:
            return
        self._written_at = self._clock.seconds()
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(self._coalesce_seconds, self._flush)

    def _flush(self) -> None:
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        if not self._store.connected or not self._written_at:
            return
        state = json.dumps(self.snapshot())
        at = repr(self._written_at)
        message = json.dumps({"p": self._store.process_id, "at": self._written_at, "s": state})
        d = self._store.evaluate(
            _WRITE,
            [self._key],
            [at, self._store.process_id, state, self._channel, message, KEY_TTL_MS],
        )
        d.addCallbacks(self._written, self._failed)

    def _written(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) == 2:
            # Another process wrote a newer state meanwhile.
            self._adopt(float(reply[0]), str(reply[1]))

    def _failed(self, failure: Failure) -> None:
        if not self._complained:
            self._complained = True
            log.warn(
                "Shared window state of {tag}: could not write to Redis ({why}); other "
                "processes learn it when Redis returns",
                tag=self._tag,
                why=failure.getErrorMessage(),
            )

    # Following the others

    def _adopt(self, at: float, state: str) -> None:
        if at < self._written_at:
            return
        try:
            self.restore(json.loads(state))
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warn("Shared window state of {tag}: ignored a malformed state", tag=self._tag)
            return
        self._written_at = at
        if self._flush_call is not None and self._flush_call.active():
            # What it would have sent is older than what it now holds.
            self._flush_call.cancel()
            self._flush_call = None

    def _received(self, message: str) -> None:
        try:
            document = json.loads(message)
            sender, at, state = document["p"], float(document["at"]), str(document["s"])
        except (ValueError, TypeError, KeyError):
            log.warn("Shared window state of {tag}: ignored a malformed message", tag=self._tag)
            return
        if sender != self._store.process_id:
            self._adopt(at, state)

    def _reconnected(self) -> None:
        """
        Take the hash's state when it is newer, else push this copy's.
        """
        self._complained = False

        def read(reply: Any) -> None:
            fields = reply if isinstance(reply, list) else []
            at, state = (fields + [None, None])[:2]
            if at is not None and state is not None and float(at) >= self._written_at:
                self._adopt(float(at), str(state))
            else:
                self._flush()

        d = self._store.command("HMGET", self._key, "at", "state")
        d.addCallbacks(read, self._failed)
