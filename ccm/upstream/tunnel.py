# -*- test-case-name: tests.upstream.test_tunnel -*-
"""
Reaching the upstream through a detour: an HTTP CONNECT or SOCKS5 proxy.

L{DetourEndpoint} is a client endpoint that connects to the proxy, asks it
for a tunnel to the real host (C{CONNECT host:port} for HTTP; an RFC 1928
request with a domain-name address for SOCKS5, so the name is resolved at the
proxy) and then hands the raw tunnel to the protocol it was asked to connect.
L{DetourEndpointFactory} makes an L{twisted.web.client.Agent} use it; for
C{https} it wraps the tunnel in TLS for the real API host name, so the
certificate is still verified against that name.

Every failure errbacks the connection attempt with a L{DetourError} whose
message names the detour (its tag or password-free URL), never its password.
"""

from __future__ import annotations

import base64
import ipaddress
import struct
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, ConnectionDone
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.client import BrowserLikePolicyForHTTPS, URI
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from ccm.config.model import Detour

CONNECT_TIMEOUT_SECONDS = 30.0

#: The most a proxy's answer to the handshake may be.
MAX_HANDSHAKE_BYTES = 16 * 1024

_SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
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


class _Handshake(Protocol):
    """
    Talk to the proxy until the tunnel is open, then forward everything to
    the wrapped protocol.
    """

    def __init__(self, endpoint: DetourEndpoint, factory: IProtocolFactory) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._buffer = b""
        self._wrapped: Protocol | None = None
        self._done = False
        self.connected_deferred: Deferred[Protocol] = Deferred()

    # Protocol

    def connectionMade(self) -> None:
        self._start()

    def dataReceived(self, data: bytes) -> None:
        if self._wrapped is not None:
            self._wrapped.dataReceived(data)
            return
        if self._done:
            return
        self._buffer += data
        if len(self._buffer) > MAX_HANDSHAKE_BYTES:
            self.fail("the proxy's answer is too long")
            return
        try:
            self._advance()
        except _Malformed as error:
            self.fail(f"malformed answer from the proxy: {error}")

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if self._wrapped is not None:
            self._wrapped.connectionLost(reason)
        elif not self._done:
            self._done = True
            self.connected_deferred.errback(
                DetourError(self._endpoint.name, "the proxy closed the connection during the handshake")
            )

    # Handshake steps, provided by subclasses

    def _start(self) -> None:
        raise NotImplementedError()

    def _advance(self) -> None:
        raise NotImplementedError()

    # Outcomes

    def fail(self, reason: str) -> None:
        """
        Give up: close the connection and errback with C{reason}.
        """
        if self._done:
            return
        self._done = True
        assert self.transport is not None
        self.transport.abortConnection()
        self.connected_deferred.errback(DetourError(self._endpoint.name, reason))

    def _tunnel_open(self, rest: bytes) -> None:
        self._done = True
        assert self.transport is not None
        wrapped = self._factory.buildProtocol(self.transport.getPeer())
        if wrapped is None:
            self.transport.loseConnection()
            self.connected_deferred.errback(
                DetourError(self._endpoint.name, "the connection was refused locally")
            )
            return
        self._wrapped = wrapped
        wrapped.makeConnection(self.transport)
        self.connected_deferred.callback(wrapped)
        if rest:
            wrapped.dataReceived(rest)


class _Malformed(Exception):
    pass


class _HTTPConnect(_Handshake):
    """
    An HTTP CONNECT handshake.
    """

    def _start(self) -> None:
        endpoint = self._endpoint
        target = f"{_bracketed(endpoint.host)}:{endpoint.port}".encode("idna")
        lines = [b"CONNECT " + target + b" HTTP/1.1", b"Host: " + target]
        detour = endpoint.detour
        if detour.username or detour.password:
            secret = f"{detour.username}:{detour.password}".encode("utf-8")
            lines.append(b"Proxy-Authorization: Basic " + base64.b64encode(secret))
        assert self.transport is not None
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n")

    def _advance(self) -> None:
        head, found, rest = self._buffer.partition(b"\r\n\r\n")
        if not found:
            return
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise _Malformed(f"not an HTTP status line: {status_line[:80]!r}")
        code = int(parts[1])
        phrase = parts[2].strip() if len(parts) > 2 else ""
        answer = f"{code} {phrase}".strip()
        if 200 <= code < 300:
            self._tunnel_open(rest)
        elif code in (401, 407):  # tinyproxy answers 401
            self.fail(f"the proxy refused the credentials ({answer})")
        elif code in (502, 503, 504):
            self.fail(f"the proxy could not reach {self._endpoint.target} ({answer})")
        else:
            self.fail(f"the proxy refused to connect to {self._endpoint.target} ({answer})")


class _Socks5(_Handshake):
    """
    An RFC 1928 handshake, with RFC 1929 username/password authentication
    when the detour has a username.
    """

    def _start(self) -> None:
        self._step: Callable[[], bool] = self._method_chosen
        method = b"\x02" if self._with_password() else b"\x00"
        assert self.transport is not None
        self.transport.write(b"\x05\x01" + method)

    def _with_password(self) -> bool:
        detour = self._endpoint.detour
        return bool(detour.username or detour.password)

    def _advance(self) -> None:
        while not self._done and self._step():
            pass

    def _take(self, n: int) -> bytes | None:
        if len(self._buffer) < n:
            return None
        taken, self._buffer = self._buffer[:n], self._buffer[n:]
        return taken

    def _method_chosen(self) -> bool:
        answer = self._take(2)
        if answer is None:
            return False
        version, method = answer
        if version != 5:
            raise _Malformed(f"SOCKS version {version}, expected 5")
        assert self.transport is not None
        if method == 0xFF:
            if self._with_password():
                self.fail("the proxy does not accept username/password authentication")
            else:
                self.fail("the proxy requires authentication")
            return False
        if method == 0x02 and self._with_password():
            detour = self._endpoint.detour
            user = detour.username.encode("utf-8")
            password = detour.password.encode("utf-8")
            if len(user) > 255 or len(password) > 255:
                self.fail("the username or password is longer than SOCKS5 allows")
                return False
            self.transport.write(
                b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
            )
            self._step = self._authenticated
            return True
        if method == 0x00 and not self._with_password():
            self._request()
            return True
        raise _Malformed(f"the proxy chose authentication method {method}, which was not offered")

    def _authenticated(self) -> bool:
        answer = self._take(2)
        if answer is None:
            return False
        if answer[1] != 0:
            self.fail("the proxy refused the credentials")
            return False
        self._request()
        return True

    def _request(self) -> None:
        endpoint = self._endpoint
        host = endpoint.host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            name = host.encode("idna")
            if len(name) > 255:
                raise _Malformed("the host name is too long for SOCKS5") from None
            target = b"\x03" + bytes([len(name)]) + name
        else:
            kind = b"\x01" if address.version == 4 else b"\x04"
            target = kind + address.packed
        assert self.transport is not None
        self.transport.write(b"\x05\x01\x00" + target + struct.pack("!H", endpoint.port))
        self._step = self._connected

    def _connected(self) -> bool:
        if len(self._buffer) < 5:
            return False
        version, reply, _, kind, first = self._buffer[:5]
        if version != 5:
            raise _Malformed(f"SOCKS version {version}, expected 5")
        if reply != 0:
            why = _SOCKS_REPLIES.get(reply, f"reply code {reply}")
            self.fail(f"the proxy could not reach {self._endpoint.target} ({why})")
            return False
        sizes = {1: 4, 3: 1 + first, 4: 16}
        if kind not in sizes:
            raise _Malformed(f"unknown address type {kind}")
        total = 4 + sizes[kind] + 2
        if len(self._buffer) < total:
            return False
        rest = self._buffer[total:]
        self._buffer = b""
        self._tunnel_open(rest)
        return False


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _HandshakeFactory(Factory):
    noisy = False

    def __init__(self, endpoint: DetourEndpoint, factory: IProtocolFactory) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self.handshake: _Handshake | None = None

    def buildProtocol(self, addr: Any) -> Protocol:
        kind = _HTTPConnect if self._endpoint.detour.kind == "http" else _Socks5
        self.handshake = kind(self._endpoint, self._factory)
        return self.handshake


@implementer(IStreamClientEndpoint)
class DetourEndpoint:
    """
    Connect to C{host}:C{port} through the proxy C{detour}.

    :param reactor: provides TCP connections, name resolution and time.
    :param detour: an C{http} or C{socks5} detour.
    :param timeout: seconds for the whole connection: reaching the proxy and
        the handshake.
    """

    def __init__(
        self,
        reactor: Any,
        detour: Detour,
        host: str,
        port: int,
        timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        if detour.kind not in ("http", "socks5"):
            raise ValueError(f"not a proxy detour: {detour.kind}")
        self.reactor = reactor
        self.detour = detour
        self.host = host
        self.port = port
        self.timeout = timeout
        self.name = str(detour)
        self.target = f"{_bracketed(host)}:{port}"

    def _proxy_endpoint(self) -> IStreamClientEndpoint:
        return HostnameEndpoint(
            self.reactor, self.detour.host, self.detour.port, timeout=self.timeout
        )

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Protocol]:
        factory = _HandshakeFactory(self, protocolFactory)
        result: Deferred[Protocol] = Deferred(lambda d: cancel())

        def settle(outcome: Any) -> None:
            if timer.active():
                timer.cancel()
            if result.called:
                return
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)

        def abandon(reason: str) -> None:
            if factory.handshake is not None:
                factory.handshake.fail(reason)
            else:
                connecting.cancel()

        def cancel() -> None:
            abandon("the connection was cancelled")

        def timed_out() -> None:
            reason = f"no tunnel after {self.timeout:g}s"
            settle(Failure(DetourError(self.name, reason)))
            abandon(reason)

        def connected(handshake: _Handshake) -> Deferred[Protocol]:
            return handshake.connected_deferred

        def failed(failure: Failure) -> Failure:
            if failure.check(DetourError):
                return failure
            if factory.handshake is None:
                reason = failure.getErrorMessage() or type(failure.value).__name__
                return Failure(
                    DetourError(
                        self.name,
                        f"cannot connect to the proxy at "
                        f"{_bracketed(self.detour.host)}:{self.detour.port}: {reason}",
                    )
                )
            return failure

        timer = self.reactor.callLater(self.timeout, timed_out)
        connecting = self._proxy_endpoint().connect(factory)
        connecting.addCallback(connected).addErrback(failed).addBoth(settle)
        return result


@implementer(IAgentEndpointFactory)
class DetourEndpointFactory:
    """
    Endpoints for an L{twisted.web.client.Agent} that reach every host
    through C{detour}; C{https} is TLS to the real host, verified by
    C{tls_policy}, inside the tunnel.
    """

    def __init__(
        self,
        reactor: Any,
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
