# -*- test-case-name: tests.web.test_connections -*-
"""
Which connections a site takes: at most ``max_connections`` open, and at
most ``max_connections_per_address`` from one client.  A connection over a
cap gets a 503 that tells clients to retry (:obj:`RefusedConnection`).  Also
the throttled log of what happens to connections, so that a flood of bad
clients cannot flood the log.
"""

from __future__ import annotations

import ipaddress
from typing import Callable

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ccm.config.model import ConnectionLimits
from ccm.web.errors import APIError, error_response

#: How long a connection answered with an error (a refusal, a 408, a 431)
#: goes on reading and discarding what the client sends before it closes:
#: closing at once with unread bytes would reset the connection, and the
#: client could lose the answer.  A refused connection also waits this
#: long for the request it answers.
LINGER_SECONDS = 5.0

#: How many refused connections may linger at once; past that, a refused
#: connection is dropped without an answer, so that a flood cannot hold
#: descriptors through refusals.
MAX_LINGERING_REFUSALS = 64

#: The ``retry-after`` of a refusal: long enough for a connection to free up.
REFUSAL_RETRY_AFTER_SECONDS = 2

#: At most one log line of each kind in this many seconds; the next line
#: says how many were left out.
LOG_INTERVAL_SECONDS = 10.0


def address_key(address: IAddress | None) -> str | None:
    """
    The client that ``max_connections_per_address`` counts: an IPv4
    address, or the /64 of an IPv6 address (one host's privacy addresses
    share it); ``None`` for addresses that name no IP host (UNIX sockets).
    """
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return None
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def describe_peer(address: IAddress | None) -> str:
    """
    A client's address for the log: its host, and nothing else.
    """
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else "a local client"


class ConnectionGate:
    """
    The open connections of one site, counted in total and by client, and
    the throttled log of what the connection policy does.

    :param clock: the time for throttling the log and for the timers of
        refused connections.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.open = 0
        self.by_address: dict[str, int] = {}
        self.lingering_refusals = 0
        self._logged_at: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def refusal(self, limits: ConnectionLimits, key: str | None) -> APIError | None:
        """
        The 503 for a new connection from ``key``, or ``None`` if it may open.
        """
        if limits.max_connections and self.open >= limits.max_connections:
            message = (
                f"ccm has too many open connections (max_connections is "
                f"{limits.max_connections}); retry shortly"
            )
        elif (
            key is not None
            and limits.max_connections_per_address
            and self.by_address.get(key, 0) >= limits.max_connections_per_address
        ):
            message = (
                f"too many open connections from your address "
                f"(max_connections_per_address is {limits.max_connections_per_address}); "
                "retry shortly"
            )
        else:
            return None
        return APIError(
            503,
            "overloaded_error",
            message,
            headers=(
                ("x-should-retry", "true"),
                ("retry-after", str(REFUSAL_RETRY_AFTER_SECONDS)),
            ),
        )

    def opened(self, key: str | None) -> Callable[[], None]:
        """
        Count a connection from ``key`` as open; return what uncounts it,
        to be called once when it closes.
        """
        self.open += 1
        if key is not None:
            self.by_address[key] = self.by_address.get(key, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.open -= 1
            if key is not None:
                left = self.by_address[key] - 1
                if left:
                    self.by_address[key] = left
                else:
                    del self.by_address[key]

        return release

    def refuse(self, error: APIError, address: IAddress | None) -> Protocol:
        """
        The protocol for a refused connection: one that answers ``error``
        and lingers, or, with too many lingering already, one that drops
        the connection.
        """
        self.report("refused", address, error.message)
        if self.lingering_refusals >= MAX_LINGERING_REFUSALS:
            return DroppedConnection()
        self.lingering_refusals += 1

        def done() -> None:
            self.lingering_refusals -= 1

        return RefusedConnection(error, self.clock, done)

    def report(self, kind: str, address: IAddress | None, reason: str) -> None:
        """
        Log what happened to a connection from ``address``, at most once
        per :obj:`LOG_INTERVAL_SECONDS` for each ``kind``.
        """
        now = self.clock.seconds()
        last = self._logged_at.get(kind)
        if last is not None and now - last < LOG_INTERVAL_SECONDS:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return
        self._logged_at[kind] = now
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            self.log.warn(
                "{kind} a connection from {peer}: {reason} "
                "({left_out} more since the last such line)",
                kind=kind,
                peer=describe_peer(address),
                reason=reason,
                left_out=left_out,
            )
        else:
            self.log.warn(
                "{kind} a connection from {peer}: {reason}",
                kind=kind,
                peer=describe_peer(address),
                reason=reason,
            )


class RefusedConnection(Protocol):
    """
    A connection over a cap.  It answers the client's first bytes with a
    503, then reads and discards the rest for :obj:`LINGER_SECONDS` or until
    the client closes.

    Twisted's own caps (:obj:`twisted.protocols.policies.LimitTotalConnectionsFactory`,
    :obj:`LimitConnectionsByPeer`) drop the connection without a word, and
    clients see a reset they cannot tell from a network fault.  Waiting for
    the request before answering keeps the answer where clients look for
    it; lingering keeps unread request bytes from resetting the connection
    before the client has read the answer.
    """

    #: A client's TCP connection, which can be aborted.
    transport: ITCPTransport | None

    def __init__(self, error: APIError, clock: IReactorTime, done: Callable[[], None]) -> None:
        self._error = error
        self._clock = clock
        self._done = done
        self._answered = False
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._timer = self._clock.callLater(LINGER_SECONDS, self._linger_over)

    def dataReceived(self, data: bytes) -> None:
        if not self._answered:
            self._answered = True
            assert self.transport is not None
            self.transport.write(error_response(self._error))

    def _linger_over(self) -> None:
        self._timer = None
        assert self.transport is not None
        if self._answered:
            self.transport.loseConnection()
            self._timer = self._clock.callLater(LINGER_SECONDS, self._abort)
        else:
            self._abort()

    def _abort(self) -> None:
        self._timer = None
        assert self.transport is not None
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._done()


class DroppedConnection(Protocol):
    """
    A refused connection that gets no answer, when too many refusals are
    lingering already.
    """

    transport: ITCPTransport | None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.abortConnection()
