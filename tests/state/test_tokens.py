"""
Tests for :obj:`ccm.state.tokens`: the credentials' tokens in a real
``redis-server``: imports never go backwards, fenced writes refuse a
stale holder, unknown keys and encryption.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from ccm.state.lease import Lease
from ccm.state.tokens import TokenVault, VaultError
from tests.redisserver import start_redis
from tests.state.test_redis import connect, eventually


def oauth(access: str, expires: int) -> dict[str, Any]:
    """
    A ``claudeAiOauth`` object with a key ccm does not know.
    """
    return {
        "accessToken": access,
        "refreshToken": "sk-ant-ort01-test-" + access,
        "expiresAt": expires,
        "scopes": ["user:inference"],
        "subscriptionType": "max",
        "futureKey": {"kept": True},
    }


class TokenVaultTests(unittest.TestCase):
    """
    One hash per credential, written by imports and fenced refreshes.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for its Deferred
        server = yield start_redis(self)
        self.store = connect(self, server)
        self.other = connect(self, server)
        yield eventually(lambda: self.store.connected and self.other.connected)

    @inlineCallbacks
    def test_offer_only_newer(self) -> Any:
        """
        An import is stored when Redis has nothing or an earlier expiry,
        each time as a new version, and refused for an equal or earlier
        one; the stored object keeps its unknown keys.
        """
        vault = TokenVault(self.store)
        self.assertEqual((yield vault.offer("a", oauth("sk-ant-oat01-one", 1000))), 1)
        self.assertEqual((yield vault.offer("a", oauth("sk-ant-oat01-old", 500))), 0)
        self.assertEqual((yield vault.offer("a", oauth("sk-ant-oat01-same", 1000))), 0)
        self.assertEqual((yield vault.offer("a", oauth("sk-ant-oat01-two", 2000))), 2)
        record = yield vault.fetch("a")
        self.assertEqual(record.version, 2)
        self.assertEqual(record.oauth, oauth("sk-ant-oat01-two", 2000))
        self.assertIsNone((yield vault.fetch("b")))

    @inlineCallbacks
    def test_fenced_write(self) -> Any:
        """
        A refresh is written with the current fence and version; a writer
        whose fence is stale (another took the lease since) or who
        refreshed from an older version is refused.
        """
        vault = TokenVault(self.store)
        yield vault.offer("a", oauth("sk-ant-oat01-one", 1000))
        mine = Lease(self.store, "refresh:a", 0.2)
        fence = yield mine.acquire()
        self.assertEqual(
            (yield vault.write("a", oauth("sk-ant-oat01-two", 2000), mine.fence_key, fence, 1)), 2
        )
        self.assertEqual(
            (yield vault.write("a", oauth("sk-ant-oat01-x", 3000), mine.fence_key, fence, 1)), 0
        )
        yield mine.release()
        theirs = yield Lease(self.other, "refresh:a", 30).acquire()
        self.assertGreater(theirs, fence)
        stale = yield vault.write("a", oauth("sk-ant-oat01-stale", 9000), mine.fence_key, fence, 2)
        self.assertEqual(stale, 0)
        self.assertEqual((yield vault.fetch("a")).oauth["accessToken"], "sk-ant-oat01-two")

    @inlineCallbacks
    def test_announced(self) -> Any:
        """
        Each new version is announced with the tag, version and sender.
        """
        heard: list[str] = []
        vault = TokenVault(self.store)
        self.other.subscribe(vault.channel, heard.append)
        for expires in range(1000, 60000, 1000):
            # Until the subscription is in place.
            yield vault.offer("a", oauth("sk-ant-oat01-one", expires))
            if heard:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertIn('"tag":"a"', heard[0])
        self.assertIn(self.store.process_id, heard[0])

    @inlineCallbacks
    def test_encrypted(self) -> Any:
        """
        With a key the document is unreadable in Redis and read back
        whole; without the key, or with another, reading fails with a
        message that names the setting and no token.
        """
        key = Fernet.generate_key()
        vault = TokenVault(self.store, Fernet(key))
        yield vault.offer("a", oauth("sk-ant-oat01-secret", 1000))
        raw = yield self.store.command("HGET", vault.key("a"), "doc")
        self.assertNotIn("sk-ant", raw)
        self.assertEqual((yield vault.fetch("a")).oauth, oauth("sk-ant-oat01-secret", 1000))
        for other in (TokenVault(self.other), TokenVault(self.other, Fernet(Fernet.generate_key()))):
            error = yield self.assertFailure(other.fetch("a"), VaultError)
            self.assertIn("encryption_key_file", str(error))
            self.assertNotIn("sk-ant", str(error))
