# -*- test-case-name: tests.upstream.test_client -*-
"""
The HTTP client ccm talks to the upstream API with.

One connection pool per service, TLS verified against the system's trust
store, no cookies kept between requests (they would leak between users and
subscriptions), and request bodies handed to the connection in one piece.
"""

from __future__ import annotations

from http.cookiejar import Cookie, DefaultCookiePolicy
from typing import Callable, Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    _HTTP11ClientFactory,
)
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
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
    client = HTTPClient(agent, cookiejar=NoCookies(), data_to_body_producer=body_producer)
    return client, pool


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
