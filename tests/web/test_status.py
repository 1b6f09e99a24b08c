"""
Tests for :obj:`ccm.web.status`: ``GET /ccm/v1/status`` reports the caller's pool in
the reference's shape, with reset times, and tells when its credentials
cannot serve.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.fake_anthropic import (
    FIVE_HOUR_SECONDS,
    SEVEN_DAY_SECONDS,
    allowed_unified_headers,
    error_reply,
    organization_disabled_reply,
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


SESSION_1 = "11111111-1111-4111-8111-111111111111"
SESSION_2 = "22222222-2222-4222-8222-222222222222"


class StatusSessionTests(SynchronousTestCase):
    """
    ``?session=<X-Claude-Code-Session-Id>`` adds the credential serving that
    session, its state and its windows.
    """

    def status(self, harness: ProxyHarness, query: str) -> dict[str, Any]:
        """
        The status document for ``query``, which must be a 200.
        """
        response = harness.response("GET", "/ccm/v1/status?" + query)
        self.assertEqual(response.code, 200)
        document: dict[str, Any] = json.loads(harness.body_of(response))
        return document

    def credential_of(self, harness: ProxyHarness, session: str) -> Any:
        """
        The ``credential`` the status names for ``session``.
        """
        return self.status(harness, f"session={session}")["session"]["credential"]

    def ask(self, harness: ProxyHarness, session: str) -> None:
        """
        A proxied request of ``session``.
        """
        harness.body_of(
            harness.messages(MESSAGE_BODY, headers={"x-claude-code-session-id": session})
        )

    def test_single_credential(self) -> None:
        """
        With a single credential, every session is on it: the answer keeps
        the pool's fields and adds the credential's standing, its windows
        as Anthropic reported them.
        """
        harness = ProxyHarness(self)
        now = int(harness.clock.seconds())
        harness.fake.unified_headers = allowed_unified_headers(
            now, five_hour_utilization=0.42, seven_day_utilization=0.07
        )
        self.ask(harness, SESSION_1)
        document = self.status(harness, f"session={SESSION_1}")
        plain = self.status(harness, "")
        session = document.pop("session")
        self.assertEqual(document, plain)
        self.assertEqual(
            session,
            {
                "credential": "main",
                "state": "usable",
                "reason": None,
                "description": "usable",
                "unusable_until": 0,
                "quarantined_since": None,
                "five_hour_utilization": 42.0,
                "five_hour_reset": now + FIVE_HOUR_SECONDS,
                "five_hour_cap": 99.0,
                "weekly_utilization": 7.0,
                "weekly_reset": now + SEVEN_DAY_SECONDS,
                "weekly_cap": 99.0,
                "plan_weight": 10.0,
            },
        )
        self.assertEqual(self.credential_of(harness, "never-seen"), "main")

    def test_balancer_sessions(self) -> None:
        """
        In a balancer each session is on the credential it was placed on,
        and a session never seen is on none: ``{"credential": null}``.
        """
        harness = ProxyHarness(self, balancer="round_robin")
        self.ask(harness, SESSION_1)
        self.ask(harness, SESSION_2)
        self.assertEqual(self.credential_of(harness, SESSION_1), "main")
        self.assertEqual(self.credential_of(harness, SESSION_2), "second")
        self.assertEqual(self.status(harness, "session=unknown")["session"], {"credential": None})

    def test_query_places_and_keeps_nothing(self) -> None:
        """
        Asking about a session places none, and asking about a placed one
        all day does not keep it: it is forgotten a day after its last
        request, as if nobody had asked.
        """
        harness = ProxyHarness(self, balancer="round_robin")
        self.assertEqual(self.status(harness, "session=asked")["session"], {"credential": None})
        self.ask(harness, SESSION_1)
        for _ in range(24):
            harness.clock.advance(3599)
            self.assertEqual(self.credential_of(harness, SESSION_1), "main")
        harness.clock.advance(24)
        self.assertIsNone(self.credential_of(harness, SESSION_1))
        # Round robin was not moved by the queries: the next new session
        # goes to the credential after SESSION_1's.
        self.ask(harness, SESSION_2)
        self.assertEqual(self.credential_of(harness, SESSION_2), "second")

    def test_rate_limited_session(self) -> None:
        """
        A session whose credential is out of quota learns why, and when it
        serves again.
        """
        harness = ProxyHarness(self)
        now = int(harness.clock.seconds())
        harness.fake.enqueue(error_reply(429, "rate_limit_error", "rate limited"))
        harness.ccm_error(
            harness.messages(MESSAGE_BODY, headers={"x-claude-code-session-id": SESSION_1}),
            429,
            "rate_limit_error",
        )
        session = self.status(harness, f"session={SESSION_1}")["session"]
        self.assertEqual(
            (session["state"], session["reason"], session["unusable_until"]),
            ("rate_limited", "rate_limited_5h", now + FIVE_HOUR_SECONDS),
        )

    def test_quarantined_session(self) -> None:
        """
        A session whose credential was banned learns that it is
        quarantined, since when (the time of the ban, in Unix seconds, an
        hour later too), and that no time ends it.
        """
        harness = ProxyHarness(self)
        banned_at = int(harness.clock.seconds())
        harness.fake.enqueue(organization_disabled_reply())
        harness.ccm_error(
            harness.messages(MESSAGE_BODY, headers={"x-claude-code-session-id": SESSION_1}),
            503,
            "api_error",
        )
        harness.clock.advance(3600)
        session = self.status(harness, f"session={SESSION_1}")["session"]
        self.assertEqual(
            (session["state"], session["reason"], session["unusable_until"]),
            ("quarantined", "quarantined", 0),
        )
        self.assertEqual(session["quarantined_since"], banned_at)
        self.assertTrue(session["description"].startswith("quarantined: "), session)


class StatusQueryTests(SynchronousTestCase):
    """
    The query parameters of the status endpoint: what is ignored, and what
    is a 400.
    """

    def test_unknown_parameters_ignored(self) -> None:
        """
        Parameters the endpoint does not know are ignored, and
        ``watch=false`` is the plain answer.
        """
        harness = ProxyHarness(self)
        plain = harness.body_of(harness.response("GET", "/ccm/v1/status"))
        for query in ("_=1790000000", "format=json&x", "watch=false"):
            response = harness.response("GET", "/ccm/v1/status?" + query)
            self.assertEqual(response.code, 200)
            self.assertEqual(harness.body_of(response), plain)

    def test_bad_parameters(self) -> None:
        """
        A ``watch`` other than ``true`` or ``false``, an empty or overlong
        session id, and a parameter given twice are a 400
        ``invalid_request_error`` saying which.
        """
        harness = ProxyHarness(self)
        for query, fragment in (
            ("watch=yes", "watch parameter must be true or false"),
            ("watch=TRUE", "watch parameter must be true or false"),
            ("watch=", "watch parameter must be true or false"),
            ("session=", "session parameter must be a Claude Code session id"),
            ("session=%20%20", "session parameter must be a Claude Code session id"),
            ("session=" + "x" * 257, "session parameter must be a Claude Code session id"),
            ("session=a&session=b", "session parameter is given more than once"),
            ("watch=true&watch=true", "watch parameter is given more than once"),
        ):
            response = harness.response("GET", "/ccm/v1/status?" + query)
            error = harness.ccm_error(response, 400, "invalid_request_error")
            self.assertIn(fragment, error["message"], query)
            self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])

    def test_authentication_first(self) -> None:
        """
        Without a valid token, any query gets the 401, bad ones included:
        nothing about parameters is said to strangers.
        """
        harness = ProxyHarness(self)
        for query in ("watch=yes", "session=x", "watch=true"):
            response = harness.response("GET", "/ccm/v1/status?" + query, token="not-a-user")
            harness.ccm_error(response, 401, "authentication_error")
