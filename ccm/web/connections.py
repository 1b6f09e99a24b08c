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

One timer per connection checks its deadlines.  It may fire early, and then
re-arms, but it is never moved sooner: a reactor finds a call it must move
sooner by a search of all its calls, which grows with the open connections.
A kept-alive connection makes one timer in each :obj:`_timer_horizon`, not
one per request (see :obj:`CcmChannel`).
"""

from __future__ import annotations

import enum
import math
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
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


def _timer_horizon(limits: ConnectionLimits) -> float:
    """
    How far ahead a connection's timer may be armed: the shortest time from
    entering a phase to its first check (the head timeout, a body's first
    check, the idle bound).  A timer armed no further ahead is due at or
    before the deadline of any phase entered after it, so that a phase
    change never has to move it sooner.  Closing after a 431 is left out,
    or every connection would wake every :obj:`LINGER_SECONDS`.
    """
    bounds = [limits.request_head_timeout, limits.keep_alive_timeout]
    if limits.request_body_min_rate:
        bounds.append(max(limits.request_body_grace, BODY_CHECK_SECONDS))
    return min((bound for bound in bounds if bound > 0), default=math.inf)


class CcmChannel(HTTPChannel):
    """
    An HTTP/1.1 channel whose deadlines follow the phase of the connection
    (see the module docstring) and whose oversized heads get a 431.

    The channel keeps a timer of its own, due at or before the deadline of
    the current phase and at most :obj:`_timer_horizon` ahead; when it
    fires, :obj:`timeoutConnection` acts if the deadline has passed and
    otherwise arms a new one.  A phase change leaves an armed timer alone
    (the new deadline is never sooner than it); only closing after a 431
    cancels it for a new one.  A kept-alive connection thus makes one timer
    each horizon however many requests it carries, and never moves one
    sooner, which costs a reactor a search of all its calls.

    :obj:`TimeoutMixin`'s timer stays unused (the site sets no
    ``timeOut``): twisted.web cancels and restores it around each request.
    :obj:`resetTimeout`, which twisted.web calls on every byte, does
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
    _timer: IDelayedCall | None = None
    _horizon = math.inf

    def _clock(self) -> IReactorTime:
        clock = self.clock
        if clock is None:
            clock = self.factory.reactor
        return clock

    def _now(self) -> float:
        return self._clock().seconds()

    def connectionMade(self) -> None:
        self.MAX_LENGTH = self.limits.max_request_head
        self.totalHeadersSize = self.limits.max_request_head
        self._horizon = _timer_horizon(self.limits)
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
            # An armed timer stays: it fires into nothing, or after the
            # resume, when the deadline is only later than it was.
            self._paused_at = self._now()

    def resumeProducing(self) -> None:
        super().resumeProducing()
        if self._paused_at is not None:
            self._phase_started += self._now() - self._paused_at
            self._paused_at = None
            self._schedule()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._disarm()
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
        """
        Have a timer due at or before the current phase's deadline, keeping
        an armed one that is (see the class docstring).
        """
        if self._paused_at is not None or self._phase is _Phase.ANSWERING:
            return  # A timer left fires into nothing; the next phase keeps it.
        deadline = self._deadline()
        if deadline is None:
            self._disarm()  # The phase's bound is turned off.
            return
        now = self._now()
        if self._phase is _Phase.BODY:
            # A body trickling at the minimum rate is checked once a
            # second, not once a byte.
            deadline = max(deadline, now + BODY_CHECK_SECONDS)
        timer = self._timer
        if timer is not None:
            if timer.getTime() <= deadline:
                return
            # Sooner than the horizon allowed (lingering after a 431): a
            # new timer, as a cancelled one costs the reactor little.
            timer.cancel()
        due = min(deadline, now + self._horizon)
        self._timer = self._clock().callLater(max(due - now, 0.0), self._timer_fired)

    def _disarm(self) -> None:
        """
        Cancel the timer, for good or until the next phase with a bound.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timer_fired(self) -> None:
        """
        The timer is spent, so that the next schedule arms a new one.
        """
        self._timer = None
        self.timeoutConnection()

    def timeoutConnection(self) -> None:
        """
        The deadline of the current phase may have passed: act on it, or
        arm the timer again if it came early.
        """
        deadline = self._deadline()
        if deadline is None or self._paused_at is not None:
            return
        if self._now() < deadline:
            # Early: armed a horizon ahead, or a body that moved since the
            # last check earned more time.
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
        self._disarm()
        if self.abortTimeout is not None and self._abortingCall is None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()

    def _report(self, kind: str, reason: str) -> None:
        if self.gate is not None:
            assert self.transport is not None
            self.gate.report(kind, self.transport.getPeer(), reason)
