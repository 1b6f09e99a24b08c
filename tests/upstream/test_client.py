"""
Tests for :obj:`ccm.upstream.client`: the HTTP client ccm talks to the upstream API
with keeps no cookies and sends in-memory bodies in one piece.
"""

from __future__ import annotations

from http.cookiejar import CookieJar
from typing import Any, Sequence, cast
from urllib.request import Request as URLRequest

from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar, scoped_cookie
from treq.testing import RequestTraversalAgent
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import Request

from ccm.config.model import Detour
from ccm.upstream.client import (
    CONNECT_TIMEOUT_SECONDS,
    BytesProducer,
    NoCookies,
    UpstreamClient,
    body_producer,
    clients_per_detour,
    make_http_client,
    proxy_detour,
)


class CookieSettingResource(Resource):
    """
    Sets a cookie on every response and records the ``Cookie`` headers it
    receives, and every body.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.cookies: list[Sequence[bytes] | None] = []
        self.bodies: list[bytes] = []
        self.lengths: list[Sequence[bytes] | None] = []

    def render(self, request: Request) -> bytes:
        self.cookies.append(request.requestHeaders.getRawHeaders(b"cookie"))
        self.lengths.append(request.requestHeaders.getRawHeaders(b"content-length"))
        assert request.content is not None
        self.bodies.append(request.content.read())
        request.responseHeaders.addRawHeader(b"set-cookie", b"__cf_bm=secret; path=/")
        request.responseHeaders.addRawHeader(b"set-cookie", b"session=abc")
        return b"ok"


class FakeResponseInfo:
    """
    The ``info()`` of a urllib response, for :obj:`CookieJar.extract_cookies`.
    """

    def __init__(self, set_cookies: list[str]) -> None:
        self._set_cookies = set_cookies

    def get_all(self, name: str, default: Any = None) -> Any:
        if name.lower() == "set-cookie":
            return self._set_cookies
        return default


class FakeURLResponse:
    """
    A urllib response carrying ``Set-Cookie`` headers.
    """

    def __init__(self, set_cookies: list[str]) -> None:
        self._info = FakeResponseInfo(set_cookies)

    def info(self) -> FakeResponseInfo:
        return self._info


class NoCookiesTests(SynchronousTestCase):
    """
    :obj:`NoCookies` never keeps a cookie.
    """

    def test_extract_stores_nothing(self) -> None:
        """
        ``Set-Cookie`` headers of a response are not stored, for any domain.
        """
        jar = NoCookies()
        for url in ("https://api.anthropic.com/v1/messages", "http://127.0.0.1:8080/"):
            response = FakeURLResponse(["__cf_bm=x; Path=/; Domain=.anthropic.com", "a=b"])
            jar.extract_cookies(response, URLRequest(url))  # type: ignore[arg-type]
        self.assertEqual(list(jar), [])

    def test_a_plain_jar_would_store(self) -> None:
        """
        The same response does store cookies in an ordinary jar, so the
        test above shows the policy at work.
        """
        jar = CookieJar()
        response = FakeURLResponse(["a=b"])
        jar.extract_cookies(
            response, URLRequest("https://api.anthropic.com/v1/messages")  # type: ignore[arg-type]
        )
        self.assertEqual([cookie.name for cookie in jar], ["a"])

    def test_treqs_jar_type(self) -> None:
        """
        :obj:`NoCookies` is the cookie jar type treq's :obj:`HTTPClient` takes.
        """
        self.assertIsInstance(NoCookies(), IndexableCookieJar)

    def test_set_cookie_stores_nothing(self) -> None:
        """
        A cookie put in the jar by hand (as treq does with a request's
        ``cookies=``) is not kept either.
        """
        jar = NoCookies()
        jar.set_cookie(scoped_cookie("https://api.anthropic.com", "a", "b"))
        self.assertEqual(list(jar), [])

    def test_cookies_not_replayed(self) -> None:
        """
        Through a treq client with :obj:`NoCookies`, a cookie set by one
        response is not sent with the next request.
        """
        resource = CookieSettingResource()
        agent = RequestTraversalAgent(resource)
        jar = NoCookies()
        client = HTTPClient(agent, cookiejar=jar, data_to_body_producer=body_producer)
        for _ in range(2):
            d = client.request("POST", "http://api.fake.test/v1/messages", data=b"{}")
            agent.flush()
            self.assertEqual(self.successResultOf(d).code, 200)
        self.assertEqual(resource.cookies, [None, None])
        self.assertEqual(list(jar), [])


class BytesProducerTests(SynchronousTestCase):
    """
    :obj:`BytesProducer` hands a body to the connection in one write.
    """

    def test_length(self) -> None:
        """
        The length is known up front, so the request has a
        ``Content-Length``.
        """
        self.assertEqual(BytesProducer(b"").length, 0)
        self.assertEqual(BytesProducer(b"\x00" * 70000).length, 70000)

    def test_one_write(self) -> None:
        """
        The whole body is written at once and the production is done
        immediately.
        """
        body = b'{"model":"m"}' * 1000
        consumer = StringTransport()
        producer = BytesProducer(body)
        d = producer.startProducing(consumer)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(consumer.value(), body)
        producer.pauseProducing()
        producer.resumeProducing()
        producer.stopProducing()
        self.assertEqual(consumer.value(), body)

    def test_sent_with_content_length(self) -> None:
        """
        Through a treq client, the body arrives intact with its length.
        """
        resource = CookieSettingResource()
        agent = RequestTraversalAgent(resource)
        client = HTTPClient(agent, cookiejar=NoCookies(), data_to_body_producer=body_producer)
        body = bytes(range(256)) * 300
        d = client.request("POST", "http://api.fake.test/v1/messages", data=body)
        agent.flush()
        self.successResultOf(d)
        self.assertEqual(resource.bodies, [body])
        self.assertEqual(resource.lengths, [[str(len(body)).encode("ascii")]])


class BodyProducerTests(SynchronousTestCase):
    """
    :obj:`body_producer` adapts request data for treq.
    """

    def test_bytes(self) -> None:
        """
        Bytes become a :obj:`BytesProducer`.
        """
        producer = body_producer(b"abc")
        self.assertIsInstance(producer, BytesProducer)
        self.assertEqual(producer.length, 3)

    def test_text(self) -> None:
        """
        Text is sent as UTF-8.
        """
        producer = body_producer("h\u00e9")
        consumer = StringTransport()
        producer.startProducing(consumer)
        self.assertEqual(consumer.value(), "h\u00e9".encode("utf-8"))
        self.assertEqual(producer.length, 3)

    def test_producer_passes_through(self) -> None:
        """
        A body producer is used as it is.
        """
        producer = BytesProducer(b"x")
        self.assertIs(body_producer(producer), producer)

    def test_other_data_refused(self) -> None:
        """
        Data that is neither bytes, text nor a producer is refused.
        """
        self.assertRaises(TypeError, body_producer, 12)
        self.assertFalse(IBodyProducer.providedBy(12))


class MakeHTTPClientTests(SynchronousTestCase):
    """
    :obj:`make_http_client` builds the upstream client on the given reactor.
    """

    def test_pool_and_jar(self) -> None:
        """
        The client keeps no cookies, and its pool keeps up to 64 idle
        connections per host, so concurrent sessions reuse connections.
        """
        reactor = MemoryReactorClock()
        client, pool = make_http_client(reactor)
        self.assertIsInstance(client, UpstreamClient)
        self.assertIsInstance(client._cookiejar, NoCookies)
        self.assertEqual(pool.maxPersistentPerHost, 64)
        self.assertTrue(pool.persistent)
        self.assertFalse(pool._factory.noisy)

    def test_connections_not_logged(self) -> None:
        """
        Opening and closing an upstream connection logs nothing (Twisted's
        pool would log two lines per connection).
        """
        reactor = MemoryReactorClock()
        client, pool = make_http_client(reactor)
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        d = client.request("GET", "http://127.0.0.1:8080/v1/models")
        [(_, _, factory, _, _)] = reactor.tcpClients
        factory.doStart()
        factory.doStop()
        self.assertEqual(events, [])
        d.cancel()
        self.failureResultOf(d, ConnectingCancelledError)

    def test_connects_on_given_reactor(self) -> None:
        """
        Requests connect through the reactor it was given, with the
        connect timeout, and can be cancelled.
        """
        reactor = MemoryReactorClock()
        client, pool = make_http_client(reactor)
        d = client.request("GET", "http://127.0.0.1:8080/v1/models")
        self.assertEqual(len(reactor.tcpClients), 1)
        host, port, _, timeout, _ = reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("127.0.0.1", 8080, CONNECT_TIMEOUT_SECONDS))
        d.cancel()
        self.failureResultOf(d, ConnectingCancelledError)
        self.successResultOf(pool.closeCachedConnections())


class ClientsPerDetourTests(SynchronousTestCase):
    """
    :obj:`proxy_detour` and :obj:`clients_per_detour`: which client each detour's
    upstream calls take.
    """

    def test_proxy_detour(self) -> None:
        """
        A proxy is a detour; no detour and a sing-box ``direct`` outbound
        connect directly.
        """
        proxy = Detour("socks5", "127.0.0.1", 1080, name="socks-out")
        self.assertIs(proxy_detour(proxy), proxy)
        self.assertIsNone(proxy_detour(Detour("direct", name="out")))
        self.assertIsNone(proxy_detour(None))

    def test_one_client_per_distinct_detour(self) -> None:
        """
        The direct client is given; each distinct proxy gets one client of
        its own, built once with the reactor, and its pool is returned to be
        closed at shutdown.
        """
        reactor = MemoryReactorClock()
        direct = HTTPClient(RequestTraversalAgent(Resource()))
        http = Detour("http", "127.0.0.1", 3128, name="http://127.0.0.1:3128")
        same = Detour("http", "127.0.0.1", 3128, name="http://127.0.0.1:3128")
        socks = Detour("socks5", "127.0.0.1", 1080, name="socks-out")
        made: list[tuple[Any, Detour]] = []

        def make_client(given: Any, detour: Detour) -> tuple[Any, Any]:
            made.append((given, detour))
            return f"client via {detour}", f"pool of {detour}"

        clients, pools = clients_per_detour(
            [None, http, same, socks, None], direct, reactor, make_client
        )
        self.assertEqual(made, [(reactor, http), (reactor, socks)])
        self.assertEqual(
            clients,
            {
                None: direct,
                http: "client via http://127.0.0.1:3128",
                socks: "client via socks-out",
            },
        )
        self.assertEqual(pools, ["pool of http://127.0.0.1:3128", "pool of socks-out"])
