"""
End-to-end test of one refresh for several replicas: three real ``twistd
-n ccm`` processes sharing a real ``redis-server`` and a credentials file
whose token expires soon, with requests in flight on each.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from ccm.config.state import StateConfig
from ccm.state.redis import RedisStore
from ccm.state.tokens import TokenVault
from tests import e2e
from tests.fixtures import expiry_ms, write_credentials
from tests.redisserver import start_redis
from tests.replicas import ALICE, Cluster, add_replicas, client, pool_config, send_message
from tests.state.test_redis import eventually

PREFIX = "refresh:"


class OneRefreshTests(unittest.TestCase):
    """
    Replicas share one refresh of an expiring token.
    """

    timeout = 240

    @inlineCallbacks
    def test_one_refresh_for_all(self) -> Any:
        """
        With a token expiring in under five minutes and requests in flight
        on all three replicas, exactly one refresh reaches the token
        endpoint; afterwards every replica sends only the new token, and
        both the credentials file and the Redis copy keep the keys ccm
        does not know.
        """
        fake, url = e2e.serve_fake_anthropic(self)
        old_access, old_refresh = fake.access_token, fake.refresh_token
        redis = yield start_redis(self)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, ".credentials.json")
        write_credentials(
            path, old_access, old_refresh, expiry_ms(200),
            oauth={"futureKey": "kept"}, extra={"mcpOAuth": {"server": "kept"}},
        )
        config = pool_config(url, redis, {"a": path}, key_prefix=PREFIX)
        cluster = Cluster(fake, url, redis, directory, config)
        http = client(self)
        yield add_replicas(self, cluster, 3)
        sent = [send_message(http, r, ALICE) for r in cluster.replicas for _ in range(3)]
        answers = yield gatherResults(sent, consumeErrors=True)
        self.assertEqual([code for code, _ in answers], [200] * 9, answers)
        yield eventually(lambda: fake.access_token != old_access, 30)
        # Every replica hears of the new version at once; give them a moment.
        yield deferLater(reactor, 2, lambda: None)
        new_access = fake.access_token
        seen = len(fake.requests)
        for replica in cluster.replicas:
            for _ in range(2):
                code, body = yield send_message(http, replica, ALICE)
                self.assertEqual(code, 200, body)
        bearers = {
            r.header("authorization")
            for r in fake.requests[seen:]
            if r.path.startswith("/v1/messages")
        }
        self.assertEqual(bearers, {f"Bearer {new_access}"})
        self.assertEqual(len(fake.token_requests), 1)
        with open(path) as f:
            document = json.load(f)
        self.assertEqual(document["claudeAiOauth"]["accessToken"], new_access)
        self.assertEqual(document["claudeAiOauth"]["futureKey"], "kept")
        self.assertEqual(document["mcpOAuth"], {"server": "kept"})
        store = RedisStore(
            StateConfig(host="127.0.0.1", port=redis.port, password=redis.password,
                        key_prefix=PREFIX),
            reactor,
        )
        store.startService()
        self.addCleanup(store.stopService)
        yield eventually(lambda: store.connected)
        record = yield TokenVault(store).fetch("a")
        self.assertEqual(record.oauth["accessToken"], new_access)
        self.assertEqual(record.oauth["futureKey"], "kept")
        for replica in cluster.replicas:
            self.assertNotIn(new_access, replica.output())
            self.assertNotIn(old_refresh, replica.output())
