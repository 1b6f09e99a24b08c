"""
Tests for :obj:`ccm.web.site`: the URL space (``/v1/...`` proxied,
``/ccm/v1/status``, ``/api/hello``, a JSON 404 for everything else) and the site that serves
it.
"""

from __future__ import annotations

import json
from typing import Iterable

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from ccm.config.model import ConnectionLimits
from ccm.credentials.credential import Credential
from ccm.pool.select import SingleCredentialPool
from ccm.web.connections import CcmChannel
from ccm.web.site import CcmSite
from tests.proxyharness import (
    ALICE_TOKEN,
    UPSTREAM_URL,
    ProxyHarness,
    RawConnection,
    ScriptedUpstream,
    raw_request,
)
from tests.fixtures import logged_events


class RoutingTests(SynchronousTestCase):
    """
    Which paths ccm serves.
    """

    def test_unknown_paths(self) -> None:
        """
        Paths outside ``/v1/``, ``/ccm/v1/status``, ``/api/hello`` and the
        dashboard's (``/ccm/`` and the pages below it) get a 404
        ``not_found_error`` in the Anthropic shape, for any method, and
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
        Claude Code's ``HEAD`` probe of its base URL gets a 404 with ccm's
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
        Every path under ``/v1/``, with each method the API uses, goes
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
        ``/ccm/v1/status``, with or without a query string, is the status
        endpoint.
        """
        harness = ProxyHarness(self)
        for path in ("/ccm/v1/status", "/ccm/v1/status?verbose=1"):
            response = harness.response("GET", path)
            self.assertEqual(response.code, 200)
            self.assertIn("plan_weight", json.loads(harness.body_of(response)))


class SiteTests(SynchronousTestCase):
    """
    The real :obj:`CcmSite`, fed raw HTTP.
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
        Form and multipart bodies (a ``/v1/files`` upload, or a malformed
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
    The safety net of :obj:`CcmSite`'s requests: an exception nobody expected
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
        A request whose handling raises gets a 500 ``api_error`` with a
        ``ccm_`` request id, in JSON; the traceback is logged once, without
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


class SendBufferTransport(StringTransport):
    """
    A client's TCP connection as the reactor holds it: what ccm writes
    waits in a send buffer (``unsent``) until the client reads it
    (:obj:`client_reads`), and only what was read is in :obj:`value`.  After
    ``loseConnection`` the connection closes once that buffer is empty, in
    the reactor's next turn; ``abortConnection`` drops the buffer and
    closes in the next turn too.

    :param turns: runs what the reactor does in its next turn: a clock of
        its own, so that a test can tell a turn from timed calls.
    """

    def __init__(self, turns: Clock) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "192.0.2.8", 40000))
        self._turns = turns
        self.unsent = b""
        self.aborted = False
        self.protocol: Protocol | None = None

    def write(self, data: bytes) -> None:
        if not self.aborted:
            self.unsent += data

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def client_reads(self) -> None:
        """
        The client reads everything sent so far.
        """
        self.io.write(self.unsent)
        self.unsent = b""
        self._close_if_flushed()

    def loseConnection(self) -> None:
        super().loseConnection()
        self._close_if_flushed()

    def abortConnection(self) -> None:
        self.aborted = self.disconnecting = True
        self.unsent = b""
        self._turns.callLater(0, self._lost, ConnectionAborted())

    def _close_if_flushed(self) -> None:
        if self.disconnecting and not self.unsent and not self.aborted:
            self._turns.callLater(0, self._lost, ConnectionDone())

    def _lost(self, reason: Exception) -> None:
        if self.connected:
            self.connected = False
            assert self.protocol is not None
            self.protocol.connectionLost(Failure(reason))


class _Hello(Resource):
    """
    Answers every request with ``hello``.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return b"hello"


class CloseConnectionsTests(SynchronousTestCase):
    """
    :obj:`CcmSite` knows its open connections (:obj:`OpenChannels`) and closes
    them at shutdown with :obj:`CcmSite.close_connections`: each sends what it
    still holds, then closes; those whose client does not read are
    aborted after the timeout.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.turns = Clock()
        self.site = CcmSite(
            _Hello(),
            max_request_body=1024,
            reactor=self.clock,
            connection_limits=ConnectionLimits(max_connections=2),
        )

    def connect(self) -> tuple[Protocol, SendBufferTransport]:
        """
        A new client connection to the site.
        """
        transport = SendBufferTransport(self.turns)
        channel = self.site.buildProtocol(transport.getPeer())
        assert channel is not None
        transport.protocol = channel
        channel.makeConnection(transport)
        return channel, transport

    def request(self, channel: Protocol) -> None:
        """
        The client sends a request, which the site answers at once.
        """
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: ccm.test\r\n\r\n")

    def test_open_connections_held(self) -> None:
        """
        The site holds each connection from when it is made until it is
        lost; a connection refused over a cap is not held, and the
        connection counts of the gate agree.
        """
        self.assertEqual(len(self.site.channels), 0)
        first, first_transport = self.connect()
        self.connect()
        self.assertEqual(len(self.site.channels), 2)
        refused = self.site.buildProtocol(first_transport.getPeer())
        self.assertNotIsInstance(refused, CcmChannel)
        self.assertEqual(len(self.site.channels), 2)
        first.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.site.channels), 1)
        self.assertEqual(self.site.connections.open, 1)

    def test_nothing_open(self) -> None:
        """
        With no connection open, closing is over at once and leaves no
        timer behind.
        """
        self.successResultOf(self.site.close_connections(2.0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_idle_closed_at_once(self) -> None:
        """
        An idle kept-alive connection, and one with no request yet, close
        in the reactor's next turn, cleanly, and no timer is left.
        """
        idle, idle_transport = self.connect()
        self.request(idle)
        idle_transport.client_reads()
        _, fresh_transport = self.connect()
        closed = self.site.close_connections(2.0)
        self.assertNoResult(closed)
        self.turns.advance(0)
        self.successResultOf(closed)
        for transport in (idle_transport, fresh_transport):
            self.assertFalse(transport.connected)
            self.assertFalse(transport.aborted)
        self.assertEqual(len(self.site.channels), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_response_flushed_then_closed(self) -> None:
        """
        A connection whose answer is still in its send buffer is not cut:
        the close waits until the client has read all of it, then the
        connection closes cleanly.
        """
        channel, transport = self.connect()
        self.request(channel)
        self.assertIn(b"hello", transport.unsent)
        closed = self.site.close_connections(2.0)
        self.clock.advance(1.5)
        self.assertNoResult(closed)
        self.assertTrue(transport.connected)
        transport.client_reads()
        self.assertNoResult(closed)
        self.turns.advance(0)
        self.successResultOf(closed)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(transport.value().endswith(b"hello"))
        self.assertFalse(transport.aborted)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.turns.getDelayedCalls(), [])

    def test_client_not_reading_aborted(self) -> None:
        """
        A client that reads nothing does not hold the shutdown: after the
        timeout its connection is aborted, with one warning, and the close
        is over once the aborted connection is lost; connections that
        closed in time were not aborted.
        """
        events = logged_events(self)
        stuck, stuck_transport = self.connect()
        self.request(stuck)
        _, idle_transport = self.connect()
        closed = self.site.close_connections(2.0)
        self.turns.advance(0)
        self.clock.advance(1.9)
        self.assertNoResult(closed)
        self.assertFalse(stuck_transport.aborted)
        self.clock.advance(0.1)
        self.assertTrue(stuck_transport.aborted)
        self.assertFalse(idle_transport.aborted)
        self.assertNoResult(closed)
        self.turns.advance(0)
        self.successResultOf(closed)
        self.assertFalse(stuck_transport.connected)
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual((warning["count"], warning["timeout"]), (1, 2.0))
        self.assertEqual(
            formatEvent(warning),
            "1 client connection(s) not closed within 2.0 seconds; aborting them",
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unconnected_channel(self) -> None:
        """
        A channel the site built but that was never connected has nothing
        to close, and does not hold the close.
        """
        channel = self.site.buildProtocol(IPv4Address("TCP", "192.0.2.9", 1))
        self.assertIsInstance(channel, CcmChannel)
        self.successResultOf(self.site.close_connections(2.0))
        self.assertEqual(len(self.site.channels), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
