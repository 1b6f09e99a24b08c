# -*- test-case-name: tests.pool.test_serving -*-
"""
Whether a credential can serve now, and if not, why (an :obj:`Unusable`
reason) and until when.  The words people read, in errors and in the log,
are derived from the reason; no decision is taken on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

from ccm.pool.extrausage import PauseCause
from ccm.pool.figures import WindowName
from ccm.units import format_duration


class Unusable(Enum):
    """
    Why a credential cannot serve.
    """

    # Not loaded: its file is missing or broken, or its token expired and
    # cannot be refreshed.  Only a person can fix that.
    UNAVAILABLE = "unavailable"
    # A 429 out of quota, naming the 5-hour window, the weekly one, or none.
    RATE_LIMITED_5H = "rate-limited (5-hour window)"
    RATE_LIMITED_WEEKLY = "rate-limited (weekly window)"
    RATE_LIMITED = "rate-limited (rate limit)"
    # Utilization reached the credential's pause threshold in a window.
    PAUSED_5H = "paused at its 5-hour threshold"
    PAUSED_WEEKLY = "paused at its weekly threshold"
    # Serving would spend paid extra usage, which its configuration does
    # not allow: the upstream served an answer from it, or refused a
    # request as third-party traffic that draws on it.
    PAUSED_EXTRA_USAGE = "paused: would draw on paid extra usage (extra_usage: never)"
    PAUSED_THIRD_PARTY = (
        "paused: the upstream bills its requests to paid extra usage as third-party "
        "traffic (extra_usage: never)"
    )
    # An admin paused it (from the dashboard) until an admin resumes it.
    PAUSED_BY_ADMIN = "paused by an admin"
    # Banned by Anthropic (see ccm.upstream.verdicts): nothing but a new
    # login in its store ends it.
    QUARANTINED = "quarantined"


RATE_LIMITED_IN = {
    WindowName.FIVE_HOUR: Unusable.RATE_LIMITED_5H,
    WindowName.WEEKLY: Unusable.RATE_LIMITED_WEEKLY,
    None: Unusable.RATE_LIMITED,
}
PAUSED_IN = {WindowName.FIVE_HOUR: Unusable.PAUSED_5H, WindowName.WEEKLY: Unusable.PAUSED_WEEKLY}
PAUSED_FOR = {
    PauseCause.DRAWING: Unusable.PAUSED_EXTRA_USAGE,
    PauseCause.THIRD_PARTY: Unusable.PAUSED_THIRD_PARTY,
}
#: The reasons that only a person on the ccm host can end.
NEEDS_A_PERSON = frozenset({Unusable.UNAVAILABLE, Unusable.QUARANTINED})


def when(moment: float, now: float) -> str:
    """
    A time for people: ``2026-11-25 15:00 UTC (in 2h13m)``.
    """
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(moment))
    return f"{stamp} (in {format_duration(max(0.0, moment - now))})"


def began(moment: float, now: float) -> str:
    """
    A past time for people: ``2026-11-25 15:00 UTC (2h13m ago)``.
    """
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(moment))
    return f"{stamp} ({format_duration(max(0.0, now - moment))} ago)"


@dataclass(frozen=True)
class AdminPause:
    """
    An admin's pause of a credential: by the admin named ``by``, since
    ``since`` (Unix seconds), until an admin resumes it.
    """

    by: str
    since: float


@dataclass(frozen=True)
class MemberState:
    """
    Whether a credential can serve at time ``at``: ``reason`` is None when it
    can.  ``until`` is when it can serve again (0 when unknown); ``problem``
    says why it is :obj:`Unusable.UNAVAILABLE` or :obj:`Unusable.QUARANTINED`,
    and ``since`` when a quarantine or an admin's pause began (``by``
    names that admin); ``utilization`` and ``cap`` are
    the figures of a pause (percent).  ``extra_usage`` is True when the
    credential can serve, but only from paid extra usage, which its
    configuration allows.

    Two states are equal when they say the same, whenever they were taken.
    """

    reason: Unusable | None = None
    until: float = 0.0
    problem: str = ""
    utilization: float = 0.0
    cap: float = 0.0
    extra_usage: bool = False
    at: float = field(default=0.0, compare=False)
    since: float = 0.0
    by: str = ""

    @property
    def usable(self) -> bool:
        """
        Whether the credential can serve.
        """
        return self.reason is None

    @property
    def description(self) -> str:
        """
        The state in words, as errors and the log show it.
        """
        reason = self.reason
        if reason is None:
            if self.extra_usage:
                return "usable, drawing on paid extra usage (extra_usage: allow)"
            return "usable"
        if reason is Unusable.UNAVAILABLE:
            return f"unavailable: {self.problem}"
        if reason is Unusable.QUARANTINED:
            return f"quarantined since {began(self.since, self.at)}: {self.problem}"
        if reason is Unusable.PAUSED_BY_ADMIN:
            return f"paused by admin {self.by} since {began(self.since, self.at)}"
        if reason in (Unusable.PAUSED_5H, Unusable.PAUSED_WEEKLY):
            resets = f" until {when(self.until, self.at)}" if self.until else ""
            return (
                f"{reason.value} ({self.utilization:g}% used, pauses at {self.cap:g}%){resets}"
            )
        return f"{reason.value} until {when(self.until, self.at)}"
