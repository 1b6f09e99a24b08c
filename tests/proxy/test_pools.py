"""
Tests for how :obj:`ccm.proxy.resource` uses pools of several credentials: a 429 moves
the request to another credential before any byte reached the client, and
when nothing can serve the client gets an honest 429.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone

from tests.proxyharness import (
    SECOND_ACCESS_TOKEN,
    START_TIME,
    FakeUpstreamResponse,
    ProxyHarness,
    ScriptedUpstream,
)

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 8, "stream": True, "messages": []}
SECOND_TOKEN = SECOND_ACCESS_TOKEN


def quota_429(reset_in: float) -> FakeUpstreamResponse:
    """
    A 429 saying the subscription's 5-hour window is used up.
    """
    reset = str(int(START_TIME + reset_in)).encode("ascii")
    return FakeUpstreamResponse(
        429,
        {
            b"content-type": [b"application/json"],
            b"retry-after": [str(int(reset_in)).encode("ascii")],
            b"anthropic-ratelimit-unified-status": [b"rejected"],
            b"anthropic-ratelimit-unified-representative-claim": [b"five_hour"],
            b"anthropic-ratelimit-unified-5h-reset": [reset],
            b"anthropic-ratelimit-unified-5h-utilization": [b"1.0"],
        },
        b"Too Many Requests",
    )


def throttle_429() -> FakeUpstreamResponse:
    """
    A 429 without the unified headers: a passing capacity throttle.
    """
    return FakeUpstreamResponse(
        429, {b"content-type": [b"application/json"], b"retry-after": [b"3"]}, b"Too Many Requests"
    )


class PoolProxyTests(SynchronousTestCase):
    """
    A balancer pool of two credentials behind the proxy, with an upstream
    the test answers by hand.
    """

    def setUp(self) -> None:
        self.upstream = ScriptedUpstream()
        # Every caller is served by a balancer over the harness's
        # credential (main) and second.
        self.harness = ProxyHarness(self, http_client=self.upstream, balancer="fallback")
        self.second = self.harness.credentials[1]

    def send(self, **headers: Any) -> Deferred[Any]:
        """
        Start a streaming Messages request.
        """
        return self.harness.send(
            "POST",
            "/v1/messages",
            json.dumps(BODY).encode("utf-8"),
            {"content-type": "application/json", **headers},
        )

    def answer(self, index: int, response: FakeUpstreamResponse, body: bytes = b"") -> None:
        """
        Answer upstream call ``index`` with ``response`` and ``body``.
        """
        self.upstream.calls[index].result.callback(response)
        self.harness.flush()
        if response.protocol is not None and body:
            response.protocol.dataReceived(body)
        if response.protocol is not None:
            response.protocol.connectionLost(Failure(ResponseDone()))
        self.harness.flush()

    def bearer(self, index: int) -> str:
        """
        The bearer token upstream call ``index`` carried.
        """
        headers = self.upstream.calls[index].kwargs["headers"]
        bearer: bytes = headers.getRawHeaders(b"authorization")[0]
        return bearer.decode("ascii")

    def test_429_retried_on_other_credential(self) -> None:
        """
        A 429 out of quota is retried, with the same body, on the other
        credential before any byte reached the client, who sees only the
        successful answer; the limited credential is left aside.
        """
        d = self.send()
        self.answer(0, quota_429(3600))
        self.assertEqual(len(self.upstream.calls), 2)
        self.assertEqual(self.bearer(0), "Bearer " + self.harness.fake.access_token)
        self.assertEqual(self.bearer(1), "Bearer " + SECOND_TOKEN)
        self.assertEqual(
            self.upstream.calls[0].kwargs["data"], self.upstream.calls[1].kwargs["data"]
        )
        ok = FakeUpstreamResponse(200)
        self.answer(1, ok, b"event: message_stop\ndata: {}\n\n")
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.harness.body_of(response), b"event: message_stop\ndata: {}\n\n")
        self.assertTrue(self.harness.credential.rate_limits.is_limited(START_TIME + 10))
        self.assertTrue(any("429 from credential main" in t for t in self.harness.log_texts()))
        # The next request goes straight to the second credential.
        self.send()
        self.assertEqual(self.bearer(2), "Bearer " + SECOND_TOKEN)

    def test_all_limited(self) -> None:
        """
        When every credential answers 429 out of quota, each is tried once
        and the client gets ccm's 429 with the time to the earliest reset
        and ``x-should-retry: false``, naming each credential's state.
        """
        d = self.send()
        self.answer(0, quota_429(3600))
        self.answer(1, quota_429(600))
        self.assertEqual(len(self.upstream.calls), 2)
        response = self.successResultOf(d)
        error = self.harness.ccm_error(response, 429, "rate_limit_error")
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["600"])
        self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])
        self.assertIn("main: rate-limited (5-hour window) until", error["message"])
        self.assertIn("second: rate-limited (5-hour window) until", error["message"])

    def test_throttle_retried_then_passed_on(self) -> None:
        """
        A passing throttle (429 without the unified headers) is tried on
        the other credential; when that throttles too, its 429 reaches the
        client unchanged, and neither credential is set aside.
        """
        d = self.send()
        self.answer(0, throttle_429())
        self.assertEqual(len(self.upstream.calls), 2)
        self.answer(1, throttle_429(), b'{"type":"error"}')
        response = self.successResultOf(d)
        self.assertEqual(response.code, 429)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["3"])
        self.assertEqual(self.harness.body_of(response), b'{"type":"error"}')
        now = START_TIME + 1
        self.assertFalse(self.harness.credential.rate_limits.is_limited(now))
        self.assertFalse(self.second.rate_limits.is_limited(now))

    def test_success_ends_limit(self) -> None:
        """
        A 200 on a credential that a 429 set aside meanwhile (a request
        already on its way there) ends the limit: the credential served.
        """
        d = self.send()
        limits = self.harness.credential.rate_limits
        limits.observe_rejection(quota_429(3600).headers, START_TIME)
        self.assertTrue(limits.is_limited(START_TIME + 1))
        self.answer(0, FakeUpstreamResponse(200), b"event: message_stop\ndata: {}\n\n")
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertFalse(limits.is_limited(START_TIME + 1))

    def test_fast_mode_refused_through_pool(self) -> None:
        """
        Fast mode through a balancer is refused before any upstream call:
        it would spend paid extra usage on whichever subscription.
        """
        d = self.send(**{"anthropic-beta": "claude-code-20250219,fast-mode-2026-02-01"})
        error = self.harness.ccm_error(self.successResultOf(d), 400, "invalid_request_error")
        self.assertIn("fast mode", error["message"])
        self.assertEqual(self.upstream.calls, [])


class SingleCredentialProxyTests(SynchronousTestCase):
    """
    With one credential, a 429 out of quota is answered by ccm, and fast
    mode is allowed.
    """

    def test_quota_429_answered_by_ccm(self) -> None:
        """
        The only credential's 429 out of quota gives ccm's 429 with
        ``retry-after`` and ``x-should-retry: false``; the next request is
        refused without an upstream call until the reset.
        """
        upstream = ScriptedUpstream()
        harness = ProxyHarness(self, http_client=upstream)
        d = harness.send("POST", "/v1/messages", json.dumps(BODY).encode("utf-8"))
        upstream.calls[0].result.callback(quota_429(120))
        harness.flush()
        response = self.successResultOf(d)
        harness.ccm_error(response, 429, "rate_limit_error")
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["120"])
        second = self.successResultOf(
            harness.send("POST", "/v1/messages", json.dumps(BODY).encode("utf-8"))
        )
        harness.ccm_error(second, 429, "rate_limit_error")
        self.assertEqual(len(upstream.calls), 1)

    def test_fast_mode_allowed(self) -> None:
        """
        Fast mode through a single credential goes upstream.
        """
        upstream = ScriptedUpstream()
        harness = ProxyHarness(self, http_client=upstream)
        harness.send(
            "POST",
            "/v1/messages",
            json.dumps(BODY).encode("utf-8"),
            {"anthropic-beta": "fast-mode-2026-02-01"},
        )
        self.assertEqual(len(upstream.calls), 1)
