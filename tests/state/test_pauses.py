"""
Tests for :obj:`ccm.state.pauses`: an admin's pause of a credential kept
the same by two processes through a real ``redis-server``.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial import unittest

from ccm.credentials.credential import Credential
from ccm.credentials.file import CredentialFile
from ccm.state.pauses import SharedPauses
from ccm.state.redis import RedisStore
from tests.fixtures import expiry_ms, write_credentials
from tests.redisserver import start_redis
from tests.state.test_redis import connect, eventually


class SharedPauseTests(unittest.TestCase):
    """
    Two processes, each with its own copy of credential ``a``.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for its Deferred
        self.server = yield start_redis(self)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.path = write_credentials(
            os.path.join(directory, "a.json"), "sk-ant-oat01-a", "sk-ant-ort01-a", expiry_ms(86400)
        )

    @inlineCallbacks
    def process(self, prefix: str = "pauses:") -> Any:
        """
        A process: its store, its credential ``a`` and the running
        :obj:`SharedPauses` keeping it, made before the store connects (as
        the builder makes them), once its channels are listened to and its
        pauses read.
        """
        store: RedisStore = connect(self, self.server, key_prefix=prefix)
        credential = Credential("a", CredentialFile(self.path), lambda token: Deferred(), reactor)
        credential.reload()
        pauses = SharedPauses(store, {"a": credential})
        caught_up: list[bool] = []
        store.when_connected(lambda: caught_up.append(True), listening=True)
        pauses.startService()
        self.addCleanup(pauses.stopService)
        yield eventually(lambda: bool(caught_up))
        return store, credential

    @inlineCallbacks
    def test_pause_and_resume_everywhere(self) -> Any:
        """
        A pause made in one process pauses the credential in the other, by
        the same admin; resuming it in the other resumes it in the first.
        """
        _, first = yield self.process()
        _, second = yield self.process()
        first.pause("root")
        yield eventually(lambda: second.admin_pause is not None)
        self.assertEqual(second.admin_pause.by if second.admin_pause else "", "root")
        second.resume()
        yield eventually(lambda: first.admin_pause is None)

    @inlineCallbacks
    def test_later_process_loads(self) -> Any:
        """
        A process that starts after the pause finds its credential paused;
        one of another installation (another key prefix) does not.
        """
        store, first = yield self.process()
        first.pause("root")
        for _ in range(100):
            if (yield store.command("HGET", store.key("pause", "a"), "by")) == "root":
                break
        _, late = yield self.process()
        _, other = yield self.process(prefix="elsewhere:")
        yield eventually(lambda: late.admin_pause is not None)
        self.assertIsNone(other.admin_pause)

    @inlineCallbacks
    def test_pause_while_redis_away(self) -> Any:
        """
        A pause made while Redis is away is kept when it returns, and
        reaches the other process then, rather than being undone by what
        Redis held.
        """
        _, first = yield self.process()
        _, second = yield self.process()
        yield self.server.stop()
        first.pause("root")
        yield self.server.start()
        yield eventually(lambda: second.admin_pause is not None, timeout=20)
        self.assertIsNotNone(first.admin_pause)
