# -*- test-case-name: tests.upstream.test_tunnel -*-
"""
Reaching the upstream through a detour: an HTTP CONNECT or SOCKS5 proxy.

:obj:`DetourEndpoint` is a client endpoint that connects to the proxy, asks it
for a tunnel to the real host (:obj:`ccm.upstream.http_connect`,
:obj:`ccm.upstream.socks5`) and then hands the raw tunnel to the protocol it was
asked to connect.  :obj:`DetourEndpointFactory` makes an
:obj:`twisted.web.client.Agent` use it; for ``https`` it wraps the tunnel in TLS
for the real API host name, so the certificate is still verified against
that name.

Every failure errbacks the connection attempt with a :obj:`DetourError` whose
message names the detour (its tag or password-free URL), never its password.

The handshakes are written here because no library fits: Twisted has no
CONNECT-tunnelling agent (its ``ProxyAgent`` sends absolute-form requests to
an HTTP proxy, with no ``https`` through it), txtorcon's SOCKS5 offers no
username/password authentication and no HTTP CONNECT, txsocksx is
unmaintained and python-socks does not run on Twisted.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.web.client import URI, BrowserLikePolicyForHTTPS
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from ccm.config.model import Detour
from ccm.upstream.handshake import HandshakeFailed, ProxyHandshake, bracketed
from ccm.upstream.http_connect import HTTPConnectHandshake
from ccm.upstream.socks5 import Socks5Handshake

CONNECT_TIMEOUT_SECONDS = 30.0

_HANDSHAKES: dict[str, type[ProxyHandshake]] = {
    "http": HTTPConnectHandshake,
    "socks5": Socks5Handshake,
}


class DetourError(ConnectError):
    """
    Connecting through a detour failed.

    :ivar detour: the detour's name, for messages.
    :ivar reason: what went wrong, without the detour's name.
    """

    def __init__(self, detour: str, reason: str) -> None:
        super().__init__(string=reason)
        self.detour = detour
        self.reason = reason

    def __str__(self) -> str:
        return f"detour {self.detour}: {self.reason}"


class _HandshakeFactory(Factory):
    noisy = False

    def __init__(self, endpoint: DetourEndpoint, factory: IProtocolFactory) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self.handshake: ProxyHandshake | None = None

    def buildProtocol(self, addr: IAddress | None) -> ProxyHandshake:
        endpoint = self._endpoint
        kind = _HANDSHAKES[endpoint.detour.kind]
        self.handshake = kind(endpoint.detour, endpoint.host, endpoint.port, self._factory)
        return self.handshake


@implementer(IStreamClientEndpoint)
class DetourEndpoint:
    """
    Connect to ``host``:``port`` through the proxy ``detour``.

    :param reactor: provides TCP connections, name resolution and time.
    :param detour: an ``http`` or ``socks5`` detour.
    :param timeout: seconds for the whole connection: reaching the proxy and
        the handshake.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        detour: Detour,
        host: str,
        port: int,
        timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        if detour.kind not in _HANDSHAKES:
            raise ValueError(f"not a proxy detour: {detour.kind}")
        self.reactor = reactor
        self.detour = detour
        self.host = host
        self.port = port
        self.timeout = timeout
        self.name = str(detour)

    def _proxy_endpoint(self) -> IStreamClientEndpoint:
        return HostnameEndpoint(
            self.reactor, self.detour.host, self.detour.port, timeout=self.timeout
        )

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Reach the proxy, then open the tunnel, all within ``timeout``.
        Cancelling the attempt stops the connection to the proxy, or aborts
        the handshake.
        """
        factory = _HandshakeFactory(self, protocolFactory)

        def handshake(connected: IProtocol) -> Deferred[IProtocol]:
            # The proxy connection is up: the handshake is what it runs.
            assert factory.handshake is not None
            return factory.handshake.connected_deferred

        def failed(failure: Failure) -> Failure:
            error = failure.value
            if isinstance(error, HandshakeFailed):
                return Failure(DetourError(self.name, error.reason))
            if factory.handshake is None:
                reason = failure.getErrorMessage() or type(error).__name__
                return Failure(
                    DetourError(
                        self.name,
                        f"cannot connect to the proxy at "
                        f"{bracketed(self.detour.host)}:{self.detour.port}: {reason}",
                    )
                )
            return failure

        def timed_out(result: object, timeout: float) -> IProtocol:
            raise DetourError(self.name, f"no tunnel after {timeout:g}s")

        connecting = self._proxy_endpoint().connect(factory)
        tunnel = connecting.addCallback(handshake).addErrback(failed)
        tunnel.addTimeout(self.timeout, self.reactor, onTimeoutCancel=timed_out)
        return tunnel


@implementer(IAgentEndpointFactory)
class DetourEndpointFactory:
    """
    Endpoints for an :obj:`twisted.web.client.Agent` that reach every host
    through ``detour``; ``https`` is TLS to the real host, verified by
    ``tls_policy``, inside the tunnel.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        detour: Detour,
        tls_policy: IPolicyForHTTPS | None = None,
        timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self.reactor = reactor
        self.detour = detour
        self.tls_policy = tls_policy if tls_policy is not None else BrowserLikePolicyForHTTPS()
        self.timeout = timeout

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        tunnel = DetourEndpoint(self.reactor, self.detour, host, uri.port, self.timeout)
        if uri.scheme == b"https":
            return wrapClientTLS(self.tls_policy.creatorForNetloc(uri.host, uri.port), tunnel)
        if uri.scheme == b"http":
            return tunnel
        raise ValueError(f"cannot reach {uri.scheme!r} URLs through a detour")
