# -*- test-case-name: tests.test_wiretap -*-
"""
A wiretap for end-to-end tests: a loopback TCP forwarder
(:obj:`twisted.protocols.portforward`) put between a real client and a real
ccm process, recording both directions of every connection through it.

It shows what never reaches the fake upstream (Claude Code's start-up
warm-up, and ccm's answer to it), which connection carried which request,
and what exactly a client sent, to compare with what the upstream got.

:obj:`serve_wiretap` starts one for the rest of a test; its cleanup closes
every connection on both sides and waits until they are gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IAddress, IReactorTime, ITCPTransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.protocols.portforward import ProxyClient, ProxyClientFactory, ProxyFactory, ProxyServer
from twisted.python.failure import Failure
from twisted.trial import unittest


@dataclass(frozen=True)
class TappedRequest:
    """
    One HTTP/1.1 request a client sent through the tap.

    :ivar method: e.g. ``"HEAD"``.
    :ivar target: the request target as sent, query included.
    :ivar headers: lower-cased names mapped to their values, in order.
    :ivar body: the body, de-chunked if it was sent chunked.
    """

    method: str
    target: str
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        """
        :return: the first value of header ``name`` (any case), or ``None``.
        """
        values = self.headers.get(name.lower())
        return values[0] if values else None


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    """
    Split a chunked body off the front of ``data``.

    :return: the body and what follows it.
    :raises ValueError: when the body is incomplete.
    """
    body = b""
    while True:
        size_line, separator, data = data.partition(b"\r\n")
        if not separator:
            raise ValueError("incomplete chunked body")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            # Trailers, if any, up to the empty line.
            while True:
                line, separator, data = data.partition(b"\r\n")
                if not separator:
                    raise ValueError("incomplete chunked trailer")
                if not line:
                    return body, data
        if len(data) < size + 2:
            raise ValueError("incomplete chunk")
        body, data = body + data[:size], data[size + 2 :]


def parse_requests(data: bytes) -> list[TappedRequest]:
    """
    The complete HTTP/1.1 requests at the start of a client's byte stream
    (an incomplete last one is left out).
    """
    requests = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if not separator:
            break
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        encoding = ",".join(headers.get("transfer-encoding", [])).lower()
        try:
            if "chunked" in encoding:
                body, rest = _dechunk(rest)
            else:
                length = int(headers.get("content-length", ["0"])[0])
                if len(rest) < length:
                    break
                body, rest = rest[:length], rest[length:]
        except ValueError:
            break
        requests.append(TappedRequest(method, target, headers, body))
        data = rest
    return requests


class TappedConnection:
    """
    One connection through the tap, both directions as they went.

    :ivar number: counts connections from 1, in the order they opened.
    :ivar opened_at: when the client connected (the reactor's seconds).
    :ivar first_reply_at: when the server's first bytes came, or ``None``.
    :ivar from_client: every byte the client sent.
    :ivar from_server: every byte the server sent back.
    """

    def __init__(self, number: int, clock: IReactorTime) -> None:
        self.number = number
        self._clock = clock
        self.opened_at = clock.seconds()
        self.first_reply_at: Optional[float] = None
        self.from_client = bytearray()
        self.from_server = bytearray()
        self.client_side: Optional[_TapServer] = None
        self.server_side: Optional[_TapClient] = None
        self._client_gone = False
        self._open_sides = 2
        self._closed: Deferred[None] = Deferred()

    def requests(self) -> list[TappedRequest]:
        """
        The requests the client sent on this connection, in order.
        """
        return parse_requests(bytes(self.from_client))

    def first_status(self) -> Optional[int]:
        """
        The status code of the server's first response, or ``None`` before
        its status line arrived.
        """
        line, separator, _ = bytes(self.from_server).partition(b"\r\n")
        if not separator:
            return None
        return int(line.split(b" ")[1])

    def _replied(self, data: bytes) -> None:
        if self.first_reply_at is None:
            self.first_reply_at = self._clock.seconds()
        self.from_server.extend(data)

    def _side_lost(self) -> None:
        self._open_sides -= 1
        if self._open_sides == 0:
            self._closed.callback(None)

    def _close(self) -> Deferred[None]:
        """
        Abort both sides; fire once both are gone.
        """
        for side in (self.client_side, self.server_side):
            if side is not None and side.transport is not None:
                cast(ITCPTransport, side.transport).abortConnection()
        return self._closed


class _TapClient(ProxyClient):
    """
    The tap's connection to the server: records what the server sends.
    """

    tapped: TappedConnection

    def connectionMade(self) -> None:
        self.tapped.server_side = self
        if self.tapped._client_gone:
            # The client left before the server answered the connect.
            assert self.transport is not None
            self.transport.loseConnection()
            return
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.tapped._replied(data)
        super().dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.tapped._side_lost()


class _TapClientFactory(ProxyClientFactory):
    protocol = _TapClient
    server: _TapServer

    def buildProtocol(self, addr: IAddress | None) -> ProxyClient:
        protocol = super().buildProtocol(addr)
        assert isinstance(protocol, _TapClient)
        protocol.tapped = self.server.tapped
        return protocol

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        super().clientConnectionFailed(connector, reason)
        self.server.tapped._side_lost()


class _TapServer(ProxyServer):
    """
    The client's connection to the tap: records what the client sends.
    """

    clientProtocolFactory = _TapClientFactory
    factory: _TapFactory
    tapped: TappedConnection

    def connectionMade(self) -> None:
        self.tapped = self.factory.tap._opened()
        self.tapped.client_side = self
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.tapped.from_client.extend(data)
        super().dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.tapped._client_gone = True
        super().connectionLost(reason)
        self.tapped._side_lost()


class _TapFactory(ProxyFactory):
    protocol = _TapServer
    noisy = False

    def __init__(self, host: str, port: int, tap: WireTap) -> None:
        super().__init__(host, port)
        self.tap = tap


class WireTap:
    """
    What went through a tap (see :obj:`serve_wiretap`).

    :ivar url: the tap's base URL, ``http://127.0.0.1:<port>``, to give the
        client instead of the server's.
    :ivar connections: every connection so far, in the order they opened.
    :ivar clock: the time of :obj:`TappedConnection.opened_at` and
        :obj:`TappedConnection.first_reply_at`.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.url = ""
        self.clock = clock
        self.connections: list[TappedConnection] = []

    def _opened(self) -> TappedConnection:
        tapped = TappedConnection(len(self.connections) + 1, self.clock)
        self.connections.append(tapped)
        return tapped

    def requests(self) -> list[tuple[TappedConnection, TappedRequest]]:
        """
        Every request through the tap with its connection, connection by
        connection.
        """
        return [(c, r) for c in self.connections for r in c.requests()]

    def close_all(self) -> Deferred[Any]:
        """
        Abort every connection, both sides; fire once all are gone.
        """
        return DeferredList([c._close() for c in self.connections])


def serve_wiretap(testcase: unittest.TestCase, port: int, host: str = "127.0.0.1") -> WireTap:
    """
    Forward a free port of 127.0.0.1 to ``host:port`` for the rest of
    ``testcase``, recording every connection.
    """
    from twisted.internet import reactor

    tap = WireTap(reactor)
    # Twisted's types want a ServerFactory; any factory of protocols serves.
    listening = reactor.listenTCP(
        0, cast(ServerFactory, _TapFactory(host, port, tap)), interface="127.0.0.1"
    )
    testcase.addCleanup(tap.close_all)
    testcase.addCleanup(listening.stopListening)
    tap.url = "http://127.0.0.1:{}".format(cast(IPv4Address, listening.getHost()).port)
    return tap
