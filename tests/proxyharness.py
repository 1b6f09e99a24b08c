"""
Shared fixtures for the proxy's tests.

:obj:`ProxyHarness` builds one service with :obj:`ccm.build.build_service`, as
``twistd ccm`` does, without a reactor: its credential reads a credentials
file in a temporary directory, and it listens nowhere.  The upstream is a
:obj:`FakeAnthropic` reached through a :obj:`StubTreq`, the client is another
:obj:`StubTreq` in front of the service's resource tree, and time is a
:obj:`Clock`::

    harness = ProxyHarness(self)
    response = harness.response("POST", "/v1/messages", body)
    assert harness.fake.requests[-1].header("authorization") == ...
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

import treq
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.server import Request

from ccm.proxy.accesslog import ACCESS_LOG_FORMAT
from ccm.build import ServiceReactor, build_service
from ccm.upstream.client import make_http_client
from ccm.config.model import (
    BalancerCredentialConfig,
    ConnectionLimits,
    CredentialConfig,
    DefaultCredentialConfig,
    ServiceConfig,
    UserConfig,
)
from ccm.proxy.context import Timeouts, UsageRecorder
from ccm.service import CcmService
from ccm.web.auth import Caller
from ccm.web.site import CcmSite
from tests.fake_anthropic import FakeAnthropic
from tests.fixtures import logged_events, write_credentials

if TYPE_CHECKING:
    from treq.response import _Response

START_TIME = 1_790_000_000.0
UPSTREAM_URL = "http://api.fake.test"
CCM_URL = "http://ccm.test"
ALICE_TOKEN = "ccm-token-alice-6f1d2c9b8a7e"
BOB_TOKEN = "ccm-token-bob-0a4e7c3f5d21"
ALICE = UserConfig(name="alice", token=ALICE_TOKEN)
BOB = UserConfig(name="bob", token=BOB_TOKEN)
DEFAULT_USERS = (ALICE, BOB)
DEFAULT_MAX_REQUEST_BODY = 64 * 1024
HEADER_TIMEOUT = 600.0
IDLE_TIMEOUT = 300.0
#: The tag of the harness's credential, and of the second one a balancer
#: harness has, with its access token.
MAIN = "main"
SECOND = "second"
SECOND_ACCESS_TOKEN = "sk-ant-oat01-second-credential"
#: The tag of a balancer harness's pool.
POOL = "pool"


class StubClient(StubTreq):
    """
    A :obj:`StubTreq` as the type checker sees it: the request functions it
    copies from its :obj:`HTTPClient`, whose responses are treq's (an
    :obj:`IResponse` with ``content``, ``json`` and ``text``), and ``flush``.
    """

    if TYPE_CHECKING:
        request: Callable[..., Deferred[_Response]]
        head: Callable[..., Deferred[_Response]]
        get: Callable[..., Deferred[_Response]]
        post: Callable[..., Deferred[_Response]]
        put: Callable[..., Deferred[_Response]]
        patch: Callable[..., Deferred[_Response]]
        delete: Callable[..., Deferred[_Response]]
        flush: Callable[[], None]


class ProxyHarness:
    """
    A ccm service in front of a fake Anthropic API, on a :obj:`Clock`.

    :ivar clock: the clock of the service and the fake.
    :ivar fake: the :obj:`FakeAnthropic` upstream, which also answers token
        refreshes (with a 500, unless the test changes ``token_mode``).
    :ivar upstream: the :obj:`StubTreq` the service uses as its HTTP client
        (unless ``http_client`` was given).
    :ivar service: the :obj:`CcmService`, built but not started.
    :ivar proxy: its proxy resource.
    :ivar client: a :obj:`StubTreq` in front of the service's root.
    :ivar credential: the :obj:`Credential` ``main``, serving every caller.
    :ivar credentials: every credential of the service (``main``, and
        ``second`` in a balancer harness).
    :ivar pool: the pool serving every caller: ``main`` alone, or the
        balancer ``pool``.
    :ivar callers: every caller the service authenticated, in order.
    :ivar server_requests: every request that reached the proxy resource,
        in arrival order (the server side, as ccm sees it).
    :ivar stored_bodies: the body each of them had stored when rendered.
    :ivar log: every log event published since the service was built.
    """

    def __init__(
        self,
        testcase: SynchronousTestCase,
        *,
        users: Sequence[UserConfig] = DEFAULT_USERS,
        extra_headers: tuple[tuple[str, tuple[str, ...]], ...] = (),
        max_request_body: int = DEFAULT_MAX_REQUEST_BODY,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        http_client: Any = None,
        write_credential_file: bool = True,
        recorder: UsageRecorder | None = None,
        balancer: str | None = None,
        extra_usage: dict[str, str] | None = None,
    ) -> None:
        """
        :param recorder: where the usage of ``main`` is counted; by default
            it is not.
        :param extra_usage: the ``extra_usage`` of credentials by tag
            (``main``, ``second``); ``never`` for the others.
        :param balancer: the strategy of a balancer ``pool`` over ``main``
            and ``second`` (whose file holds :obj:`SECOND_ACCESS_TOKEN`), to
            serve every caller instead of ``main`` alone.
        """
        self.testcase = testcase
        self.clock = Clock()
        self.clock.advance(START_TIME)
        self.fake = FakeAnthropic(self.clock)
        self.fake.token_mode = "server_error"
        self.upstream = StubClient(self.fake.resource())
        directory = os.path.abspath(testcase.mktemp())
        os.makedirs(directory)
        self.credential_path = os.path.join(directory, ".credentials.json")
        if write_credential_file:
            write_credentials(
                self.credential_path,
                self.fake.access_token,
                self.fake.refresh_token,
                int((START_TIME + 86400) * 1000),
            )
        extra = extra_usage or {}
        credentials: tuple[CredentialConfig, ...] = (
            DefaultCredentialConfig(
                MAIN, self.credential_path, extra_usage=extra.get(MAIN, "never")
            ),
        )
        serving = MAIN
        if balancer is not None:
            second_path = os.path.join(directory, "second.json")
            write_credentials(
                second_path,
                SECOND_ACCESS_TOKEN,
                "sk-ant-ort01-second",
                int((START_TIME + 86400) * 1000),
            )
            # The fake API takes the second subscription's token too: a
            # token it rejected would now make ccm look for another one.
            self.fake.extra_access_tokens.add(SECOND_ACCESS_TOKEN)
            # First: the pool of anonymous callers too.
            credentials = (
                BalancerCredentialConfig(POOL, (MAIN, SECOND), strategy=balancer),
                *credentials,
                DefaultCredentialConfig(
                    SECOND, second_path, extra_usage=extra.get(SECOND, "never")
                ),
            )
            serving = POOL
        config = ServiceConfig(
            where="",
            listeners=(),
            credentials=credentials,
            users=tuple(dataclasses.replace(u, credential=u.credential or serving) for u in users),
            headers=extra_headers,
            upstream_url=UPSTREAM_URL,
            oauth_token_url=UPSTREAM_URL + "/v1/oauth/token",
            max_request_body=max_request_body,
        )
        self.service = build_service(
            config,
            # The service listens nowhere and is not started: of the
            # reactor, it uses the time.
            reactor=cast(ServiceReactor, self.clock),
            # The stub does what the service asks of a client: requests.
            http_client=cast(HTTPClient, self.upstream) if http_client is None else http_client,
            environ={},
            home=directory,
            watch_with_inotify=False,
            platform="linux",
            timeouts=Timeouts(response_headers=header_timeout, stream_idle=idle_timeout),
            usage_recorders={} if recorder is None else {MAIN: recorder},
        )
        self.log = logged_events(testcase)
        self.credentials = self.service.credentials
        for credential in self.credentials:
            credential.reload()
        self.credential = self.credentials[0]
        self.pool = self.service.pools[serving]
        self.proxy = self.service.proxy
        self.callers: list[Caller] = []
        authenticate = self.proxy.authenticator.authenticate

        def recording_authenticate(headers: Headers) -> Caller:
            caller = authenticate(headers)
            self.callers.append(caller)
            return caller

        authenticator = self.proxy.authenticator
        authenticator.authenticate = recording_authenticate  # type: ignore[method-assign]
        self.server_requests: list[Request] = []
        self.stored_bodies: list[bytes] = []
        original_render = self.proxy.render

        def spy(request: Request) -> Any:
            self.server_requests.append(request)
            assert request.content is not None
            request.content.seek(0)
            self.stored_bodies.append(request.content.read())
            request.content.seek(0)
            return original_render(request)

        self.proxy.render = spy  # type: ignore[method-assign]
        self.root = self.service.site.resource
        self.client = StubClient(self.root)

    @property
    def refreshes(self) -> list[str]:
        """
        The refresh tokens the credential asked the fake to exchange.
        """
        return [request.json()["refresh_token"] for request in self.fake.token_requests]

    def site(
        self,
        max_request_body: int | None = None,
        connection_limits: ConnectionLimits = ConnectionLimits(),
    ) -> CcmSite:
        """
        A real ccm site around the service's root, on the harness's clock.

        :param max_request_body: the site's body limit; by default the
            proxy's.
        :param connection_limits: the site's connection bounds.
        """
        limit = self.proxy.max_request_body if max_request_body is None else max_request_body
        return CcmSite(self.root, limit, reactor=self.clock, connection_limits=connection_limits)

    def flush(self) -> None:
        """
        Move every pending byte between client, ccm and upstream.
        """
        for _ in range(6):
            self.client.flush()
            self.upstream.flush()

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, Any] | None = None,
        *,
        token: str | None = ALICE_TOKEN,
    ) -> Deferred[IResponse]:
        """
        Start a client request to ccm and flush.

        :param token: sent as ``Authorization: Bearer``; ``None`` sends none.
        :param headers: extra request headers (a name maps to a string or a
            list of strings).
        """
        all_headers: dict[str, Any] = {}
        if token is not None:
            all_headers["authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        d = self.client.request(
            method, CCM_URL + path, data=body, headers=all_headers, unbuffered=True
        )
        self.flush()
        # A Deferred of treq's response, which is an IResponse.
        return cast("Deferred[IResponse]", d)

    def response(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, Any] | None = None,
        *,
        token: str | None = ALICE_TOKEN,
    ) -> IResponse:
        """
        Send a request and return its response, which must have arrived.
        """
        return self.testcase.successResultOf(
            self.send(method, path, body, headers, token=token)
        )

    def messages(
        self, document: dict[str, Any], headers: dict[str, Any] | None = None
    ) -> IResponse:
        """
        ``POST /v1/messages?beta=true`` with a JSON body, as Claude Code does.
        """
        all_headers = {
            "content-type": "application/json",
            "anthropic-version": "2023-06-01",
        }
        all_headers.update(headers or {})
        return self.response(
            "POST", "/v1/messages?beta=true", json.dumps(document).encode("utf-8"), all_headers
        )

    def collect(self, response: IResponse) -> tuple[list[bytes], Deferred[None]]:
        """
        Start reading a response body chunk by chunk.
        """
        chunks: list[bytes] = []
        d: Deferred[None] = treq.collect(response, chunks.append)
        self.flush()
        return chunks, d

    def body_of(self, response: IResponse) -> bytes:
        """
        The whole body of a response, which must be complete.
        """
        chunks, done = self.collect(response)
        self.testcase.successResultOf(done)
        return b"".join(chunks)

    def ccm_error(self, response: IResponse, status: int, error_type: str) -> dict[str, Any]:
        """
        Check that ``response`` is an error ccm made itself, in the Anthropic
        shape, and return its ``error`` object.
        """
        testcase = self.testcase
        testcase.assertEqual(response.code, status)
        testcase.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        request_ids = response.headers.getRawHeaders("request-id")
        testcase.assertIsNotNone(request_ids)
        assert request_ids is not None
        testcase.assertEqual(len(request_ids), 1)
        testcase.assertTrue(request_ids[0].startswith("ccm_"), request_ids)
        document = json.loads(self.body_of(response))
        testcase.assertEqual(
            sorted(document), ["error", "request_id", "type"], document
        )
        testcase.assertEqual(document["type"], "error")
        testcase.assertEqual(document["request_id"], request_ids[0])
        testcase.assertEqual(sorted(document["error"]), ["message", "type"])
        testcase.assertEqual(document["error"]["type"], error_type)
        testcase.assertIsInstance(document["error"]["message"], str)
        error: dict[str, Any] = document["error"]
        return error

    def log_texts(self, min_level: LogLevel = LogLevel.debug) -> list[str]:
        """
        The formatted text of every captured log event at ``min_level`` or
        above.
        """
        return [
            formatEvent(event)
            for event in self.log
            if event.get("log_level", LogLevel.info) >= min_level
        ]

    def exchange_lines(self) -> list[str]:
        """
        The per-request summary lines the proxy logged.
        """
        return [
            formatEvent(event)
            for event in self.log
            if event.get("log_format") == ACCESS_LOG_FORMAT
        ]

    def assert_no_secrets_logged(self, *extra: str) -> None:
        """
        Check that no captured log event mentions a token.
        """
        secrets = [ALICE_TOKEN, BOB_TOKEN, self.fake.access_token, self.fake.refresh_token]
        secrets.extend(extra)
        for text in self.log_texts():
            for secret in secrets:
                self.testcase.assertNotIn(secret, text)


def serve_on_loopback(
    testcase: SynchronousTestCase, reactor: Any, config: ServiceConfig
) -> tuple[CcmService, int]:
    """
    Build the service ``config`` describes on the real reactor, with the
    real upstream client, load its credentials and serve its site on a
    loopback port, until the test ends; for the few tests that need real
    sockets.  Its background services do not run.

    :return: the service and the port.
    """
    http_client, upstream_pool = make_http_client(reactor)
    testcase.addCleanup(upstream_pool.closeCachedConnections)
    home = os.path.abspath(testcase.mktemp())
    os.makedirs(home)
    service = build_service(
        config,
        reactor=reactor,
        http_client=http_client,
        environ={},
        home=home,
        watch_with_inotify=False,
        platform="linux",
    )
    for credential in service.credentials:
        credential.reload()
    port = reactor.listenTCP(0, service.site, interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    return service, port.getHost().port


@dataclass
class UpstreamCall:
    """
    One request the proxy made through a :obj:`ScriptedUpstream`.
    """

    method: str
    url: str
    kwargs: dict[str, Any]
    result: Deferred[Any]
    cancelled: bool = False


class ScriptedUpstream:
    """
    An upstream HTTP client the test answers itself: each request gets a
    fresh, pending Deferred (cancelling it marks the call ``cancelled`` and
    fails it with ``CancelledError``), or ``result`` when one is given.
    """

    def __init__(self, result: Deferred[Any] | None = None) -> None:
        self.calls: list[UpstreamCall] = []
        self._result = result

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        def cancel(d: Deferred[Any]) -> None:
            call.cancelled = True

        d: Deferred[Any] = self._result if self._result is not None else Deferred(cancel)
        call = UpstreamCall(method, url, kwargs, d)
        self.calls.append(call)
        return d


class FakeUpstreamResponse:
    """
    An upstream response whose body the test delivers by hand through
    ``protocol``, the proxy's body protocol, connected to ``transport`` (a
    :obj:`StringTransport` that records pause, resume and stop).
    """

    def __init__(
        self,
        code: int = 200,
        headers: dict[bytes, list[bytes]] | None = None,
        phrase: bytes = b"OK",
    ) -> None:
        self.code = code
        self.phrase = phrase
        self.headers = Headers(
            headers if headers is not None else {b"content-type": [b"text/event-stream"]}
        )
        self.transport = StringTransport()
        self.protocol: Any = None

    def deliverBody(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)


@dataclass
class RawResponse:
    """
    An HTTP/1.1 response as parsed from the bytes a server wrote.

    :ivar headers: lower-cased names mapped to their values.
    :ivar complete: whether the whole body arrived.
    """

    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    complete: bool = False

    def json(self) -> Any:
        """
        The body parsed as JSON.
        """
        return json.loads(self.body)


def parse_raw_response(data: bytes) -> RawResponse | None:
    """
    Parse the first response in ``data``; ``None`` before its headers are
    complete.
    """
    head, separator, rest = data.partition(b"\r\n\r\n")
    if not separator:
        return None
    lines = head.split(b"\r\n")
    response = RawResponse(status=int(lines[0].split(b" ")[1]))
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        response.headers.setdefault(name.decode("latin-1").strip().lower(), []).append(
            value.decode("latin-1").strip()
        )
    if response.headers.get("transfer-encoding") == ["chunked"]:
        while True:
            size_line, separator, after = rest.partition(b"\r\n")
            if not separator:
                break
            size = int(size_line, 16)
            if size == 0:
                response.complete = True
                break
            response.body += after[:size]
            rest = after[size + 2 :]
    else:
        length = int(response.headers.get("content-length", ["0"])[0])
        response.body = rest[:length]
        response.complete = len(rest) >= length
    return response


class RawConnection:
    """
    One client connection to a real site, over a :obj:`StringTransport`.
    """

    def __init__(
        self, site: CcmSite, peer: IAddress = IPv4Address("TCP", "192.0.2.7", 40000)
    ) -> None:
        """
        :param peer: the client's address.
        """
        self.transport = StringTransport(peerAddress=peer)
        channel = site.buildProtocol(peer)
        assert channel is not None
        self.channel: Protocol = channel
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        """
        Deliver bytes from the client.
        """
        self.channel.dataReceived(data)

    def response(self) -> RawResponse | None:
        """
        The response written so far, parsed.
        """
        return parse_raw_response(self.transport.value())

    def close(self) -> None:
        """
        The client goes away.
        """
        self.channel.connectionLost(Failure(ConnectionDone()))


def raw_request(
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    token: str | None = ALICE_TOKEN,
) -> bytes:
    """
    The bytes of an HTTP/1.1 request with a ``Content-Length`` (unless
    ``headers`` sets ``Transfer-Encoding``, in which case ``body`` must be
    encoded already).
    """
    lines = [f"{method} {target} HTTP/1.1", "Host: ccm.test"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    all_headers = dict(headers or {})
    if "Transfer-Encoding" not in all_headers and (body or method == "POST"):
        all_headers["Content-Length"] = str(len(body))
    lines.extend(f"{name}: {value}" for name, value in all_headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
