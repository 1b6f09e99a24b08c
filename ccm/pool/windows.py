# -*- test-case-name: tests.pool.test_windows -*-
"""
A subscription's window state, and its one owner.

The state is the 5-hour and weekly windows (how much of each is used, and
when it resets), the limit a 429 out of quota set, the plan the OAuth
profile reported, and extra usage (:obj:`ccm.pool.extrausage`).  The proxy feeds it response headers and 429s, the usage
poller its polls and the profile; the pools only read it.  A :obj:`WindowState`
changes only through its ``observe_*`` and ``apply_*`` methods, and its
queries change nothing: a limit whose time has passed reads as over, and a
window whose reset time has passed reads as a new, empty one, while what
was reported stays recorded until a write replaces it.

Cooldowns heal on any signal that the window is open again: its reset time
passing, a successful response, a status of ``allowed``, or a poll started
after the 429 that finds the window under 100%.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

from twisted.web.http_headers import Headers

from ccm.pool.extrausage import ExtraUsage
# Window is known by this module's name too.
from ccm.pool.figures import FigureReader, Limit, Window as Window, WindowName, WindowReading
from ccm.pool.observers import Observer, Observers
from ccm.pool.plan import Plan


class WindowState(Protocol):
    """
    The window state of one subscription: the seam where a store shared by
    several ccm processes can replace :obj:`MemoryWindowState`.

    It is synchronous by design, so that no request waits for a store: a
    shared implementation keeps a local copy in step with the other
    processes and writes behind.  A :obj:`typing.Protocol`, not a zope
    interface: implementations are plain objects handed in by the builder,
    checked by mypy where they are passed, with nothing to adapt or
    register.
    """

    @property
    def five_hour(self) -> Window:
        """
        The 5-hour window, as last reported.
        """

    @property
    def weekly(self) -> Window:
        """
        The weekly window, as last reported.
        """

    def window(self, name: WindowName, now: float) -> Window:
        """
        Window ``name`` as it stands at ``now``, for decisions: as last
        reported, or a new, empty window once its reset time has passed.
        """

    @property
    def updated_at(self) -> float:
        """
        When headers or a poll last reported a window (Unix seconds, 0 for
        never).
        """

    @property
    def plan(self) -> Plan:
        """
        The plan the OAuth profile reported.
        """

    def limit(self, now: float) -> Limit | None:
        """
        The limit a 429 set that is still in force at ``now``, or None.
        """

    def is_limited(self, now: float) -> bool:
        """
        Whether a 429 made the subscription unusable until a time still in
        the future.
        """

    def retry_after(self, headers: Headers, now: float) -> float | None:
        """
        The delay a response asks for, in seconds, or None; see
        :obj:`FigureReader.retry_after`.
        """

    @property
    def extra_usage(self) -> ExtraUsage:
        """
        What the upstream last said about extra usage, and its pauses.
        """

    def observe_extra_usage_refusal(self, now: float) -> float:
        """
        Take the upstream's refusal of a request as third-party traffic that
        draws on extra usage; see :obj:`ExtraUsage.refused`.

        :return: when the refusal pause ends.
        """

    def observe(self, headers: Headers, now: float) -> bool:
        """
        Take a response's unified rate-limit headers, ``overage-*`` included.

        :return: whether any usable header was present.
        """

    def observe_success(self, headers: Headers, now: float) -> bool:
        """
        Take a successful response: its headers as :obj:`observe` does, and
        the end of any limit, since the credential served.

        :return: whether any usable header was present.
        """

    def observe_rejection(self, headers: Headers, now: float) -> float | None:
        """
        Take a 429: out of quota, it sets a limit.

        :return: the time the limit ends, or None for a passing throttle.
        """

    def apply_poll(
        self,
        five_hour: tuple[float, float] | None,
        weekly: tuple[float, float] | None,
        now: float,
        started: float | None = None,
    ) -> None:
        """
        Take the figures of a usage poll, each (percent used, reset in Unix
        seconds or 0 when unknown), None for a window it did not report;
        the poll was sent at ``started`` (``now`` when not given).
        """

    def apply_profile(self, plan: Plan) -> None:
        """
        Take the plan the OAuth profile reported.
        """

    def clear_cooldown(self, now: float) -> bool:
        """
        End a 429's limit and the extra-usage pauses (an admin's action);
        the windows and their thresholds stay.  :return: whether one was on.
        """

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """
        Call ``observer`` after each write from now on (a shared store:
        other processes' writes too); return what ends the subscription.
        """


class MemoryWindowState:
    """
    The window state of one subscription, held in this process's memory.
    Every figure read into it, from headers or polls, is checked against
    the bounds of :obj:`ccm.pool.figures` first.

    :param label: the credential's tag, for warnings about bad figures.
    """

    def __init__(self, label: str) -> None:
        self._reader = FigureReader(label)
        self._windows = {WindowName.FIVE_HOUR: Window(), WindowName.WEEKLY: Window()}
        self._updated_at = 0.0
        self._limit: Limit | None = None
        # When the 429 that set the limit arrived: only a poll sent after
        # it can end the limit.
        self._limit_set_at = 0.0
        self._plan = Plan()
        self._extra_usage = ExtraUsage()
        self._observers = Observers()

    @property
    def five_hour(self) -> Window:
        """
        The 5-hour window, as last reported.
        """
        return self._windows[WindowName.FIVE_HOUR]

    @property
    def weekly(self) -> Window:
        """
        The weekly window, as last reported.
        """
        return self._windows[WindowName.WEEKLY]

    def window(self, name: WindowName, now: float) -> Window:
        """
        Window ``name`` at ``now``: as last reported, or, once its known
        reset time has passed, a new, empty window (nothing used, reset
        unknown).  Nothing is changed by the read.
        """
        window = self._windows[name]
        if 0 < window.resets_at <= now:
            return Window()
        return window

    @property
    def updated_at(self) -> float:
        """
        When headers or a poll last reported a window (0 for never).
        """
        return self._updated_at

    @property
    def plan(self) -> Plan:
        """
        The plan the OAuth profile reported (empty until then).
        """
        return self._plan

    @property
    def extra_usage(self) -> ExtraUsage:
        """
        What the upstream last said about extra usage, and its pauses.
        """
        return self._extra_usage

    def observe_extra_usage_refusal(self, now: float) -> float:
        """
        A refusal as third-party traffic: a pause until the 5-hour window's
        known reset (see :obj:`ExtraUsage.refused`).
        """
        reset = self.window(WindowName.FIVE_HOUR, now).resets_at
        self._extra_usage = self._extra_usage.refused(reset, now)
        self._observers.notify()
        return self._extra_usage.refused_until

    def limit(self, now: float) -> Limit | None:
        """
        The limit a 429 set, while it is in force at ``now``.
        """
        limit = self._limit
        return limit if limit is not None and limit.until > now else None

    def is_limited(self, now: float) -> bool:
        """
        Whether a 429's limit is in force at ``now``.
        """
        return self.limit(now) is not None

    def retry_after(self, headers: Headers, now: float) -> float | None:
        """
        The delay a response asks for; see :obj:`FigureReader.retry_after`.
        """
        return self._reader.retry_after(headers, now)

    def _merge(self, name: WindowName, reading: WindowReading) -> None:
        """
        Take what a response said about window ``name``: within one window,
        utilization only grows; a later reset time starts a new window.
        """
        window = self._windows[name]
        resets_at, utilization = window.resets_at, window.utilization
        new_window = reading.resets_at is not None and reading.resets_at > resets_at
        if new_window:
            assert reading.resets_at is not None
            resets_at = reading.resets_at
        if reading.utilization is not None and (new_window or reading.utilization >= utilization):
            utilization = reading.utilization
        self._windows[name] = Window(utilization, resets_at)

    def observe(self, headers: Headers, now: float) -> bool:
        """
        Update from a response's unified rate-limit headers.  Within one
        window, utilization only grows; a later reset time starts a new
        window.  A status of ``allowed`` (or ``allowed_warning``) ends a
        429's limit: the window is open again.

        :return: whether any usable header was present.
        """
        seen = False
        for name in (WindowName.FIVE_HOUR, WindowName.WEEKLY):
            reading = self._reader.window(headers, name, now)
            if reading is not None:
                self._merge(name, reading)
                seen = True
        if self._reader.status(headers) in ("allowed", "allowed_warning"):
            self._limit = None
        self._extra_usage = self._extra_usage.observed(self._reader, headers, self.window, now)
        if seen:
            self._updated_at = now
        self._observers.notify()
        return seen

    def observe_success(self, headers: Headers, now: float) -> bool:
        """
        Update from a successful response: its headers as :obj:`observe`
        takes them, and the end of a 429's limit, whatever the headers say,
        since the credential served.

        :return: whether any usable header was present.
        """
        seen = self.observe(headers, now)
        self._limit = None
        self._observers.notify()
        return seen

    def observe_rejection(self, headers: Headers, now: float) -> float | None:
        """
        Read a 429: its rate-limit headers as :obj:`observe` does, and, when it
        is out of quota, a limit until the binding window resets (see
        :obj:`FigureReader.rejection`), never later than the reset already
        known for the window it names; an earlier limit still in force that
        ends later keeps its end.  A passing capacity throttle (no unified
        headers) sets no limit.

        :return: the time the limit ends, or None for a passing throttle.
        """
        self.observe(headers, now)
        rejection = self._reader.rejection(headers, now)
        if rejection is None:
            return None
        if rejection.window is not None:
            known = self._windows[rejection.window].resets_at
            if known > now:
                rejection = dataclasses.replace(rejection, until=min(rejection.until, known))
        current = self.limit(now)
        until = max(current.until if current is not None else 0.0, rejection.until)
        self._limit = dataclasses.replace(rejection, until=until)
        self._limit_set_at = now
        self._observers.notify()
        return until

    def apply_poll(
        self,
        five_hour: tuple[float, float] | None,
        weekly: tuple[float, float] | None,
        now: float,
        started: float | None = None,
    ) -> None:
        """
        Take the figures of a usage poll: they replace what the headers
        said, and may go down.  A figure out of bounds is ignored, the
        others still apply.

        A poll sent at ``started`` (``now`` when not given), after the 429
        that set a limit, ends that limit when it finds the limit's window
        under 100% (every window it reports, for a limit naming none).
        """
        open_windows: dict[WindowName, bool] = {}
        for name, figures in ((WindowName.FIVE_HOUR, five_hour), (WindowName.WEEKLY, weekly)):
            reading = self._reader.poll_window(name, figures, now)
            if reading is None:
                continue
            if reading.utilization is not None:
                open_windows[name] = reading.utilization < 100.0
            window = self._windows[name]
            self._windows[name] = Window(
                window.utilization if reading.utilization is None else reading.utilization,
                window.resets_at if reading.resets_at is None else reading.resets_at,
            )
        self._updated_at = now
        limit = self._limit
        sent = now if started is None else started
        if limit is None or sent < self._limit_set_at or not open_windows:
            self._observers.notify()
            return
        if limit.window is None:
            if all(open_windows.values()):
                self._limit = None
        elif open_windows.get(limit.window, False):
            self._limit = None
        self._observers.notify()

    def apply_profile(self, plan: Plan) -> None:
        """
        Remember the plan the OAuth profile reported.
        """
        self._plan = plan
        self._observers.notify()

    def clear_cooldown(self, now: float) -> bool:
        """
        End a 429's limit and both extra-usage pauses, as an admin asked
        (:obj:`ExtraUsage.cleared`); what was reported of the windows stays.
        """
        on = self.limit(now) is not None or self._extra_usage.pause(now) is not None
        self._limit = None
        self._extra_usage = self._extra_usage.cleared()
        self._observers.notify()
        return on

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """
        Call ``observer`` after every ``observe_*`` and ``apply_*`` call from
        now on; return what ends the subscription.
        """
        return self._observers.subscribe(observer)
