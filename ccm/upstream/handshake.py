# -*- test-case-name: tests.upstream.test_http_connect,tests.upstream.test_socks5 -*-
"""
What the HTTP CONNECT and SOCKS5 handshakes share: a protocol that talks to
the proxy until the tunnel is open, then hands the connection to the
protocol that asked for it and forwards everything to it.

:obj:`ccm.upstream.http_connect` and :obj:`ccm.upstream.socks5` provide the two
conversations; :obj:`ccm.upstream.tunnel` connects to the proxy and names the
detour in the errors.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol, IProtocolFactory, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from ccm.config.model import Detour

#: The most a proxy's answer to the handshake may be.
MAX_HANDSHAKE_BYTES = 16 * 1024


class HandshakeFailed(Exception):
    """
    The proxy did not open the tunnel.

    :ivar reason: what went wrong, for people; never a password.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedAnswer(Exception):
    """
    The proxy's answer breaks its protocol; the message says how.
    """


def bracketed(host: str) -> str:
    """
    ``host`` as it goes before ``:port``: IPv6 addresses in brackets.
    """
    return f"[{host}]" if ":" in host else host


class ProxyHandshake(Protocol):
    """
    Talk to the proxy until the tunnel to ``host``:``port`` is open, then
    forward everything to the protocol ``factory`` builds.

    Subclasses send the first message in :obj:`start` and read the proxy's
    answers, accumulated in ``buffer``, in :obj:`advance`; they end with
    :obj:`tunnel_open` or :obj:`fail`.

    :ivar connected_deferred: fires with the wrapped protocol once the
        tunnel is open, or fails with :obj:`HandshakeFailed`.  Cancelling it
        aborts the handshake.
    """

    #: A TCP connection to the proxy, which can be aborted.
    transport: ITCPTransport | None

    def __init__(self, detour: Detour, host: str, port: int, factory: IProtocolFactory) -> None:
        self.detour = detour
        self.host = host
        self.port = port
        self.target = f"{bracketed(host)}:{port}"
        self.buffer = b""
        self._factory = factory
        self._wrapped: IProtocol | None = None
        self._done = False
        self.connected_deferred: Deferred[IProtocol] = Deferred(
            lambda _: self.fail("the connection was cancelled")
        )

    # Protocol

    def connectionMade(self) -> None:
        self.start()

    def dataReceived(self, data: bytes) -> None:
        if self._wrapped is not None:
            self._wrapped.dataReceived(data)
            return
        if self._done:
            return
        self.buffer += data
        if len(self.buffer) > MAX_HANDSHAKE_BYTES:
            self.fail("the proxy's answer is too long")
            return
        try:
            self.advance()
        except MalformedAnswer as error:
            self.fail(f"malformed answer from the proxy: {error}")

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if self._wrapped is not None:
            self._wrapped.connectionLost(reason)
        elif not self._done:
            self._done = True
            self.connected_deferred.errback(
                HandshakeFailed("the proxy closed the connection during the handshake")
            )

    # The conversation, provided by subclasses

    def start(self) -> None:
        """
        Send the first message to the proxy.
        """
        raise NotImplementedError()

    def advance(self) -> None:
        """
        Read what the proxy answered so far, from ``buffer``.

        :raises MalformedAnswer: when the answer breaks the protocol.
        """
        raise NotImplementedError()

    @property
    def done(self) -> bool:
        """
        Whether the handshake ended, one way or the other.
        """
        return self._done

    # Outcomes

    def fail(self, reason: str) -> None:
        """
        Give up: close the connection and errback with ``reason``.
        """
        if self._done:
            return
        self._done = True
        assert self.transport is not None
        self.transport.abortConnection()
        self.connected_deferred.errback(HandshakeFailed(reason))

    def tunnel_open(self, rest: bytes) -> None:
        """
        The proxy opened the tunnel: connect the wrapped protocol to this
        connection and give it ``rest``, what followed the proxy's answer.
        """
        self._done = True
        assert self.transport is not None
        wrapped = self._factory.buildProtocol(self.transport.getPeer())
        if wrapped is None:
            self.transport.loseConnection()
            self.connected_deferred.errback(HandshakeFailed("the connection was refused locally"))
            return
        self._wrapped = wrapped
        wrapped.makeConnection(self.transport)
        self.connected_deferred.callback(wrapped)
        if rest:
            wrapped.dataReceived(rest)
