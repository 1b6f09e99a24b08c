"""
Tests for :obj:`ccm.state.credentials`, :obj:`ccm.state.refreshlock` and
:obj:`ccm.state.tokensync`: real :obj:`Credential` objects of two
"processes" (two connections, each its own sync) sharing one real
``redis-server``, with a counted stand-in for the token endpoint.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from ccm.credentials.credential import Credential
from ccm.credentials.file import CredentialFile
from ccm.credentials.lock import RefreshLock
from ccm.credentials.oauth import TokenGrant
from ccm.state.tokensync import TokenSync
from tests.fixtures import expiry_ms, write_credentials
from tests.redisserver import RedisServer, start_redis
from tests.state.test_redis import connect, eventually

OLD_ACCESS = "sk-ant-oat01-shared-old"
OLD_REFRESH = "sk-ant-ort01-shared-old"
NEW_ACCESS = "sk-ant-oat01-shared-new"
NEW_REFRESH = "sk-ant-ort01-shared-new"


class TokenEndpoint:
    """
    Grants one rotation per call, a little later, and counts the calls.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []

    def refresh(self, refresh_token: str) -> Deferred[TokenGrant]:
        self.calls.append(refresh_token)
        grant = TokenGrant(NEW_ACCESS, NEW_REFRESH, 8 * 3600)
        return deferLater(reactor, 0.05, lambda: grant)


class SharedCredentialTests(unittest.TestCase):
    """
    Processes sharing a credential refresh it once, all serve the new
    token, and the host's file follows.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for its Deferred
        self.server: RedisServer = yield start_redis(self)
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, ".credentials.json")
        write_credentials(
            self.path, OLD_ACCESS, OLD_REFRESH, expiry_ms(30), oauth={"futureKey": 7},
            extra={"mcpOAuth": {"x": 1}},
        )
        self.endpoint = TokenEndpoint()

    def process(self, path: str) -> tuple[Credential, TokenSync]:
        """
        One process's credential ``a`` backed by the file ``path`` (which
        may not exist), started, with its sync, stopped at cleanup.
        """
        store = connect(self, self.server)
        sync = TokenSync(store, reactor, None, check_every=0.5)
        sync.startService()
        self.addCleanup(sync.stopService)
        lock = RefreshLock(os.path.dirname(path), reactor)
        shared, shared_lock = sync.credential("a", CredentialFile(path), lock)
        credential = Credential("a", shared, self.endpoint.refresh, reactor, lock=shared_lock)
        shared.changed = credential.reload
        credential.reload()
        return credential, sync

    def file_oauth(self) -> dict[str, Any]:
        with open(self.path) as f:
            document = json.load(f)
        self.assertEqual(document["mcpOAuth"], {"x": 1})
        return dict(document["claudeAiOauth"])

    @inlineCallbacks
    def test_one_refresh(self) -> Any:
        """
        Two processes refreshing the same expiring token at once spend
        the refresh token once; both then serve the new token, and the
        file and Redis keep the keys ccm does not know.
        """
        first, one = self.process(self.path)
        second, two = self.process(self.path)
        yield eventually(lambda: one.stores["a"].version and two.stores["a"].version)
        results = yield Deferred.fromCoroutine(_both(first.access_token(), second.access_token()))
        self.assertEqual(self.endpoint.calls, [OLD_REFRESH])
        self.assertIn(NEW_ACCESS, results)
        yield eventually(
            lambda: first.tokens is not None and second.tokens is not None
            and first.tokens.access_token == second.tokens.access_token == NEW_ACCESS
        )
        self.assertEqual(self.file_oauth()["accessToken"], NEW_ACCESS)
        self.assertEqual(self.file_oauth()["futureKey"], 7)
        record = yield one.vault.fetch("a")
        self.assertEqual(record.oauth["accessToken"], NEW_ACCESS)
        self.assertEqual(record.oauth["futureKey"], 7)

    @inlineCallbacks
    def test_remote_refresh_written_back(self) -> Any:
        """
        A process on a host without the file serves the imported token,
        refreshes it under the lease, and the process on the host with
        the file writes the new token to it, unknown keys kept.
        """
        local, here = self.process(self.path)
        yield eventually(lambda: here.stores["a"].version == 1)
        remote, there = self.process(os.path.join(self.directory, "absent", ".credentials.json"))
        yield eventually(lambda: remote.tokens is not None)
        self.assertFalse(there.stores["a"].has_local)
        token = yield remote.access_token()
        self.assertEqual(token, NEW_ACCESS)
        self.assertEqual(self.endpoint.calls, [OLD_REFRESH])
        yield eventually(lambda: self.file_oauth()["accessToken"] == NEW_ACCESS)
        self.assertEqual(self.file_oauth()["refreshToken"], NEW_REFRESH)
        self.assertEqual(self.file_oauth()["futureKey"], 7)
        yield eventually(lambda: local.tokens is not None and local.tokens.access_token == NEW_ACCESS)

    @inlineCallbacks
    def test_redis_away(self) -> Any:
        """
        While Redis is away, the process with the file refreshes under
        Claude Code's lock alone and pushes its token when Redis returns;
        the process without the file does not refresh, and adopts it.
        """
        local, here = self.process(self.path)
        remote, there = self.process(os.path.join(self.directory, "absent", ".credentials.json"))
        yield eventually(lambda: remote.tokens is not None)
        yield self.server.stop()
        yield eventually(lambda: not here._store.connected and not there._store.connected)
        token = yield remote.access_token()
        self.assertEqual(token, OLD_ACCESS)
        self.assertEqual(self.endpoint.calls, [])
        token = yield local.access_token()
        self.assertEqual((token, self.endpoint.calls), (NEW_ACCESS, [OLD_REFRESH]))
        self.assertEqual(self.file_oauth()["accessToken"], NEW_ACCESS)
        yield self.server.start()
        yield eventually(
            lambda: remote.tokens is not None and remote.tokens.access_token == NEW_ACCESS, 20
        )
        self.assertEqual(self.endpoint.calls, [OLD_REFRESH])

    @inlineCallbacks
    def test_one_poller(self) -> Any:
        """
        Of three processes, exactly one polls the credential's usage.
        """
        syncs = [self.process(self.path)[1] for _ in range(3)]
        yield eventually(lambda: all(sync._store.connected for sync in syncs))
        yield eventually(lambda: [sync.polls("a") for sync in syncs].count(True) == 1)
        yield deferLater(reactor, 0.5, lambda: None)
        self.assertEqual([sync.polls("a") for sync in syncs].count(True), 1)


async def _both(first: Deferred[str], second: Deferred[str]) -> list[str]:
    return [await first, await second]

