"""
Tests for :obj:`ccm.web.status`: ``GET /ccm/v1/status`` reports the caller's pool in
the reference's shape, with reset times, and tells when its credentials
cannot serve.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from tests.fake_anthropic import (
    FIVE_HOUR_SECONDS,
    SEVEN_DAY_SECONDS,
    allowed_unified_headers,
    error_reply,
)
from tests.proxyharness import ALICE_TOKEN, ProxyHarness

MESSAGE_BODY = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


class StatusTests(SynchronousTestCase):
    """
    The status endpoint, served from the ccm root.
    """

    def status(self, harness: ProxyHarness, token: str | None = ALICE_TOKEN) -> bytes:
        """
        Fetch the status, which must be a 200 JSON document.
        """
        response = harness.response("GET", "/ccm/v1/status", token=token)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"])
        return harness.body_of(response)

    def test_shape(self) -> None:
        """
        The answer is the reference's three keys plus the two reset times
        of the newest sing-box, sorted, newline-ended; a fresh Max 20x
        credential is used only below its 99% cap, and no reset is known
        yet.
        """
        harness = ProxyHarness(self)
        body = self.status(harness)
        self.assertEqual(
            body,
            b'{"five_hour_reset": 0, "five_hour_utilization": 1.0, "plan_weight": 10.0, '
            b'"weekly_reset": 0, "weekly_utilization": 1.0}\n',
        )

    def test_utilization_follows_proxied_headers(self) -> None:
        """
        The unified rate-limit headers of a proxied response change what
        the status reports, reset times (Unix seconds) included.
        """
        harness = ProxyHarness(self)
        now = int(harness.clock.seconds())
        harness.fake.unified_headers = allowed_unified_headers(
            now, five_hour_utilization=0.42, seven_day_utilization=0.07
        )
        harness.body_of(harness.messages(MESSAGE_BODY))
        document = json.loads(self.status(harness))
        self.assertEqual(
            document,
            {
                "five_hour_utilization": 43.0,
                "five_hour_reset": now + FIVE_HOUR_SECONDS,
                "plan_weight": 10.0,
                "weekly_utilization": 8.0,
                "weekly_reset": now + SEVEN_DAY_SECONDS,
            },
        )
        self.assertEqual(len(harness.fake.requests), 1)

    def test_unavailable_credential(self) -> None:
        """
        With no usable credential the pool reports itself fully used, with
        no weight and no reset time.
        """
        harness = ProxyHarness(self, write_credential_file=False)
        document = json.loads(self.status(harness))
        self.assertEqual(
            document,
            {
                "five_hour_utilization": 100.0,
                "five_hour_reset": 0,
                "plan_weight": 0.0,
                "weekly_utilization": 100.0,
                "weekly_reset": 0,
            },
        )

    def test_rate_limited_credential(self) -> None:
        """
        While the only credential is out of quota (a 429), the status shows
        the wall: both windows full, no weight, and the limit's end as the
        reset of both; once it is over and a usage poll has reported the
        new window, the figures are the credential's own again.
        """
        harness = ProxyHarness(self)
        now = int(harness.clock.seconds())
        harness.fake.enqueue(error_reply(429, "rate_limit_error", "rate limited"))
        harness.ccm_error(harness.messages(MESSAGE_BODY), 429, "rate_limit_error")
        document = json.loads(self.status(harness))
        self.assertEqual(
            document,
            {
                "five_hour_utilization": 100.0,
                "five_hour_reset": now + FIVE_HOUR_SECONDS,
                "plan_weight": 0.0,
                "weekly_utilization": 100.0,
                "weekly_reset": now + FIVE_HOUR_SECONDS,
            },
        )
        harness.clock.advance(FIVE_HOUR_SECONDS)
        later = harness.clock.seconds()
        harness.credential.rate_limits.apply_poll(
            (0.0, later + FIVE_HOUR_SECONDS), (30.0, now + SEVEN_DAY_SECONDS), later
        )
        document = json.loads(self.status(harness))
        self.assertEqual(document["five_hour_utilization"], 1.0)
        self.assertEqual(document["weekly_utilization"], 31.0)
        self.assertEqual(document["plan_weight"], 10.0)

    def test_paused_credential(self) -> None:
        """
        A credential paused at its threshold counts as full in both
        windows until its window resets.
        """
        harness = ProxyHarness(self)
        now = int(harness.clock.seconds())
        harness.fake.unified_headers = allowed_unified_headers(
            now, five_hour_utilization=0.99, seven_day_utilization=0.4
        )
        harness.body_of(harness.messages(MESSAGE_BODY))
        document = json.loads(self.status(harness))
        self.assertEqual(
            (document["five_hour_utilization"], document["weekly_utilization"]), (100.0, 100.0)
        )
        self.assertEqual(document["plan_weight"], 0.0)
        self.assertEqual(document["five_hour_reset"], now + FIVE_HOUR_SECONDS)
        self.assertEqual(document["weekly_reset"], now + FIVE_HOUR_SECONDS)

    def test_refresh_failed(self) -> None:
        """
        A credential whose token expired and could not be refreshed is
        unavailable, and the status says so.
        """
        harness = ProxyHarness(self)
        self.assertEqual(json.loads(self.status(harness))["plan_weight"], 10.0)
        harness.clock.advance(86400 + 1)
        harness.ccm_error(harness.messages(MESSAGE_BODY), 503, "api_error")
        self.assertEqual(harness.refreshes, [harness.fake.refresh_token])
        document = json.loads(self.status(harness))
        self.assertEqual(
            (document["five_hour_utilization"], document["weekly_utilization"]), (100.0, 100.0)
        )
        self.assertEqual(document["plan_weight"], 0.0)
        harness.assert_no_secrets_logged()

    def test_credential_becomes_unavailable(self) -> None:
        """
        A credentials file that disappears takes the credential out of the
        status at the next reload.
        """
        harness = ProxyHarness(self)
        self.assertEqual(json.loads(self.status(harness))["plan_weight"], 10.0)
        os.remove(harness.credential_path)
        harness.credential.reload()
        self.assertEqual(json.loads(self.status(harness))["plan_weight"], 0.0)

    def test_requires_authentication(self) -> None:
        """
        With users configured, the status needs one valid token: no token,
        a wrong one, a foreign API key and two ``Authorization`` headers get
        a 401 with ``x-should-retry: false``, and a valid request still works
        afterwards.
        """
        harness = ProxyHarness(self)
        for token, headers in (
            (None, {}),
            ("not-a-user", {}),
            (None, {"x-api-key": "sk-ant-api03-x"}),
            (None, {"authorization": [f"Bearer {ALICE_TOKEN}", "Bearer not-a-user"]}),
        ):
            response = harness.response("GET", "/ccm/v1/status", headers=headers, token=token)
            error = harness.ccm_error(response, 401, "authentication_error")
            self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])
            self.assertNotIn("not-a-user", error["message"])
            self.assertNotIn(ALICE_TOKEN, error["message"])
        self.assertEqual(harness.response("GET", "/ccm/v1/status").code, 200)
        harness.assert_no_secrets_logged("not-a-user", "sk-ant-api03-x")

    def test_api_key_user_token(self) -> None:
        """
        A user token sent as ``x-api-key`` is accepted, as on the proxy.
        """
        harness = ProxyHarness(self)
        response = harness.response(
            "GET", "/ccm/v1/status", headers={"x-api-key": ALICE_TOKEN}, token=None
        )
        self.assertEqual(response.code, 200)
        self.assertEqual([caller.name for caller in harness.callers], ["alice"])

    def test_anonymous(self) -> None:
        """
        Without users the status is served to anyone.
        """
        harness = ProxyHarness(self, users=())
        document = json.loads(self.status(harness, token=None))
        self.assertEqual(document["plan_weight"], 10.0)

    def test_other_methods(self) -> None:
        """
        Methods other than GET get 405 with ``Allow: GET``, before any
        authentication.
        """
        harness = ProxyHarness(self)
        for method in ("POST", "PUT", "DELETE"):
            response = harness.response(method, "/ccm/v1/status", b"{}", token=None)
            self.assertEqual(response.headers.getRawHeaders("allow"), ["GET"])
            harness.ccm_error(response, 405, "invalid_request_error")
        self.assertEqual(harness.callers, [])

    def test_never_goes_upstream(self) -> None:
        """
        The status is computed locally, without any upstream request.
        """
        harness = ProxyHarness(self)
        self.status(harness)
        self.assertEqual(harness.fake.requests, [])
