"""
Tests for how :obj:`ccm.proxy.resource` survives absurd numbers in the upstream's
rate-limit headers: the fake upstream sends them, the client still gets an
answer in the Anthropic shape, and no state they leave behind breaks a
later request or the status endpoint.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from tests.fake_anthropic import (
    UNIFIED_PREFIX,
    allowed_unified_headers,
    error_reply,
    rejected_unified_headers,
)
from tests.proxyharness import ProxyHarness

MESSAGE_BODY = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


def quota_429(harness: ProxyHarness, **changes: str | None) -> Any:
    """
    A reply of the fake: a 429 out of quota on the 5-hour window, as the
    fake sends it but without a utilization figure (which would keep the
    credential paused after the limit, until a poll), with the headers in
    ``changes`` set (``None`` removes one); a name that does not start with
    ``retry-after`` is the suffix of a unified header (``5h-reset``).
    """
    headers = rejected_unified_headers(harness.clock.seconds())
    del headers[UNIFIED_PREFIX + "5h-utilization"]
    for name, value in changes.items():
        key = name if name.startswith("retry-after") else UNIFIED_PREFIX + name
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return error_reply(429, "rate_limit_error", "rate limited", headers=headers)


class AbsurdHeaderTests(SynchronousTestCase):
    """
    One absurd number in an upstream rate-limit header never turns the
    answer into a 500 or an HTML page, and leaves no state that breaks later
    requests.
    """

    def assert_recovers(self, harness: ProxyHarness) -> None:
        """
        With sane headers from now on, several normal requests and a status
        request all succeed; nothing is left in progress; no token was
        logged.
        """
        harness.fake.unified_headers = allowed_unified_headers(
            harness.clock.seconds(), five_hour_utilization=0.25, seven_day_utilization=0.5
        )
        for _ in range(3):
            response = harness.messages(MESSAGE_BODY)
            self.assertEqual(response.code, 200)
            self.assertEqual(json.loads(harness.body_of(response))["type"], "message")
        response = harness.response("GET", "/ccm/v1/status")
        self.assertEqual(response.code, 200)
        status = json.loads(harness.body_of(response))
        self.assertEqual(status["five_hour_utilization"], 26.0)
        self.assertEqual(status["weekly_utilization"], 51.0)
        self.assertEqual(status["plan_weight"], 10.0)
        self.assertEqual(harness.proxy.in_progress, 0)
        harness.assert_no_secrets_logged()

    def test_huge_utilization(self) -> None:
        """
        ``5h-utilization: 1e308`` on successful answers: each answer reaches
        the client unchanged, the figure is ignored with one warning for the
        lot, and the next requests work.
        """
        harness = ProxyHarness(self)
        headers = allowed_unified_headers(harness.clock.seconds())
        headers[UNIFIED_PREFIX + "5h-utilization"] = "1e308"
        harness.fake.unified_headers = headers
        for _ in range(3):
            response = harness.messages(MESSAGE_BODY)
            self.assertEqual(response.code, 200)
            self.assertEqual(
                response.headers.getRawHeaders(UNIFIED_PREFIX + "5h-utilization"), ["1e308"]
            )
            harness.body_of(response)
        self.assertEqual(harness.credential.rate_limits.five_hour.utilization, 0.0)
        [warning] = harness.log_texts(LogLevel.warn)
        self.assertIn(UNIFIED_PREFIX + "5h-utilization", warning)
        self.assert_recovers(harness)

    def test_huge_retry_after(self) -> None:
        """
        A 429 out of quota whose only delay is a 400-digit ``retry-after``:
        the client gets ccm's own 429, the credential is set aside for the
        default minute (not for ever), and after it the next requests work.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(
            quota_429(harness, **{"5h-reset": None, "reset": None, "retry-after": "9" * 400})
        )
        response = harness.messages(MESSAGE_BODY)
        harness.ccm_error(response, 429, "rate_limit_error")
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["60"])
        self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])
        [warning] = [w for w in harness.log_texts(LogLevel.warn) if "ignoring" in w]
        self.assertIn("retry-after='" + "9" * 39, warning)
        harness.clock.advance(60)
        self.assert_recovers(harness)

    def test_huge_retry_after_ms(self) -> None:
        """
        An absurd ``retry-after-ms`` is ignored in favour of ``retry-after``.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(
            quota_429(
                harness,
                **{"5h-reset": None, "reset": None, "retry-after-ms": "1e308", "retry-after": "30"},
            )
        )
        response = harness.messages(MESSAGE_BODY)
        harness.ccm_error(response, 429, "rate_limit_error")
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["30"])
        harness.clock.advance(30)
        self.assert_recovers(harness)

    def test_huge_reset(self) -> None:
        """
        A 429 whose reset times are ``1e308``: the client gets ccm's own 429
        (the limit runs for ``retry-after``), so do requests during the
        limit, without an upstream call and in JSON, never as an HTML
        "Processing Failed" page; the status shows the wall with its end;
        after it the next requests work.
        """
        harness = ProxyHarness(self)
        now = harness.clock.seconds()
        harness.fake.enqueue(
            quota_429(harness, **{"5h-reset": "1e308", "reset": "1e308", "retry-after": "120"})
        )
        response = harness.messages(MESSAGE_BODY)
        error = harness.ccm_error(response, 429, "rate_limit_error")
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["120"])
        self.assertIn("rate-limited (5-hour window) until", error["message"])
        harness.clock.advance(10)
        response = harness.messages(MESSAGE_BODY)
        harness.ccm_error(response, 429, "rate_limit_error")
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["110"])
        self.assertEqual(len(harness.fake.requests), 1)
        status = json.loads(harness.body_of(harness.response("GET", "/ccm/v1/status")))
        self.assertEqual(status["five_hour_utilization"], 100.0)
        self.assertEqual(status["plan_weight"], 0.0)
        self.assertEqual(status["five_hour_reset"], int(now) + 120)
        harness.clock.advance(110)
        self.assert_recovers(harness)
