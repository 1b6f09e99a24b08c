"""
Tests for :obj:`tests.wiretap`, the recording forwarder of the end-to-end
tests.
"""

from __future__ import annotations

from typing import IO, Any, cast

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request

from ccm.upstream.client import BytesProducer
from tests import e2e
from tests.wiretap import TappedRequest, parse_requests, serve_wiretap


class ParseRequestsTests(unittest.SynchronousTestCase):
    """
    :obj:`parse_requests` reads the requests of a client's byte stream.
    """

    def test_lengths_chunks_and_an_incomplete_tail(self) -> None:
        """
        A body sized by ``Content-Length`` and a chunked one (with a chunk
        extension and a trailer) are read whole; header names are lower-cased,
        repeated headers keep their order; an incomplete last request is
        left out.
        """
        stream = (
            b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"X-Two: a\r\nx-two: b\r\n\r\nhello"
            b"PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
            b"HEAD /api/hello HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /late HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort"
        )
        first, second, third = parse_requests(stream)
        self.assertEqual(
            first,
            TappedRequest(
                "POST",
                "/v1/messages?beta=true",
                {"host": ["x"], "content-length": ["5"], "x-two": ["a", "b"]},
                b"hello",
            ),
        )
        self.assertEqual(first.header("X-TWO"), "a")
        self.assertIsNone(first.header("x-missing"))
        self.assertEqual((second.method, second.target, second.body), ("PUT", "/up", b"abcde"))
        self.assertEqual((third.method, third.target, third.body), ("HEAD", "/api/hello", b""))
        self.assertEqual(parse_requests(stream[:20]), [])


class _Answers(Resource):
    """
    ``HEAD`` gets a 204, ``POST`` its body back.
    """

    isLeaf = True

    def render_HEAD(self, request: Request) -> bytes:
        request.setResponseCode(204)
        return b""

    def render_POST(self, request: Request) -> bytes:
        content = cast(IO[bytes], request.content)
        return content.read()


class WireTapTests(unittest.TestCase):
    """
    :obj:`serve_wiretap` on the real reactor, in front of a server.
    """

    @inlineCallbacks
    def test_records_both_directions(self) -> Any:
        """
        Requests and answers pass through unchanged; the tap records which
        connection carried which request, and the first status code the
        server sent on it.
        """
        url = e2e.serve_resource(self, _Answers())
        tap = serve_wiretap(self, int(url.rsplit(":", 1)[1]))
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, pool=pool)
        head = yield agent.request(b"HEAD", (tap.url + "/api/hello").encode())
        self.assertEqual(head.code, 204)
        yield readBody(head)
        posted = yield agent.request(
            b"POST",
            (tap.url + "/echo?q=%2F").encode(),
            Headers({b"x-claude-code-session-id": [b"s-1"]}),
            BytesProducer(b"ping"),
        )
        self.assertEqual((yield readBody(posted)), b"ping")

        [connection] = tap.connections
        self.assertEqual(connection.number, 1)
        self.assertEqual(connection.first_status(), 204)
        assert connection.first_reply_at is not None
        self.assertLessEqual(connection.opened_at, connection.first_reply_at)
        requests = connection.requests()
        self.assertEqual(
            [(r.method, r.target, r.body) for r in requests],
            [("HEAD", "/api/hello", b""), ("POST", "/echo?q=%2F", b"ping")],
        )
        self.assertEqual(requests[1].header("x-claude-code-session-id"), "s-1")
        self.assertEqual(
            [(c.number, r.target) for c, r in tap.requests()],
            [(1, "/api/hello"), (1, "/echo?q=%2F")],
        )
        self.assertTrue(bytes(connection.from_server).endswith(b"ping"))

    @inlineCallbacks
    def test_server_not_listening(self) -> Any:
        """
        When nothing listens behind the tap, the client's connection is
        closed and still recorded, without a status.
        """
        tap = serve_wiretap(self, e2e.free_port())
        pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent(reactor, pool=pool)
        failed = agent.request(b"GET", (tap.url + "/").encode())
        yield self.assertFailure(failed, Exception)
        [connection] = tap.connections
        self.assertIsNone(connection.first_status())
        self.assertIsNone(connection.first_reply_at)
        self.assertEqual(connection.requests(), [])
