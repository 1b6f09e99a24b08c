# -*- test-case-name: tests.upstream.test_endpoints -*-
"""
Where the upstream client's connections go, built once per destination.

:obj:`twisted.web.client.Agent` asks its endpoint factory for an endpoint
on every request, even when the pool then hands out an idle connection.
Its own factory builds a new :obj:`HostnameEndpoint` each time (IDNA
encoding of the host name included) and, for ``https``, new TLS client
options; in the benchmark's profile that was a tenth of the client's
work per request.  :obj:`CachedEndpoints` keeps the endpoint of each
destination instead: endpoints hold no per-connection state, so one
serves every connection to its destination.
"""

from __future__ import annotations

from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

#: More destinations than ccm ever talks to (the API, the OAuth and usage
#: hosts); past this the cache starts over rather than grow.
MAX_DESTINATIONS = 32


@implementer(IAgentEndpointFactory)
class DirectEndpointFactory:
    """
    What :obj:`Agent` connects with by itself: TCP for ``http``, TLS
    verified by ``tls_policy`` over TCP for ``https``.

    :param timeout: seconds a connection attempt may take.
    """

    def __init__(self, reactor: object, tls_policy: IPolicyForHTTPS, timeout: float) -> None:
        self._reactor = reactor
        self._tls_policy = tls_policy
        self._timeout = timeout

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        endpoint = HostnameEndpoint(
            self._reactor, uri.host.decode("ascii"), uri.port, timeout=self._timeout
        )
        if uri.scheme == b"http":
            return endpoint
        if uri.scheme == b"https":
            return wrapClientTLS(self._tls_policy.creatorForNetloc(uri.host, uri.port), endpoint)
        raise SchemeNotSupported(f"Unsupported scheme: {uri.scheme!r}")


@implementer(IAgentEndpointFactory)
class CachedEndpoints:
    """
    The endpoints of ``factory``, one per scheme, host and port, built the
    first time a request goes there.
    """

    def __init__(self, factory: IAgentEndpointFactory) -> None:
        self._factory = factory
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._factory.endpointForURI(uri)
            if len(self._endpoints) >= MAX_DESTINATIONS:
                self._endpoints.clear()
            self._endpoints[key] = endpoint
        return endpoint
