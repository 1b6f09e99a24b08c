"""
End-to-end tests of sticky sessions across replicas: three real ``twistd
-n ccm`` processes on one real ``redis-server``, a client spreading
requests over them, and Redis going away and coming back mid-traffic.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests import e2e
from tests.fake_anthropic import FakeAnthropic, RecordedRequest
from tests.replicas import ALICE, SECOND_ACCESS, client, send_message, start_cluster
from tests.state.test_redis import connect

# Five: with six, replicas on their own would happen to agree.
SESSIONS = [f"session-{number}" for number in range(5)]


def bearers(fake: FakeAnthropic) -> dict[str, set[str]]:
    """
    Which subscriptions (``a``, ``b``) the upstream saw each session's
    ``POST /v1/messages`` requests on.
    """
    seen: dict[str, set[str]] = {}
    for request in fake.requests:
        if request.method == "POST" and request.path.split("?")[0] == "/v1/messages":
            seen.setdefault(request.header("x-claude-code-session-id") or "", set()).add(
                bearer(fake, request)
            )
    return seen


def bearer(fake: FakeAnthropic, request: RecordedRequest) -> str:
    """
    Which subscription a request upstream used.
    """
    token = (request.header("authorization") or "").removeprefix("Bearer ")
    return {fake.access_token: "a", SECOND_ACCESS: "b"}.get(token, "?")


@inlineCallbacks
def get_json(http: Any, url: str) -> Any:
    """
    The status and parsed body of ``GET url`` as alice.
    """
    response = yield http.get(url, headers={"authorization": [f"Bearer {ALICE}"]})
    body = yield response.content()
    return response.code, json.loads(body)


@inlineCallbacks
def session_credential(http: Any, replica: e2e.CcmProcess, session: str) -> Any:
    """
    The credential ``replica`` has ``session`` on (None: on none), asked
    without placing it.
    """
    _, body = yield get_json(http, f"{replica.url}/ccm/v1/status?session={session}")
    return body["session"]["credential"]


class StickyAcrossReplicasTests(unittest.TestCase):
    """
    A session stays on one subscription whichever replica it reaches.
    """

    timeout = 240

    @inlineCallbacks
    def test_sessions_stay_on_one_credential(self) -> Any:
        """
        Five sessions, each request of each going round robin over three
        replicas: every session's requests reach the upstream with one
        subscription's token, and both subscriptions are used.
        """
        cluster = yield start_cluster(self, replicas=3, usage=False)
        http = client(self)
        for turn in range(4):
            for number, session in enumerate(SESSIONS):
                # Each turn of a session on the next replica.
                replica = cluster.replicas[(turn + number) % 3]
                code, body = yield send_message(http, replica, ALICE, session=session)
                self.assertEqual(code, 200, body)
        seen = bearers(cluster.fake)
        self.assertEqual(sorted(seen), SESSIONS)
        for session in SESSIONS:
            self.assertEqual(len(seen[session]), 1, (session, seen[session]))
        self.assertEqual(set().union(*seen.values()), {"a", "b"})

    @inlineCallbacks
    def test_redis_away_and_back(self) -> Any:
        """
        With Redis stopped mid-traffic every replica keeps serving (200),
        sessions stay where they were, health says ``disconnected``; a
        session placed meanwhile is in Redis again once it returns, and
        every replica then has it on the same credential.
        """
        cluster = yield start_cluster(self, replicas=3, usage=False)
        http = client(self)
        for number, session in enumerate(SESSIONS[:3]):
            code, body = yield send_message(http, cluster.replicas[number], ALICE, session=session)
            self.assertEqual(code, 200, body)
        before = bearers(cluster.fake)
        yield cluster.redis.stop()
        first = cluster.replicas[0]
        yield deferLater(reactor, 0.5, lambda: None)
        _, health = yield get_json(http, first.url + "/ccm/v1/health")
        self.assertEqual(health["state"], "disconnected")
        for number, session in enumerate(SESSIONS[:3] * 2):
            code, body = yield send_message(http, cluster.replicas[number % 3], ALICE, session=session)
            self.assertEqual(code, 200, body)
        code, body = yield send_message(http, first, ALICE, session="meanwhile")
        self.assertEqual(code, 200, body)
        during = bearers(cluster.fake)
        for session in SESSIONS[:3]:
            self.assertEqual(during[session], before[session])
        yield cluster.redis.start()
        store = connect(self, cluster.redis, key_prefix="test:")
        held: list[Any] = []

        @inlineCallbacks
        def check() -> Any:
            if store.connected:
                held[:] = [(yield store.command("GET", "test:session:pool:meanwhile"))]

        for _ in range(300):
            yield check()
            if held and held[0]:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual({held[0]}, during["meanwhile"])
        for replica in cluster.replicas:
            agreed: list[Any] = []

            @inlineCallbacks
            def ask(replica: e2e.CcmProcess = replica) -> Any:
                agreed[:] = [(yield session_credential(http, replica, "meanwhile"))]

            for _ in range(200):
                yield ask()
                if agreed[0] == held[0]:
                    break
                yield deferLater(reactor, 0.05, lambda: None)
            self.assertEqual(agreed[0], held[0])
        _, health = yield get_json(http, first.url + "/ccm/v1/health")
        self.assertEqual(health["state"], "connected")
