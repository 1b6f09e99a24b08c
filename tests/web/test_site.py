"""
Tests for L{ccm.web.site}: the URL space (C{/v1/...} proxied,
C{/ccm/v1/status}, a JSON 404 for everything else) and the site that serves
it.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from ccm.credentials.credential import Credential
from ccm.pool.select import SingleCredentialPool
from ccm.web.site import CcmSite
from tests.proxyharness import (
    ALICE_TOKEN,
    UPSTREAM_URL,
    ProxyHarness,
    RawConnection,
    ScriptedUpstream,
    raw_request,
)


class RoutingTests(SynchronousTestCase):
    """
    Which paths ccm serves.
    """

    def test_unknown_paths(self) -> None:
        """
        Paths outside C{/v1/} and C{/ccm/v1/status} get a 404
        C{not_found_error} in the Anthropic shape, for any method, and
        nothing goes upstream.
        """
        harness = ProxyHarness(self)
        paths = [
            "/",
            "/v1",
            "/v1?x=/v1/",
            "/V1/messages",
            "/v2/messages",
            "/ccm",
            "/ccm/",
            "/ccm/v1",
            "/ccm/v1/",
            "/ccm/v1/status/",
            "/ccm/v1/status/x",
            "/ccm/v1/statusx",
            "/ccm/v1/reverse",
            "/foo",
            "/foo/v1/messages",
            "//v1/messages",
            "/api/oauth/usage",
            "/v1/../api/oauth/usage",
            "/v1/%2e%2e/api/oauth/profile",
        ]
        for path in paths:
            for method in ("GET", "POST"):
                response = harness.response(method, path, b"{}")
                error = harness.ccm_error(response, 404, "not_found_error")
                self.assertEqual(error["message"], "Not found", path)
        self.assertEqual(harness.fake.requests, [])

    def test_head_probe(self) -> None:
        """
        Claude Code's C{HEAD} probe of its base URL gets a 404 with ccm's
        headers and no body, and twisted.web has nothing to complain about.
        """
        harness = ProxyHarness(self)
        response = harness.response("HEAD", "/", token=None)
        self.assertEqual(response.code, 404)
        self.assertTrue(response.headers.getRawHeaders("request-id")[0].startswith("ccm_"))
        self.assertEqual(harness.body_of(response), b"")
        self.assertEqual(
            [t for t in harness.log_texts() if "is returning a message body" in t], []
        )

    def test_unknown_paths_need_no_token(self) -> None:
        """
        A 404 is answered without authentication.
        """
        harness = ProxyHarness(self)
        harness.ccm_error(harness.response("GET", "/foo", token=None), 404, "not_found_error")

    def test_v1_paths_proxied(self) -> None:
        """
        Every path under C{/v1/}, with each method the API uses, goes
        upstream as it is.
        """
        harness = ProxyHarness(self)
        for method, path in (
            ("GET", "/v1/"),
            ("GET", "/v1/models/claude-haiku-4-5-20251001"),
            ("DELETE", "/v1/files/file_011"),
            ("PATCH", "/v1/some/new/endpoint?x=1"),
            ("PUT", "/v1/messages"),
        ):
            response = harness.response(method, path)
            self.assertEqual(harness.fake.requests[-1].method, method)
            self.assertEqual(harness.fake.requests[-1].path, path)
            self.assertEqual(
                response.headers.getRawHeaders("request-id"),
                [harness.fake.requests[-1].request_id],
            )
        self.assertEqual(len(harness.fake.requests), 5)

    def test_status_path(self) -> None:
        """
        C{/ccm/v1/status}, with or without a query string, is the status
        endpoint.
        """
        harness = ProxyHarness(self)
        for path in ("/ccm/v1/status", "/ccm/v1/status?verbose=1"):
            response = harness.response("GET", path)
            self.assertEqual(response.code, 200)
            self.assertIn("plan_weight", json.loads(harness.body_of(response)))


class SiteTests(SynchronousTestCase):
    """
    The real L{CcmSite}, fed raw HTTP.
    """

    def test_absolute_form_request_uri(self) -> None:
        """
        An absolute-form request target naming another host gets 404 and
        never reaches the upstream.
        """
        upstream = ScriptedUpstream()
        harness = ProxyHarness(self, http_client=upstream)
        for target in (
            "http://evil.example/v1/models",
            "https://api.anthropic.com/v1/messages",
            "//evil.example/v1/models",
        ):
            connection = RawConnection(harness.site())
            connection.send(raw_request("GET", target))
            response = connection.response()
            assert response is not None
            self.assertEqual(response.status, 404, target)
            document = response.json()
            self.assertEqual(document["error"]["type"], "not_found_error")
            self.assertEqual(document["request_id"], response.headers["request-id"][0])
            connection.close()
        self.assertEqual(upstream.calls, [])
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_origin_form_proxied(self) -> None:
        """
        The same request in origin form goes to the configured upstream.
        """
        upstream = ScriptedUpstream()
        harness = ProxyHarness(self, http_client=upstream)
        connection = RawConnection(harness.site())
        connection.send(raw_request("GET", "/v1/models?limit=5"))
        self.assertEqual(
            [(c.method, c.url) for c in upstream.calls],
            [("GET", UPSTREAM_URL + "/v1/models?limit=5")],
        )
        connection.close()

    def test_form_bodies_forwarded_untouched(self) -> None:
        """
        Form and multipart bodies (a C{/v1/files} upload, or a malformed
        one) are not parsed by the site but forwarded byte for byte.
        """
        upstream = ScriptedUpstream()
        harness = ProxyHarness(self, http_client=upstream)
        cases = [
            ("multipart/form-data; boundary=zzz", b"this is not multipart at all"),
            (
                "multipart/form-data; boundary=zzz",
                b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
                b"Content-Type: text/plain\r\n\r\nhello\r\n--zzz--\r\n",
            ),
            ("application/x-www-form-urlencoded", b"purpose=user_data&x=1"),
        ]
        for content_type, body in cases:
            connection = RawConnection(harness.site())
            connection.send(
                raw_request("POST", "/v1/files", body, {"Content-Type": content_type})
            )
            self.assertEqual(upstream.calls[-1].kwargs["data"], body)
            self.assertEqual(harness.server_requests[-1].args, {})
            connection.close()
            self.assertTrue(upstream.calls[-1].cancelled)
        self.assertEqual(len(upstream.calls), 3)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_connection_timeout_on_site_clock(self) -> None:
        """
        The site's idle-connection timeout runs on the clock it was given,
        not on the global reactor.
        """
        harness = ProxyHarness(self, http_client=ScriptedUpstream())
        connection = RawConnection(harness.site())
        self.assertEqual(len(harness.clock.getDelayedCalls()), 1)
        timeout = harness.clock.getDelayedCalls()[0]
        harness.clock.advance(timeout.getTime() - harness.clock.seconds())
        self.assertTrue(connection.transport.disconnecting)
        connection.close()
        self.assertEqual(harness.clock.getDelayedCalls(), [])


class _WritesThenCrashes(Resource):
    """
    A resource with a bug that strikes after the answer has begun.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(200)
        request.write(b"partial")
        raise ZeroDivisionError("a bug after the first bytes")


class CrashTests(SynchronousTestCase):
    """
    The safety net of L{CcmSite}'s requests: an exception nobody expected
    while a request is handled gives an Anthropic-shaped 500 and a logged
    traceback, never Twisted's HTML page, and leaves nothing behind that
    breaks the next request.
    """

    def crash_selection(self, harness: ProxyHarness) -> None:
        """
        Make the pool's choice of a credential raise an unexpected error,
        until the test ends.
        """

        def broken(session_id: str, exclude: object = ()) -> Credential:
            raise ZeroDivisionError("a bug in choosing a credential")

        self.patch(harness.pool, "select", broken)

    def test_crash_gives_api_error(self) -> None:
        """
        A request whose handling raises gets a 500 C{api_error} with a
        C{ccm_} request id, in JSON; the traceback is logged once, without
        any token; nothing stays in progress, and the next request on the
        same connection is served.
        """
        harness = ProxyHarness(self)
        self.crash_selection(harness)
        connection = RawConnection(harness.site())
        connection.send(
            raw_request("POST", "/v1/messages", b"{}", {"Content-Type": "application/json"})
        )
        response = connection.response()
        assert response is not None
        self.assertTrue(response.complete)
        self.assertEqual(response.status, 500)
        self.assertEqual(response.headers["content-type"], ["application/json"])
        document = response.json()
        self.assertEqual(
            document["error"], {"type": "api_error", "message": "internal error in ccm"}
        )
        self.assertEqual(document["request_id"], response.headers["request-id"][0])
        self.assertTrue(document["request_id"].startswith("ccm_"))
        [failure] = self.flushLoggedErrors(ZeroDivisionError)
        self.assertEqual(harness.proxy.in_progress, 0)
        self.assertFalse(connection.transport.disconnecting)
        self.assertTrue(
            any("POST /v1/messages failed" in text for text in harness.log_texts(LogLevel.critical))
        )
        for secret in (ALICE_TOKEN, harness.fake.access_token):
            self.assertNotIn(secret, failure.getTraceback())
        harness.assert_no_secrets_logged()

        self.patch(harness.pool, "select", SingleCredentialPool.select.__get__(harness.pool))
        connection.transport.clear()
        connection.send(raw_request("GET", "/v1/models"))
        harness.flush()
        response = connection.response()
        assert response is not None
        self.assertEqual(response.status, 200)
        self.assertIn("data", response.json())
        self.assertEqual(harness.proxy.in_progress, 0)
        connection.close()

    def test_crash_on_head(self) -> None:
        """
        A HEAD request whose handling raises gets the 500 without a body.
        """
        harness = ProxyHarness(self)
        self.crash_selection(harness)
        connection = RawConnection(harness.site())
        connection.send(raw_request("HEAD", "/v1/models"))
        data = connection.transport.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 500 "), data)
        self.assertIn(b"request-id: ccm_", data.lower())
        self.assertNotIn(b"internal error", data)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(harness.proxy.in_progress, 0)
        connection.close()

    def test_crash_after_first_bytes(self) -> None:
        """
        A request whose handling raises after part of the answer was sent
        has its connection aborted, so the truncated answer cannot pass for
        a whole one.
        """
        site = CcmSite(_WritesThenCrashes(), 1024, reactor=Clock())
        connection = RawConnection(site)
        connection.send(raw_request("GET", "/anything"))
        self.assertTrue(connection.transport.disconnected)
        self.assertNotIn(b"Processing Failed", connection.transport.value())
        self.assertNotIn(b"internal error", connection.transport.value())
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        connection.close()
