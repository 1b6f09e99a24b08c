"""
Tests for :obj:`ccm.state.redis`: the connection to a real ``redis-server``.
"""

from __future__ import annotations

import os
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial import unittest

from ccm.config.state import StateConfig
from ccm.state.redis import RedisStore, StateUnavailable
from tests import certs
from tests.redisserver import RedisServer, start_redis

PASSWORD = "redis-test-password"


@inlineCallbacks
def eventually(check: Any, timeout: float = 10.0) -> Any:
    """
    Wait until ``check()`` is true, polling every 20 ms; fail after
    ``timeout`` seconds.
    """
    waited = 0.0
    while not check():
        if waited > timeout:
            raise AssertionError(f"still not true after {timeout} s: {check}")
        yield deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


@inlineCallbacks
def listened(store: RedisStore, channel: str, count: int) -> Any:
    """
    Wait until ``count`` connections listen to ``channel`` (Redis's own
    count), so that a message published next reaches them all.
    """
    for _ in range(500):
        reply = yield store.command("PUBSUB", "NUMSUB", channel)
        if int(reply[1]) >= count:
            return
        yield deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"fewer than {count} listen to {channel}")


@inlineCallbacks
def publish_until_heard(store: RedisStore, channel: str, message: str, heard: list[str]) -> Any:
    """
    Publish ``message`` on ``channel`` until it is in ``heard``
    (subscribing takes a round trip of its own), waiting for each answer.
    """
    for _ in range(200):
        yield store.publish(channel, message)
        if message in heard:
            return
        yield deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"{message!r} never heard on {channel}")


def connect(testcase: unittest.TestCase, server: RedisServer, **config: Any) -> RedisStore:
    """
    A started :obj:`RedisStore` for ``server``, stopped in the cleanup.
    """
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "password": server.password}
    settings.update(config)
    store = RedisStore(StateConfig(**settings), reactor)
    store.startService()
    testcase.addCleanup(store.stopService)
    return store


class RedisStoreTests(unittest.TestCase):
    """
    Commands, scripts and channels on a real server, and what happens while
    it is away.
    """

    timeout = 60

    @inlineCallbacks
    def test_commands_and_scripts(self) -> Any:
        """
        Once connected, commands and Lua scripts run, on keys under the
        configured prefix.
        """
        server = yield start_redis(self)
        store = connect(self, server, key_prefix="t1:")
        yield eventually(lambda: store.connected)
        self.assertEqual(store.key("a", "b"), "t1:a:b")
        yield store.command("SET", store.key("x"), "41")
        result = yield store.evaluate(
            "return redis.call('INCR', KEYS[1])", [store.key("x")], []
        )
        self.assertEqual(result, 42)
        # Twice: the second runs by its hash.
        again = yield store.evaluate("return redis.call('GET', KEYS[1])", [store.key("x")], [])
        self.assertEqual(again, 42)

    @inlineCallbacks
    def test_password(self) -> Any:
        """
        A password-protected server is reached with the configured password;
        a wrong one is refused, logged without the password, and no command
        is sent.
        """
        server = yield start_redis(self, password=PASSWORD)
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        wrong = RedisStore(
            StateConfig(host="127.0.0.1", port=server.port, password="not-" + PASSWORD), reactor
        )
        wrong.startService()
        self.addCleanup(wrong.stopService)
        good = connect(self, server)
        yield eventually(lambda: good.connected)
        self.assertEqual((yield good.command("PING")), "PONG")
        yield eventually(lambda: any("refused" in str(e.get("log_format", "")) for e in events))
        self.assertFalse(wrong.connected)
        self.assertNotIn(PASSWORD, repr(events))
        yield self.assertFailure(wrong.command("PING"), StateUnavailable)

    @inlineCallbacks
    def test_channels(self) -> Any:
        """
        A message published by one process reaches every process that
        listens to its channel.
        """
        server = yield start_redis(self)
        sender = connect(self, server)
        receiver = connect(self, server)
        received: list[str] = []
        receiver.subscribe(receiver.key("news"), received.append)
        yield eventually(lambda: sender.connected and receiver.connected)
        yield publish_until_heard(sender, sender.key("news"), "hello", received)

    @inlineCallbacks
    def test_server_away_and_back(self) -> Any:
        """
        While the server is stopped, commands fail at once with
        :obj:`StateUnavailable` and the store says it is disconnected; when
        it is back the store reconnects by itself and says so to its
        followers, and channels are listened to again.
        """
        server = yield start_redis(self)
        store = connect(self, server)
        changes: list[str] = []
        store.when_connected(lambda: changes.append("up"))
        store.when_disconnected(lambda: changes.append("down"))
        received: list[str] = []
        store.subscribe(store.key("c"), received.append)
        yield eventually(lambda: store.connected)
        yield server.stop()
        yield eventually(lambda: not store.connected)
        yield self.assertFailure(store.command("PING"), StateUnavailable)
        yield server.start()
        yield eventually(lambda: store.connected, timeout=20)
        self.assertEqual(changes, ["up", "down", "up"])
        yield publish_until_heard(store, store.key("c"), "again", received)

    @inlineCallbacks
    def test_tls(self) -> Any:
        """
        A ``rediss://`` server is reached over TLS, its certificate checked
        against the configured CA file.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        pki = certs.make_pki()
        files = {
            "ca.pem": pki.root_pem,
            "server.pem": pki.server_pem + pki.intermediate_pem,
            "server.key": pki.server_key_pem,
        }
        for name, data in files.items():
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        ca, certificate, key = (os.path.join(directory, n) for n in files)
        server = yield start_redis(self, tls_files=(certificate, key, ca))
        store = connect(self, server, tls=True, tls_ca_file=ca)
        yield eventually(lambda: store.connected)
        self.assertEqual((yield store.command("PING")), "PONG")
