# -*- test-case-name: tests.pool.test_standing -*-
"""
One credential's standing as the status endpoint shows it for a session
(``GET /ccm/v1/status?session=...``): whether it can serve, why not, its
windows and its pause thresholds; and when a pool's status next changes
with time alone, for the status watches.

The figures are the subscription's own, in percent of each window as
Anthropic reports them (what Claude Code's ``/usage`` shows), not the
pool's figures, which are measured against the pause thresholds
(:obj:`ccm.pool.member.pool_status`).  A window whose reset time has passed
reads as new and empty, as it does for every decision.
"""

from __future__ import annotations

from typing import Sequence

from ccm.pool.figures import WindowName
from ccm.pool.member import PoolMember
from ccm.pool.serving import MemberState, Unusable

#: The coarse state of each reason, and the reason's name for programs.
#: These strings are an interface: scripts compare them.
STATE_NAMES = {
    None: ("usable", None),
    Unusable.UNAVAILABLE: ("unavailable", "unavailable"),
    Unusable.RATE_LIMITED_5H: ("rate_limited", "rate_limited_5h"),
    Unusable.RATE_LIMITED_WEEKLY: ("rate_limited", "rate_limited_weekly"),
    Unusable.RATE_LIMITED: ("rate_limited", "rate_limited"),
    Unusable.PAUSED_5H: ("paused", "paused_5h"),
    Unusable.PAUSED_WEEKLY: ("paused", "paused_weekly"),
    Unusable.PAUSED_EXTRA_USAGE: ("paused", "paused_extra_usage"),
    Unusable.PAUSED_THIRD_PARTY: ("paused", "paused_third_party"),
    Unusable.PAUSED_BY_ADMIN: ("paused", "paused_by_admin"),
    Unusable.QUARANTINED: ("quarantined", "quarantined"),
}


def _words(state: MemberState) -> str:
    """
    The state in words, without a time: a time in words ("in 2h13m")
    would change the answer every minute, and ``unusable_until`` and
    ``quarantined_since`` hold it.
    """
    reason = state.reason
    if reason is None:
        return "usable"
    if reason is Unusable.UNAVAILABLE:
        return f"unavailable: {state.problem}"
    if reason is Unusable.QUARANTINED:
        return f"quarantined: {state.problem}"
    if reason is Unusable.PAUSED_BY_ADMIN:
        return f"paused by admin {state.by}"
    if reason in (Unusable.PAUSED_5H, Unusable.PAUSED_WEEKLY):
        return f"{reason.value} ({state.utilization:g}% used, pauses at {state.cap:g}%)"
    return str(reason.value)


def _seconds(moment: float) -> int:
    """
    A time in whole Unix seconds, as the status endpoint writes every time.
    """
    return int(moment)


def credential_standing(member: PoolMember, now: float) -> dict[str, object]:
    """
    The standing of ``member`` at ``now``: its tag, its state (``state``,
    ``reason``, ``description``, ``unusable_until``, when it can serve
    again, 0 when it can now or that is unknown, and ``quarantined_since``,
    when its quarantine began, None unless it is quarantined), each
    window's utilization, reset (0 when unknown) and pause threshold, and
    its plan weight.
    """
    state = member.state(now)
    coarse, reason = STATE_NAMES[state.reason]
    limits = member.credential.rate_limits
    five_hour = limits.window(WindowName.FIVE_HOUR, now)
    weekly = limits.window(WindowName.WEEKLY, now)
    return {
        "credential": member.tag,
        "state": coarse,
        "reason": reason,
        "description": _words(state),
        "unusable_until": _seconds(state.until) if not state.usable else 0,
        # A quarantine has no end to give, but it has a start: how long the
        # subscription has been banned is what its owner needs to know.
        "quarantined_since": (
            _seconds(state.since) if state.reason is Unusable.QUARANTINED else None
        ),
        "five_hour_utilization": five_hour.utilization,
        "five_hour_reset": _seconds(five_hour.resets_at),
        "five_hour_cap": member.cap_5h,
        "weekly_utilization": weekly.utilization,
        "weekly_reset": _seconds(weekly.resets_at),
        "weekly_cap": member.cap_weekly,
        "plan_weight": member.credential.plan_weight,
    }


def next_change(members: Sequence[PoolMember], now: float) -> float | None:
    """
    The earliest time after ``now`` at which what the status endpoint says
    of ``members`` changes with time alone, or None when nothing is due: a
    window's reset passing, or the end of a 429's limit or of a pause.

    A credential whose failed refresh may be tried again after a while also
    changes with time, at a moment it does not expose; the watches' keep-alive
    ticks pick that up (:obj:`ccm.web.watch`).
    """
    moments = []
    for member in members:
        limits = member.credential.rate_limits
        for name in (WindowName.FIVE_HOUR, WindowName.WEEKLY):
            moments.append(limits.window(name, now).resets_at)
        limit = limits.limit(now)
        if limit is not None:
            moments.append(limit.until)
        moments.append(member.state(now).until)
    due = [moment for moment in moments if moment > now]
    return min(due) if due else None


#: Every coarse state, in a fixed order: what health and the metrics report.
STATES: tuple[str, ...] = tuple(dict.fromkeys(coarse for coarse, _ in STATE_NAMES.values()))
#: The coarse state of a reason :obj:`STATE_NAMES` does not know: it cannot
#: serve, and only that is certain.
UNKNOWN_REASON_STATE = "unavailable"


def state_name(state: MemberState) -> str:
    """
    The coarse state of ``state``, one of :obj:`STATES`, for health and the
    metrics; a reason added without an entry in :obj:`STATE_NAMES` reads as
    :obj:`UNKNOWN_REASON_STATE` rather than failing.
    """
    names = STATE_NAMES.get(state.reason)
    return names[0] if names is not None else UNKNOWN_REASON_STATE
