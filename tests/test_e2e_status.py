"""
End-to-end test of the status watch with a real ``twistd -n ccm`` process:
a watch opened from this test process gets a new line when a proxied
request's rate-limit headers change the windows, names the credential of
the session it asks about, and ends properly, without holding ccm, when
ccm stops.

Requests come from this test process (:obj:`twisted.web.client.Agent`); the
upstream is the fake of :obj:`tests.fake_anthropic`, whose usage endpoint
fails, so that only the proxied response can change the windows.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import Agent, ResponseDone, readBody
from twisted.web.http_headers import Headers

from ccm.upstream.client import BytesProducer
from tests import e2e
from tests.fake_anthropic import allowed_unified_headers
from tests.fixtures import expiry_ms, write_credentials

ALICE = "ak-ccm-status-watch-alice"
SESSION = "44444444-4444-4444-8444-444444444444"
#: How long to wait for a line, or for the watch to end.
WAIT_SECONDS = 10.0


class _Lines(Protocol):
    """
    Collect a watch's lines as they arrive; ``done`` fires with whether
    the body ended cleanly (:obj:`ResponseDone`, not a cut connection).
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.documents: list[Any] = []
        self.empty_lines = 0
        self.done: Deferred[bool] = Deferred()
        self._waiting: list[tuple[Callable[[Any], bool], Deferred[Any]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if not line:
                self.empty_lines += 1
                continue
            self.documents.append(json.loads(line))
        self._check()

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        self.done.callback(reason.check(ResponseDone) is not None)

    def wait_for(self, predicate: Callable[[Any], bool]) -> Deferred[Any]:
        """
        Fire with the first line that satisfies ``predicate``, within
        :obj:`WAIT_SECONDS`.
        """
        waiter: Deferred[Any] = Deferred()
        self._waiting.append((predicate, waiter))
        self._check()
        return waiter.addTimeout(WAIT_SECONDS, reactor)

    def _check(self) -> None:
        for predicate, waiter in list(self._waiting):
            found = [d for d in self.documents if predicate(d)]
            if found:
                self._waiting.remove((predicate, waiter))
                waiter.callback(found[0])


class StatusWatchTests(unittest.TestCase):
    """
    ccm with one credential and one user, in front of the fake upstream.
    """

    timeout = 120

    @inlineCallbacks
    def test_watch_follows_a_proxied_request(self) -> Any:
        """
        The watch's first line comes at once; a proxied request whose
        unified headers report new utilization brings a line with the new
        figures, for the pool and for the session's credential; when ccm
        stops, the watch ends cleanly and ccm exits promptly.
        """
        fake, fake_url = e2e.serve_fake_anthropic(self)
        fake.usage_mode = "server_error"
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, ".credentials.json")
        write_credentials(path, fake.access_token, fake.refresh_token, expiry_ms(30 * 86400))
        config = e2e.ccm_config(fake_url, path, [{"name": "alice", "token": ALICE}])
        ccm = yield e2e.start_ccm(self, config)
        auth = [b"Bearer " + ALICE.encode()]
        agent = Agent(reactor)
        response = yield agent.request(
            b"GET",
            f"{ccm.url}/ccm/v1/status?watch=true&session={SESSION}".encode(),
            Headers({b"authorization": auth}),
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"application/x-ndjson"]
        )
        lines = _Lines()
        response.deliverBody(lines)
        first = yield lines.wait_for(lambda document: True)
        self.assertEqual(first["session"]["credential"], "default")
        self.assertEqual(first["session"]["five_hour_utilization"], 0.0)

        fake.unified_headers = allowed_unified_headers(
            time.time(), five_hour_utilization=0.37, seven_day_utilization=0.05
        )
        body = json.dumps(
            {
                "model": "claude-sonnet-4-5-20250929",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}],
            }
        ).encode()
        posted = yield agent.request(
            b"POST",
            f"{ccm.url}/v1/messages".encode(),
            Headers(
                {
                    b"authorization": auth,
                    b"content-type": [b"application/json"],
                    b"x-claude-code-session-id": [SESSION.encode()],
                }
            ),
            BytesProducer(body),
        )
        self.assertEqual(posted.code, 200)
        yield readBody(posted)
        changed = yield lines.wait_for(
            lambda document: document["session"]["five_hour_utilization"] == 37.0
        )
        self.assertEqual(changed["five_hour_utilization"], 38.0)
        self.assertEqual(changed["session"]["weekly_utilization"], 5.0)
        self.assertEqual(len(lines.documents), len({json.dumps(d) for d in lines.documents}))

        started = time.monotonic()
        stopping = ccm.stop()
        clean = yield lines.done.addTimeout(WAIT_SECONDS, reactor)
        self.assertTrue(clean)
        code = yield stopping
        self.assertEqual(code, e2e.TERMINATED_BY_SIGTERM)
        self.assertFalse(ccm.was_killed)
        self.assertLess(time.monotonic() - started, WAIT_SECONDS)
        output = ccm.output()
        self.assertIn("ended 1 status watch(es)", output)
        self.assertNotIn("Traceback", output)
        for secret in (ALICE, fake.access_token, fake.refresh_token):
            self.assertNotIn(secret, output)
