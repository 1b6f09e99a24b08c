# -*- test-case-name: tests.web.test_watch -*-
"""
``GET /ccm/v1/status?watch=true``: a status answer that stays open and
sends a new line each time the answer changes.

The response is newline-delimited JSON (``application/x-ndjson``): the
first line is the answer at once, and each later line is the whole answer
again, written only when it differs from the last line sent.  Changes are
pushed: the watch subscribes to the credentials its answer is about
(:obj:`ccm.pool.observers`), and recomputes in the reactor's next turn after
one of them changed, so that a burst of writes gives one line.  A timer
covers what changes with time alone (a reset passing, a limit ending).

An idle watch sends an empty line every :obj:`KEEPALIVE_SECONDS`, so that
proxies that close quiet connections leave it open and a client that
vanished without closing is found out by the failing writes; each of these
ticks also recomputes the answer, which catches what no credential tells
(a session placed by a request that got no answer, a failed refresh that
may be tried again).  A reload tells every watch itself
(:obj:`StatusWatches.changed`).  A client that does not read is not
written to: the watch pauses, and sends the latest answer when it reads
again.

The watches of one service are kept by :obj:`StatusWatches`, which bounds them
per caller and ends them all at shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from ccm.pool.observers import Observer
from ccm.web.errors import APIError

#: How long a watch stays silent before it sends an empty line: under the
#: 60 seconds after which common proxies (nginx, load balancers) close an
#: idle connection.
KEEPALIVE_SECONDS = 30.0
#: How many watches one caller (a user, or everyone when no users are
#: configured) may keep open at once.
MAX_WATCHES_PER_CALLER = 32

NDJSON = b"application/x-ndjson"

WATCHES_ENDED = APIError(
    503,
    "api_error",
    "ccm is shutting down and opens no new status watches; reconnect in a moment",
    headers=(("x-should-retry", "true"),),
)


class Observable(Protocol):
    """
    Something a watch can be told about: a credential.
    """

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """
        Call ``observer`` after each change; return what ends that.
        """


@dataclass(frozen=True)
class Snapshot:
    """
    The answer of a watch at one moment.

    :ivar line: the answer, one JSON document ending with a newline.
    :ivar sources: what the answer is computed from, to be told about.
    :ivar changes_at: when the answer next changes with time alone, or None.
    """

    line: bytes
    sources: tuple[Observable, ...]
    changes_at: float | None


#: Computes a watch's answer now; raises :obj:`APIError` when the caller may
#: no longer see it (its token is gone since a reload).
Answer = Callable[[], Snapshot]


@implementer(IPushProducer)
class StatusWatch:
    """
    One open watch: the response of one request, its subscriptions and its
    timers.  It is the request's producer, so that twisted.web tells it when
    the client stops reading and when the connection is gone.

    :param answer: computes the answer.
    :param ended: called once, when the watch is over, however it ended.
    """

    log = Logger()

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        answer: Answer,
        ended: Callable[[StatusWatch], None],
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._request = request
        self._clock = clock
        self._answer = answer
        self._ended = ended
        self._keepalive = keepalive_seconds
        self._subscriptions: dict[Observable, Callable[[], None]] = {}
        self._soon: IDelayedCall | None = None
        self._timer: IDelayedCall | None = None
        self._last_line = b""
        self._written_at = clock.seconds()
        self._paused = False
        self.over = False

    def start(self) -> None:
        """
        Send the headers and the first line, and start following changes.
        """
        request = self._request
        request.setHeader(b"content-type", NDJSON)
        request.setHeader(b"cache-control", b"no-store")
        # nginx would otherwise buffer the lines of a proxied response.
        request.setHeader(b"x-accel-buffering", b"no")
        request.notifyFinish().addBoth(self._connection_ended)
        request.registerProducer(self, True)
        self._refresh(keepalive=False)

    def end(self, why: str) -> None:
        """
        End the response properly now (the client sees a complete answer),
        because of ``why``.
        """
        if self.over:
            return
        self.log.debug("status watch ended: {why}", why=why)
        self._stop()
        self._request.unregisterProducer()
        self._request.finish()

    def changed(self) -> None:
        """
        What the answer is computed from may have changed: recompute in the
        next turn, once for a burst.
        """
        if self._soon is None and not self.over:
            self._soon = self._clock.callLater(0, self._changed_now)

    def _changed_now(self) -> None:
        self._soon = None
        self._refresh(keepalive=False)

    def _tick(self) -> None:
        self._timer = None
        self._refresh(keepalive=True)

    def _refresh(self, keepalive: bool) -> None:
        """
        Write the answer when it changed, else an empty line when
        ``keepalive`` asks for it and the watch has been silent for long
        enough; then follow the answer's sources and set the next timer.
        """
        if self.over or self._paused:
            return
        try:
            snapshot = self._answer()
        except APIError as error:
            self.end(error.message)
            return
        except Exception:
            self.log.failure("computing a status watch's answer failed")
            self.end("a bug in ccm")
            return
        now = self._clock.seconds()
        if snapshot.line != self._last_line:
            self._last_line = snapshot.line
            self._write(snapshot.line, now)
        elif keepalive and now - self._written_at >= self._keepalive:
            self._write(b"\n", now)
        self._follow(snapshot.sources)
        self._schedule(snapshot.changes_at, now)

    def _write(self, data: bytes, now: float) -> None:
        self._written_at = now
        self._request.write(data)

    def _follow(self, sources: tuple[Observable, ...]) -> None:
        """
        Be told about exactly ``sources`` (a reload may change a pool's
        members).
        """
        for source in [s for s in self._subscriptions if s not in sources]:
            self._subscriptions.pop(source)()
        for source in sources:
            if source not in self._subscriptions:
                self._subscriptions[source] = source.subscribe(self.changed)

    def _schedule(self, changes_at: float | None, now: float) -> None:
        self._cancel_timer()
        if self._paused:
            return  # A write just filled the client's buffer; resuming looks again.
        due = self._written_at + self._keepalive
        if changes_at is not None:
            due = min(due, changes_at)
        self._timer = self._clock.callLater(max(0.0, due - now), self._tick)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def pauseProducing(self) -> None:
        """
        The client stopped reading: write nothing until it reads again.
        """
        self._paused = True
        self._cancel_timer()

    def resumeProducing(self) -> None:
        """
        The client reads again: send the answer if it changed meanwhile.
        """
        if self._paused:
            self._paused = False
            self._refresh(keepalive=True)

    def stopProducing(self) -> None:
        """
        The connection is gone.
        """
        self._stop()

    def _connection_ended(self, result: None | Failure) -> None:
        """
        The response is over: finished by :obj:`end`, or its connection lost.
        """
        self._stop()

    def _stop(self) -> None:
        """
        Let go of everything: subscriptions, timers, and the registry's
        entry.  Once only.
        """
        if self.over:
            return
        self.over = True
        for unsubscribe in self._subscriptions.values():
            unsubscribe()
        self._subscriptions.clear()
        self._cancel_timer()
        if self._soon is not None and self._soon.active():
            self._soon.cancel()
        self._soon = None
        self._ended(self)


class StatusWatches:
    """
    The open status watches of one service.

    :param max_per_caller: how many watches one caller may keep open.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        max_per_caller: int = MAX_WATCHES_PER_CALLER,
    ) -> None:
        self._clock = clock
        self._keepalive = keepalive_seconds
        self._max_per_caller = max_per_caller
        self._open: dict[StatusWatch, str] = {}
        self.closed = False

    def __len__(self) -> int:
        """
        How many watches are open.
        """
        return len(self._open)

    def open(self, request: Request, caller: str, answer: Answer) -> int:
        """
        Answer ``request`` with a watch of ``answer`` for ``caller`` (a user's
        name, or the empty string for everyone when no users are
        configured).

        :return: ``NOT_DONE_YET``, for ``render`` to return.
        :raises APIError: when the caller has too many watches open, or
            ccm is shutting down.
        """
        if self.closed:
            raise WATCHES_ENDED
        if sum(1 for key in self._open.values() if key == caller) >= self._max_per_caller:
            self.log.warn(
                "refused a status watch for {user}: {count} already open",
                user=caller or "(anonymous)",
                count=self._max_per_caller,
            )
            raise APIError(
                429,
                "rate_limit_error",
                f"too many status watches open for you (at most {self._max_per_caller}); "
                "close one first",
                headers=(("x-should-retry", "false"),),
            )
        watch = StatusWatch(request, self._clock, answer, self._forget, self._keepalive)
        self._open[watch] = caller
        watch.start()
        return NOT_DONE_YET

    def _forget(self, watch: StatusWatch) -> None:
        self._open.pop(watch, None)

    def changed(self) -> None:
        """
        Something no credential announces changed (a reload: users, pools,
        thresholds): every watch looks at its answer again.
        """
        for watch in list(self._open):
            watch.changed()

    def end_all(self) -> int:
        """
        End every open watch now and open no more (ccm is shutting down):
        each client sees its answer end properly, and nothing of them holds
        the shutdown.

        :return: how many were ended.
        """
        self.closed = True
        watches = list(self._open)
        for watch in watches:
            watch.end("ccm is shutting down")
        return len(watches)
