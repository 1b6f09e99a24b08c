# -*- test-case-name: tests.proxy.test_resource -*-
"""
The proxy resource: a client's ``/v1/...`` request, sent upstream with the
subscription's OAuth token, and the response streamed back untouched.

The resource is the gate: it refuses what ccm does not forward (other
paths and methods, requests during a shutdown, callers without a valid
token, bodies over the limit), then hands the request to an
:obj:`ccm.proxy.exchange.Exchange` with its :obj:`ExchangeContext`, and keeps
track of the exchanges in progress so that a shutdown can wait for them
(:obj:`ProxyResource.drain`) or end them (:obj:`ProxyResource.cut`).

Each upstream chunk is written to the client the moment it arrives, with
real backpressure: a slow client pauses the upstream connection instead of
growing memory (:obj:`ccm.proxy.relay`).  A client that goes away cancels its
upstream request.  Upstream statuses and bodies pass through unchanged;
only ccm's own errors are made up here, in the Anthropic shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import IO, Callable, Mapping

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ccm.limits.gate import FREE, Ticket, UserLimits, counts_against_limits
from ccm.pool.select import Pool
from ccm.proxy.context import ExchangeContext, HeaderRules, Route, Timeouts
from ccm.proxy.exchange import Exchange
from ccm.proxy.observer import NO_OBSERVER, ExchangeObserver
from ccm.shares.gate import NO_SHARES, ShareGate
from ccm.units import format_duration
from ccm.upstream.identity import ClientIdentity
from ccm.web.auth import Authenticator, Caller
from ccm.web.tree import client_host
from ccm.web.errors import (
    NOT_FOUND,
    APIError,
    method_not_allowed,
    render_error,
    send_error,
)

# Request bodies up to this size are read into memory and parsed; larger
# ones (images, documents) are streamed upstream from twisted.web's
# temporary file, keeping memory flat.
IN_MEMORY_BODY_BYTES = 4 * 1024 * 1024

# The methods of the Anthropic API; anything else (TRACE, CONNECT, OPTIONS,
# made-up ones) is answered by ccm, since an upstream that echoes a request
# would hand back the OAuth token.
FORWARDED_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE")

METHOD_NOT_ALLOWED = method_not_allowed(*FORWARDED_METHODS)

SHUTTING_DOWN = APIError(
    503,
    "api_error",
    "ccm is shutting down and takes no new requests; retry",
    headers=(("x-should-retry", "true"),),
)


def _content(request: Request) -> IO[bytes]:
    """
    The stored request body; twisted.web sets it before ``render``.
    """
    content: IO[bytes] | None = request.content
    assert content is not None
    return content


def request_body_size(request: Request) -> int:
    """
    How many body bytes the client sent (or at least, when the request
    factory already refused the body for its size, more than allowed).
    """
    if getattr(request, "body_too_large", False):
        return -1
    content = _content(request)
    position = content.tell()
    content.seek(0, 2)
    size = content.tell()
    content.seek(position)
    return size


@dataclass(frozen=True)
class InFlight:
    """
    A proxied request in progress: its user (empty for anonymous), method,
    path (without the query) and when it started (Unix seconds).
    """

    user: str
    method: str
    path: str
    started: float


class ProxyResource(Resource):
    """
    Proxy ``/v1/...`` to the upstream API as the caller's subscription.

    :param pool_for: the pool that serves a caller.
    :param routes: the :obj:`Route` of each credential, by tag.
    :param upstream_url: the API's base URL.
    :param extra_headers: the configured ``headers``.
    :param max_request_body: the largest body forwarded, in bytes.
    :param identity: told each caller's ``User-Agent``, so that ccm's own
        calls follow the newest Claude Code.
    :param observer: told of each request's events (the metrics).
    :param limits: the users' ``max_concurrent`` and
        ``requests_per_minute``, passed before an exchange starts.
    :param shares: keeps the users' shares and refuses those over one.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        pool_for: Callable[[Caller], Pool],
        routes: Mapping[str, Route],
        clock: IReactorTime,
        upstream_url: str,
        extra_headers: HeaderRules = (),
        max_request_body: int,
        timeouts: Timeouts = Timeouts(),
        identity: ClientIdentity | None = None,
        observer: ExchangeObserver = NO_OBSERVER,
        limits: UserLimits | None = None,
        shares: ShareGate = NO_SHARES,
    ) -> None:
        super().__init__()
        self.authenticator = authenticator
        #: Told each caller's ``User-Agent``.
        self.identity = identity if identity is not None else ClientIdentity()
        self._pool_for = pool_for
        self._clock = clock
        #: What the next exchange starts with.
        self.context = ExchangeContext(
            clock=clock,
            log=self.log,
            timeouts=timeouts,
            upstream_url=upstream_url.rstrip("/"),
            extra_headers=extra_headers,
            routes=routes,
            cooperator=Cooperator(scheduler=lambda work: clock.callLater(0, work)),
            observer=observer,
            shares=shares,
        )
        self.max_request_body = max_request_body
        #: The per-user limits; :obj:`ccm.service` applies reloaded ones.
        self.limits = limits if limits is not None else UserLimits(clock)
        self._tickets: dict[Exchange, Ticket] = {}
        self.draining = False
        self._in_progress: set[Exchange] = set()
        # Who made each exchange in progress, and when: for the dashboard.
        self._flights: dict[Exchange, InFlight] = {}
        self._drained: list[Deferred[None]] = []
        self._grace_timer: IDelayedCall | None = None

    def reconfigure(self, *, extra_headers: HeaderRules, max_request_body: int) -> None:
        """
        Use these settings for requests from now on (a reloaded
        configuration); requests in progress keep theirs.
        """
        self.context = dataclasses.replace(self.context, extra_headers=extra_headers)
        self.max_request_body = max_request_body

    @property
    def in_progress(self) -> int:
        """
        How many proxied requests have not finished yet.
        """
        return len(self._in_progress)

    def in_flight(self) -> list[InFlight]:
        """
        The proxied requests in progress, oldest first.
        """
        return sorted(self._flights.values(), key=lambda flight: flight.started)

    def drain(self, grace: float) -> Deferred[None]:
        """
        Refuse new requests, and wait for those in progress to finish, for
        at most ``grace`` seconds; for a shutdown that does not cut a
        generation short.  Those still running then are ended (:obj:`cut`).

        :return: a Deferred that fires when they all finished or were
            ended, never failing.
        """
        self.draining = True
        self.limits.close(SHUTTING_DOWN)
        if not self._in_progress:
            return succeed(None)
        self.log.info(
            "waiting up to {grace} for {count} request(s) in progress to finish",
            grace=format_duration(grace),
            grace_seconds=grace,
            count=len(self._in_progress),
        )
        drained: Deferred[None] = Deferred()
        self._drained.append(drained)
        if self._grace_timer is None:
            self._grace_timer = self._clock.callLater(grace, self._grace_over, grace)
        return drained

    def _grace_over(self, grace: float) -> None:
        self._grace_timer = None
        self.log.warn(
            "{count} request(s) still in progress after {grace}; ending them",
            count=len(self._in_progress),
            grace=format_duration(grace),
            grace_seconds=grace,
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
        self.limits.close(SHUTTING_DOWN)
        self._stop_grace_timer()
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

    def _stop_grace_timer(self) -> None:
        if self._grace_timer is not None and self._grace_timer.active():
            self._grace_timer.cancel()
        self._grace_timer = None

    def _release_drains(self) -> None:
        drained, self._drained = self._drained, []
        for waiter in drained:
            waiter.callback(None)

    def _finished(self, exchange: Exchange) -> None:
        """
        ``exchange`` is over: a drain waiting for the last one is too.
        """
        self._in_progress.discard(exchange)
        self._flights.pop(exchange, None)
        self._tickets.pop(exchange, FREE).release()
        if not self._in_progress:
            self._stop_grace_timer()
            self._release_drains()

    def render(self, request: Request) -> bytes | int:
        """
        Forward the request, or answer it with ccm's own error.

        ``request.path`` is the normalized path :obj:`ccm.web.tree.Root` routed
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
                peer=client_host(request),
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
                peer=client_host(request),
                error=error.message,
            )
            return render_error(request, error)
        self.identity.observe(request.getHeader(b"user-agent"))
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
        content = _content(request)
        content.seek(0)
        # A large body is sent from twisted.web's temporary file, never
        # held in memory.
        body = content if size > IN_MEMORY_BODY_BYTES else content.read()
        if not counts_against_limits(request.method, request.path):
            self._start(request, caller, body, FREE)
            return NOT_DONE_YET
        admitted = self.limits.admit(caller.name)
        if not admitted.called:
            # Queued: a client that goes away leaves the queue.
            request.notifyFinish().addErrback(lambda _: admitted.cancel())
        admitted.addCallback(lambda ticket: self._start(request, caller, body, ticket))
        admitted.addErrback(lambda failure: self._refused(request, failure))
        return NOT_DONE_YET

    def _refused(self, request: Request, failure: Failure) -> None:
        """
        Answer a request the per-user limits refused, unless its client
        left the queue; or one whose start hit a bug.
        """
        if failure.check(CancelledError):
            return
        if failure.check(APIError):
            error = failure.value
            assert isinstance(error, APIError)
            send_error(request, error)
            return
        # A bug: the site's own net logs it and answers 500.
        request.processingFailed(failure)

    def _start(
        self, request: Request, caller: Caller, body: IO[bytes] | bytes, ticket: Ticket
    ) -> None:
        """
        Start the exchange of an admitted request, which holds ``ticket``
        until it ends.
        """
        exchange = Exchange(
            self.context, request, caller, self._pool_for(caller), body, self._finished
        )
        self._tickets[exchange] = ticket
        self._in_progress.add(exchange)
        self._flights[exchange] = InFlight(
            caller.name, request.method.decode("ascii"), request.path.decode("ascii", "replace"),
            self._clock.seconds(),
        )
        exchange.start()
