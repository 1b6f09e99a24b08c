# -*- test-case-name: tests.proxy.test_resource -*-
"""
The proxy resource: a client's C{/v1/...} request, sent upstream with the
subscription's OAuth token, and the response streamed back untouched.

Each upstream chunk is written to the client the moment it arrives, with
real backpressure: a slow client pauses the upstream connection instead of
growing memory.  A client that goes away cancels its upstream request.
Upstream statuses and bodies pass through unchanged; only ccm's own errors
are made up here, in the Anthropic shape.
"""

from __future__ import annotations

import json
from typing import IO, Any, Callable, Protocol as TypingProtocol

from twisted.internet import error as net_error
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeoutError, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.client import FileBodyProducer, ResponseDone
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ccm.web.auth import Authenticator, Caller
from ccm.credentials.credential import Credential, CredentialUnavailable
from ccm.upstream.tunnel import DetourError
from ccm.web.errors import (
    INTERNAL_ERROR,
    NOT_FOUND,
    APIError,
    answer_bug,
    error_body,
    new_request_id,
    render_error,
    send_error,
)
from ccm.proxy.headers import client_response_headers, upstream_request_headers
from ccm.credentials.oauth import is_cancellation
from ccm.web.paths import forwarded_target
from ccm.accounting.pricing import context_window_for
from ccm.pool.select import Pool
from ccm.pool.sessions import session_id_of
from ccm.accounting.meter import EventStreamUsage, JSONBodyUsage, TokenUsage
from ccm.units import format_duration
from ccm.accounting.book import week_start_from_headers

FAST_MODE_THROUGH_POOL = APIError(
    400,
    "invalid_request_error",
    "fast mode requests would consume paid extra usage; use a credential directly, "
    "not a pool",
)

# Request bodies up to this size are read into memory and parsed; larger
# ones (images, documents) are streamed upstream from twisted.web's
# temporary file, keeping memory flat.
IN_MEMORY_BODY_BYTES = 4 * 1024 * 1024

# Claude Code waits up to 10 minutes for an answer (API_TIMEOUT_MS), and a
# non-streaming reply only starts when the whole generation is done.
RESPONSE_HEADER_TIMEOUT_SECONDS = 600.0
# Anthropic sends ping events on long streams; this much silence means the
# upstream connection is dead.
STREAM_IDLE_TIMEOUT_SECONDS = 300.0

# The methods of the Anthropic API; anything else (TRACE, CONNECT, OPTIONS,
# made-up ones) is answered by ccm, since an upstream that echoes a request
# would hand back the OAuth token.
FORWARDED_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE")

METHOD_NOT_ALLOWED = APIError(
    405,
    "invalid_request_error",
    "method not allowed",
    headers=(("allow", ", ".join(method.decode("ascii") for method in FORWARDED_METHODS)),),
)

SHUTTING_DOWN = APIError(
    503,
    "api_error",
    "ccm is shutting down and takes no new requests; retry",
    headers=(("x-should-retry", "true"),),
)
# A request still waiting for the upstream's answer when the shutdown grace
# ends.
ENDED_BY_SHUTDOWN = APIError(
    503,
    "api_error",
    "ccm is restarting and could not finish this request in time; retry",
    headers=(("x-should-retry", "true"),),
)
# A stream still running then ends with this SSE error.  overloaded_error,
# not api_error: it is the type Anthropic itself sends mid-stream for a
# passing condition, and Claude Code answers it by retrying the stream
# after a pause, where an api_error makes it fall back to a non-streaming
# request (anthropic-wire.md section 1.3).
STREAM_ENDED_BY_SHUTDOWN = ("overloaded_error", "ccm is restarting; retry the request")


class UsageRecorder(TypingProtocol):
    """
    Where the tokens of a proxied request are counted.
    """

    def record(
        self,
        *,
        model: str,
        context_window: int,
        week_start_unix: int,
        user: str,
        usage: TokenUsage,
        messages: int,
    ) -> None: ...


class UsageMeter(TypingProtocol):
    """
    Reads the usage out of a response body while it is relayed.
    """

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> TokenUsage: ...


def _no_usage(credential: Credential) -> UsageRecorder | None:
    return None


def request_body_size(request: Request) -> int:
    """
    How many body bytes the client sent (or at least, when the request
    factory already refused the body for its size, more than allowed).
    """
    if getattr(request, "body_too_large", False):
        return -1
    content = request.content
    position = content.tell()
    content.seek(0, 2)
    size = content.tell()
    content.seek(position)
    return size


class ProxyResource(Resource):
    """
    Proxy C{/v1/...} to the upstream API as the caller's subscription.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        pool_for: Callable[[Caller], Pool],
        http_client: Any,
        clock: IReactorTime,
        upstream_url: str,
        extra_headers: tuple[tuple[str, tuple[str, ...]], ...] = (),
        max_request_body: int,
        header_timeout: float = RESPONSE_HEADER_TIMEOUT_SECONDS,
        idle_timeout: float = STREAM_IDLE_TIMEOUT_SECONDS,
        usage_for: Callable[[Credential], UsageRecorder | None] = _no_usage,
        http_client_for: Callable[[Credential], Any] | None = None,
    ) -> None:
        """
        :param usage_for: where to count the usage of requests served by a
            credential, or None not to count it.
        :param http_client_for: the client to reach the upstream with for a
            credential (its detour); by default C{http_client} for all.
        """
        super().__init__()
        self.authenticator = authenticator
        self.pool_for = pool_for
        self.http_client = http_client
        self.http_client_for = http_client_for or (lambda credential: self.http_client)
        self.clock = clock
        self.upstream_url = upstream_url.rstrip("/")
        self.extra_headers = extra_headers
        self.max_request_body = max_request_body
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.usage_for = usage_for
        self.cooperator = Cooperator(scheduler=lambda work: clock.callLater(0, work))
        self.draining = False
        self._in_progress: set[_Exchange] = set()
        self._drained: list[Deferred[None]] = []
        self._grace_timer: IDelayedCall | None = None

    def reconfigure(
        self, *, extra_headers: tuple[tuple[str, tuple[str, ...]], ...], max_request_body: int
    ) -> None:
        """
        Use these settings for requests from now on (a reloaded
        configuration); requests in progress are not affected.
        """
        self.extra_headers = extra_headers
        self.max_request_body = max_request_body

    @property
    def in_progress(self) -> int:
        """
        How many proxied requests have not finished yet.
        """
        return len(self._in_progress)

    def drain(self, grace: float) -> Deferred[None]:
        """
        Refuse new requests, and wait for those in progress to finish, for
        at most C{grace} seconds; for a shutdown that does not cut a
        generation short.  Those still running then are ended (L{cut}).

        :return: a Deferred that fires when they all finished or were
            ended, never failing.
        """
        self.draining = True
        if not self._in_progress:
            return succeed(None)
        self.log.info(
            "waiting up to {grace} for {count} request(s) in progress to finish",
            grace=format_duration(grace),
            count=len(self._in_progress),
        )
        drained: Deferred[None] = Deferred()
        self._drained.append(drained)
        if self._grace_timer is None:
            self._grace_timer = self.clock.callLater(grace, self._grace_over, grace)
        return drained

    def _grace_over(self, grace: float) -> None:
        self._grace_timer = None
        self.log.warn(
            "{count} request(s) still in progress after {grace}; ending them",
            count=len(self._in_progress),
            grace=format_duration(grace),
        )
        self.cut()

    def cut(self) -> int:
        """
        End every request in progress now, telling each client that ccm is
        restarting: a stream gets an SSE error event and a proper end, a
        request still waiting for the upstream's answer gets a 503, and a
        non-stream body half sent is aborted.  What each used so far is
        counted first.  Waiting drains are over.

        :return: how many requests were ended.
        """
        self.draining = True
        if self._grace_timer is not None and self._grace_timer.active():
            self._grace_timer.cancel()
        self._grace_timer = None
        exchanges = list(self._in_progress)
        for exchange in exchanges:
            try:
                exchange.cut()
            except Exception:
                self.log.failure("ending {path} failed", path=exchange.request.path)
        # Each exchange left the set as its request ended, unless only its
        # connection's abort is pending: the drain does not wait for that.
        self._release_drains()
        return len(exchanges)

    def _release_drains(self) -> None:
        drained, self._drained = self._drained, []
        for waiter in drained:
            waiter.callback(None)

    def _started(self, exchange: _Exchange) -> None:
        self._in_progress.add(exchange)

    def _finished(self, exchange: _Exchange) -> None:
        self._in_progress.discard(exchange)
        if not self._in_progress:
            if self._grace_timer is not None and self._grace_timer.active():
                self._grace_timer.cancel()
            self._grace_timer = None
            self._release_drains()

    def render(self, request: Request) -> bytes | int:
        """
        Forward the request, or answer it with ccm's own error.

        C{request.path} is the normalized path L{ccm.web.site.Root} routed
        on; refusals of the path and of the method come before any
        authentication or upstream work.
        """
        if not request.path.startswith(b"/v1/"):
            return render_error(request, NOT_FOUND)
        if request.method not in FORWARDED_METHODS:
            self.log.warn(
                "refused {method} {path} from {peer}: method not allowed",
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("ascii", "replace"),
                peer=_peer(request),
            )
            return render_error(request, METHOD_NOT_ALLOWED)
        if self.draining:
            return render_error(request, SHUTTING_DOWN)
        try:
            caller = self.authenticator.authenticate(request.requestHeaders)
        except APIError as error:
            self.log.warn(
                "refused {method} {path} from {peer}: {error}",
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("ascii", "replace"),
                peer=_peer(request),
                error=error.message,
            )
            return render_error(request, error)
        size = request_body_size(request)
        if size < 0 or size > self.max_request_body:
            # twisted.web has read (and dropped) the whole body already, so
            # the connection stays usable for the client's next request.
            return render_error(
                request,
                APIError(
                    413,
                    "request_too_large",
                    f"request body exceeds ccm's limit of {self.max_request_body} bytes "
                    "(max_request_body)",
                ),
            )
        request.content.seek(0)
        body: bytes | IO[bytes]
        if size > IN_MEMORY_BODY_BYTES:
            # Sent from twisted.web's temporary file, never held in memory.
            body = request.content
        else:
            body = request.content.read()
        _Exchange(self, request, caller, body).start()
        return NOT_DONE_YET


def _peer(request: Request) -> str:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return str(host) if host is not None else str(address)


def _parse_body(body: bytes, content_type: bytes | None) -> dict[str, Any] | None:
    """
    The request body as a JSON object, parsed leniently: a body that is not
    JSON is still forwarded, ccm just learns nothing from it.
    """
    if not body or (content_type is not None and b"json" not in content_type.lower()):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


class _Exchange:
    """
    One proxied request, from choosing a credential to the last byte.
    """

    def __init__(
        self, proxy: ProxyResource, request: Request, caller: Caller, body: bytes | IO[bytes]
    ) -> None:
        self.proxy = proxy
        self.request = request
        self.caller = caller
        self.body = body
        self.started = proxy.clock.seconds()
        # A body too large to hold in memory is not parsed either: its
        # session comes from the header, its model from the response.
        document = (
            _parse_body(body, request.requestHeaders.getRawHeaders(b"content-type", [None])[0])
            if isinstance(body, bytes)
            else None
        )
        model = document.get("model") if document is not None else None
        self.model = model if isinstance(model, str) else ""
        messages = document.get("messages") if document is not None else None
        self.messages = len(messages) if isinstance(messages, list) else 0
        self.session_id = session_id_of(request.requestHeaders, document)
        self.credential: Credential | None = None
        self.status = 0
        self.bytes_sent = 0
        self.outcome = ""
        self.client_gone = False
        self.upstream: Deferred[Any] | None = None
        self.header_timer: IDelayedCall | None = None
        self.header_timed_out = False
        self.relay: _Relay | None = None
        self.recorder: UsageRecorder | None = None
        self.pool: Pool
        self.tried: list[str] = []
        self.week_start_unix = 0
        self.usage: TokenUsage | None = None

    def start(self) -> None:
        self.proxy._started(self)
        self.request.notifyFinish().addBoth(self._client_finished)
        try:
            self.pool = self.proxy.pool_for(self.caller)
        except APIError as error:
            self._fail(error)
            return
        if self.pool.is_balancer and self._asks_fast_mode():
            self._fail(FAST_MODE_THROUGH_POOL)
            return
        self._attempt()

    def _asks_fast_mode(self) -> bool:
        return any(
            item.strip().startswith("fast-mode")
            for value in self.request.requestHeaders.getRawHeaders(b"anthropic-beta", [])
            for item in value.decode("latin-1").split(",")
        )

    def _attempt(self) -> None:
        """
        Send the request with the pool's choice among the credentials not
        tried yet for it.
        """
        try:
            self.credential = self.pool.select(self.session_id, exclude=self.tried)
        except APIError as error:
            self._fail(error)
            return
        self.credential.access_token().addCallbacks(self._send, self._no_token).addErrback(
            self._crashed
        )

    def _retry_after_429(self, response: Any) -> bool:
        """
        After a 429 and before any byte reached the client, move the request
        to another usable credential of the pool that has not been tried.

        :return: whether the 429 was handled here (retried, or answered with
            ccm's own 429); False passes it on unchanged.
        """
        assert self.credential is not None
        now = self.proxy.clock.seconds()
        limited_until = self.credential.rate_limits.observe_rejection(response.headers, now)
        tag = self.credential.tag
        self.tried.append(tag)
        try:
            self.pool.select(self.session_id, exclude=self.tried)
        except APIError as error:
            if limited_until is None:
                # A passing capacity throttle, and nowhere else to go: the
                # client may retry, as the upstream's answer says.
                return False
            response.deliverBody(_Discard())
            self._fail(error)
            return True
        self.proxy.log.info(
            "429 from credential {tag}{until}; retrying on another credential",
            tag=tag,
            until=f" (limited for {format_duration(limited_until - now)})"
            if limited_until is not None
            else "",
        )
        response.deliverBody(_Discard())
        self._attempt()
        return True

    def _no_token(self, failure: Failure) -> None:
        if self.client_gone:
            return
        assert self.credential is not None
        if failure.check(CredentialUnavailable):
            self._fail(self.credential.unavailable_error(str(failure.value)))
            return
        self.proxy.log.failure("getting an access token failed", failure=failure)
        self._fail(APIError(500, "api_error", "ccm could not get an access token"))

    def _send(self, access_token: str) -> None:
        if self.client_gone:
            return
        request = self.request
        headers = upstream_request_headers(
            request.requestHeaders, access_token, self.proxy.extra_headers
        )
        # request.path is normalized (see ccm.web.site.Root); the client's
        # request target is never sent as it is.
        url = self.proxy.upstream_url + forwarded_target(request.path, request.uri).decode("ascii")
        assert self.credential is not None
        self.upstream = self.proxy.http_client_for(self.credential).request(
            request.method.decode("ascii"),
            url,
            headers=headers,
            data=self._request_data(),
            unbuffered=True,
            allow_redirects=False,
        )
        self.header_timer = self.proxy.clock.callLater(
            self.proxy.header_timeout, self._headers_timed_out
        )
        self.upstream.addCallbacks(self._got_response, self._upstream_failed).addErrback(
            self._crashed
        )

    def _request_data(self) -> bytes | FileBodyProducer | None:
        """
        The body to send upstream: the bytes, or, for a large body, a
        producer reading twisted.web's temporary file from the start (again
        for a retry on another credential).
        """
        body = self.body
        if isinstance(body, bytes):
            if body or self.request.method not in (b"GET", b"HEAD"):
                return body
            return None
        body.seek(0)
        return FileBodyProducer(_KeepOpen(body), cooperator=self.proxy.cooperator)

    def _headers_timed_out(self) -> None:
        self.header_timer = None
        self.header_timed_out = True
        if self.upstream is not None:
            self.upstream.cancel()

    def _stop_header_timer(self) -> None:
        if self.header_timer is not None and self.header_timer.active():
            self.header_timer.cancel()
        self.header_timer = None

    def _got_response(self, response: Any) -> None:
        self._stop_header_timer()
        self.upstream = None
        assert self.credential is not None
        if self.client_gone:
            response.deliverBody(_Discard())
            return
        if response.code == 429 and self._retry_after_429(response):
            return
        self.credential.rate_limits.observe(response.headers, self.proxy.clock.seconds())
        request = self.request
        self.status = response.code
        request.setResponseCode(response.code, response.phrase or None)
        request.defaultContentType = None
        for name, values in client_response_headers(response.headers).getAllRawHeaders():
            request.responseHeaders.setRawHeaders(name, list(values))
        # Send the status and headers now: the client learns of the answer
        # as soon as ccm does, not with the first body bytes.
        request.write(b"")
        content_type = response.headers.getRawHeaders(b"content-type", [b""])[0].lower()
        is_event_stream = b"text/event-stream" in content_type
        self.relay = _Relay(self, is_event_stream, self._usage_meter(response, is_event_stream, content_type))
        response.deliverBody(self.relay)

    def _usage_meter(
        self, response: Any, is_event_stream: bool, content_type: bytes
    ) -> UsageMeter | None:
        """
        A meter for the response body when its usage is to be counted: only
        successful Messages API answers carry usage.
        """
        assert self.credential is not None
        self.recorder = self.proxy.usage_for(self.credential)
        if self.recorder is None or response.code != 200:
            return None
        self.week_start_unix = week_start_from_headers(response.headers)
        if is_event_stream:
            return EventStreamUsage()
        if b"json" in content_type:
            return JSONBodyUsage()
        return None

    def account(self, meter: UsageMeter) -> None:
        """
        Count what a response used, however it ended: a stream cut short
        still used the tokens its first events reported.
        """
        usage = meter.finish()
        model = usage.model or self.model
        if self.recorder is None or not usage.has_tokens or not model:
            return
        self.usage = usage
        betas = [v.decode("latin-1") for v in self.request.requestHeaders.getRawHeaders(b"anthropic-beta", [])]
        try:
            self.recorder.record(
                model=model,
                context_window=context_window_for(usage.total_input_tokens, betas),
                week_start_unix=self.week_start_unix,
                user=self.caller.name,
                usage=usage,
                messages=self.messages,
            )
        except Exception:
            self.proxy.log.failure("recording usage failed")

    def _upstream_failed(self, failure: Failure) -> None:
        self._stop_header_timer()
        self.upstream = None
        if self.client_gone:
            return
        upstream = self.proxy.upstream_url
        if self.header_timed_out:
            error = APIError(
                504,
                "timeout_error",
                f"upstream {upstream} did not answer within {self.proxy.header_timeout:g}s",
            )
        elif failure.check(net_error.TimeoutError, net_error.TCPTimedOutError):
            error = APIError(504, "timeout_error", f"connecting to upstream {upstream} timed out")
        elif failure.check(DetourError):
            detour = failure.value
            error = APIError(
                502,
                "api_error",
                f"cannot reach upstream {upstream} through detour {detour.detour}: {detour.reason}",
            )
        elif failure.check(net_error.ConnectError, net_error.DNSLookupError):
            reason = failure.getErrorMessage() or type(failure.value).__name__
            error = APIError(502, "api_error", f"cannot connect to upstream {upstream}: {reason}")
        elif is_cancellation(failure.value):
            error = APIError(502, "api_error", "the upstream request was cancelled")
        else:
            error = APIError(
                502,
                "api_error",
                f"upstream {upstream} closed the connection before answering",
            )
            self.proxy.log.info(
                "upstream failure detail: {detail}", detail=failure.getErrorMessage()
            )
        self._fail(error)

    def _crashed(self, failure: Failure) -> None:
        """
        A bug in ccm: log it, and end the client's request rather than
        leave it hanging, as L{ccm.web.site.LimitedRequest} does for bugs
        in C{render}.
        """
        self.proxy.log.failure("proxying {path} failed", failure=failure, path=self.request.path)
        if self.client_gone or self.request.finished:
            return
        self.status = INTERNAL_ERROR.status
        self.outcome = INTERNAL_ERROR.message
        answer_bug(self.request)

    def _fail(self, error: APIError) -> None:
        self.status = error.status
        self.outcome = error.message
        send_error(self.request, error)

    def cut(self) -> None:
        """
        ccm is stopping and cannot wait any longer: end this request now
        (see L{ProxyResource.cut}).
        """
        if self.client_gone:
            return
        if self.relay is not None:
            self.relay.cut()
            return
        # Still getting a token or waiting for the upstream's headers.
        self._fail(ENDED_BY_SHUTDOWN)
        # The request is answered: whatever comes later (a token, the
        # cancellation below) must not write to it, as if the client had
        # gone.
        self.client_gone = True
        if self.upstream is not None:
            self.upstream.cancel()

    def _client_finished(self, result: object) -> None:
        try:
            if isinstance(result, Failure):
                self.client_gone = True
                self.outcome = self.outcome or "client went away"
                if self.upstream is not None:
                    self.upstream.cancel()
                elif self.relay is not None:
                    self.relay.client_went_away()
            self._log()
        finally:
            # Whatever failed above, the exchange is over: a shutdown must
            # not wait for it.
            self.proxy._finished(self)

    def _log(self) -> None:
        elapsed = self.proxy.clock.seconds() - self.started
        self.proxy.log.info(
            "{method} {path} user={user} model={model} credential={credential} "
            "-> {status} in {duration:.3f}s, {bytes} bytes{tokens}{note}",
            method=self.request.method.decode("ascii", "replace"),
            path=self.request.path.decode("ascii", "replace"),
            user=self.caller.name or "-",
            model=self.model or "-",
            credential=self.credential.tag if self.credential is not None else "-",
            status=self.status or "-",
            duration=elapsed,
            bytes=self.bytes_sent,
            tokens=(
                f", tokens in={self.usage.input_tokens} out={self.usage.output_tokens} "
                f"cache read={self.usage.cache_read_input_tokens} "
                f"write={self.usage.cache_creation_input_tokens}"
                if self.usage is not None
                else ""
            ),
            note=f" ({self.outcome})" if self.outcome else "",
        )


class _KeepOpen:
    """
    A file whose C{close} does nothing: L{FileBodyProducer} closes what it
    has read, and a retry must read the request body again.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        pass


class _Discard(Protocol):
    """
    Drop a response body nobody wants any more.
    """

    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]


class _Relay(Protocol):
    """
    Write an upstream body to the client as it arrives.

    The upstream transport is registered as the client request's producer,
    so a client that reads slowly pauses the upstream connection.
    """

    def __init__(
        self, exchange: _Exchange, is_event_stream: bool, meter: UsageMeter | None = None
    ) -> None:
        self.exchange = exchange
        self.meter = meter
        self.request = exchange.request
        self.is_event_stream = is_event_stream
        self.idle_timer: IDelayedCall | None = None
        self.idle_timed_out = False
        self.tail = b""
        # Set once the client's response is ended (or the client is gone):
        # nothing more is relayed or counted.
        self.ended = False

    def connectionMade(self) -> None:
        self.request.registerProducer(self.transport, True)
        clock = self.exchange.proxy.clock
        self.idle_timer = clock.callLater(self.exchange.proxy.idle_timeout, self._idle)

    def dataReceived(self, data: bytes) -> None:
        if self.ended:
            return
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.reset(self.exchange.proxy.idle_timeout)
        if self.meter is not None:
            self.meter.feed(data)
        if self.exchange.client_gone:
            return
        self.exchange.bytes_sent += len(data)
        self.tail = (self.tail + data[-2:])[-2:]
        self.request.write(data)

    def _idle(self) -> None:
        self.idle_timer = None
        self.idle_timed_out = True
        self.transport.stopProducing()  # type: ignore[union-attr]

    def client_went_away(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]

    def cut(self) -> None:
        """
        End the client's response now because ccm is stopping, and drop
        the rest of the upstream body.
        """
        if not self.ended:
            self._end("ended by ccm's shutdown", STREAM_ENDED_BY_SHUTDOWN, warn=False)
        self.transport.stopProducing()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self.ended:
            return
        if reason.check(ResponseDone, http.PotentialDataLoss) and not self.idle_timed_out:
            self._end(None)
            return
        problem = (
            "the upstream stream stalled"
            if self.idle_timed_out
            else "the upstream connection was lost mid-response"
        )
        self._end(problem)

    def _end(
        self,
        problem: str | None,
        sse_error: tuple[str, str] | None = None,
        warn: bool = True,
    ) -> None:
        """
        Count what the response used and end it for the client: cleanly
        when C{problem} is None, else, for an event stream, with an SSE
        C{error} event and a proper end, and for any other body by aborting
        the connection.

        :param sse_error: the error's type and message; by default an
            C{api_error} naming C{problem}.
        :param warn: whether to log C{problem} as a warning.
        """
        self.ended = True
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()
        self.idle_timer = None
        exchange = self.exchange
        if self.meter is not None:
            exchange.account(self.meter)
        if exchange.client_gone:
            return
        self.request.unregisterProducer()
        if problem is None:
            self.request.finish()
            return
        exchange.outcome = problem
        if warn:
            exchange.proxy.log.warn(
                "{path}: {problem} after {bytes} bytes",
                path=self.request.path.decode("ascii", "replace"),
                problem=problem,
                bytes=exchange.bytes_sent,
            )
        if self.is_event_stream:
            # The 200 is already sent; an SSE error event is what clients
            # understand as a failed stream.
            separator = b"" if self.tail == b"\n\n" or not self.tail else b"\n\n"
            error_type, message = sse_error or ("api_error", f"ccm: {problem}")
            frame = error_body(error_type, message, new_request_id()).rstrip(b"\n")
            self.request.write(separator + b"event: error\ndata: " + frame + b"\n\n")
            self.request.finish()
        else:
            # Make the truncation visible: a clean end would look complete.
            self.request.channel.forceAbortClient()
