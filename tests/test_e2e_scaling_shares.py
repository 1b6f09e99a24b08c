"""
End-to-end tests of shares and limits across replicas: real ``twistd``
processes sharing one real ``redis-server`` (:obj:`tests.replicas`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests import replicas
from tests.fake_anthropic import allowed_unified_headers, slow_stream_reply, text_reply

ALICE = "ak-ccm-scaling-alice"
BOB = "ak-ccm-scaling-bob"


@inlineCallbacks
def start(testcase: unittest.TestCase) -> Any:
    """
    Two replicas of a pool of two subscriptions: alice may use 10 % of
    its 5-hour window, bob has one request in flight at most.
    """
    cluster = yield replicas.start_cluster(testcase, replicas=0)
    cluster.config["users"] = [
        {"name": "alice", "token": ALICE, "credential": "pool", "share_5h": 10},
        {"name": "bob", "token": BOB, "credential": "pool", "max_concurrent": 1},
    ]
    yield replicas.add_replicas(testcase, cluster, 2)
    return cluster


class SharesAcrossReplicasTests(unittest.TestCase):
    """
    A share used up through one replica is refused by another, and
    ``max_concurrent`` counts the requests in flight on every replica.
    """

    timeout = 120

    @inlineCallbacks
    def test_share_enforced_across_replicas(self) -> Any:
        """
        alice's session reads 10 % then 50 % on replica 1: the rise of 40
        Pro-percent, 20 % of the pool, is charged to her, over her 10 %;
        her next request on replica 2 gets the share 429 without reaching
        the upstream, and bob is still served there.
        """
        cluster = yield start(self)
        http = replicas.client(self)
        one, two = cluster.replicas
        cluster.fake.unified_headers = allowed_unified_headers(time.time(), five_hour_utilization=0.10)
        cluster.fake.enqueue(text_reply("one"), text_reply("two"), text_reply("bob's"))
        code, _ = yield replicas.send_message(http, one, ALICE, session="s-alice")
        self.assertEqual(code, 200)
        cluster.fake.unified_headers = allowed_unified_headers(time.time(), five_hour_utilization=0.50)
        code, _ = yield replicas.send_message(http, one, ALICE, session="s-alice")
        self.assertEqual(code, 200)
        posts = len(cluster.fake.requests)
        body: dict[str, Any] = {}
        for _ in range(100):
            code, body = yield replicas.send_message(http, two, ALICE, session="s-alice")
            if code == 429:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(code, 429, body)
        self.assertIn("ccm: alice has used", body["error"]["message"])
        self.assertIn("their share is 10%", body["error"]["message"])
        code, _ = yield replicas.send_message(http, two, BOB)
        self.assertEqual(code, 200)

    @inlineCallbacks
    def test_max_concurrent_across_replicas(self) -> Any:
        """
        bob's slow streaming answer in flight on replica 1 makes his request
        on replica 2 wait; it is served once the stream has ended.
        """
        cluster = yield start(self)
        http = replicas.client(self)
        one, two = cluster.replicas
        cluster.fake.enqueue(slow_stream_reply(0.3, 10), text_reply("second"))
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 16,
            "stream": True,
            "messages": [{"role": "user", "content": "slow"}],
        }
        headers: dict[bytes | str, list[bytes | str]] = {
            "authorization": [f"Bearer {BOB}"],
            "content-type": ["application/json"],
            "anthropic-version": ["2023-06-01"],
        }
        streaming = yield http.post(
            one.url + "/v1/messages", data=json.dumps(body).encode(), headers=headers
        )
        self.assertEqual(streaming.code, 200)
        second = replicas.send_message(http, two, BOB)
        yield deferLater(reactor, 1.0, lambda: None)
        self.assertFalse(second.called, "served while the stream was in flight")
        content = yield streaming.content()
        self.assertIn(b"message_stop", content)
        code, answer = yield second
        self.assertEqual(code, 200, answer)
