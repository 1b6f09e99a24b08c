# -*- test-case-name: tests.proxy.test_exchange -*-
"""
One proxied request, from choosing a credential to the last byte: the
pool's choice, a retry on another credential after a 429, the upstream
request under its response-header timeout, a 400, 401 or 403 read first
(:obj:`ccm.proxy.rejections`), the answer relayed with
:obj:`ccm.proxy.relay.Relay`, its usage counted, one log line, and its
events told to the context's observer (the metrics) and its shares
(:obj:`ccm.shares.gate`, which may refuse the caller first).

Everything the exchange needs from the service comes in its
:obj:`ExchangeContext`; the resource that starts it learns of its end through
a callback, and so does the exchange of its relay's.
"""

from __future__ import annotations

from typing import IO, Any, Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse
from twisted.web.server import Request

from ccm.accounting.counters import UsageRecord
from ccm.credentials.credential import Credential, CredentialUnavailable
from ccm.proxy.accesslog import log_end
from ccm.pool.select import Pool
from ccm.proxy.context import ExchangeContext, Route
from ccm.proxy.facts import request_facts
from ccm.proxy.failures import (
    ENDED_BY_SHUTDOWN,
    FAST_MODE_THROUGH_POOL,
    closed_before_answering,
    headers_timed_out,
    upstream_error,
)
from ccm.proxy.headers import client_response_headers, upstream_request_headers
from ccm.proxy.metering import ResponseUsage
from ccm.proxy.observer import MOVED_AFTER_429, MOVED_AFTER_REJECTION, ExchangeEnd
from ccm.proxy.rejections import INSPECTED_STATUSES, AnswerCheck, Step, broken_answer
from ccm.proxy.relay import Discard, Relay, request_data
from ccm.units import format_duration
from ccm.upstream.client import forward
from ccm.web.auth import Caller
from ccm.web.errors import INTERNAL_ERROR, APIError, answer_bug, send_error
from ccm.web.paths import forwarded_target

class Exchange:
    """
    One proxied request, from choosing a credential to the last byte.

    :param pool: the pool that serves the caller.
    :param body: the request body, or for a large one twisted.web's
        temporary file holding it.
    :param finished: called with this exchange when the client's request
        is over, however it ended.
    """

    def __init__(
        self,
        context: ExchangeContext,
        request: Request,
        caller: Caller,
        pool: Pool,
        body: bytes | IO[bytes],
        finished: Callable[[Exchange], None],
    ) -> None:
        self._context = context
        self.request = request
        self._caller = caller
        self._pool = pool
        self._body = body
        self._finished = finished
        self._started = context.clock.seconds()
        self._facts = request_facts(request, body)
        self._credential: Credential | None = None
        self._status = 0
        self._bytes_sent = 0
        self._outcome = ""
        self._by_ccm = False
        self._client_gone = False
        # Any: treq's request gives a Deferred of its private _Response (an
        # IResponse proxy), which Deferred[IResponse] does not accept.
        self._upstream: Deferred[Any] | None = None
        self._relay: Relay | None = None
        self._route: Route | None = None
        self._metered: ResponseUsage | None = None
        self._tried: list[str] = []
        self._usage: UsageRecord | None = None
        self._check: AnswerCheck | None = None
        self._recovered: set[str] = set()
        self._sent_token = ""
        self._share_keys: list[int] = []

    def start(self) -> None:
        """
        Go: from now on the exchange answers the request, whatever happens.
        """
        self.request.notifyFinish().addBoth(self._client_finished)
        if self._pool.is_balancer and self._facts.asks_fast_mode:
            self._fail(FAST_MODE_THROUGH_POOL)
            return
        self._attempt()

    def _attempt(self, chosen: Credential | None = None) -> None:
        """
        Send the request with ``chosen``, or else the pool's choice among the
        credentials not tried yet for it.
        """
        try:
            self._context.shares.check(self._caller, self._pool)
            if chosen is None:
                chosen = self._pool.place(self._facts.call, exclude=self._tried)
            self._credential = chosen
        except APIError as error:
            self._fail(error)
            return
        self._credential.access_token().addCallbacks(self._send, self._no_token).addErrback(
            self._crashed
        )

    def _retry_after_429(self, credential: Credential, response: IResponse) -> bool:
        """
        After a 429 and before any byte reached the client, move the request
        to another usable credential of the pool that has not been tried.

        :return: whether the 429 was handled here (retried, or answered with
            ccm's own 429); False passes it on unchanged.
        """
        now = self._context.clock.seconds()
        limited_until = credential.rate_limits.observe_rejection(response.headers, now)
        self._tried.append(credential.tag)
        try:
            # Asked once: a round robin's turn moves once per placement.
            chosen = self._pool.place(self._facts.call, exclude=self._tried)
        except APIError as error:
            if limited_until is None:
                # A passing capacity throttle, and nowhere else to go: the
                # client may retry, as the upstream's answer says.
                return False
            response.deliverBody(Discard())
            self._fail(error)
            return True
        if limited_until is None:
            self._context.log.info(
                "429 from credential {tag}; retrying on another credential", tag=credential.tag
            )
        else:
            self._context.log.info(
                "429 from credential {tag} (limited for {limited_for}); retrying on another "
                "credential",
                tag=credential.tag,
                limited_for=format_duration(limited_until - now),
                limited_seconds=limited_until - now,
            )
        response.deliverBody(Discard())
        self._context.observer.moved(credential.tag, MOVED_AFTER_429)
        self._attempt(chosen)
        return True

    def _no_token(self, failure: Failure) -> None:
        if self._client_gone:
            return
        assert self._credential is not None
        if failure.check(CredentialUnavailable):
            self._fail(self._credential.unavailable_error(str(failure.value)))
            return
        self._context.log.failure("getting an access token failed", failure=failure)
        self._fail(APIError(500, "api_error", "ccm could not get an access token"))

    def _send(self, access_token: str) -> None:
        if self._client_gone:
            return
        context, request = self._context, self.request
        assert self._credential is not None
        self._route = context.routes[self._credential.tag]
        self._sent_token = access_token
        headers = upstream_request_headers(
            request.requestHeaders, access_token, context.extra_headers
        )
        # request.path is normalized (see ccm.web.tree.Root); the client's
        # request target is never sent as it is.
        upstream = forward(
            self._route.http_client,
            request.method,
            context.upstream_url,
            forwarded_target(request.path, request.uri),
            headers,
            request_data(self._body, request.method, self._context.cooperator),
        )
        upstream.addTimeout(
            context.timeouts.response_headers, context.clock, onTimeoutCancel=headers_timed_out
        )
        self._upstream = upstream
        upstream.addCallbacks(self._got_response, self._upstream_failed).addErrback(self._crashed)

    def _got_response(self, response: IResponse) -> None:
        self._upstream = None
        credential = self._credential
        assert credential is not None
        if self._client_gone:
            response.deliverBody(Discard())
            return
        if response.code == 429 and self._retry_after_429(credential, response):
            return
        self._pool.served(self._facts.call, credential.tag, response.code, response.headers)
        now = self._context.clock.seconds()
        if 200 <= response.code < 300:
            # It served: whatever limit a 429 set has ended.
            credential.rate_limits.observe_success(response.headers, now)
        else:
            credential.rate_limits.observe(response.headers, now)
        self._share_keys.append(self._context.shares.started(self._caller, credential))
        if response.code in INSPECTED_STATUSES:
            # Read before the client sees any of it (see ccm.proxy.rejections).
            self._check = AnswerCheck.read(
                response,
                credential,
                self._context,
                sent_token=self._sent_token,
                recovered=self._recovered,
                too_large=lambda: Discard() if self._client_gone else self._start_relay(response),
            )
            self._check.decision.addCallback(self._take_step, credential, response).addErrback(
                self._crashed
            )
            return
        response.deliverBody(self._start_relay(response))

    def _answer_headers(self, response: IResponse) -> None:
        """Give the client the status and headers of ``response``."""
        request = self.request
        self._status = response.code
        self._by_ccm = False
        assert self._credential is not None
        self._context.observer.answered(
            self._credential.tag, self._context.clock.seconds() - self._started
        )
        request.setResponseCode(response.code, response.phrase or None)
        request.defaultContentType = None
        headers = client_response_headers(response.headers, request.responseHeaders)
        shared = self._context.shares.client_headers(self._caller, self._pool, response.code, headers)
        if shared is not headers:
            request.responseHeaders = shared

    def _start_relay(self, response: IResponse) -> Relay:
        """
        Send the client the status and headers of ``response``; the relay of its body.
        """
        request = self.request
        self._answer_headers(response)
        # Send the status and headers now: the client learns of the answer
        # as soon as ccm does, not with the first body bytes.
        request.write(b"")
        content_type = response.headers.getRawHeaders(b"content-type", [b""])[0].lower()
        assert self._route is not None
        self._metered = ResponseUsage.of(self._route.recorder, response, content_type)
        self._relay = Relay(
            request,
            clock=self._context.clock,
            idle_timeout=self._context.timeouts.stream_idle,
            is_event_stream=b"text/event-stream" in content_type,
            meter=self._metered.meter if self._metered is not None else None,
            sent=self._sent,
            ended=self._body_ended,
        )
        return self._relay

    def _take_step(
        self, decision: tuple[Step, bytes], credential: Credential, response: IResponse
    ) -> None:
        step, body = decision
        if self._client_gone:
            return
        if step is Step.RETRY:
            credential.access_token().addCallbacks(self._send, self._no_token).addErrback(
                self._crashed
            )
        elif step is Step.MOVE:
            self._tried.append(credential.tag)
            self._context.observer.moved(credential.tag, MOVED_AFTER_REJECTION)
            self._attempt()
        elif step is Step.BROKEN:
            self._fail(broken_answer(self._context.upstream_url, response.code))
        else:
            self._answer_headers(response)
            self._sent(len(body))
            self.request.write(body)
            self.request.finish()

    def _sent(self, count: int) -> None:
        self._bytes_sent += count

    def _body_ended(self, problem: str | None, warn: bool) -> None:
        """
        The relay ended the body (see :obj:`Relay`): count what it used, and
        note why it ended early.
        """
        if self._metered is not None:
            self._usage = self._metered.record(self._facts, self._caller.name, self._context.log)
        if problem is None or self._client_gone:
            return
        self._outcome = problem
        if warn:
            self._context.log.warn(
                "{path}: {problem} after {bytes} bytes",
                path=self.request.path.decode("ascii", "replace"),
                problem=problem,
                bytes=self._bytes_sent,
            )

    def _upstream_failed(self, failure: Failure) -> None:
        self._upstream = None
        if self._client_gone:
            return
        upstream_url = self._context.upstream_url
        error = upstream_error(failure, upstream_url)
        if error == closed_before_answering(upstream_url):
            self._context.log.info(
                "upstream failure detail: {detail}", detail=failure.getErrorMessage()
            )
        self._fail(error)

    def _crashed(self, failure: Failure) -> None:
        """
        A bug in ccm: log it, and end the client's request rather than
        leave it hanging, as :obj:`ccm.web.site.LimitedRequest` does for bugs
        in ``render``.
        """
        self._context.log.failure(
            "proxying {path} failed", failure=failure, path=self.request.path
        )
        if self._client_gone or self.request.finished:
            return
        self._status = INTERNAL_ERROR.status
        self._outcome = INTERNAL_ERROR.message
        self._by_ccm = True
        answer_bug(self.request)

    def _fail(self, error: APIError) -> None:
        self._status = error.status
        self._outcome = error.message
        self._by_ccm = True
        send_error(self.request, error)

    def cut(self) -> None:
        """
        ccm is stopping and cannot wait any longer: end this request now
        (see :obj:`ccm.proxy.resource.ProxyResource.cut`).
        """
        if self._client_gone:
            return
        if self._relay is not None:
            self._relay.cut()
            return
        # Still getting a token or waiting for the upstream's headers.
        self._fail(ENDED_BY_SHUTDOWN)
        # The request is answered: whatever comes later (a token, the
        # cancellation below) must not write to it, as if the client had
        # gone.
        self._client_gone = True
        if self._upstream is not None:
            self._upstream.cancel()

    def _client_finished(self, result: object) -> None:
        try:
            if isinstance(result, Failure):
                self._client_gone = True
                self._outcome = self._outcome or "client went away"
                if self._upstream is not None:
                    self._upstream.cancel()
                elif self._relay is not None:
                    self._relay.client_went_away()
                elif self._check is not None:
                    self._check.stop()
            self._log()
        finally:
            # Whatever failed above, the exchange is over: a shutdown must
            # not wait for it.
            self._finished(self)

    def _log(self) -> None:
        end = ExchangeEnd(
            user=self._caller.name,
            model=self._facts.model,
            credential=self._credential.tag if self._credential is not None else "",
            status=self._status,
            duration=self._context.clock.seconds() - self._started,
            usage=self._usage,
            by_ccm=self._by_ccm,
        )
        counted = self._metered is not None and self._metered.counted
        log_end(self._context.log, self.request, end, self._bytes_sent, self._outcome, counted)
        self._context.observer.ended(end)
        self._context.shares.ended(self._share_keys, self._usage)
