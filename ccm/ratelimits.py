# -*- test-case-name: tests.test_ratelimits -*-
"""
What a subscription's rate-limit headers say about its 5-hour and weekly
windows, read defensively: a malformed header is ignored with a warning and
never breaks a request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twisted.logger import Logger
from twisted.web.http_headers import Headers

_PREFIX = b"anthropic-ratelimit-unified-"
# How long a 429 that names no reset time keeps a subscription aside.
DEFAULT_LIMIT_SECONDS = 60


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

    def is_limited(self, now: float) -> bool:
        """
        Whether a 429 made this subscription unusable until a time still
        in the future; a limit whose time has passed clears itself.
        """
        if self.limited_until and now >= self.limited_until:
            self.limited_until = 0.0
            self.limited_window = ""
        return self.limited_until > now

    def _header(self, headers: Headers, suffix: bytes) -> str | None:
        values = headers.getRawHeaders(_PREFIX + suffix)
        if not values:
            return None
        return values[0].decode("latin-1").strip()

    def _number(self, headers: Headers, suffix: bytes, positive: bool) -> float | None:
        text = self._header(headers, suffix)
        if text is None:
            return None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            self.log.warn(
                "ignoring malformed rate-limit header {header}={value!r} for {credential}",
                header=(_PREFIX + suffix).decode("ascii"),
                value=text[:40],
                credential=self.label,
            )
            return None
        return value

    def _observe_window(self, window: Window, headers: Headers, key: bytes) -> bool:
        fraction = self._number(headers, key + b"-utilization", positive=False)
        resets_at = self._number(headers, key + b"-reset", positive=True)
        if fraction is None and resets_at is None:
            return False
        new_window = resets_at is not None and resets_at > window.resets_at
        if new_window:
            window.resets_at = resets_at  # type: ignore[assignment]
        if fraction is not None:
            percent = float(math.ceil(round(fraction * 100, 6)))
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
        seen_5h = self._observe_window(self.five_hour, headers, b"5h")
        seen_7d = self._observe_window(self.weekly, headers, b"7d")
        status = self._header(headers, b"status")
        if status in ("allowed", "allowed_warning") and self.limited_until:
            # The window is open again: the hard limit is over.
            self.limited_until = 0.0
            self.limited_window = ""
        if seen_5h or seen_7d:
            self.updated_at = now
            return True
        return False

    def observe_rejection(self, headers: Headers, now: float) -> float | None:
        """
        Read a 429.  One that carries the unified rate-limit headers means
        the subscription is out of quota: it becomes unusable until the
        binding window resets, taken from the representative claim's reset,
        else the overall reset, else C{retry-after}, else one minute.  One
        without them is a passing capacity throttle and changes nothing.

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
            resets_at = self._number(headers, b"5h-reset", positive=True)
            window = "5-hour window"
        elif claim.startswith("seven_day") or claim == "7d":
            resets_at = self._number(headers, b"7d-reset", positive=True)
            window = "weekly window"
        if resets_at is None:
            resets_at = self._number(headers, b"reset", positive=True)
        if resets_at is None or resets_at <= now:
            retry_after = headers.getRawHeaders(b"retry-after", [b""])[0].strip()
            resets_at = now + (int(retry_after) if retry_after.isdigit() else DEFAULT_LIMIT_SECONDS)
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
        and may go down.
        """
        for window, figures in ((self.five_hour, five_hour), (self.weekly, weekly)):
            if figures is None:
                continue
            window.utilization, resets_at = figures
            if resets_at:
                window.resets_at = resets_at
        self.updated_at = now
        self.is_limited(now)
