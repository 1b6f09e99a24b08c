"""
Tests for :obj:`ccm.upstream.client.forward`: a forwarded request reaches
the agent exactly as treq would send it, whether it takes the short way
(:obj:`UpstreamClient.forward`) or treq's.
"""

from __future__ import annotations

import gzip
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Response
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer
from zope.interface import implementer

from ccm.upstream.client import NoCookies, UpstreamClient, body_producer, forward
from ccm.web.paths import forwarded_target, normalize_path

#: Request targets as clients send them, odd ones included.
TARGETS = [
    b"/v1/messages",
    b"/v1/messages?beta=true",
    b"/v1/a%41%e2%82%ac?x=%zz&y=%2&z=%E2%82%AC",
    b"/v1/m?q=a+b&r=%41|^`",
    b'/v1/m?\x00 #"<>{}\\\xff',
    b"/v1/%7e/%5B;x=1?~!$&'()*+,;=:@/?",
    b"/v1/m?",
    b"/v1/m?&",
]


@implementer(IAgent)
class RecordingAgent:
    """
    An agent that records each request and answers it with ``answer``.
    """

    def __init__(self, answer: Any = None) -> None:
        self.requests: list[tuple[bytes, bytes, list[tuple[bytes, list[bytes]]], object]] = []
        self.answer = answer

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[Any]:
        assert headers is not None
        sent = sorted((name, list(values)) for name, values in headers.getAllRawHeaders())
        body = None
        if bodyProducer is not None:
            consumer = StringTransport()
            bodyProducer.startProducing(consumer)
            body = consumer.value()
        self.requests.append((method, uri, sent, body))
        return succeed(self.answer) if self.answer is not None else Deferred()


def client_headers() -> Headers:
    """
    Headers as the proxy builds them for the upstream.
    """
    return Headers({b"authorization": [b"Bearer t"], b"anthropic-beta": [b"oauth-2025-04-20"]})


def both_ways(base: str, method: bytes, target: bytes, data: bytes | None) -> tuple[Any, Any]:
    """
    What the agent receives for one forwarded request from an
    :obj:`UpstreamClient` and from treq's own client.
    """
    short, treqs = RecordingAgent(), RecordingAgent()
    path = normalize_path(target.partition(b"?")[0])
    for agent, client in (
        (short, UpstreamClient(short)),
        (treqs, HTTPClient(treqs, cookiejar=NoCookies(), data_to_body_producer=body_producer)),
    ):
        forward(client, method, base, forwarded_target(path, target), client_headers(), data)
    return short.requests, treqs.requests


class ForwardTests(SynchronousTestCase):
    """
    :obj:`forward` sends what treq sends.
    """

    def test_same_request_as_treq(self) -> None:
        """
        For every target, with and without a body, the agent gets the same
        method, URL, headers (treq's gzip offer included) and body.
        """
        for target in TARGETS:
            for method, data in ((b"POST", b'{"model": "m"}'), (b"POST", b""), (b"GET", None)):
                short, treqs = both_ways("http://127.0.0.1:8080", method, target, data)
                self.assertEqual(short, treqs, (target, method, data))
                self.assertEqual(len(short), 1)
                [(_, _, headers, _)] = short
                self.assertIn((b"Accept-Encoding", [b"gzip"]), headers)

    def test_bases(self) -> None:
        """
        A base URL treq would rewrite (upper-case host, a non-ASCII name)
        gives the same request both ways too: it takes treq's way.
        """
        bases = (
            "https://api.anthropic.com",
            "HTTPS://API.Example.COM",
            "https://bücher.example",
            "http://h.example/prefix",
        )
        for base in bases:
            short, treqs = both_ways(base, b"POST", b"/v1/messages?beta=true", b"{}")
            self.assertEqual(short, treqs, base)

    def test_short_way_taken(self) -> None:
        """
        An :obj:`UpstreamClient` forwarding an ordinary request does not
        call treq's ``request``.
        """
        agent = RecordingAgent()
        client = UpstreamClient(agent)
        client.request = None  # type: ignore[method-assign, assignment]
        forward(client, b"POST", "https://api.anthropic.com", b"/v1/messages", Headers(), b"{}")
        self.assertEqual(agent.requests[0][1], b"https://api.anthropic.com/v1/messages")

    def test_gzip_answer_decoded(self) -> None:
        """
        A gzip-encoded answer reaches the proxy decoded, as through treq.
        """
        headers = Headers({b"content-encoding": [b"gzip"]})
        answer = Response((b"HTTP", 1, 1), 200, b"OK", headers, StringTransport())
        client = UpstreamClient(RecordingAgent(answer))
        response = self.successResultOf(
            forward(client, b"POST", "https://api.anthropic.com", b"/v1/messages", Headers(), b"{}")
        )
        received: list[bytes] = []

        class Collect:
            def makeConnection(self, transport: object) -> None:
                pass

            def dataReceived(self, data: bytes) -> None:
                received.append(data)

            def connectionLost(self, reason: object) -> None:
                pass

        response.deliverBody(Collect())
        answer._bodyDataReceived(gzip.compress(b"hello"))
        self.assertEqual(b"".join(received), b"hello")
        self.assertNotIn(b"gzip", b"".join(response.headers.getRawHeaders(b"content-encoding", [])))
