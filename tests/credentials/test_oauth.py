"""
Tests for :obj:`ccm.credentials.oauth`: the OAuth refresh request and how its answers and
failures are understood.
"""

from __future__ import annotations

import json
from typing import Any, cast

from treq.client import HTTPClient
from treq.testing import StringStubbingResource, StubTreq
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived
from twisted.web.http import datetimeToString

from ccm.credentials.oauth import (
    FALLBACK_LIFETIME_SECONDS,
    REFRESH_TIMEOUT_SECONDS,
    RefreshError,
    TokenEndpoint,
    TokenGrant,
    is_cancellation,
)
from ccm.upstream.identity import CHECKED_AXIOS_VERSION, ClientIdentity
from tests.fake_anthropic import FakeAnthropic

TOKEN_URL = "https://platform.claude.com/v1/oauth/token"
REFRESH = "sk-ant-ort01-fake-refresh"
START_TIME = 1_790_000_000.0


def http_date(moment: float) -> str:
    """
    ``moment`` (Unix seconds) as an HTTP date.
    """
    date: bytes = datetimeToString(moment)
    return date.decode("ascii")


def canned(status: int, body: object) -> HTTPClient:
    """
    A client whose every request is answered with ``status`` and ``body``
    (JSON-encoded unless it is bytes already).
    """
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")

    def respond(
        method: bytes, url: str, params: Any, headers: Any, data: bytes
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        return status, {b"content-type": b"application/json"}, raw

    return cast(HTTPClient, StubTreq(StringStubbingResource(respond)))


class TokenEndpointTests(SynchronousTestCase):
    """
    :obj:`TokenEndpoint.refresh` against the fake token endpoint.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START_TIME)
        self.fake = FakeAnthropic(self.clock)
        self.http = StubTreq(self.fake.resource())
        self.endpoint = TokenEndpoint(cast(HTTPClient, self.http), self.clock, TOKEN_URL)

    def refresh(self, endpoint: TokenEndpoint | None = None) -> Deferred[TokenGrant]:
        """
        Start a refresh with the fake's current refresh token and let the
        in-memory connection deliver everything it can.
        """
        attempt = (endpoint or self.endpoint).refresh(REFRESH)
        self.http.flush()
        return attempt

    def assert_refresh_error(self, attempt: Deferred[TokenGrant], permanent: bool) -> str:
        """
        The attempt failed with a :obj:`RefreshError` of the given permanence
        whose message does not contain the refresh token.

        :return: the message.
        """
        error = self.failureResultOf(attempt, RefreshError).value
        self.assertIsInstance(error, RefreshError)
        self.assertEqual(error.permanent, permanent)
        self.assertNotIn(REFRESH, str(error))
        return str(error)

    def test_request(self) -> None:
        """
        The refresh is one POST to the token URL with a compact JSON body
        holding the grant type, refresh token, Claude Code's client id and
        scopes, sent as JSON with the ``Accept`` and user agent of the axios
        Claude Code bundles.
        """
        self.successResultOf(self.refresh())
        [request] = self.fake.token_requests
        self.assertEqual(request.method, "POST")
        self.assertEqual(request.path, "/v1/oauth/token")
        self.assertEqual(request.header("content-type"), "application/json")
        self.assertEqual(request.header("accept"), "application/json, text/plain, */*")
        self.assertEqual(request.header("user-agent"), f"axios/{CHECKED_AXIOS_VERSION}")
        self.assertTrue(request.body.startswith(b'{"grant_type":"refresh_token","refresh_token":'))
        self.assertEqual(
            request.json(),
            {
                "grant_type": "refresh_token",
                "refresh_token": REFRESH,
                "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
                "scope": (
                    "user:profile user:inference user:sessions:claude_code "
                    "user:mcp_servers user:file_upload"
                ),
            },
        )

    def test_success(self) -> None:
        """
        A 200 gives the new access token, the rotated refresh token and the
        lifetime in seconds.
        """
        self.fake.token_expires_in = 28800
        grant = self.successResultOf(self.refresh())
        self.assertEqual(
            grant,
            TokenGrant(
                access_token=self.fake.access_token,
                refresh_token=self.fake.refresh_token,
                expires_in_seconds=28800,
            ),
        )
        self.assertNotEqual(grant.refresh_token, REFRESH)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_grant_repr_hides_tokens(self) -> None:
        """
        The repr of a grant shows neither token.
        """
        grant = self.successResultOf(self.refresh())
        self.assertNotIn(grant.access_token, repr(grant))
        self.assertNotIn(grant.refresh_token, repr(grant))
        self.assertIn("28800", repr(grant))

    def test_no_rotated_refresh_token(self) -> None:
        """
        An answer without a refresh token (or with a non-string one) gives
        an empty one, meaning the current one stays valid.
        """
        for body in (
            {"access_token": "new", "expires_in": 60},
            {"access_token": "new", "expires_in": 60, "refresh_token": None},
        ):
            endpoint = TokenEndpoint(canned(200, body), self.clock, TOKEN_URL)
            grant = self.successResultOf(endpoint.refresh(REFRESH))
            self.assertEqual(grant, TokenGrant("new", "", 60))

    def test_unusable_lifetime(self) -> None:
        """
        A missing, zero, negative, non-numeric or boolean ``expires_in`` is
        replaced by a fallback lifetime, so ccm does not refresh on every
        request; a fractional one is truncated.
        """
        for lifetime, expected in [
            (None, FALLBACK_LIFETIME_SECONDS),
            (0, FALLBACK_LIFETIME_SECONDS),
            (-5, FALLBACK_LIFETIME_SECONDS),
            ("3600", FALLBACK_LIFETIME_SECONDS),
            (True, FALLBACK_LIFETIME_SECONDS),
            (1800.9, 1800),
        ]:
            body: dict[str, Any] = {"access_token": "new", "refresh_token": "r2"}
            if lifetime is not None:
                body["expires_in"] = lifetime
            endpoint = TokenEndpoint(canned(200, body), self.clock, TOKEN_URL)
            grant = self.successResultOf(endpoint.refresh(REFRESH))
            self.assertEqual(grant.expires_in_seconds, expected, repr(lifetime))
        self.assertGreater(FALLBACK_LIFETIME_SECONDS, 60)

    def test_no_access_token(self) -> None:
        """
        A 200 whose body is not JSON, not an object, or lacks a usable
        access token is a (retryable) refresh failure.
        """
        body: object
        for body in (
            b"<html>oops</html>",
            [],
            {"refresh_token": "r2"},
            {"access_token": ""},
            {"access_token": 5},
        ):
            endpoint = TokenEndpoint(canned(200, body), self.clock, TOKEN_URL)
            message = self.assert_refresh_error(endpoint.refresh(REFRESH), permanent=False)
            self.assertIn("without an access_token", message)

    def test_invalid_grant(self) -> None:
        """
        A 400 ``invalid_grant`` is permanent: only a new login helps.  The
        message names the status and OAuth error, and not the token or the
        server's description.
        """
        self.fake.token_mode = "invalid_grant"
        message = self.assert_refresh_error(self.refresh(), permanent=True)
        self.assertEqual(message, "token endpoint answered HTTP 400 invalid_grant")
        self.assertEqual(len(self.fake.token_requests), 1)

    def test_unknown_refresh_token(self) -> None:
        """
        A refresh token the server does not know is rejected the same way.
        """
        self.fake.refresh_token = "sk-ant-ort01-some-other"
        message = self.assert_refresh_error(self.refresh(), permanent=True)
        self.assertIn("invalid_grant", message)

    def test_server_error(self) -> None:
        """
        A 500 is a temporary failure.
        """
        self.fake.token_mode = "server_error"
        message = self.assert_refresh_error(self.refresh(), permanent=False)
        self.assertEqual(message, "token endpoint answered HTTP 500 server_error")

    def test_other_statuses(self) -> None:
        """
        Only an OAuth error code such as ``invalid_client`` is permanent: a
        bare 400, 401 or 403 (which a CDN in front of the token endpoint may
        send) and a 429 or 502 are not; an Anthropic-shaped error body's
        type is used as the code; a redirect is not followed.
        """
        cases: list[tuple[int, object, bool, str]] = [
            (401, b"", False, "HTTP 401"),
            (403, b"<html>blocked</html>", False, "HTTP 403"),
            (400, {"error_description": "bad"}, False, "HTTP 400"),
            (429, {"error": {"type": "rate_limit_error"}}, False, "HTTP 429 rate_limit_error"),
            (502, b"Bad gateway", False, "HTTP 502"),
            (400, {"error": "invalid_client"}, True, "HTTP 400 invalid_client"),
            (302, b"", False, "HTTP 302"),
        ]
        for status, body, permanent, label in cases:
            endpoint = TokenEndpoint(canned(status, body), self.clock, TOKEN_URL)
            message = self.assert_refresh_error(endpoint.refresh(REFRESH), permanent)
            self.assertEqual(message, "token endpoint answered " + label)

    def test_rate_limited(self) -> None:
        """
        A 429 is a temporary failure marked ``rate_limited``, carrying the
        delay its ``Retry-After`` asks for, in seconds or as an HTTP date;
        without a readable one the delay is ``None``.
        """
        self.fake.token_mode = "rate_limited"
        cases: list[tuple[str | None, float | None]] = [
            ("120", 120.0),
            (http_date(START_TIME + 300), 300.0),
            (http_date(START_TIME - 300), 0.0),
            (None, None),
            ("soon", None),
        ]
        for retry_after, delay in cases:
            self.fake.token_retry_after = retry_after
            error = self.failureResultOf(self.refresh(), RefreshError).value
            self.assertEqual(
                (error.rate_limited, error.permanent, error.retry_after),
                (True, False, delay),
                retry_after,
            )
            self.assertEqual(str(error), "token endpoint answered HTTP 429 rate_limit_error")

    def test_other_failures_not_rate_limited(self) -> None:
        """
        Failures other than a 429 are not marked ``rate_limited``.
        """
        self.fake.token_mode = "server_error"
        error = self.failureResultOf(self.refresh(), RefreshError).value
        self.assertEqual((error.rate_limited, error.retry_after), (False, None))

    def test_user_agent_pairs_with_checked_release(self) -> None:
        """
        The refresh's user agent is the axios of the release ccm was
        checked against, also once a newer Claude Code talked through ccm:
        which axios that one bundles cannot be seen from outside.
        """
        identity = ClientIdentity()
        identity.observe("claude-cli/2.1.400 (external, cli)")
        endpoint = TokenEndpoint(cast(HTTPClient, self.http), self.clock, TOKEN_URL, identity=identity)
        self.successResultOf(self.refresh(endpoint))
        [request] = self.fake.token_requests
        self.assertEqual(request.header("user-agent"), f"axios/{CHECKED_AXIOS_VERSION}")

    def test_hanging_endpoint(self) -> None:
        """
        An endpoint that never answers fails the refresh after the timeout,
        measured on the given clock, and leaves no timer behind.
        """
        self.fake.token_mode = "hang"
        attempt = self.refresh()
        self.assertNoResult(attempt)
        self.clock.advance(REFRESH_TIMEOUT_SECONDS - 0.1)
        self.assertNoResult(attempt)
        self.clock.advance(0.1)
        self.http.flush()
        message = self.assert_refresh_error(attempt, permanent=False)
        self.assertEqual(message, "token endpoint did not answer within 30s")
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_custom_timeout(self) -> None:
        """
        The timeout can be chosen per endpoint.
        """
        self.fake.token_mode = "hang"
        endpoint = TokenEndpoint(cast(HTTPClient, self.http), self.clock, TOKEN_URL, timeout_seconds=2.5)
        attempt = self.refresh(endpoint)
        self.clock.advance(2.5)
        message = self.assert_refresh_error(attempt, permanent=False)
        self.assertIn("within 2.5s", message)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_timer_after_answer(self) -> None:
        """
        A timely answer cancels the timeout.
        """
        self.successResultOf(self.refresh())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connection_error(self) -> None:
        """
        A connection failure is a temporary refresh failure naming the kind
        of error.
        """

        class Unreachable:
            """
            An HTTP client that cannot connect.
            """

            def post(self, url: str, **kwargs: Any) -> Deferred[Any]:
                """
                Fail as a refused connection does.
                """
                return fail(ConnectionRefusedError("127.0.0.1", 443))

        endpoint = TokenEndpoint(cast(HTTPClient, Unreachable()), self.clock, TOKEN_URL)
        message = self.assert_refresh_error(endpoint.refresh(REFRESH), permanent=False)
        self.assertEqual(message, "token endpoint unreachable: ConnectionRefusedError")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_caller_cancels(self) -> None:
        """
        Cancelling the refresh cancels the request; it fails with
        :obj:`CancelledError` (not a timeout) and leaves no timer.
        """
        self.fake.token_mode = "hang"
        attempt = self.refresh()
        attempt.cancel()
        self.http.flush()
        self.failureResultOf(attempt, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class IsCancellationTests(SynchronousTestCase):
    """
    :obj:`is_cancellation` recognises a cancelled request however treq reports
    it.
    """

    def test_cancelled(self) -> None:
        """
        A plain :obj:`CancelledError` is a cancellation.
        """
        self.assertTrue(is_cancellation(CancelledError()))

    def test_wrapped(self) -> None:
        """
        A :obj:`ResponseNeverReceived` is a cancellation only when one of its
        reasons is.
        """
        self.assertTrue(
            is_cancellation(ResponseNeverReceived([Failure(CancelledError())]))
        )
        self.assertFalse(
            is_cancellation(ResponseNeverReceived([Failure(ConnectionLost())]))
        )

    def test_other(self) -> None:
        """
        Other errors are not cancellations.
        """
        self.assertFalse(is_cancellation(ValueError("x")))
