# -*- test-case-name: tests.web.test_connections -*-
"""
How long a connection may take: deadlines for slow clients.

:obj:`CcmChannel` replaces twisted.web's idle timer, which every byte restarts
(a client sending its head one byte a second kept a connection for hours),
with deadlines that bytes do not move: the request head within
``request_head_timeout``, the body at ``request_body_min_rate`` after
``request_body_grace``, an idle kept-alive connection for
``keep_alive_timeout``.  A head over ``max_request_head`` gets a 431 instead
of a silent close.  While a request is being answered no deadline runs: a
response being streamed, to a slow reader too, is never cut here.

A connection answered with an error (408, 431) reads and discards what the
client still sends for :obj:`LINGER_SECONDS` before it closes, as a refused one
does (:obj:`ccm.web.admission`).  The caps on open connections are there too.
"""

from __future__ import annotations

import enum
from typing import Callable

from twisted.internet.interfaces import IReactorTime, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request

from ccm.web.admission import LINGER_SECONDS, ConnectionGate
from ccm.config.model import ConnectionLimits
from ccm.web.errors import APIError, error_response
from ccm.units import format_duration

#: The shortest wait between two checks of a body's progress, so that a
#: client trickling bytes at exactly the minimum rate costs one timer a
#: second, not one per byte.
BODY_CHECK_SECONDS = 1.0


class _Phase(enum.Enum):
    HEAD = "waiting for a request head"
    BODY = "reading a request body"
    ANSWERING = "answering a request"
    IDLE = "idle between requests"
    CLOSING = "closing after an error"


# Phases whose deadline stops while ccm itself has stopped reading because
# the client does not read what ccm sends.
_PAUSABLE = (_Phase.HEAD, _Phase.BODY, _Phase.IDLE)


class CcmChannel(HTTPChannel):
    """
    An HTTP/1.1 channel whose deadlines follow the phase of the connection
    (see the module docstring) and whose oversized heads get a 431.

    The one timer of :obj:`TimeoutMixin` holds the deadline of the current
    phase; :obj:`resetTimeout`, which twisted.web calls on every byte, does
    nothing.  When the client stops reading what ccm sends, twisted.web
    stops reading from it; the deadline of the head, body or idle phase
    then stops too, and resumes where it was, so that a client reading a
    response slowly is never cut for a slow request.

    :obj:`CcmSite` sets ``limits``, ``clock``, ``gate`` and ``release`` before the
    connection is made.
    """

    #: A client's connection, which can be aborted.
    transport: ITCPTransport | None

    limits = ConnectionLimits()
    clock: IReactorTime | None = None
    gate: ConnectionGate | None = None
    release: Callable[[], None] | None = None

    _phase = _Phase.HEAD
    _phase_started = 0.0
    _paused_at: float | None = None
    _request_started = False
    _body_bytes = 0

    def _now(self) -> float:
        clock = self.clock
        if clock is None:
            clock = self.factory.reactor
        return clock.seconds()

    def connectionMade(self) -> None:
        self.MAX_LENGTH = self.limits.max_request_head
        self.totalHeadersSize = self.limits.max_request_head
        super().connectionMade()
        self._enter(_Phase.HEAD)

    def resetTimeout(self) -> None:
        """
        Nothing: bytes do not move a deadline.
        """

    def dataReceived(self, data: bytes) -> None:
        if self._phase is _Phase.CLOSING:
            return  # Discarded while lingering.
        if self._phase is _Phase.IDLE:
            self._enter(_Phase.HEAD)
        if self._phase is _Phase.HEAD:
            self._request_started = True
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> object:
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._head_too_large()
            return True  # Stops LineReceiver's loop over buffered lines.
        return super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._head_too_large()

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        if self.length != 0:
            self._enter(_Phase.BODY)

    def rawDataReceived(self, data: bytes) -> None:
        if self._phase is _Phase.BODY:
            self._body_bytes += len(data)
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        # Before twisted.web dispatches the request, which may finish it at
        # once and call requestDone.
        self._enter(_Phase.ANSWERING)
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        if self.persistent and self._phase is not _Phase.CLOSING:
            # Before twisted.web replays pipelined bytes, which start a head.
            self._enter(_Phase.IDLE)
        super().requestDone(request)

    def pauseProducing(self) -> None:
        super().pauseProducing()
        if self._phase in _PAUSABLE and self._paused_at is None:
            self._paused_at = self._now()
            self.setTimeout(None)

    def resumeProducing(self) -> None:
        super().resumeProducing()
        if self._paused_at is not None:
            self._phase_started += self._now() - self._paused_at
            self._paused_at = None
            self._schedule()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if self.release is not None:
            self.release()

    def _enter(self, phase: _Phase) -> None:
        self._phase = phase
        self._phase_started = self._now()
        self._body_bytes = 0
        if phase is _Phase.IDLE:
            self._request_started = False
        paused = self._waitingForTransport and phase in _PAUSABLE
        self._paused_at = self._phase_started if paused else None
        self._schedule()

    def _deadline(self) -> float | None:
        limits = self.limits
        phase = self._phase
        if phase is _Phase.HEAD and limits.request_head_timeout:
            return self._phase_started + limits.request_head_timeout
        if phase is _Phase.BODY and limits.request_body_min_rate:
            return (
                self._phase_started
                + limits.request_body_grace
                + self._body_bytes / limits.request_body_min_rate
            )
        if phase is _Phase.IDLE:
            return self._phase_started + limits.keep_alive_timeout
        if phase is _Phase.CLOSING:
            return self._phase_started + LINGER_SECONDS
        return None

    def _schedule(self) -> None:
        deadline = None if self._paused_at is not None else self._deadline()
        if deadline is None:
            if self._phase is not _Phase.ANSWERING:
                self.setTimeout(None)
            # While answering, a timer left from the head or body fires
            # into nothing (timeoutConnection finds no deadline), and the
            # idle phase after moves it rather than setting a new one: two
            # timer operations fewer a request.
            return
        minimum = BODY_CHECK_SECONDS if self._phase is _Phase.BODY else 0.0
        self.setTimeout(max(deadline - self._now(), minimum))

    def timeoutConnection(self) -> None:
        """
        The deadline of the current phase may have passed: act on it.
        """
        deadline = self._deadline()
        if deadline is None or self._paused_at is not None:
            return
        if self._now() < deadline:
            # A body that moved since the last check earned more time.
            self._schedule()
            return
        limits = self.limits
        if self._phase is _Phase.HEAD and self._request_started:
            self._answer(
                APIError(
                    408,
                    "timeout_error",
                    "the request head did not arrive within "
                    f"{format_duration(limits.request_head_timeout)} (request_head_timeout)",
                )
            )
        elif self._phase is _Phase.HEAD:
            self._report(
                "closed",
                f"no request within {format_duration(limits.request_head_timeout)}",
            )
            self._close()
        elif self._phase is _Phase.BODY:
            self._answer(
                APIError(
                    408,
                    "timeout_error",
                    "the request body arrived slower than "
                    f"{limits.request_body_min_rate} bytes per second "
                    "(request_body_min_rate)",
                )
            )
        else:
            self._close()

    def _head_too_large(self) -> None:
        self._answer(
            APIError(
                431,
                "request_too_large",
                "the request line and headers exceed ccm's limit of "
                f"{self.limits.max_request_head} bytes (max_request_head)",
                headers=(("x-should-retry", "false"),),
            )
        )

    def _answer(self, error: APIError) -> None:
        """
        Answer ``error`` and linger, reading and discarding, before closing.
        """
        self._report("closed", error.message)
        self.persistent = False
        assert self.transport is not None
        self.transport.write(error_response(error))
        self._enter(_Phase.CLOSING)

    def _close(self) -> None:
        """
        Close as twisted.web closes a timed-out connection: cleanly, and by
        force if that has not worked within ``abortTimeout``.
        """
        self.setTimeout(None)
        if self.abortTimeout is not None and self._abortingCall is None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()

    def _report(self, kind: str, reason: str) -> None:
        if self.gate is not None:
            assert self.transport is not None
            self.gate.report(kind, self.transport.getPeer(), reason)
