"""
Tests for :obj:`ccm.state.sessions` and :obj:`ccm.state.affinity`: sticky
sessions and affinity maps shared by several processes through a real
``redis-server``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from ccm.state.affinity import RedisAffinityTable
from ccm.state.redis import RedisStore
from ccm.state.sessions import RedisSessionTable, glob_escape
from tests.redisserver import RedisServer, start_redis
from tests.state.test_redis import connect, eventually, listened

IDLE = 3600.0


def table(store: RedisStore, pool: str = "pool", idle: float = IDLE) -> RedisSessionTable:
    """
    The session table of ``pool`` through ``store``, on the real reactor.
    """
    return RedisSessionTable(store, reactor, "session", pool, idle, 100)


def now() -> float:
    return reactor.seconds()


@inlineCallbacks
def ready(testcase: unittest.TestCase, server: RedisServer, prefix: str) -> Any:
    """
    A connected store on ``server`` with key prefix ``prefix``.
    """
    store = connect(testcase, server, key_prefix=prefix)
    yield eventually(lambda: store.connected)
    return store


class SharedSessionTests(unittest.TestCase):
    """
    Two processes (two stores, two tables) share one balancer's sessions.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for its Deferred
        self.server = yield start_redis(self)

    @inlineCallbacks
    def pair(self, prefix: str) -> Any:
        first = yield ready(self, self.server, prefix)
        second = yield ready(self, self.server, prefix)
        tables = table(first), table(second)
        yield listened(first, first.key("events", "session", "pool"), 2)
        return first, tables[0], second, tables[1]

    @inlineCallbacks
    def test_assignment_reaches_the_others_and_redis(self) -> Any:
        """
        An assignment in one process is seen by the other from its copy,
        and Redis holds it in a key that expires after the idle time.
        """
        store, mine, _, theirs = yield self.pair("s1:")
        mine.assign("sess-1", "a", now())
        yield eventually(lambda: theirs.credential_of("sess-1", now()) == "a")
        self.assertEqual((yield store.command("GET", "s1:session:pool:sess-1")), "a")
        ttl = yield store.command("PTTL", "s1:session:pool:sess-1")
        self.assertTrue(IDLE * 1000 - 10_000 < ttl <= IDLE * 1000, ttl)
        self.assertEqual([s for s, _ in theirs.sessions_on("a", now())], ["sess-1"])

    @inlineCallbacks
    def test_first_assignment_wins(self) -> Any:
        """
        Two processes placing the same new session on different credentials
        at once end up agreeing with Redis on one of them.
        """
        store, mine, _, theirs = yield self.pair("s2:")
        mine.assign("sess-1", "a", now())
        theirs.assign("sess-1", "b", now())
        yield eventually(
            lambda: mine.lookup("sess-1", now()) == theirs.lookup("sess-1", now())
        )
        held = yield store.command("GET", "s2:session:pool:sess-1")
        self.assertEqual(mine.lookup("sess-1", now()), held)

    @inlineCallbacks
    def test_forget_and_forget_credential(self) -> Any:
        """
        Forgetting a session, or every session of a credential, reaches the
        other process and deletes the keys.
        """
        store, mine, _, theirs = yield self.pair("s3:")
        for session, tag in (("s-1", "a"), ("s-2", "a"), ("s-3", "b")):
            mine.assign(session, tag, now())
        yield eventually(lambda: len(theirs) == 3)
        theirs.forget("s-3")
        yield eventually(lambda: mine.lookup("s-3", now()) is None)
        mine.forget_credential("a")
        yield eventually(lambda: len(theirs) == 0)
        keys = yield store.command("KEYS", "s3:session:*")
        self.assertEqual(keys, [])

    @inlineCallbacks
    def test_later_process_loads_existing_sessions(self) -> Any:
        """
        A process connecting later knows every live session at once, with
        a last use derived from the key's remaining time.
        """
        store = yield ready(self, self.server, "s4:")
        mine = table(store)
        for number in range(30):
            mine.assign(f"sess-{number}", "a" if number % 2 else "b", now())
        yield eventually(lambda: store.connected)
        yield deferLater(reactor, 0.2, lambda: None)
        late_store = yield ready(self, self.server, "s4:")
        late = table(late_store)
        yield eventually(lambda: len(late) == 30)
        self.assertEqual(late.lookup("sess-3", now()), "a")
        sessions = late.sessions_on("b", now())
        self.assertEqual(len(sessions), 15)
        self.assertTrue(all(now() - used < 60 for _, used in sessions))

    @inlineCallbacks
    def test_uses_refresh_the_expiry_at_most_once_a_minute(self) -> Any:
        """
        Using a session again refreshes its key's expiry only once a minute
        has passed since the last refresh, so busy sessions cost no round
        trip per request.
        """
        store = yield ready(self, self.server, "s5:")
        mine = table(store)
        yield deferLater(reactor, 0.1, lambda: None)  # caught up
        sent: list[object] = []
        evaluate = store.evaluate

        def recording(*args: Any) -> Any:
            sent.append(args)
            return evaluate(*args)

        store.evaluate = recording
        start = now()
        mine.assign("sess-1", "a", start)
        yield deferLater(reactor, 0.05, lambda: None)
        for offset in (1, 10, 59):
            mine.assign("sess-1", "a", start + offset)
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(sent), 1)
        yield store.command("PEXPIRE", "s5:session:pool:sess-1", 1000)
        mine.assign("sess-1", "a", start + 61)
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(sent), 2)
        self.assertGreater((yield store.command("PTTL", "s5:session:pool:sess-1")), 10_000)

    @inlineCallbacks
    def test_assignments_while_redis_is_away_come_back(self) -> Any:
        """
        Sessions placed while Redis is away (here a restart that lost every
        key) are pushed when it returns: the other process learns them and
        Redis holds them again; one forgotten meanwhile ends the same in
        every copy and in Redis.
        """
        store, mine, _, theirs = yield self.pair("s6:")
        mine.assign("old", "a", now())
        yield eventually(lambda: theirs.lookup("old", now()) == "a")
        yield self.server.stop()
        yield eventually(lambda: not store.connected)
        mine.assign("new", "b", now())
        mine.forget("old")
        self.assertEqual(mine.lookup("new", now()), "b")
        yield self.server.start()
        yield eventually(lambda: theirs.lookup("new", now()) == "b", timeout=20)
        self.assertEqual((yield store.command("GET", "s6:session:pool:new")), "b")
        # The forgotten one: the other process pushed its copy too, so it is
        # forgotten or back, but soon the same everywhere.
        seen: list[tuple[Any, ...]] = []
        for _ in range(200):
            held = yield store.command("GET", "s6:session:pool:old")
            seen.append((held, mine.lookup("old", now()), theirs.lookup("old", now())))
            if seen[-1][0] == seen[-1][1] == seen[-1][2]:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(set(seen[-1])), 1, seen[-3:])

    @inlineCallbacks
    def test_pools_and_prefixes_are_apart(self) -> Any:
        """
        Another pool's table and another installation's prefix see none of
        these sessions; glob characters in names are matched literally.
        """
        store, mine, _, _ = yield self.pair("s7:")
        other_store = yield ready(self, self.server, "s7*")
        other_pool = table(store, pool="p*")
        mine.assign("sess-1", "a", now())
        yield deferLater(reactor, 0.2, lambda: None)
        late = table(other_store)
        other_pool_late = table(store, pool="p*")
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual((len(other_pool), len(late), len(other_pool_late)), (0, 0, 0))
        self.assertEqual(glob_escape("a*b?[c]"), "a\\*b\\?\\[c\\]")


class SharedAffinityTests(unittest.TestCase):
    """
    Request ids and sub-agents placed in one process are known in another.
    """

    timeout = 30

    @inlineCallbacks
    def test_request_and_agent_reach_the_other(self) -> Any:
        """
        A keepalive naming an answer served by another process finds its
        credential, and so does a sub-agent's next request.
        """
        server = yield start_redis(self)
        first = yield ready(self, server, "a1:")
        second = yield ready(self, server, "a1:")
        mine = RedisAffinityTable(first, reactor, "pool")
        theirs = RedisAffinityTable(second, reactor, "pool")
        yield deferLater(reactor, 0.1, lambda: None)
        mine.remember_request("req_1", "a", now())
        mine.remember_agent("agent-1", "b", now())
        yield eventually(lambda: theirs.sizes == (1, 1))
        self.assertEqual(theirs.request_credential("req_1", now()), "a")
        self.assertEqual(theirs.agent_credential("agent-1", now()), "b")
        self.assertEqual(theirs.request_credential("req_2", now()), None)
