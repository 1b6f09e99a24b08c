"""
End-to-end tests of several ccm processes sharing one Redis: real
``twistd -n ccm`` replicas, a real ``redis-server``, the fake upstream.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from tests.replicas import ALICE, BOB, SECOND_ACCESS, client, send_message, start_cluster

REDIS_PASSWORD = "redis-replicas-password"


class ReplicaTests(unittest.TestCase):
    """
    Replicas started on one Redis serve requests.
    """

    timeout = 180

    @inlineCallbacks
    def test_replicas_serve(self) -> Any:
        """
        Two replicas with a ``state`` key start, connect to a Redis that
        asks for a password (their log says so) and each serves a request;
        neither logs a token, a refresh token or the password.
        """
        cluster = yield start_cluster(self, replicas=2, redis_password=REDIS_PASSWORD)
        http = client(self)
        for replica in cluster.replicas:
            code, body = yield send_message(http, replica, ALICE)
            self.assertEqual(code, 200, body)
            self.assertIn("Shared state at redis://127.0.0.1:", replica.output())
        secrets = [
            REDIS_PASSWORD, ALICE, BOB, cluster.fake.access_token, SECOND_ACCESS,
            "sk-ant-ort01-a", "sk-ant-ort01-b",
        ]
        for replica in cluster.replicas:
            yield replica.stop()
            output = replica.output()
            for secret in secrets:
                self.assertNotIn(secret, output)
