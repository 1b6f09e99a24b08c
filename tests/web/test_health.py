"""
Tests for :obj:`ccm.web.health`: ``/ccm/v1/health`` without
authentication, 200 while a credential can serve, 503 when none can, and
nothing in its body but states by tag.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from tests.fake_anthropic import error_reply
from tests.proxy.messages import MESSAGE_BODY
from tests.proxyharness import ALICE_TOKEN, BOB_TOKEN, MAIN, SECOND, ProxyHarness


class HealthTests(SynchronousTestCase):
    """
    The health answer of a service, asked without a token.
    """

    def test_ok(self) -> None:
        """
        A usable credential: 200, JSON, not to be cached, with the
        credential's state by tag.
        """
        harness = ProxyHarness(self)
        response = harness.response("GET", "/ccm/v1/health", token=None)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-store"])
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(
            json.loads(harness.body_of(response)),
            {"status": "ok", "credentials": {MAIN: "usable"}},
        )

    def test_one_of_two_can_serve(self) -> None:
        """
        With ``main`` rate-limited and ``second`` usable, the service is
        healthy, and says which is which.
        """
        harness = ProxyHarness(self, balancer="fallback")
        harness.fake.enqueue(error_reply(429, "rate_limit_error", "Used up."))
        harness.body_of(harness.messages(MESSAGE_BODY))
        response = harness.response("GET", "/ccm/v1/health", token=None)
        self.assertEqual(response.code, 200)
        self.assertEqual(
            json.loads(harness.body_of(response))["credentials"],
            {MAIN: "rate_limited", SECOND: "usable"},
        )

    def test_none_can_serve(self) -> None:
        """
        With every credential unavailable the answer is a 503, and its body
        holds no path, token or user name.
        """
        harness = ProxyHarness(self, balancer="fallback")
        for credential in harness.credentials:
            os.remove(credential.store.path)
            credential.reload()
        response = harness.response("GET", "/ccm/v1/health", token=None)
        self.assertEqual(response.code, 503)
        body = harness.body_of(response).decode()
        self.assertEqual(
            json.loads(body),
            {"status": "unavailable", "credentials": {MAIN: "unavailable", SECOND: "unavailable"}},
        )
        for secret in (
            harness.credential_path,
            ".json",
            harness.fake.access_token,
            ALICE_TOKEN,
            BOB_TOKEN,
            "alice",
        ):
            self.assertNotIn(secret, body)

    def test_head_and_other_methods(self) -> None:
        """
        ``HEAD`` gets the status without a body; ``POST`` a 405 in the
        Anthropic shape; a path below it a 404.
        """
        harness = ProxyHarness(self)
        head = harness.response("HEAD", "/ccm/v1/health", token=None)
        self.assertEqual(head.code, 200)
        self.assertEqual(harness.body_of(head), b"")
        post = harness.response("POST", "/ccm/v1/health", b"", token=None)
        harness.ccm_error(post, 405, "invalid_request_error")
        below = harness.response("GET", "/ccm/v1/health/x", token=None)
        harness.ccm_error(below, 404, "not_found_error")
