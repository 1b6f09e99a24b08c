# -*- test-case-name: tests.pool.test_extrausage -*-
"""
A subscription's extra usage: paid usage beyond its plan, which the
rate-limit headers call overage.

:obj:`read_extra_usage` reads what a response's ``overage-*`` headers say,
each figure held to its bounds as the window figures are.  The window state
keeps the last word as an :obj:`ExtraUsage`, with two pauses:

- an answer served from extra usage (``overage-in-use: true``, or the plan
  rejected while extra usage is allowed) starts one that lasts until the
  plan window that is used up resets (clamped to that window's length), or
  :obj:`EXTRA_USAGE_PAUSE_SECONDS` when no such reset is known;
- the upstream's refusal of a request as third-party traffic that draws on
  extra usage (a 400 "Third-party apps now draw from your extra usage, not
  your plan limits") starts one that lasts until the 5-hour window resets,
  or :obj:`EXTRA_USAGE_PAUSE_SECONDS` when that reset is not known.

Only their time ends them, or an admin clearing the cooldown.  They are facts about the subscription, kept
whatever its configuration says: whether they keep it from serving is the
credential's ``extra_usage`` setting, which its pool member applies
(:obj:`ccm.pool.member.PoolMember`), so a reload that changes the setting
takes effect at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Protocol

from twisted.web.http_headers import Headers

from ccm.pool.bounds import OVERAGE_RESET_AHEAD_SECONDS, reset_problem, utilization_problem
from ccm.pool.figures import WINDOW_SECONDS, FigureReader, WindowName, percent_of

# How long a pause lasts when the reset of the window behind it is not
# known: long enough that a pool does not find out again request by
# request, short enough that a wrong guess costs an hour of one credential.
EXTRA_USAGE_PAUSE_SECONDS = 3600.0

# What the status of extra usage can be; the first two say it is available.
OVERAGE_STATUSES = ("allowed", "allowed_warning", "rejected")
_AVAILABLE = OVERAGE_STATUSES[:2]
_FLAGS = ("true", "false")
_WINDOW_KEYS = {WindowName.FIVE_HOUR: b"5h", WindowName.WEEKLY: b"7d"}


class WindowFigures(Protocol):
    """
    A plan window as it stands: percent used, and reset time (0 unknown).
    """

    @property
    def utilization(self) -> float:
        """
        How much of the window is used, in percent.
        """

    @property
    def resets_at(self) -> float:
        """
        When the window resets, in Unix seconds (0 when unknown).
        """


@dataclass(frozen=True)
class ExtraUsageReading:
    """
    What one response's headers said about extra usage, each None when not
    said or ignored: its ``status`` (one of :obj:`OVERAGE_STATUSES`),
    whether it is ``in_use``, why it is disabled, when its spend period
    resets (Unix seconds), how much of it is used (percent).

    ``drawing`` says whether the answer was served from extra usage, as
    Claude Code reads the same headers: ``overage-in-use: true``, or the
    plan rejected (``status: rejected``) while extra usage is allowed.
    ``used_up`` names the plan windows the headers call rejected.
    """

    status: str | None = None
    in_use: bool | None = None
    disabled_reason: str | None = None
    resets_at: float | None = None
    utilization: float | None = None
    drawing: bool = False
    used_up: tuple[WindowName, ...] = ()


def claim_window(claim: str) -> WindowName | None:
    """
    The plan window a representative claim names (``five_hour`` or ``5h``,
    ``seven_day*`` or ``7d``), or None (``overage``, or nothing).
    """
    claim = claim.lower()
    if claim in ("five_hour", "5h"):
        return WindowName.FIVE_HOUR
    if claim.startswith("seven_day") or claim == "7d":
        return WindowName.WEEKLY
    return None


def read_extra_usage(
    reader: FigureReader, headers: Headers, now: float
) -> ExtraUsageReading | None:
    """
    What a response's ``overage-*`` headers say, read by ``reader`` (which
    warns about values it ignores); None when they say nothing.  The spend
    period's reset may be a month ahead.
    """
    status = reader.word(headers, b"overage-status", now, OVERAGE_STATUSES)
    flag = reader.word(headers, b"overage-in-use", now, _FLAGS)
    reason = reader.word(headers, b"overage-disabled-reason", now)
    resets_at = reader.number(
        headers,
        b"overage-reset",
        now,
        lambda moment: reset_problem(moment, now, OVERAGE_RESET_AHEAD_SECONDS),
    )
    fraction = reader.number(
        headers, b"overage-utilization", now, lambda f: utilization_problem(f * 100)
    )
    if (status, flag, reason, resets_at, fraction) == (None,) * 5:
        return None
    rejected = (reader.text(headers, b"status") or "").lower() == "rejected"
    used_up = [
        name
        for name, key in _WINDOW_KEYS.items()
        if (reader.text(headers, key + b"-status") or "").lower() == "rejected"
    ]
    claimed = claim_window(reader.text(headers, b"representative-claim") or "")
    if rejected and claimed is not None and claimed not in used_up:
        used_up.append(claimed)
    percent = None if fraction is None else percent_of(fraction)
    return ExtraUsageReading(
        status=status,
        in_use=None if flag is None else flag == "true",
        disabled_reason=reason,
        resets_at=resets_at,
        utilization=percent,
        drawing=flag == "true" or (rejected and status in _AVAILABLE),
        used_up=tuple(used_up),
    )


class PauseCause(Enum):
    """
    What started a pause for extra usage.
    """

    # An answer was served from extra usage.
    DRAWING = "drawing"
    # A request was refused as third-party traffic that draws on it.
    THIRD_PARTY = "third-party"


@dataclass(frozen=True)
class ExtraUsagePause:
    """
    A pause for extra usage in force: until ``until`` (Unix seconds),
    because of ``cause``.
    """

    until: float
    cause: PauseCause


@dataclass(frozen=True)
class ExtraUsage:
    """
    What the upstream last said about a subscription's extra usage (empty
    or zero when it said nothing), and until when each pause lasts (0 for
    never started).
    """

    status: str = ""
    in_use: bool = False
    disabled_reason: str = ""
    resets_at: float = 0.0
    utilization: float = 0.0
    drawing_until: float = 0.0
    refused_until: float = 0.0

    @property
    def available(self) -> bool:
        """
        Whether the last status said extra usage may be used.
        """
        return self.status in _AVAILABLE

    def pause(self, now: float) -> ExtraUsagePause | None:
        """
        The pause in force at ``now`` (the one ending later, when both are),
        or None.
        """
        pauses = [
            ExtraUsagePause(until, cause)
            for until, cause in (
                (self.drawing_until, PauseCause.DRAWING),
                (self.refused_until, PauseCause.THIRD_PARTY),
            )
            if until > now
        ]
        return max(pauses, key=lambda pause: pause.until, default=None)

    def observed(
        self,
        reader: FigureReader,
        headers: Headers,
        window: Callable[[WindowName, float], WindowFigures],
        now: float,
    ) -> ExtraUsage:
        """
        This record with what a response's headers said (see
        :obj:`read_extra_usage`); itself when they said nothing.

        When the answer was served from extra usage, the drawing pause lasts
        at least until the plan window that is used up resets: one the
        headers call rejected, or one full as ``window`` says it stands at
        ``now``; the latest of their resets when several are, each no later
        than its window's length from now.
        """
        reading = read_extra_usage(reader, headers, now)
        if reading is None:
            return self
        status = self.status if reading.status is None else reading.status
        reason = reading.disabled_reason
        if reason is None:
            reason = self.disabled_reason if reading.status is None else ""
        record = dataclasses.replace(
            self,
            status=status,
            in_use=bool(reading.in_use),
            disabled_reason=reason,
            resets_at=self.resets_at if reading.resets_at is None else reading.resets_at,
            utilization=self.utilization if reading.utilization is None else reading.utilization,
        )
        if not reading.drawing:
            return record
        resets = []
        for name in WindowName:
            figures = window(name, now)
            used_up = name in reading.used_up or figures.utilization >= 100.0
            if used_up and figures.resets_at > now:
                resets.append(min(figures.resets_at, now + WINDOW_SECONDS[name]))
        until = max(resets, default=now + EXTRA_USAGE_PAUSE_SECONDS)
        return dataclasses.replace(record, drawing_until=max(self.drawing_until, until))

    def refused(self, five_hour_reset: float, now: float) -> ExtraUsage:
        """
        This record after a refusal of a request as third-party traffic: the
        refusal pause lasts at least until ``five_hour_reset`` (no later than
        five hours from now), or :obj:`EXTRA_USAGE_PAUSE_SECONDS` when that
        reset is not known (0) or has passed.
        """
        if five_hour_reset > now:
            until = min(five_hour_reset, now + WINDOW_SECONDS[WindowName.FIVE_HOUR])
        else:
            until = now + EXTRA_USAGE_PAUSE_SECONDS
        return dataclasses.replace(self, refused_until=max(self.refused_until, until))

    def cleared(self) -> ExtraUsage:
        """
        This record with both pauses ended (an admin cleared the cooldown);
        what the upstream said stays, so its next answer decides again.
        """
        return dataclasses.replace(self, drawing_until=0.0, refused_until=0.0)
