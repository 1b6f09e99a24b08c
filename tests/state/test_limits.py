"""
Tests for :obj:`ccm.state.limits`: per-user limits counted by two
processes in one real ``redis-server``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from ccm.config.model import UserConfig
from ccm.limits.gate import Ticket
from ccm.state.limits import SharedLimits
from ccm.state.redis import RedisStore
from ccm.web.errors import APIError
from tests.redisserver import RedisServer, start_redis
from tests.state.test_redis import connect, eventually

ALICE = UserConfig("alice", "t-alice", max_concurrent=1)
CAROL = UserConfig("carol", "t-carol", requests_per_minute=2)


class SharedLimitsTests(unittest.TestCase):
    """
    ``max_concurrent`` and ``requests_per_minute`` counted across two
    processes, a dead process's slots freed, each process alone while
    Redis is away.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for its Deferred
        self.server: RedisServer = yield start_redis(self)

    @inlineCallbacks
    def limits(self) -> Any:
        """A connected :obj:`SharedLimits` for alice and carol."""
        store: RedisStore = connect(self, self.server, key_prefix="limits-test:")
        yield eventually(lambda: store.connected)
        limits = SharedLimits(store, reactor, [ALICE, CAROL])
        self.addCleanup(limits.close, APIError(503, "overloaded_error", "closing"))
        return limits

    @inlineCallbacks
    def test_one_in_flight_across_processes(self) -> Any:
        """
        With ``max_concurrent`` 1, alice's request in flight in one process
        makes her request in the other wait, until the first ends.
        """
        one = yield self.limits()
        two = yield self.limits()
        ticket: Ticket = yield one.admit("alice")
        waiting = two.admit("alice")
        admitted: list[Ticket] = []
        waiting.addCallback(admitted.append)
        yield eventually(lambda: "alice" in two._waiting)
        self.assertEqual(admitted, [])
        ticket.release()
        yield eventually(lambda: admitted)
        admitted[0].release()

    @inlineCallbacks
    def test_rate_across_processes(self) -> Any:
        """
        carol's two requests a minute are counted together: a third in
        either process is refused with the rate 429.
        """
        one = yield self.limits()
        two = yield self.limits()
        yield one.admit("carol")
        yield two.admit("carol")
        refused = yield self.assertFailure(one.admit("carol"), APIError)
        self.assertEqual(refused.status, 429)
        self.assertIn("requests_per_minute", refused.message)

    @inlineCallbacks
    def test_dead_process_frees_its_slots(self) -> Any:
        """
        A process that stops renewing its holder key (killed) no longer
        holds alice's slot once the key is gone.
        """
        one = yield self.limits()
        two = yield self.limits()
        yield one.admit("alice")
        yield two._store.command("DEL", one._holders + one._store.process_id)
        ticket: Ticket = yield two.admit("alice")
        ticket.release()

    @inlineCallbacks
    def test_alone_while_redis_away(self) -> Any:
        """
        While Redis is away each process counts alone: alice gets one slot
        in each, and a second in the same process queues.
        """
        one = yield self.limits()
        two = yield self.limits()
        yield self.server.stop()
        yield eventually(lambda: not one._store.connected and not two._store.connected)
        first: Ticket = yield one.admit("alice")
        second: Ticket = yield two.admit("alice")
        queued = one.admit("alice")
        self.assertNoResult(queued)
        first.release()
        third: Ticket = yield queued
        for ticket in (second, third):
            ticket.release()
