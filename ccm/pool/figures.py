# -*- test-case-name: tests.pool.test_figures -*-
"""
Reading the API's rate-limit figures defensively: the unified rate-limit
headers of a response, the delay a 429 asks for, and the figures of a usage
poll.  Every number is held to what the API can mean (:obj:`ccm.pool.bounds`);
one that is malformed or out of bounds is ignored with a warning, never
used, so it cannot break a request.

A :obj:`FigureReader` only reads: what the figures do to a subscription's
windows is for :obj:`ccm.pool.windows.MemoryWindowState` to decide.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from twisted.logger import Logger, LogLevel
from twisted.web.http_headers import Headers

from ccm.pool.bounds import (
    delay_problem,
    parse_delay,
    parse_number,
    reset_problem,
    utilization_problem,
)

_PREFIX = b"anthropic-ratelimit-unified-"
# How long a 429 that names no reset time keeps a subscription aside.
DEFAULT_LIMIT_SECONDS = 60

# A code word in a header, such as ``out_of_credits``.
_CODE_WORD = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")

# Each bad value warns once an hour per credential and name; repeats within
# the hour are logged at debug level, so a flood of bad answers does not
# flood the log.
BAD_VALUE_WARNING_SECONDS = 3600.0


@dataclass(frozen=True)
class Window:
    """
    One rate-limit window: how much of it is used, in percent, and when it
    resets (Unix seconds, 0 when unknown).
    """

    utilization: float = 0.0
    resets_at: float = 0.0


class WindowName(Enum):
    """
    A subscription's two rate-limit windows; the value is the name people
    read.
    """

    FIVE_HOUR = "5-hour"
    WEEKLY = "weekly"


# How long each window is: a limit a 429 sets because of a window cannot
# outlast it, whatever delay the 429 asks for.
WINDOW_SECONDS = {WindowName.FIVE_HOUR: 5 * 3600.0, WindowName.WEEKLY: 7 * 86400.0}

# The header key of each window, and its key in a usage poll's answer.
_HEADER_KEYS = {WindowName.FIVE_HOUR: b"5h", WindowName.WEEKLY: b"7d"}
_POLL_KEYS = {WindowName.FIVE_HOUR: "five_hour", WindowName.WEEKLY: "seven_day"}


@dataclass(frozen=True)
class WindowReading:
    """
    What one response or poll said about one window: its utilization in
    percent and its reset time in Unix seconds, each None when not said
    (or ignored).
    """

    utilization: float | None = None
    resets_at: float | None = None


@dataclass(frozen=True)
class Limit:
    """
    What a 429 out of quota says: the subscription is unusable until
    ``until`` (Unix seconds), because of ``window`` (None when the 429 names
    no window).
    """

    until: float
    window: WindowName | None


def percent_of(fraction: float) -> float:
    """
    A header's utilization fraction as whole percent, rounded up (a window
    1.01 % used is 2 % used) and at most 100.
    """
    return min(100.0, float(math.ceil(round(fraction * 100, 6))))


class FigureReader:
    """
    Reads the rate-limit figures of one credential, labelled ``label`` in
    warnings.  It keeps only when each bad value was last warned about.
    """

    log = Logger()

    def __init__(self, label: str) -> None:
        self.label = label
        # When each bad value was last warned about, by name.
        self._warned_at: dict[str, float] = {}

    def _ignore(self, name: str, text: str, problem: str, now: float) -> None:
        """
        Log that the value ``text`` of ``name`` is ignored: a warning the
        first time in :obj:`BAD_VALUE_WARNING_SECONDS`, else at debug level.
        """
        last = self._warned_at.get(name)
        level = LogLevel.debug
        if last is None or now - last >= BAD_VALUE_WARNING_SECONDS:
            self._warned_at[name] = now
            level = LogLevel.warn
        self.log.emit(
            level,
            "ignoring rate-limit value {name}={value!r} for {credential}: {problem}",
            name=name,
            value=text[:40],
            credential=self.label,
            problem=problem,
        )

    def _read(
        self,
        headers: Headers,
        name: bytes,
        now: float,
        problem_of: Callable[[float], str | None],
        parse: Callable[[str], float | None] = parse_number,
    ) -> float | None:
        """
        The number in header ``name``, or None when it is absent or is
        ignored (unreadable, or ``problem_of`` finds a problem with it).
        """
        values = headers.getRawHeaders(name)
        if not values:
            return None
        text = values[0].decode("latin-1").strip()
        value = parse(text)
        problem = "not a number" if value is None else problem_of(value)
        if problem is not None:
            self._ignore(name.decode("latin-1"), text, problem, now)
            return None
        return value

    def _reset(self, headers: Headers, suffix: bytes, now: float) -> float | None:
        return self._read(headers, _PREFIX + suffix, now, lambda moment: reset_problem(moment, now))

    def status(self, headers: Headers) -> str | None:
        """
        The unified rate-limit status (``allowed``, ``allowed_warning``,
        ``rejected``), or None when absent.
        """
        return self._header(headers, b"status")

    def window(self, headers: Headers, name: WindowName, now: float) -> WindowReading | None:
        """
        What a response's headers say about window ``name``: utilization
        (sent as a fraction, read as a percentage rounded up, as the
        reference does, and at most 100) and reset; None when neither is
        there and usable.
        """
        key = _HEADER_KEYS[name]
        fraction = self._read(
            headers, _PREFIX + key + b"-utilization", now, lambda f: utilization_problem(f * 100)
        )
        resets_at = self._reset(headers, key + b"-reset", now)
        if fraction is None and resets_at is None:
            return None
        percent = None if fraction is None else percent_of(fraction)
        return WindowReading(percent, resets_at)

    def retry_after(self, headers: Headers, now: float) -> float | None:
        """
        The delay a response asks for, in seconds: ``retry-after-ms`` (which
        the SDKs read first), else ``retry-after`` (seconds, or an HTTP
        date); None when neither is present and within bounds.
        """
        milliseconds = self._read(
            headers, b"retry-after-ms", now, lambda ms: delay_problem(ms / 1000)
        )
        if milliseconds is not None:
            return milliseconds / 1000
        return self._read(
            headers,
            b"retry-after",
            now,
            delay_problem,
            lambda text: parse_delay(text, now),
        )

    def rejection(self, headers: Headers, now: float) -> Limit | None:
        """
        What a 429 says.  One that carries the unified rate-limit headers
        means the subscription is out of quota until the binding window
        resets, taken from the representative claim's reset, else the
        overall reset, else ``retry-after-ms`` or ``retry-after``, else one
        minute; when the claim names a window, never later than that
        window's length from ``now`` (:obj:`WINDOW_SECONDS`).  One without
        them is a passing capacity throttle (a client-shape problem, not
        exhaustion): None.
        """
        claim = (self._header(headers, b"representative-claim") or "").lower()
        status = self.status(headers)
        has_unified = any(
            name.lower().startswith(_PREFIX) for name, _ in headers.getAllRawHeaders()
        )
        if not has_unified:
            return None
        resets_at: float | None = None
        window: WindowName | None = None
        if claim in ("five_hour", "5h"):
            resets_at = self._reset(headers, b"5h-reset", now)
            window = WindowName.FIVE_HOUR
        elif claim.startswith("seven_day") or claim == "7d":
            resets_at = self._reset(headers, b"7d-reset", now)
            window = WindowName.WEEKLY
        if resets_at is None:
            resets_at = self._reset(headers, b"reset", now)
        if resets_at is None or resets_at <= now:
            delay = self.retry_after(headers, now)
            resets_at = now + (delay if delay is not None else DEFAULT_LIMIT_SECONDS)
        if status is not None and status not in ("rejected",) and not claim:
            return None
        if window is not None:
            resets_at = min(resets_at, now + WINDOW_SECONDS[window])
        return Limit(resets_at, window)

    def text(self, headers: Headers, suffix: bytes) -> str | None:
        """
        The text of unified header ``suffix`` (``status``), stripped, or
        None when absent.
        """
        return self._header(headers, suffix)

    def number(
        self, headers: Headers, suffix: bytes, now: float, problem_of: Callable[[float], str | None]
    ) -> float | None:
        """
        The number in unified header ``suffix``, or None when it is absent,
        unreadable, or ``problem_of`` finds a problem with it (warned about).
        """
        return self._read(headers, _PREFIX + suffix, now, problem_of)

    def word(
        self, headers: Headers, suffix: bytes, now: float, words: tuple[str, ...] = ()
    ) -> str | None:
        """
        The lower-cased word in unified header ``suffix``: one of ``words``,
        or, without them, a code word such as ``out_of_credits``; None when
        absent or anything else (warned about).
        """
        text = self._header(headers, suffix)
        if text is None:
            return None
        word = text.lower()
        if word in words if words else _CODE_WORD.match(word) is not None:
            return word
        problem = f"not one of {', '.join(words)}" if words else "not a code word"
        self._ignore((_PREFIX + suffix).decode("latin-1"), text, problem, now)
        return None

    def _header(self, headers: Headers, suffix: bytes) -> str | None:
        values = headers.getRawHeaders(_PREFIX + suffix)
        if not values:
            return None
        return values[0].decode("latin-1").strip()

    def poll_window(
        self, name: WindowName, figures: tuple[float, float] | None, now: float
    ) -> WindowReading | None:
        """
        Window ``name`` of a usage poll, given as (percent used, reset in
        Unix seconds or 0 when unknown): a figure out of bounds is ignored
        with a warning, the other still counts.  None for a window the poll
        did not report.
        """
        if figures is None:
            return None
        utilization, resets_at = figures
        key = _POLL_KEYS[name]
        percent: float | None = None
        problem = utilization_problem(utilization)
        if problem is None:
            percent = min(100.0, utilization)
        else:
            self._ignore(f"usage {key}.utilization", repr(utilization), problem, now)
        reset: float | None = None
        if resets_at:
            problem = reset_problem(resets_at, now)
            if problem is None:
                reset = resets_at
            else:
                self._ignore(f"usage {key}.resets_at", repr(resets_at), problem, now)
        return WindowReading(percent, reset)
