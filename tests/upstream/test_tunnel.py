"""
Tests for outbound detours (:obj:`ccm.upstream.tunnel`): the endpoint's
timeout and cancellation on a memory reactor (the HTTP CONNECT and SOCKS5
handshakes have their own modules), :obj:`ccm.build.build_service` choosing a client
per detour, TLS verified through a real tunnel, and a real ccm process
reaching the fake upstream through real proxy servers (tinyproxy for HTTP
CONNECT, microsocks for SOCKS5: Debian packages that ``.ci/run`` installs and
``./scripts/test`` does not) started on loopback ports.  Without them, the
tests that need them are skipped, or fail under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any, cast

from service_identity.exceptions import VerificationError
from twisted.internet import reactor, ssl
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IReactorSSL
from twisted.internet.protocol import Factory, Protocol, ServerFactory
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
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import Request, Site
from treq.client import HTTPClient
from treq.testing import StubTreq

from ccm.config.model import (
    DEFAULT_POLL_INTERVAL_SECONDS,
    DefaultCredentialConfig,
    Detour,
    EndpointListener,
    ServiceConfig,
    UserConfig,
)
from ccm.upstream.tunnel import DetourEndpoint, DetourEndpointFactory
from ccm.build import ServiceReactor, build_service
from ccm.upstream.client import BytesProducer
from tests import certs, e2e
from tests.fake_anthropic import FakeAnthropic, text_reply
from tests.fixtures import expiry_ms, write_credentials
from tests.upstream.handshakes import HTTP_DETOUR, HandshakeCase, Recorder


class DetourEndpointTests(HandshakeCase):
    """
    :obj:`DetourEndpoint`: reaching the proxy, the timeout of the whole
    connection, and cancellation.
    """

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
        connected = endpoint.connect(Factory.forProtocol(Recorder))
        [(_, _, factory, _, _)] = clock.tcpClients
        # The endpoint never looks at the connector.
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))  # type: ignore[arg-type]
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

    def test_cancel_says_so(self) -> None:
        """
        A connection cancelled during the handshake fails with a
        :obj:`DetourError` naming the detour and the cancellation.
        """
        _, connected, _, _ = self.connect(HTTP_DETOUR)
        connected.cancel()
        self.assert_failed(connected, "detour http://127.0.0.1:3128", "the connection was cancelled")

    def test_timeout_reaching_the_proxy(self) -> None:
        """
        A proxy that does not even accept the connection within the timeout
        fails it the same way, and the attempt to connect stops.
        """
        clock = MemoryReactorClock()
        endpoint = DetourEndpoint(clock, HTTP_DETOUR, "api.example.com", 443, timeout=5)
        connected = endpoint.connect(Factory.forProtocol(Recorder))
        [(_, _, _, connect_timeout, _)] = clock.tcpClients
        self.assertEqual(connect_timeout, 5)
        clock.advance(5)
        self.assert_failed(connected, "http://127.0.0.1:3128", "no tunnel after 5s")
        [connector] = clock.connectors
        self.assertTrue(connector.stoppedConnecting)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancel_reaching_the_proxy(self) -> None:
        """
        Cancelling before the proxy accepted the connection stops the
        attempt and fails with a :obj:`DetourError` naming the proxy.
        """
        clock = MemoryReactorClock()
        endpoint = DetourEndpoint(clock, HTTP_DETOUR, "api.example.com", 443)
        connected = endpoint.connect(Factory.forProtocol(Recorder))
        connected.cancel()
        self.assert_failed(connected, "detour http://127.0.0.1:3128", "proxy at 127.0.0.1:3128")
        [connector] = clock.connectors
        self.assertTrue(connector.stoppedConnecting)
        self.assertEqual(clock.getDelayedCalls(), [])


class EndpointFactoryTests(HandshakeCase):
    """
    :obj:`DetourEndpointFactory`: the endpoints an Agent uses.
    """

    def test_http_is_the_tunnel(self) -> None:
        """
        An ``http`` URL gets a tunnel to its own host and port.
        """
        factory = DetourEndpointFactory(MemoryReactorClock(), HTTP_DETOUR)
        endpoint = factory.endpointForURI(URI.fromBytes(b"http://upstream.example:8080/v1"))
        assert isinstance(endpoint, DetourEndpoint)
        self.assertEqual((endpoint.host, endpoint.port), ("upstream.example", 8080))

    def test_https_speaks_tls_to_the_real_host(self) -> None:
        """
        For an ``https`` URL, TLS starts inside the tunnel once it is open,
        with the real API host name (SNI), not the proxy's.
        """
        clock = MemoryReactorClock()
        factory = DetourEndpointFactory(clock, HTTP_DETOUR)
        endpoint = factory.endpointForURI(URI.fromBytes(b"https://api.anthropic.com/v1"))
        endpoint.connect(Factory.forProtocol(Recorder))
        [(_, _, proxy_factory, _, _)] = clock.tcpClients
        handshake = proxy_factory.buildProtocol(None)
        assert handshake is not None
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


#: The access tokens of the credentials of :obj:`ServiceDetourTests`.
ACCESS_TOKENS = [f"sk-ant-oat01-{tag}" for tag in "abcd"]


class ServiceDetourTests(unittest.SynchronousTestCase):
    """
    :obj:`build_service` builds one client per distinct detour and sends every
    upstream call of a credential through its detour's client.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.direct = FakeAnthropic(self.clock)
        # Every fake accepts every credential's token: a rejected one would
        # make its credential need a new login.
        self.direct.extra_access_tokens.update(ACCESS_TOKENS)
        self.direct_client = StubTreq(self.direct.resource())
        self.fakes: dict[Detour, FakeAnthropic] = {}
        self.stubs: list[Any] = [self.direct_client]
        self.pools: list[_StubPool] = []
        self.made: list[Detour] = []

    def make_client(self, reactor: Any, detour: Detour) -> tuple[HTTPClient, HTTPConnectionPool]:
        self.assertIs(reactor, self.clock)
        self.made.append(detour)
        fake = FakeAnthropic(self.clock)
        fake.extra_access_tokens.update(ACCESS_TOKENS)
        self.fakes[detour] = fake
        client = StubTreq(fake.resource())
        self.stubs.append(client)
        pool = _StubPool()
        self.pools.append(pool)
        # The stubs stand in for the client and the pool of a detour.
        return cast(HTTPClient, client), cast(HTTPConnectionPool, pool)

    def credential(self, tag: str, detour: Detour | None) -> Any:
        path = os.path.join(self.directory, f"{tag}.json")
        write_credentials(path, f"sk-ant-oat01-{tag}", f"sk-ant-ort01-{tag}", expiry_ms(86400))
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
            # The memory reactor has what this service uses: time and TCP.
            reactor=cast(ServiceReactor, self.clock),
            http_client=cast(HTTPClient, self.direct_client),
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

        self.fakes[other].enqueue(text_reply("via socks"))
        client = StubTreq(service.site.resource)
        headers: dict[bytes | str, list[bytes | str]] = {
            "authorization": ["Bearer ak-ccm-carol"],
            "content-type": ["application/json"],
        }
        response = self.successResultOf(
            cast(HTTPClient, client).post(
                "http://ccm.example/v1/messages",
                data=json.dumps(
                    {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
                ).encode(),
                headers=headers,
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
    Serve ``inner``, noting each request's peer address.
    """

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self.inner = inner
        self.peers: list[tuple[str, str]] = []

    def render(self, request: Request) -> Any:
        self.peers.append((request.getClientAddress().host, request.path.decode("latin-1")))
        assert request.prepath is not None and request.postpath is not None
        request.postpath = request.prepath + request.postpath
        request.prepath = []
        return getChildForRequest(self.inner, request).render(request)


@inlineCallbacks
def _wait_for_listening(port: int, child: Any, timeout: float = 10.0) -> Any:
    """
    Wait until something accepts connections on 127.0.0.1:``port``.
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
    The proxy server ``name`` (also its Debian package's name), or a skip
    (a failure under ``CI=true``) saying how to install it.
    """
    return e2e.skip_or_fail_without(
        shutil.which(name, path=TOOL_PATH), name, e2e.debian_package(name)
    )


@inlineCallbacks
def start_tinyproxy(testcase: unittest.TestCase, allow_port: int, password: str | None) -> Any:
    """
    Start tinyproxy on a free loopback port, allowing CONNECT to
    ``allow_port`` and asking for ``PROXY_USER``/``password`` when given.

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
    ``PROXY_USER``/``password`` when given.

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
        write_credentials(
            credential_path, self.fake.access_token, self.fake.refresh_token, expiry_ms(expires_in)
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
        port = cast(IReactorSSL, reactor).listenSSL(
            0, cast(ServerFactory, factory), options, interface=interface
        )
        self.addCleanup(factory.close_all)
        self.addCleanup(port.stopListening)
        return int(cast(IPv4Address, port.getHost()).port)

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
    with ``./scripts/test``), the tests that need them skip, saying how to
    install them, before starting anything; under ``CI=true`` they fail.
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
        :obj:`HTTPConnectProcessTests` and :obj:`Socks5ProcessTests` that needs one
        does first) skips with the package to install; under ``CI=true`` it
        fails with the same words.
        """
        # A synchronous case will do: both fail before they start anything.
        testcase = cast(unittest.TestCase, self)
        for name, start in (
            ("tinyproxy", lambda: start_tinyproxy(testcase, 1, None)),
            ("microsocks", lambda: start_microsocks(testcase, None)),
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
