"""
Tests for outbound detours (L{ccm.upstream.tunnel}): the HTTP CONNECT and SOCKS5
handshakes on memory transports, L{ccm.build.build_service} choosing a client
per detour, TLS verified through a real tunnel, and a real ccm process
reaching the fake upstream through real proxy servers (tinyproxy for HTTP
CONNECT, microsocks for SOCKS5: Debian packages that C{.ci/run} installs and
C{./scripts/test} does not) started on loopback ports.  Without them, the
tests that need them are skipped, or fail under C{CI=true}.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from typing import Any

from service_identity.exceptions import VerificationError
from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    ResponseNeverReceived,
    readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import Request, Site
from treq.testing import StubTreq

from ccm.config.model import (
    DEFAULT_POLL_INTERVAL_SECONDS,
    DefaultCredentialConfig,
    Detour,
    EndpointListener,
    ServiceConfig,
    UserConfig,
)
from ccm.upstream.tunnel import DetourEndpoint, DetourEndpointFactory, DetourError
from ccm.build import build_service
from ccm.upstream.client import BytesProducer
from tests import certs, e2e
from tests.fake_anthropic import FakeAnthropic, text_reply

PASSWORD = "s3cret-proxy-password"
HTTP_DETOUR = Detour("http", "127.0.0.1", 3128, "alice", PASSWORD, name="http://127.0.0.1:3128")
SOCKS_DETOUR = Detour("socks5", "127.0.0.1", 1080, "", "", name="socks-out")
SOCKS_AUTH_DETOUR = Detour("socks5", "127.0.0.1", 1080, "alice", PASSWORD, name="socks-auth")


class _Recorder(Protocol):
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


class _HandshakeCase(unittest.SynchronousTestCase):
    """
    Connect a L{DetourEndpoint} on a memory reactor and play the proxy.
    """

    def connect(
        self, detour: Detour, host: str = "api.example.com", port: int = 443
    ) -> tuple[MemoryReactorClock, Deferred[Protocol], StringTransport, Protocol]:
        clock = MemoryReactorClock()
        endpoint = DetourEndpoint(clock, detour, host, port)
        connected = endpoint.connect(Factory.forProtocol(_Recorder))
        [(proxy_host, proxy_port, factory, _, _)] = clock.tcpClients
        self.assertEqual((proxy_host, proxy_port), (detour.host, detour.port))
        handshake = factory.buildProtocol(None)
        transport = StringTransport()
        handshake.makeConnection(transport)
        return clock, connected, transport, handshake

    def assert_failed(self, connected: Deferred[Protocol], *fragments: str) -> DetourError:
        """
        C{connected} failed with a L{DetourError} whose message holds every
        fragment and never the password.
        """
        error = self.failureResultOf(connected, DetourError).value
        message = str(error)
        for fragment in fragments:
            self.assertIn(fragment, message)
        self.assertNotIn(PASSWORD, message)
        return error


class HTTPConnectTests(_HandshakeCase):
    """
    The HTTP CONNECT handshake.
    """

    def test_request_with_credentials(self) -> None:
        """
        The proxy is asked for a tunnel to host:port, with Basic credentials
        when the detour has a username.
        """
        clock, connected, transport, _ = self.connect(HTTP_DETOUR)
        self.assertEqual(
            transport.value(),
            b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n"
            b"Proxy-Authorization: Basic YWxpY2U6czNjcmV0LXByb3h5LXBhc3N3b3Jk\r\n\r\n",
        )
        self.assertNoResult(connected)

    def test_request_without_credentials(self) -> None:
        """
        Without a username no Proxy-Authorization header is sent.
        """
        detour = Detour("http", "127.0.0.1", 3128, name="plain")
        _, _, transport, _ = self.connect(detour, "api.example.com", 8443)
        self.assertEqual(
            transport.value(),
            b"CONNECT api.example.com:8443 HTTP/1.1\r\nHost: api.example.com:8443\r\n\r\n",
        )

    def test_tunnel_opened(self) -> None:
        """
        After a 2xx, the wrapped protocol is connected on the same transport
        and gets the bytes that followed the proxy's answer; its own writes
        go straight to the proxy connection; no timer is left.
        """
        clock, connected, transport, handshake = self.connect(HTTP_DETOUR)
        transport.clear()
        handshake.dataReceived(b"HTTP/1.1 200 Connection established\r\n")
        self.assertNoResult(connected)
        handshake.dataReceived(b"Via: x\r\n\r\nhello")
        wrapped = self.successResultOf(connected)
        assert isinstance(wrapped, _Recorder)
        self.assertTrue(wrapped.made)
        self.assertEqual(wrapped.received, b"hello")
        handshake.dataReceived(b" world")
        self.assertEqual(wrapped.received, b"hello world")
        assert wrapped.transport is not None
        wrapped.transport.write(b"tls bytes")
        self.assertEqual(transport.value(), b"tls bytes")
        handshake.connectionLost(Failure(ConnectionRefusedError()))
        self.assertIsNotNone(wrapped.lost)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_auth_refused(self) -> None:
        """
        A 407 fails the connection with a message naming the detour and the
        refused credentials, without the password, and closes it.
        """
        clock, connected, transport, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
        self.assert_failed(connected, "http://127.0.0.1:3128", "credentials", "407")
        self.assertTrue(transport.disconnecting or transport.disconnected)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_target_unreachable(self) -> None:
        """
        A 502 says the proxy could not reach the target.
        """
        clock, connected, _, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"HTTP/1.0 502 Bad Gateway\r\n\r\n")
        self.assert_failed(connected, "could not reach api.example.com:443", "502 Bad Gateway")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_auth_refused_with_401(self) -> None:
        """
        A 401 (what tinyproxy answers to wrong credentials) also reports
        refused credentials.
        """
        _, connected, _, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"HTTP/1.0 401 Unauthorized\r\n\r\n")
        self.assert_failed(connected, "credentials", "401 Unauthorized")

    def test_other_refusal(self) -> None:
        """
        Another non-2xx answer is reported with its status.
        """
        _, connected, _, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        self.assert_failed(connected, "refused to connect", "403 Forbidden")

    def test_malformed_answer(self) -> None:
        """
        An answer that is not HTTP fails the connection as malformed.
        """
        _, connected, _, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"\x05\x00garbage\r\n\r\n")
        self.assert_failed(connected, "malformed answer")

    def test_closed_during_handshake(self) -> None:
        """
        The proxy closing the connection before answering fails it.
        """
        _, connected, _, handshake = self.connect(HTTP_DETOUR)
        handshake.connectionLost(Failure(ConnectionRefusedError()))
        self.assert_failed(connected, "closed the connection during the handshake")

    def test_timeout(self) -> None:
        """
        A proxy that never answers fails the connection after 30 seconds
        and the connection is aborted.
        """
        clock, connected, transport, _ = self.connect(HTTP_DETOUR)
        clock.advance(29)
        self.assertNoResult(connected)
        clock.advance(1)
        self.assert_failed(connected, "http://127.0.0.1:3128", "no tunnel after 30s")
        self.assertTrue(transport.disconnecting or transport.disconnected)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_proxy_refuses_connection(self) -> None:
        """
        A refused TCP connection to the proxy fails with a message naming
        the detour and the proxy's address.
        """
        clock = MemoryReactorClock()
        endpoint = DetourEndpoint(clock, HTTP_DETOUR, "api.example.com", 443)
        connected = endpoint.connect(Factory.forProtocol(_Recorder))
        [(_, _, factory, _, _)] = clock.tcpClients
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        clock.advance(1)  # let the endpoint's attempt loop notice
        self.assert_failed(
            connected, "detour http://127.0.0.1:3128", "proxy at 127.0.0.1:3128", "refused"
        )
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """
        Cancelling the connection during the handshake aborts it.
        """
        clock, connected, transport, _ = self.connect(HTTP_DETOUR)
        connected.cancel()
        self.failureResultOf(connected)
        self.assertTrue(transport.disconnecting or transport.disconnected)
        self.assertEqual(clock.getDelayedCalls(), [])


class Socks5Tests(_HandshakeCase):
    """
    The SOCKS5 handshake (RFC 1928, RFC 1929).
    """

    REQUEST = b"\x05\x01\x00\x03\x0fapi.example.com" + struct.pack("!H", 443)

    def test_no_auth(self) -> None:
        """
        Without credentials only "no authentication" is offered, then a
        CONNECT with the host name (resolved by the proxy) is sent; the
        wrapped protocol gets what follows the reply, fed byte by byte.
        """
        clock, connected, transport, handshake = self.connect(SOCKS_DETOUR)
        self.assertEqual(transport.value(), b"\x05\x01\x00")
        transport.clear()
        handshake.dataReceived(b"\x05\x00")
        self.assertEqual(transport.value(), self.REQUEST)
        reply = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38" + b"data"
        for i in range(len(reply)):
            handshake.dataReceived(reply[i : i + 1])
        wrapped = self.successResultOf(connected)
        assert isinstance(wrapped, _Recorder)
        self.assertEqual(wrapped.received, b"data")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_domain_reply_address(self) -> None:
        """
        A reply whose bound address is a domain name is skipped whole.
        """
        _, connected, _, handshake = self.connect(SOCKS_DETOUR)
        handshake.dataReceived(b"\x05\x00")
        handshake.dataReceived(b"\x05\x00\x00\x03\x04host\x00\x50rest")
        wrapped = self.successResultOf(connected)
        assert isinstance(wrapped, _Recorder)
        self.assertEqual(wrapped.received, b"rest")

    def test_ip_target(self) -> None:
        """
        An IP address target is sent as an address, not a name.
        """
        _, _, transport, handshake = self.connect(SOCKS_DETOUR, "10.1.2.3", 80)
        transport.clear()
        handshake.dataReceived(b"\x05\x00")
        self.assertEqual(transport.value(), b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50")

    def test_username_password(self) -> None:
        """
        With credentials, username/password authentication is offered and
        sent as RFC 1929 says, then the CONNECT.
        """
        _, connected, transport, handshake = self.connect(SOCKS_AUTH_DETOUR)
        self.assertEqual(transport.value(), b"\x05\x01\x02")
        transport.clear()
        handshake.dataReceived(b"\x05\x02")
        self.assertEqual(
            transport.value(), b"\x01\x05alice" + bytes([len(PASSWORD)]) + PASSWORD.encode()
        )
        transport.clear()
        handshake.dataReceived(b"\x01\x00")
        self.assertEqual(transport.value(), self.REQUEST)
        handshake.dataReceived(b"\x05\x00\x00\x04" + b"\x00" * 16 + b"\x00\x00")
        self.successResultOf(connected)

    def test_auth_refused(self) -> None:
        """
        A failed username/password check fails the connection, naming the
        detour, without the password.
        """
        clock, connected, transport, handshake = self.connect(SOCKS_AUTH_DETOUR)
        handshake.dataReceived(b"\x05\x02")
        handshake.dataReceived(b"\x01\x01")
        self.assert_failed(connected, "detour socks-auth", "refused the credentials")
        self.assertTrue(transport.disconnecting or transport.disconnected)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_no_acceptable_method(self) -> None:
        """
        A proxy that wants authentication we do not have says so.
        """
        _, connected, _, handshake = self.connect(SOCKS_DETOUR)
        handshake.dataReceived(b"\x05\xff")
        self.assert_failed(connected, "socks-out", "requires authentication")

    def test_target_unreachable(self) -> None:
        """
        A reply other than success says the proxy could not reach the
        target, with the reason from RFC 1928.
        """
        _, connected, _, handshake = self.connect(SOCKS_AUTH_DETOUR)
        handshake.dataReceived(b"\x05\x02\x01\x00")
        handshake.dataReceived(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
        self.assert_failed(
            connected, "socks-auth", "could not reach api.example.com:443", "connection refused"
        )

    def test_wrong_version(self) -> None:
        """
        An answer that is not SOCKS5 fails as malformed.
        """
        _, connected, _, handshake = self.connect(SOCKS_DETOUR)
        handshake.dataReceived(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.assert_failed(connected, "malformed answer", "SOCKS version")

    def test_method_not_offered(self) -> None:
        """
        A proxy choosing a method that was not offered fails as malformed.
        """
        _, connected, _, handshake = self.connect(SOCKS_DETOUR)
        handshake.dataReceived(b"\x05\x02")
        self.assert_failed(connected, "malformed answer", "not offered")


class EndpointFactoryTests(_HandshakeCase):
    """
    L{DetourEndpointFactory}: the endpoints an Agent uses.
    """

    def test_http_is_the_tunnel(self) -> None:
        """
        An C{http} URL gets a tunnel to its own host and port.
        """
        factory = DetourEndpointFactory(MemoryReactorClock(), HTTP_DETOUR)
        endpoint = factory.endpointForURI(URI.fromBytes(b"http://upstream.example:8080/v1"))
        assert isinstance(endpoint, DetourEndpoint)
        self.assertEqual((endpoint.host, endpoint.port), ("upstream.example", 8080))

    def test_https_speaks_tls_to_the_real_host(self) -> None:
        """
        For an C{https} URL, TLS starts inside the tunnel once it is open,
        with the real API host name (SNI), not the proxy's.
        """
        clock = MemoryReactorClock()
        factory = DetourEndpointFactory(clock, HTTP_DETOUR)
        endpoint = factory.endpointForURI(URI.fromBytes(b"https://api.anthropic.com/v1"))
        endpoint.connect(Factory.forProtocol(_Recorder))
        [(_, _, proxy_factory, _, _)] = clock.tcpClients
        handshake = proxy_factory.buildProtocol(None)
        transport = StringTransport()
        handshake.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"CONNECT api.anthropic.com:443 "))
        transport.clear()
        handshake.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        hello = transport.value()
        self.assertEqual(hello[:1], b"\x16")  # a TLS handshake record
        self.assertIn(b"api.anthropic.com", hello)
        handshake.connectionLost(Failure(ConnectionRefusedError()))


class _StubPool:
    """
    Stands in for a detour's connection pool; counts closes.
    """

    def __init__(self) -> None:
        self.closed = 0

    def closeCachedConnections(self) -> None:
        self.closed += 1


class ServiceDetourTests(unittest.SynchronousTestCase):
    """
    L{build_service} builds one client per distinct detour and sends every
    upstream call of a credential through its detour's client.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.direct = FakeAnthropic(self.clock)
        self.direct_client = StubTreq(self.direct.resource())
        self.fakes: dict[Detour, FakeAnthropic] = {}
        self.stubs: list[Any] = [self.direct_client]
        self.pools: list[_StubPool] = []
        self.made: list[Detour] = []

    def make_client(self, reactor: Any, detour: Detour) -> tuple[Any, _StubPool]:
        self.assertIs(reactor, self.clock)
        self.made.append(detour)
        fake = FakeAnthropic(self.clock)
        self.fakes[detour] = fake
        client = StubTreq(fake.resource())
        self.stubs.append(client)
        pool = _StubPool()
        self.pools.append(pool)
        return client, pool

    def credential(self, tag: str, detour: Detour | None) -> Any:
        path = os.path.join(self.directory, f"{tag}.json")
        document = e2e.credentials_document(
            f"sk-ant-oat01-{tag}", f"sk-ant-ort01-{tag}", e2e.epoch_ms(86400)
        )
        e2e.write_credentials(path, document)
        return DefaultCredentialConfig(tag=tag, credential_path=path, detour=detour)

    def flush(self) -> None:
        for stub in self.stubs:
            stub.flush()

    def test_one_client_per_detour(self) -> None:
        """
        Credentials sharing a detour share one client, another detour gets
        its own, direct credentials use the given client; each credential's
        usage poll and proxied requests go through its own client, and every
        detour pool is closed at shutdown.
        """
        shared = Detour("http", "127.0.0.1", 3128, name="http://127.0.0.1:3128")
        same = Detour("http", "127.0.0.1", 3128, name="http://127.0.0.1:3128")
        other = Detour("socks5", "127.0.0.1", 1080, name="socks-out")
        config = ServiceConfig(
            where="config.json",
            listeners=(EndpointListener("tcp:0:interface=127.0.0.1"),),
            credentials=(
                self.credential("a", shared),
                self.credential("b", same),
                self.credential("c", other),
                self.credential("d", Detour("direct", name="out")),
            ),
            users=(UserConfig("carol", "ak-ccm-carol", credential="c"),),
            upstream_url="http://upstream.example",
            oauth_token_url="http://upstream.example/v1/oauth/token",
        )
        service = build_service(
            config,
            reactor=self.clock,
            http_client=self.direct_client,
            watch_with_inotify=False,
            make_client=self.make_client,
        )
        self.assertEqual(self.made, [shared, other])
        service.startService()
        self.clock.advance(DEFAULT_POLL_INTERVAL_SECONDS)
        self.flush()

        def polled(fake: FakeAnthropic) -> list[str]:
            return sorted(
                r.header("authorization") or ""
                for r in fake.requests
                if r.path.startswith("/api/oauth/usage")
            )

        self.assertEqual(
            polled(self.fakes[shared]), ["Bearer sk-ant-oat01-a", "Bearer sk-ant-oat01-b"]
        )
        self.assertEqual(polled(self.fakes[other]), ["Bearer sk-ant-oat01-c"])
        self.assertEqual(polled(self.direct), ["Bearer sk-ant-oat01-d"])

        self.fakes[other].access_token = "sk-ant-oat01-c"
        self.fakes[other].enqueue(text_reply("via socks"))
        client = StubTreq(service.site.resource)
        response = self.successResultOf(
            client.post(
                "http://ccm.example/v1/messages",
                json.dumps(
                    {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
                ).encode(),
                headers={
                    "authorization": ["Bearer ak-ccm-carol"],
                    "content-type": ["application/json"],
                },
            )
        )
        for _ in range(5):
            self.flush()
            client.flush()
        self.assertEqual(response.code, 200)
        self.assertEqual(
            [r.path.split("?")[0] for r in self.fakes[other].requests if r.method == "POST"],
            ["/v1/messages"],
        )
        self.assertFalse([r for r in self.fakes[shared].requests if r.method == "POST"])

        self.successResultOf(service.stopService())
        self.assertEqual([pool.closed for pool in self.pools], [1, 1])


# Real proxies ------------------------------------------------------------

CCM_USER = "ak-ccm-detour-user"
PROXY_USER = "proxyuser"
#: Where the proxies connect from: the fake sees this as the peer address,
#: which shows the request went through the proxy rather than direct.
PROXY_SOURCE = "127.0.0.2"


class _PeerRecorder(Resource):
    """
    Serve C{inner}, noting each request's peer address.
    """

    isLeaf = True

    def __init__(self, inner: Resource) -> None:
        super().__init__()
        self.inner = inner
        self.peers: list[tuple[str, str]] = []

    def render(self, request: Request) -> Any:
        self.peers.append((request.getClientAddress().host, request.path.decode("latin-1")))
        request.postpath = request.prepath + request.postpath
        request.prepath = []
        return getChildForRequest(self.inner, request).render(request)


@inlineCallbacks
def _wait_for_listening(port: int, child: Any, timeout: float = 10.0) -> Any:
    """
    Wait until something accepts connections on 127.0.0.1:C{port}.
    """
    waited = 0.0
    while True:
        try:
            protocol = yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
                Factory.forProtocol(Protocol)
            )
        except Exception:
            if not child.running or waited >= timeout:
                raise AssertionError(
                    f"{child.argv[0]} did not listen on {port}:\n{child.output()}"
                ) from None
            yield deferLater(reactor, 0.05)
            waited += 0.05
        else:
            protocol.transport.loseConnection()
            return


#: Where the proxy servers are looked for (Debian installs them in
#: /usr/bin); tests point it elsewhere to play a machine without them.
TOOL_PATH = "/usr/bin:/usr/sbin:/bin"


def _binary(name: str) -> str:
    """
    The proxy server C{name} (also its Debian package's name), or a skip
    (a failure under C{CI=true}) saying how to install it.
    """
    return e2e.skip_or_fail_without(
        shutil.which(name, path=TOOL_PATH), name, e2e.debian_package(name)
    )


@inlineCallbacks
def start_tinyproxy(testcase: unittest.TestCase, allow_port: int, password: str | None) -> Any:
    """
    Start tinyproxy on a free loopback port, allowing CONNECT to
    C{allow_port} and asking for C{PROXY_USER}/C{password} when given.

    :return: fires with the port.
    """
    binary = _binary("tinyproxy")
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    port = e2e.free_port()
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        f"Bind {PROXY_SOURCE}",
        "Timeout 30",
        "Allow 127.0.0.1",
        f"ConnectPort {allow_port}",
        "LogLevel Info",
        "MaxClients 20",
    ]
    if password is not None:
        lines.append(f"BasicAuth {PROXY_USER} {password}")
    config = os.path.join(directory, "tinyproxy.conf")
    with open(config, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    child = e2e._Child(testcase, [binary, "-d", "-c", config], env={}, cwd=directory)
    yield _wait_for_listening(port, child)
    return port


@inlineCallbacks
def start_microsocks(testcase: unittest.TestCase, password: str | None) -> Any:
    """
    Start microsocks on a free loopback port, asking for
    C{PROXY_USER}/C{password} when given.

    :return: fires with the port.
    """
    binary = _binary("microsocks")
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    port = e2e.free_port()
    argv = [binary, "-i", "127.0.0.1", "-p", str(port), "-b", PROXY_SOURCE]
    if password is not None:
        argv += ["-u", PROXY_USER, "-P", password]
    child = e2e._Child(testcase, argv, env={}, cwd=directory)
    yield _wait_for_listening(port, child)
    return port


class _DetourProcessCase(unittest.TestCase):
    """
    A fake upstream, a real proxy, and a real ccm whose detour is that
    proxy.
    """

    timeout = 120
    scheme = "http"

    def setUp(self) -> None:
        self.fake = FakeAnthropic(reactor)
        self.recorder = _PeerRecorder(self.fake.resource())
        self.fake_url = e2e.serve_resource(self, self.recorder)
        self.addCleanup(self.fake.abort_all)
        self.fake_port = int(self.fake_url.rsplit(":", 1)[1])
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)
        self.ccm: e2e.CcmProcess | None = None
        self.password = "pw-" + os.urandom(6).hex()
        self.passwords = [self.password]

    @inlineCallbacks
    def start_proxy(self, password: str | None) -> Any:
        if self.scheme == "http":
            port = yield start_tinyproxy(self, self.fake_port, password)
        else:
            port = yield start_microsocks(self, password)
        return port

    @inlineCallbacks
    def start_ccm(self, detour: str, expires_in: float = 86400) -> Any:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        credential_path = os.path.join(directory, ".credentials.json")
        self.secrets = [self.fake.access_token, self.fake.refresh_token, CCM_USER]
        e2e.write_credentials(
            credential_path,
            e2e.credentials_document(
                self.fake.access_token, self.fake.refresh_token, e2e.epoch_ms(expires_in)
            ),
        )
        config = e2e.ccm_config(
            self.fake_url, credential_path, [{"name": "alice", "token": CCM_USER}]
        )
        config["detour"] = detour
        self.addCleanup(self.check_output)
        self.ccm = yield e2e.start_ccm(self, config)
        return self.ccm

    def check_output(self) -> None:
        """
        ccm never prints a secret, the proxy password included.
        """
        if self.ccm is None:
            return
        output = self.ccm.output()
        secrets = self.secrets + self.passwords + [self.fake.access_token, self.fake.refresh_token]
        for secret in secrets:
            self.assertNotIn(secret, output)
        self.assertNotIn("Traceback", output)

    @inlineCallbacks
    def post_message(self) -> Any:
        assert self.ccm is not None
        body = json.dumps(
            {
                "model": "claude-sonnet-4-5-20250929",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}],
            }
        ).encode()
        response = yield self.agent.request(
            b"POST",
            (self.ccm.url + "/v1/messages").encode(),
            Headers(
                {
                    b"authorization": [b"Bearer " + CCM_USER.encode()],
                    b"content-type": [b"application/json"],
                    b"anthropic-version": [b"2023-06-01"],
                }
            ),
            BytesProducer(body),
        )
        content = yield readBody(response)
        return response.code, content

    @inlineCallbacks
    def wait_for(self, condition: Any, what: str, timeout: float = 10.0) -> Any:
        waited = 0.0
        while not condition():
            if waited >= timeout:
                self.fail(f"timed out waiting for {what}")
            yield deferLater(reactor, 0.05)
            waited += 0.05

    def proxied_paths(self) -> list[str]:
        return [path for peer, path in self.recorder.peers if peer == PROXY_SOURCE]

    def direct_paths(self) -> list[str]:
        return [path for peer, path in self.recorder.peers if peer != PROXY_SOURCE]

    def detour_url(self, port: int, with_password: bool) -> str:
        auth = f"{PROXY_USER}:{self.password}@" if with_password else ""
        return f"{self.scheme}://{auth}127.0.0.1:{port}"

    @inlineCallbacks
    def check_everything_goes_through(self, with_password: bool) -> Any:
        port = yield self.start_proxy(self.password if with_password else None)
        # Expired: the first request refreshes the token first.
        yield self.start_ccm(self.detour_url(port, with_password), expires_in=-60)
        self.fake.enqueue(text_reply("through the detour"))
        code, content = yield self.post_message()
        self.assertEqual(code, 200, content)
        self.assertIn(b"through the detour", content)
        yield self.wait_for(
            lambda: "/api/oauth/usage" in self.proxied_paths(), "a usage poll through the proxy"
        )
        paths = self.proxied_paths()
        self.assertIn("/v1/oauth/token", paths)
        self.assertIn("/v1/messages", paths)
        self.assertGreaterEqual(len(self.fake.token_requests), 1)
        self.assertEqual(self.direct_paths(), [])

    @inlineCallbacks
    def test_request_refresh_and_poll_without_password(self) -> Any:
        """
        Through a proxy without authentication, the proxied request, the
        token refresh and the usage poll all reach the upstream from the
        proxy, none directly.
        """
        yield self.check_everything_goes_through(with_password=False)

    @inlineCallbacks
    def test_request_refresh_and_poll_with_password(self) -> Any:
        """
        The same through a proxy that requires a username and password.
        """
        yield self.check_everything_goes_through(with_password=True)

    @inlineCallbacks
    def test_wrong_password(self) -> Any:
        """
        A proxy refusing the credentials gives the client a 502 naming the
        detour, without the password; nothing reaches the upstream.
        """
        port = yield self.start_proxy(self.password)
        self.password = "wrong-" + self.password
        self.passwords.append(self.password)
        yield self.start_ccm(self.detour_url(port, with_password=True))
        code, content = yield self.post_message()
        self.assertEqual(code, 502, content)
        message = json.loads(content)["error"]["message"]
        self.assertIn(f"through detour {self.scheme}://127.0.0.1:{port}", message)
        self.assertIn("credentials", message)
        self.assertNotIn(self.password, message)
        self.assertEqual([r.path for r in self.fake.requests if r.path.startswith("/v1/")], [])

    @inlineCallbacks
    def test_dead_proxy(self) -> Any:
        """
        With nothing listening at the proxy's address, the client gets a
        502 naming the detour within seconds, not a hang.
        """
        port = e2e.free_port()
        yield self.start_ccm(self.detour_url(port, with_password=False))
        started = reactor.seconds()
        code, content = yield self.post_message()
        self.assertEqual(code, 502, content)
        self.assertLess(reactor.seconds() - started, 10)
        message = json.loads(content)["error"]["message"]
        self.assertIn(f"through detour {self.scheme}://127.0.0.1:{port}", message)
        self.assertIn("cannot connect to the proxy", message)


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"hello over tls"


class TLSThroughTunnelTests(unittest.TestCase):
    """
    HTTPS through a real SOCKS5 proxy (microsocks): TLS runs inside the
    tunnel and verifies the certificate for the URL's host, not the proxy.
    """

    timeout = 60

    def setUp(self) -> None:
        self.pki = certs.make_pki()

    def serve_tls(self, interface: str) -> int:
        server = ssl.PrivateCertificate.loadPEM(self.pki.server_pem + self.pki.server_key_pem)
        intermediate = ssl.Certificate.loadPEM(self.pki.intermediate_pem)
        options = ssl.CertificateOptions(
            privateKey=server.privateKey.original,
            certificate=server.original,
            extraCertChain=[intermediate.original],
        )
        site = Site(_Hello())
        site.noisy = False
        factory = e2e._TrackingFactory(site)
        port = reactor.listenSSL(0, factory, options, interface=interface)
        self.addCleanup(factory.close_all)
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    @inlineCallbacks
    def get(self, proxy_port: int, url: str) -> Any:
        detour = Detour("socks5", "127.0.0.1", proxy_port, name="socks-tls")
        policy = BrowserLikePolicyForHTTPS(trustRoot=ssl.Certificate.loadPEM(self.pki.root_pem))
        pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent.usingEndpointFactory(
            reactor, DetourEndpointFactory(reactor, detour, policy), pool=pool
        )
        response = yield agent.request(b"GET", url.encode())
        body = yield readBody(response)
        return body

    @inlineCallbacks
    def test_verified_for_the_real_host(self) -> Any:
        """
        A certificate valid for the URL's host is accepted through the
        tunnel.
        """
        proxy_port = yield start_microsocks(self, None)
        port = self.serve_tls("127.0.0.1")
        body = yield self.get(proxy_port, f"https://127.0.0.1:{port}/")
        self.assertEqual(body, b"hello over tls")

    @inlineCallbacks
    def test_wrong_host_refused(self) -> Any:
        """
        The same certificate served for a host it does not name fails the
        request: the tunnel does not weaken host name verification.
        """
        # Started outside assertRaises, so that a missing microsocks is a
        # skip and not an unexpected exception.
        proxy_port = yield start_microsocks(self, None)
        port = self.serve_tls(PROXY_SOURCE)
        with self.assertRaises(ResponseNeverReceived) as caught:
            yield self.get(proxy_port, f"https://{PROXY_SOURCE}:{port}/")
        [reason] = caught.exception.reasons
        self.assertTrue(reason.check(VerificationError), reason)


class WithoutProxyServersTests(unittest.SynchronousTestCase):
    """
    On a machine without tinyproxy and microsocks (a fresh clone tested
    with C{./scripts/test}), the tests that need them skip, saying how to
    install them, before starting anything; under C{CI=true} they fail.
    """

    def setUp(self) -> None:
        empty = os.path.abspath(self.mktemp())
        os.makedirs(empty)
        self.patch(sys.modules[__name__], "TOOL_PATH", empty)
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "CI"})

    def expected(self, name: str) -> str:
        return (
            f"{name} not found; install the Debian package {name} "
            "(bash .ci/run does; ./scripts/test does not)"
        )

    def test_proxy_servers_skip(self) -> None:
        """
        Starting either proxy server (what every process test of
        L{HTTPConnectProcessTests} and L{Socks5ProcessTests} that needs one
        does first) skips with the package to install; under C{CI=true} it
        fails with the same words.
        """
        for name, start in (
            ("tinyproxy", lambda: start_tinyproxy(self, 1, None)),
            ("microsocks", lambda: start_microsocks(self, None)),
        ):
            failure = self.failureResultOf(start(), unittest.SkipTest)
            self.assertEqual(str(failure.value), self.expected(name))
            os.environ["CI"] = "true"
            failure = self.failureResultOf(start(), unittest.FailTest)
            self.assertEqual(str(failure.value), "CI=true but " + self.expected(name))
            del os.environ["CI"]

    def test_tls_tests_skip(self) -> None:
        """
        Both TLS-through-a-tunnel tests skip: the one expecting a refusal
        does not see the skip as the wrong exception.
        """
        for name in ("test_verified_for_the_real_host", "test_wrong_host_refused"):
            case = TLSThroughTunnelTests(name)
            case.setUp()
            failure = self.failureResultOf(getattr(case, name)(), unittest.SkipTest)
            self.assertEqual(str(failure.value), self.expected("microsocks"), name)


class HTTPConnectProcessTests(_DetourProcessCase):
    """
    A real ccm through tinyproxy (HTTP CONNECT).
    """

    scheme = "http"


class Socks5ProcessTests(_DetourProcessCase):
    """
    A real ccm through microsocks (SOCKS5).
    """

    scheme = "socks5"


del _DetourProcessCase
