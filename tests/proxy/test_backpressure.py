"""
Backpressure and body limits on a real :obj:`CcmSite`: a slow client pauses the
upstream connection instead of growing memory, and request bodies over
``max_request_body`` are neither stored nor sent upstream.

The client side is a real :obj:`HTTPChannel` over a :obj:`StringTransport`; the
upstream side is a :obj:`ScriptedUpstream` whose response body is delivered
over another :obj:`StringTransport`, whose ``producerState`` shows what the proxy
asked of the upstream connection.
"""

from __future__ import annotations

import json
from io import BytesIO

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from ccm.web.site import CcmSite, LimitedRequest

from tests.proxyharness import (
    UPSTREAM_URL,
    FakeUpstreamResponse,
    ProxyHarness,
    RawConnection,
    ScriptedUpstream,
    raw_request,
)

EVENT = b'event: ping\ndata: {"type":"ping"}\n\n'
BODY = json.dumps({"model": "claude-haiku-4-5-20251001", "stream": True}).encode("utf-8")


class Relayed:
    """
    A streaming request on a real site, answered by a fake upstream
    response whose body is being delivered.
    """

    def __init__(self, testcase: SynchronousTestCase) -> None:
        self.upstream = ScriptedUpstream()
        self.harness = ProxyHarness(testcase, http_client=self.upstream)
        self.connection = RawConnection(self.harness.site())
        self.connection.send(
            raw_request(
                "POST", "/v1/messages?beta=true", BODY, {"Content-Type": "application/json"}
            )
        )
        testcase.assertEqual(len(self.upstream.calls), 1)
        self.response = FakeUpstreamResponse()
        self.upstream.calls[0].result.callback(self.response)


class BackpressureTests(SynchronousTestCase):
    """
    The client's pace governs the upstream connection.
    """

    def test_slow_client_pauses_upstream(self) -> None:
        """
        When the client's connection cannot take more, the upstream
        connection is paused; when it drains, the upstream resumes.
        """
        relayed = Relayed(self)
        upstream = relayed.response.transport
        client = relayed.connection.transport
        self.assertEqual(upstream.producerState, "producing")
        for _ in range(2):
            assert client.producer is not None
            client.producer.pauseProducing()
            self.assertEqual(upstream.producerState, "paused")
            client.producer.resumeProducing()
            self.assertEqual(upstream.producerState, "producing")

    def test_client_paused_mid_stream(self) -> None:
        """
        Pausing between events holds the upstream back, and what arrives
        afterwards is still relayed in order once the client drains.
        """
        relayed = Relayed(self)
        relay = relayed.response.protocol
        relay.dataReceived(EVENT)
        assert relayed.connection.transport.producer is not None
        relayed.connection.transport.producer.pauseProducing()
        self.assertEqual(relayed.response.transport.producerState, "paused")
        relayed.connection.transport.producer.resumeProducing()
        relay.dataReceived(EVENT.replace(b"ping", b"pong"))
        relay.connectionLost(Failure(ResponseDone()))
        response = relayed.connection.response()
        assert response is not None
        self.assertTrue(response.complete)
        self.assertEqual(response.body, EVENT + EVENT.replace(b"ping", b"pong"))

    def test_each_chunk_written_at_once(self) -> None:
        """
        Each upstream chunk is written to the client connection as one
        HTTP chunk the moment it arrives.
        """
        relayed = Relayed(self)
        relay = relayed.response.protocol
        for count in range(1, 4):
            relay.dataReceived(EVENT)
            response = relayed.connection.response()
            assert response is not None
            self.assertEqual(response.status, 200)
            self.assertEqual(response.body, EVENT * count)
            self.assertFalse(response.complete)
        relay.connectionLost(Failure(ResponseDone()))
        response = relayed.connection.response()
        assert response is not None
        self.assertTrue(response.complete)

    def test_producer_unregistered_when_done(self) -> None:
        """
        Once the response is finished the upstream connection is no longer
        the client's producer: later pauses do not reach it.
        """
        relayed = Relayed(self)
        relayed.response.protocol.connectionLost(Failure(ResponseDone()))
        assert relayed.connection.transport.producer is not None
        relayed.connection.transport.producer.pauseProducing()
        self.assertEqual(relayed.response.transport.producerState, "producing")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_client_gone_stops_upstream(self) -> None:
        """
        A client that goes away mid-stream stops the upstream connection,
        and its end leaves nothing behind and logs no error.
        """
        relayed = Relayed(self)
        relay = relayed.response.protocol
        relay.dataReceived(EVENT)
        relayed.connection.close()
        self.assertEqual(relayed.response.transport.producerState, "stopped")
        relay.connectionLost(Failure(ResponseFailed([Failure(ConnectionDone())])))
        self.assertEqual(relayed.harness.clock.getDelayedCalls(), [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(relayed.harness.log_texts(LogLevel.warn), [])
        self.assertEqual(len(relayed.harness.exchange_lines()), 1)

    def test_client_gone_before_headers(self) -> None:
        """
        A client that goes away before the upstream answered cancels the
        upstream request.
        """
        upstream = ScriptedUpstream()
        harness = ProxyHarness(self, http_client=upstream)
        connection = RawConnection(harness.site())
        connection.send(raw_request("POST", "/v1/messages", BODY))
        self.assertEqual(len(upstream.calls), 1)
        connection.close()
        self.assertTrue(upstream.calls[0].cancelled)
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(len(harness.exchange_lines()), 1)


class BodyLimitTests(SynchronousTestCase):
    """
    :obj:`LimitedRequest` and the proxy keep request bodies within
    ``max_request_body``.
    """

    def send(
        self, data: bytes, limit: int = 40
    ) -> tuple[ProxyHarness, ScriptedUpstream, RawConnection]:
        """
        Send raw request bytes to a site with body limit ``limit``.
        """
        upstream = ScriptedUpstream()
        harness = ProxyHarness(self, http_client=upstream, max_request_body=limit)
        connection = RawConnection(harness.site())
        connection.send(data)
        return harness, upstream, connection

    def assert_refused(
        self, harness: ProxyHarness, upstream: ScriptedUpstream, connection: RawConnection
    ) -> None:
        """
        Check for a 413 in the Anthropic shape, no upstream request and no
        stored body.
        """
        response = connection.response()
        assert response is not None
        self.assertEqual(response.status, 413)
        self.assertEqual(response.headers["content-type"], ["application/json"])
        document = response.json()
        self.assertEqual(document["error"]["type"], "request_too_large")
        self.assertEqual(document["request_id"], response.headers["request-id"][0])
        self.assertTrue(document["request_id"].startswith("ccm_"))
        self.assertEqual(upstream.calls, [])
        request = harness.server_requests[-1]
        assert isinstance(request, LimitedRequest)
        self.assertTrue(request.body_too_large)
        self.assertEqual(harness.stored_bodies[-1], b"")
        connection.close()
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_declared_length_over_limit(self) -> None:
        """
        A ``Content-Length`` over the limit gets 413 and the body is not
        stored.
        """
        self.assert_refused(*self.send(raw_request("POST", "/v1/messages", b"x" * 41)))

    def test_chunked_body_over_limit(self) -> None:
        """
        A chunked body that grows past the limit gets 413, and what was
        stored before it crossed the limit is dropped.
        """
        body = b"19\r\n" + b"a" * 25 + b"\r\n19\r\n" + b"b" * 25 + b"\r\n0\r\n\r\n"
        data = raw_request("POST", "/v1/messages", body, {"Transfer-Encoding": "chunked"})
        self.assert_refused(*self.send(data))

    def test_chunked_body_within_limit(self) -> None:
        """
        A chunked body of exactly the limit is forwarded whole.
        """
        body = b"14\r\n" + b"a" * 20 + b"\r\n14\r\n" + b"b" * 20 + b"\r\n0\r\n\r\n"
        data = raw_request("POST", "/v1/messages", body, {"Transfer-Encoding": "chunked"})
        harness, upstream, connection = self.send(data)
        self.assertEqual(len(upstream.calls), 1)
        self.assertEqual(upstream.calls[0].kwargs["data"], b"a" * 20 + b"b" * 20)
        self.assertEqual(upstream.calls[0].url, UPSTREAM_URL + "/v1/messages")
        connection.close()
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_declared_length_within_limit(self) -> None:
        """
        A body of exactly the limit is forwarded as sent.
        """
        body = b'{"model":"m","pad":"' + b"p" * 18 + b'"}'
        self.assertEqual(len(body), 40)
        harness, upstream, connection = self.send(raw_request("POST", "/v1/messages", body))
        self.assertEqual(upstream.calls[0].kwargs["data"], body)
        connection.close()

    def test_refused_then_next_request_served(self) -> None:
        """
        The refused body was read to its end, so the 413 does not announce
        a close and the connection serves the client's next request.
        """
        harness, upstream, connection = self.send(
            raw_request("POST", "/v1/messages", b"x" * 41)
            + raw_request("POST", "/v1/messages/count_tokens", b"{}")
        )
        refusal = connection.response()
        assert refusal is not None
        self.assertEqual(refusal.status, 413)
        self.assertNotIn("connection", refusal.headers)
        self.assertFalse(connection.transport.disconnecting)
        self.assertEqual(len(upstream.calls), 1)
        self.assertEqual(upstream.calls[0].url, UPSTREAM_URL + "/v1/messages/count_tokens")
        self.assertEqual(upstream.calls[0].kwargs["data"], b"{}")
        connection.close()
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_huge_declared_length_not_spooled(self) -> None:
        """
        A declared length far over the limit does not make the site spool
        the body to a temporary file: it is refused in memory.
        """
        channel = DummyChannel()
        channel.site = CcmSite(Resource(), 40, reactor=Clock())
        request = LimitedRequest(channel)
        request.gotLength(10**9)
        self.assertTrue(request.body_too_large)
        self.assertIsInstance(request.content, BytesIO)
        request.handleContentChunk(b"x" * 1000)
        assert request.content is not None
        self.assertEqual(request.content.getvalue(), b"")

    def test_declared_length_within_limit_stored(self) -> None:
        """
        A declared length within the limit is stored as it arrives.
        """
        channel = DummyChannel()
        channel.site = CcmSite(Resource(), 40, reactor=Clock())
        request = LimitedRequest(channel)
        request.gotLength(40)
        request.handleContentChunk(b"a" * 40)
        self.assertFalse(request.body_too_large)
        assert request.content is not None
        request.content.seek(0)
        self.assertEqual(request.content.read(), b"a" * 40)
