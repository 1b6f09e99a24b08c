"""
End-to-end tests of several ccm processes sharing one Redis: real
``twistd -n ccm`` replicas, a real ``redis-server``, the fake upstream.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests import e2e
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

    @inlineCallbacks
    def test_replica_without_the_file(self) -> Any:
        """
        A replica on a host without the credentials files (its
        ``credential_path`` names files that do not exist there) serves
        with the tokens the host that has them put in Redis, once it has
        read them (a moment after it listens).
        """
        cluster = yield start_cluster(self, replicas=1)
        elsewhere = copy.deepcopy(cluster.config)
        for entry in elsewhere["credentials"]:
            if "credential_path" in entry:
                entry["credential_path"] = os.path.join(self.mktemp(), "absent.json")
        remote = yield e2e.start_ccm(self, elsewhere)
        http = client(self)
        answers: list[Any] = []
        for _ in range(50):
            answers.append((yield send_message(http, remote, ALICE)))
            if answers[-1][0] == 200:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(answers[-1][0], 200, answers[-1][1])
        code, body = yield send_message(http, remote, BOB, session="another")
        self.assertEqual(code, 200, body)
