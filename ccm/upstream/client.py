# -*- test-case-name: tests.upstream.test_client -*-
"""
The HTTP client ccm talks to the upstream API with.

One connection pool per service, TLS verified against the system's trust
store, no cookies kept between requests (they would leak between users and
subscriptions), and request bodies handed to the connection in one piece.
"""

from __future__ import annotations

from http.cookiejar import Cookie, DefaultCookiePolicy
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IReactorTime
from hyperlink import EncodedURL
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    ContentDecoderAgent,
    GzipDecoder,
    HTTPConnectionPool,
    _HTTP11ClientFactory,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IBodyProducer, IResponse
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from zope.interface import implementer

from ccm.config.model import Detour
from ccm.upstream.endpoints import CachedEndpoints, DirectEndpointFactory
from ccm.upstream.tunnel import CONNECT_TIMEOUT_SECONDS, DetourEndpointFactory

# Idle upstream connections kept for reuse.  Under 64 concurrent requests a
# pool of 8 closed and reopened most connections (a third of ccm's CPU in
# the benchmark's profile, and a TLS handshake each against the real API).
MAX_IDLE_CONNECTIONS = 64


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body that is already in memory, written in one go.  (treq's
    default wraps bytes in a file producer driven by the global cooperator,
    which is slower and does not run on a test clock.)
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def body_producer(data: object) -> IBodyProducer:
    """
    Adapt request data for treq: bytes become a :obj:`BytesProducer`.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes):
        return BytesProducer(data)
    return IBodyProducer(data)


class NoCookies(IndexableCookieJar):
    """
    treq's cookie jar, never storing anything: its policy accepts no
    cookie from a response, and cookies put in by hand are dropped.
    """

    def __init__(self) -> None:
        super().__init__(policy=DefaultCookiePolicy(allowed_domains=[]))

    def set_cookie(self, cookie: Cookie) -> None:
        """
        Drop ``cookie``: every way into a jar ends here.
        """


class UpstreamClient(HTTPClient):
    """
    treq's client, with a shorter way for the requests the proxy forwards
    (:obj:`forward`).

    treq parses and re-serializes every URL with hyperlink (IDNA encoding
    of the host included) and wraps the agent in four others per request;
    for the proxy's requests, whose URL is already in the form treq would
    give it, that was a fifth of ccm's CPU per request in the benchmark.
    """

    def __init__(self, agent: IAgent) -> None:
        super().__init__(agent, cookiejar=NoCookies(), data_to_body_producer=body_producer)
        # The only one of treq's agents that changes a forwarded request:
        # the cookie jar keeps nothing, redirects are not followed.
        self._decoding = ContentDecoderAgent(agent, [(b"gzip", GzipDecoder)])
        self._bases: dict[str, bool] = {}

    def forwards_as_is(self, base: str) -> bool:
        """
        Whether treq sends URLs starting with ``base`` (the upstream's base
        URL, without a trailing slash) unchanged, so they may skip its URL
        handling.
        """
        known = self._bases.get(base)
        if known is None:
            try:
                known = EncodedURL.from_text(base + "/").to_uri().to_text() == base + "/"
            except ValueError:
                known = False
            if len(self._bases) < 16:
                self._bases[base] = known
        return known

    def forward(
        self, method: bytes, url: bytes, headers: Headers, data: bytes | IBodyProducer | None
    ) -> Deferred[IResponse]:
        """
        What ``request(method, url, headers=headers, data=data,
        unbuffered=True, allow_redirects=False)`` sends, for a URL treq
        would not change.
        """
        producer = self._data_to_body_producer(data) if data else None
        sent: Deferred[IResponse] = self._decoding.request(method.upper(), url, headers, producer)
        return sent


def forward(
    client: HTTPClient,
    method: bytes,
    base: str,
    target: bytes,
    headers: Headers,
    data: bytes | IBodyProducer | None,
) -> Deferred[Any]:
    """
    Send a forwarded request, unbuffered and without following redirects,
    through :obj:`UpstreamClient.forward` when ``client`` is one and treq
    would send the URL unchanged, else through treq (as tests' ``StubTreq``).

    :param base: the upstream's base URL, without a trailing slash.
    :param target: the ASCII request target, in origin form, as
        :obj:`ccm.web.paths.forwarded_target` builds it (only bytes a URL
        holds as they are).
    """
    # hyperlink drops the "?" of an empty query: such a target goes through treq.
    if (
        isinstance(client, UpstreamClient)
        and not target.endswith(b"?")
        and client.forwards_as_is(base)
    ):
        return client.forward(method, base.encode("ascii") + target, headers, data)
    return client.request(
        method.decode("ascii"),
        base + target.decode("ascii"),
        headers=headers,
        data=data,
        unbuffered=True,
        allow_redirects=False,
    )


class _QuietClientFactory(_HTTP11ClientFactory):
    """
    The pool's connection factory, without a log line per connection.

    Twisted has no public way to quiet it (twisted/twisted#9330): the pool
    builds a factory per connection from its private ``_factory``, a
    private class whose ``noisy`` is on, so both are named here.
    """

    noisy = False


def make_http_client(
    reactor: IReactorTime, detour: Detour | None = None
) -> tuple[HTTPClient, HTTPConnectionPool]:
    """
    Build the upstream HTTP client and the connection pool to close at
    shutdown.

    :param reactor: provides TCP connections, name resolution and time.
    :param detour: the proxy to reach the upstream through; ``None`` or a
        ``direct`` detour connects directly.
    """
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = MAX_IDLE_CONNECTIONS
    pool._factory = _QuietClientFactory
    proxy = proxy_detour(detour)
    endpoints: IAgentEndpointFactory
    if proxy is None:
        endpoints = DirectEndpointFactory(
            reactor, BrowserLikePolicyForHTTPS(), CONNECT_TIMEOUT_SECONDS
        )
    else:
        endpoints = DetourEndpointFactory(
            reactor, proxy, BrowserLikePolicyForHTTPS(), CONNECT_TIMEOUT_SECONDS
        )
    agent = Agent.usingEndpointFactory(reactor, CachedEndpoints(endpoints), pool=pool)
    return UpstreamClient(agent), pool


#: Builds the HTTP client and connection pool of a proxy detour.
MakeClient = Callable[[IReactorTime, Detour], tuple[HTTPClient, HTTPConnectionPool]]


def proxy_detour(detour: Detour | None) -> Detour | None:
    """
    The proxy ``detour`` goes through, or ``None`` when it connects directly
    (no detour, or a sing-box ``direct`` outbound).
    """
    return None if detour is None or detour.kind == "direct" else detour


def clients_per_detour(
    detours: Iterable[Detour | None],
    http_client: HTTPClient,
    reactor: IReactorTime,
    make_client: MakeClient,
) -> tuple[dict[Detour | None, HTTPClient], list[HTTPConnectionPool]]:
    """
    One upstream client per distinct detour (``None``: the direct one), so
    that every upstream call of a credential takes its detour; and the
    connection pools of the detours' clients.
    """
    clients: dict[Detour | None, HTTPClient] = {None: http_client}
    pools = []
    for detour in detours:
        if detour is not None and detour not in clients:
            clients[detour], pool = make_client(reactor, detour)
            pools.append(pool)
    return clients, pools
