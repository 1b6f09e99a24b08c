"""
Tests for :obj:`ccm.upstream.endpoints`: the upstream client's endpoints,
built once per destination.
"""

from __future__ import annotations

from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI, BrowserLikePolicyForHTTPS
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from ccm.upstream.endpoints import MAX_DESTINATIONS, CachedEndpoints, DirectEndpointFactory


@implementer(IAgentEndpointFactory)
class CountingFactory:
    """
    An endpoint factory that builds a new endpoint per call and counts
    the calls.
    """

    def __init__(self) -> None:
        self.built: list[bytes] = []
        self.reactor = MemoryReactorClock()

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        self.built.append(uri.toBytes())
        return HostnameEndpoint(self.reactor, uri.host.decode("ascii"), uri.port)


class CachedEndpointsTests(SynchronousTestCase):
    """
    :obj:`CachedEndpoints` asks its factory once per scheme, host and port.
    """

    def test_same_destination_one_endpoint(self) -> None:
        """
        Requests to one destination, whatever their paths, share the
        endpoint built for the first.
        """
        factory = CountingFactory()
        cache = CachedEndpoints(factory)
        first = cache.endpointForURI(URI.fromBytes(b"https://api.example/v1/messages"))
        again = cache.endpointForURI(URI.fromBytes(b"https://api.example/v1/models?x=1"))
        self.assertIs(first, again)
        self.assertEqual(factory.built, [b"https://api.example/v1/messages"])

    def test_other_destinations_their_own(self) -> None:
        """
        Another scheme, host or port is another destination, with an
        endpoint of its own.
        """
        factory = CountingFactory()
        cache = CachedEndpoints(factory)
        uris = [
            b"https://api.example/v1",
            b"http://api.example/v1",
            b"https://other.example/v1",
            b"https://api.example:8443/v1",
        ]
        endpoints = [cache.endpointForURI(URI.fromBytes(uri)) for uri in uris]
        self.assertEqual(len({id(e) for e in endpoints}), 4)
        self.assertEqual(len(factory.built), 4)

    def test_bounded(self) -> None:
        """
        Past :obj:`MAX_DESTINATIONS` destinations the cache starts over
        instead of growing without end.
        """
        factory = CountingFactory()
        cache = CachedEndpoints(factory)
        for port in range(MAX_DESTINATIONS + 1):
            cache.endpointForURI(URI.fromBytes(b"http://h.example:%d/" % (1000 + port)))
        self.assertEqual(len(cache._endpoints), 1)
        cache.endpointForURI(URI.fromBytes(b"http://h.example:1000/"))
        self.assertEqual(len(factory.built), MAX_DESTINATIONS + 2)


class DirectEndpointFactoryTests(SynchronousTestCase):
    """
    :obj:`DirectEndpointFactory` connects as :obj:`twisted.web.client.Agent`
    does by itself.
    """

    def test_http_is_tcp_with_timeout(self) -> None:
        """
        ``http`` connects over TCP to the URI's host and port, with the
        connect timeout.
        """
        reactor = MemoryReactorClock()
        factory = DirectEndpointFactory(reactor, BrowserLikePolicyForHTTPS(), 7.0)
        endpoint = factory.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8080/v1"))
        endpoint.connect(None)  # type: ignore[arg-type]
        [(host, port, _, timeout, _)] = reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 8080, 7.0))

    def test_https_is_tls(self) -> None:
        """
        ``https`` wraps the TCP endpoint in TLS for the URI's host.
        """
        reactor = MemoryReactorClock()
        factory = DirectEndpointFactory(reactor, BrowserLikePolicyForHTTPS(), 7.0)
        endpoint = factory.endpointForURI(URI.fromBytes(b"https://api.example/v1"))
        self.assertNotIsInstance(endpoint, HostnameEndpoint)
        self.assertIsInstance(endpoint._wrappedEndpoint, HostnameEndpoint)  # type: ignore[attr-defined]

    def test_other_scheme_refused(self) -> None:
        """
        Another scheme is refused the way :obj:`Agent` refuses it, so the
        request fails instead of raising.
        """
        factory = DirectEndpointFactory(MemoryReactorClock(), BrowserLikePolicyForHTTPS(), 7.0)
        self.assertRaises(
            SchemeNotSupported, factory.endpointForURI, URI.fromBytes(b"ftp://h.example/")
        )
