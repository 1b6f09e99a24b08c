"""
Tests for :obj:`ccm.web.hello`: ``/api/hello``, Claude Code's start-up
warm-up, answered by ccm itself through the real tree and site, without a
token and without anything going upstream.
"""

from __future__ import annotations

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from tests.proxyharness import (
    UPSTREAM_URL,
    ProxyHarness,
    RawConnection,
    ScriptedUpstream,
    raw_request,
)

# Tokens the warm-up is sent with: none, and two that are no user's.
TOKENS = (None, "ak-ccm-not-a-user", "wrong")


class HelloTests(SynchronousTestCase):
    """
    ``/api/hello`` through :obj:`ccm.web.tree.build_root` and the proxy
    harness.
    """

    def test_no_content(self) -> None:
        """
        ``HEAD`` and ``GET /api/hello``, without a token or with one that is
        not a user's, get a 204 with no body; no token is checked and
        nothing goes upstream.
        """
        harness = ProxyHarness(self)
        for method in ("HEAD", "GET"):
            for token in TOKENS:
                for path in ("/api/hello", "/api/hello?x=1", "/api/./hello"):
                    response = harness.response(method, path, token=token)
                    self.assertEqual(response.code, 204, (method, token, path))
                    self.assertEqual(harness.body_of(response), b"")
                    self.assertIsNone(response.headers.getRawHeaders("content-length"))
        self.assertEqual(harness.callers, [])
        self.assertEqual(harness.fake.requests, [])
        self.assertEqual(harness.log_texts(LogLevel.warn), [])

    def test_other_methods(self) -> None:
        """
        Other methods get a 405 ``invalid_request_error`` in the Anthropic
        shape, with ``Allow: GET, HEAD``, and nothing goes upstream.
        """
        harness = ProxyHarness(self)
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            response = harness.response(method, "/api/hello", b"{}", token=None)
            error = harness.ccm_error(response, 405, "invalid_request_error")
            self.assertEqual(error["message"], "method not allowed")
            self.assertEqual(response.headers.getRawHeaders("allow"), ["GET, HEAD"])
        self.assertEqual(harness.callers, [])
        self.assertEqual(harness.fake.requests, [])

    def test_only_the_exact_path(self) -> None:
        """
        Paths below ``/api/hello``, beside it, or above it are ccm's 404, as
        before, and nothing goes upstream.
        """
        harness = ProxyHarness(self)
        for path in (
            "/api",
            "/api/",
            "/api/hello/",
            "/api/hello/x",
            "/api/hellox",
            "/api/other",
            "/api/oauth/usage",
            "/API/hello",
            "/v1/../api/hello",
        ):
            for method in ("GET", "HEAD"):
                response = harness.response(method, path, token=None)
                self.assertEqual(response.code, 404, (method, path))
                if method == "GET":
                    harness.ccm_error(response, 404, "not_found_error")
                else:
                    self.assertEqual(harness.body_of(response), b"")
        self.assertEqual(harness.fake.requests, [])

    def test_next_request(self) -> None:
        """
        After the warm-up, a normal request is authenticated and goes
        upstream as usual.
        """
        harness = ProxyHarness(self)
        self.assertEqual(harness.response("HEAD", "/api/hello", token=None).code, 204)
        response = harness.response("GET", "/v1/models")
        self.assertEqual(response.code, 200)
        self.assertEqual([r.path for r in harness.fake.requests], ["/v1/models"])
        self.assertEqual(len(harness.callers), 1)


class HelloSiteTests(SynchronousTestCase):
    """
    ``/api/hello`` through the real :obj:`ccm.web.site.CcmSite`, fed raw
    HTTP/1.1.
    """

    def test_raw_no_content(self) -> None:
        """
        On the wire the 204 has neither ``Content-Length`` nor
        ``Transfer-Encoding`` nor a body, for ``HEAD`` and ``GET``; the same
        keep-alive connection then carries a normal request upstream.
        """
        upstream = ScriptedUpstream()
        harness = ProxyHarness(self, http_client=upstream)
        connection = RawConnection(harness.site())
        for method in ("HEAD", "GET"):
            connection.send(raw_request(method, "/api/hello", token=None))
            wire = connection.transport.value()
            head, separator, rest = wire.partition(b"\r\n\r\n")
            self.assertEqual(separator, b"\r\n\r\n", wire)
            self.assertEqual(rest, b"")
            response = connection.response()
            assert response is not None
            self.assertEqual(response.status, 204, wire)
            self.assertNotIn("content-length", response.headers)
            self.assertNotIn("transfer-encoding", response.headers)
            self.assertFalse(connection.transport.disconnecting)
            connection.transport.clear()
        connection.send(raw_request("GET", "/v1/models"))
        self.assertEqual(
            [(c.method, c.url) for c in upstream.calls],
            [("GET", UPSTREAM_URL + "/v1/models")],
        )
        self.assertEqual(
            [t for t in harness.log_texts() if "is returning a message body" in t], []
        )
        connection.close()
