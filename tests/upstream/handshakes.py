"""
Shared by the tests of the detour handshakes: detours to play with, the
protocol a caller connects through them, and a test case that connects a
:obj:`ccm.upstream.tunnel.DetourEndpoint` on a memory reactor and plays the
proxy.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from ccm.config.model import Detour
from ccm.upstream.tunnel import DetourEndpoint, DetourError

PASSWORD = "s3cret-proxy-password"
HTTP_DETOUR = Detour("http", "127.0.0.1", 3128, "alice", PASSWORD, name="http://127.0.0.1:3128")
SOCKS_DETOUR = Detour("socks5", "127.0.0.1", 1080, "", "", name="socks-out")
SOCKS_AUTH_DETOUR = Detour("socks5", "127.0.0.1", 1080, "alice", PASSWORD, name="socks-auth")


class Recorder(Protocol):
    """
    The protocol a caller connects through the detour; records what it sees.
    """

    def __init__(self) -> None:
        self.received = b""
        self.made = False
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = reason


class HandshakeCase(unittest.SynchronousTestCase):
    """
    Connect a :obj:`DetourEndpoint` on a memory reactor and play the proxy.
    """

    def connect(
        self, detour: Detour, host: str = "api.example.com", port: int = 443
    ) -> tuple[MemoryReactorClock, Deferred[IProtocol], StringTransport, Protocol]:
        clock = MemoryReactorClock()
        endpoint = DetourEndpoint(clock, detour, host, port)
        connected = endpoint.connect(Factory.forProtocol(Recorder))
        [(proxy_host, proxy_port, factory, _, _)] = clock.tcpClients
        self.assertEqual((proxy_host, proxy_port), (detour.host, detour.port))
        handshake = factory.buildProtocol(None)
        assert isinstance(handshake, Protocol)
        transport = StringTransport()
        handshake.makeConnection(transport)
        return clock, connected, transport, handshake

    def assert_failed(self, connected: Deferred[IProtocol], *fragments: str) -> DetourError:
        """
        ``connected`` failed with a :obj:`DetourError` whose message holds every
        fragment and never the password.
        """
        error: DetourError = self.failureResultOf(connected, DetourError).value
        message = str(error)
        for fragment in fragments:
            self.assertIn(fragment, message)
        self.assertNotIn(PASSWORD, message)
        return error


