# -*- test-case-name: tests.pool.test_windows -*-
"""
What a subscription's rate-limit headers and usage polls say about its
5-hour and weekly windows, read defensively: every number is held to what
the API can mean, and one that is malformed or out of bounds is ignored
with a warning, never stored, so it cannot break a request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from twisted.logger import Logger, LogLevel
from twisted.web.http import stringToDatetime
from twisted.web.http_headers import Headers

_PREFIX = b"anthropic-ratelimit-unified-"
# How long a 429 that names no reset time keeps a subscription aside.
DEFAULT_LIMIT_SECONDS = 60

# What the API's numbers can mean.  A value outside these bounds is ignored
# with a warning, never stored: one absurd header must not break requests.
# Utilization, in percent (the headers send a fraction, the usage poll a
# percentage): real values pass 100 only a little (a fraction of 1.01), and
# count as 100.
MAX_UTILIZATION_PERCENT = 1000.0
# Reset times: a weekly window is seven days long, and three more days
# cover a skewed clock; a day in the past covers a stale answer.
RESET_AHEAD_SECONDS = 10 * 86400.0
RESET_BEHIND_SECONDS = 86400.0
# A retry-after says when a window resets, so it cannot be longer either.
MAX_RETRY_AFTER_SECONDS = RESET_AHEAD_SECONDS
# Each bad value warns once an hour per credential and name; repeats within
# the hour are logged at debug level, so a flood of bad answers does not
# flood the log.
BAD_VALUE_WARNING_SECONDS = 3600.0
# Number text longer than this is not a number the API sends.
_MAX_NUMBER_CHARS = 32


def parse_number(text: str) -> float | None:
    """
    A finite decimal number, or None for anything else (not a number, NaN,
    infinite, or implausibly long text).
    """
    if len(text) > _MAX_NUMBER_CHARS:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def utilization_problem(percent: float) -> str | None:
    """
    Why a utilization (in percent) cannot be used, or None when it can.
    """
    if math.isfinite(percent) and 0 <= percent <= MAX_UTILIZATION_PERCENT:
        return None
    return f"not a utilization between 0 and {MAX_UTILIZATION_PERCENT:g}%"


def reset_problem(moment: float, now: float) -> str | None:
    """
    Why a reset time (Unix seconds) cannot be used at C{now}, or None when
    it can.
    """
    if not math.isfinite(moment):
        return "not a time"
    if moment < now - RESET_BEHIND_SECONDS:
        return f"more than {RESET_BEHIND_SECONDS / 86400:g} day(s) in the past"
    if moment > now + RESET_AHEAD_SECONDS:
        return f"more than {RESET_AHEAD_SECONDS / 86400:g} days ahead"
    return None


def delay_problem(seconds: float) -> str | None:
    """
    Why a delay asked for by a C{retry-after} cannot be used, or None when
    it can.
    """
    if math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER_SECONDS:
        return None
    return f"not a delay between 0 and {MAX_RETRY_AFTER_SECONDS / 86400:g} days"


def _delay_seconds(text: str, now: float) -> float | None:
    """
    The seconds a C{retry-after} asks to wait: a number of seconds, or the
    time from C{now} to an HTTP date; None when it is neither.
    """
    seconds = parse_number(text)
    if seconds is not None or not text:
        return seconds
    try:
        return stringToDatetime(text.encode("latin-1")) - now
    except (ValueError, IndexError, OverflowError):
        return None


@dataclass
class Window:
    """
    One rate-limit window: how much of it is used, in percent, and when it
    resets (Unix seconds, 0 when unknown).
    """

    utilization: float = 0.0
    resets_at: float = 0.0


def plan_weight(subscription_type: str, rate_limit_tier: str) -> float:
    """
    How much capacity a plan has relative to Pro: Max 20x is 10, Max 5x 5,
    Team with the 5x tier 5, everything else 1.
    """
    if subscription_type == "max":
        return 10.0 if rate_limit_tier == "default_claude_max_20x" else 5.0
    if subscription_type == "team" and rate_limit_tier == "default_claude_max_5x":
        return 5.0
    return 1.0


class RateLimitState:
    """
    The 5-hour and weekly windows of one subscription, as last reported.
    Every number read into it, from headers or polls, is checked against
    the bounds above first.
    """

    log = Logger()

    def __init__(self, label: str) -> None:
        self.label = label
        self.five_hour = Window()
        self.weekly = Window()
        self.updated_at = 0.0
        # A hard limit from a 429: unusable until this time (0 = none).
        self.limited_until = 0.0
        self.limited_window = ""
        # When each bad value was last warned about, by name.
        self._warned_at: dict[str, float] = {}

    def is_limited(self, now: float) -> bool:
        """
        Whether a 429 made this subscription unusable until a time still
        in the future; a limit whose time has passed clears itself.
        """
        if self.limited_until and now >= self.limited_until:
            self.limited_until = 0.0
            self.limited_window = ""
        return self.limited_until > now

    def _ignore(self, name: str, text: str, problem: str, now: float) -> None:
        """
        Log that the value C{text} of C{name} is ignored: a warning the
        first time in L{BAD_VALUE_WARNING_SECONDS}, else at debug level.
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

    def _header(self, headers: Headers, suffix: bytes) -> str | None:
        values = headers.getRawHeaders(_PREFIX + suffix)
        if not values:
            return None
        return values[0].decode("latin-1").strip()

    def _read(
        self,
        headers: Headers,
        name: bytes,
        now: float,
        problem_of: Callable[[float], str | None],
        parse: Callable[[str], float | None] = parse_number,
    ) -> float | None:
        """
        The number in header C{name}, or None when it is absent or is
        ignored (unreadable, or C{problem_of} finds a problem with it).
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

    def _observe_window(self, window: Window, headers: Headers, key: bytes, now: float) -> bool:
        fraction = self._read(
            headers, _PREFIX + key + b"-utilization", now, lambda f: utilization_problem(f * 100)
        )
        resets_at = self._reset(headers, key + b"-reset", now)
        if fraction is None and resets_at is None:
            return False
        new_window = resets_at is not None and resets_at > window.resets_at
        if new_window:
            window.resets_at = resets_at  # type: ignore[assignment]
        if fraction is not None:
            percent = min(100.0, float(math.ceil(round(fraction * 100, 6))))
            if new_window or percent >= window.utilization:
                window.utilization = percent
        return True

    def observe(self, headers: Headers, now: float) -> bool:
        """
        Update from a response's unified rate-limit headers.  Within one
        window, utilization only grows; a later reset time starts a new
        window.

        :return: whether any usable header was present.
        """
        seen_5h = self._observe_window(self.five_hour, headers, b"5h", now)
        seen_7d = self._observe_window(self.weekly, headers, b"7d", now)
        status = self._header(headers, b"status")
        if status in ("allowed", "allowed_warning") and self.limited_until:
            # The window is open again: the hard limit is over.
            self.limited_until = 0.0
            self.limited_window = ""
        if seen_5h or seen_7d:
            self.updated_at = now
            return True
        return False

    def retry_after(self, headers: Headers, now: float) -> float | None:
        """
        The delay a response asks for, in seconds: C{retry-after-ms} (which
        the SDKs read first), else C{retry-after} (seconds, or an HTTP
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
            lambda text: _delay_seconds(text, now),
        )

    def observe_rejection(self, headers: Headers, now: float) -> float | None:
        """
        Read a 429.  One that carries the unified rate-limit headers means
        the subscription is out of quota: it becomes unusable until the
        binding window resets, taken from the representative claim's reset,
        else the overall reset, else C{retry-after-ms} or C{retry-after},
        else one minute.  One without them is a passing capacity throttle
        and changes nothing.

        :return: the time the limit ends, or None for a passing throttle.
        """
        self.observe(headers, now)
        claim = (self._header(headers, b"representative-claim") or "").lower()
        status = self._header(headers, b"status")
        has_unified = any(
            name.lower().startswith(_PREFIX) for name, _ in headers.getAllRawHeaders()
        )
        if not has_unified:
            return None
        resets_at: float | None = None
        window = "rate limit"
        if claim in ("five_hour", "5h"):
            resets_at = self._reset(headers, b"5h-reset", now)
            window = "5-hour window"
        elif claim.startswith("seven_day") or claim == "7d":
            resets_at = self._reset(headers, b"7d-reset", now)
            window = "weekly window"
        if resets_at is None:
            resets_at = self._reset(headers, b"reset", now)
        if resets_at is None or resets_at <= now:
            delay = self.retry_after(headers, now)
            resets_at = now + (delay if delay is not None else DEFAULT_LIMIT_SECONDS)
        if status is not None and status not in ("rejected",) and not claim:
            return None
        self.limited_until = max(self.limited_until, resets_at)
        self.limited_window = window
        return self.limited_until

    def apply_poll(
        self,
        five_hour: tuple[float, float] | None,
        weekly: tuple[float, float] | None,
        now: float,
    ) -> None:
        """
        Take the figures of a usage poll (utilization in percent, reset in
        Unix seconds, 0 when unknown): they replace what the headers said,
        and may go down.  A figure out of bounds is ignored, the others
        still apply.
        """
        for name, window, figures in (
            ("five_hour", self.five_hour, five_hour),
            ("seven_day", self.weekly, weekly),
        ):
            if figures is None:
                continue
            utilization, resets_at = figures
            problem = utilization_problem(utilization)
            if problem is None:
                window.utilization = min(100.0, utilization)
            else:
                self._ignore(f"usage {name}.utilization", repr(utilization), problem, now)
            if resets_at:
                problem = reset_problem(resets_at, now)
                if problem is None:
                    window.resets_at = resets_at
                else:
                    self._ignore(f"usage {name}.resets_at", repr(resets_at), problem, now)
        self.updated_at = now
        self.is_limited(now)
