# -*- test-case-name: tests.pool.test_member,tests.pool.test_extrausage_policy -*-
"""
A credential in a pool: when it can serve, what a pool answers when none of
its members can, and what the members' windows add up to for the status
endpoint.

A credential is usable when it is not quarantined (banned, see
:obj:`ccm.credentials.standing`), loaded, not paused by an admin (see
:obj:`ccm.credentials.credential.Credential.pause`), not rate-limited by a 429, not
paused for extra usage, and under both of its pause thresholds; a window
whose reset time has passed counts as new and empty, so a pause ends at the
reset without a poll.

Extra usage (paid usage beyond the plan) is the credential's
``extra_usage`` setting.  Unless it allows it, a credential the upstream
says draws on extra usage pauses (see :obj:`ccm.pool.extrausage` for how
long).  With it allowed, those pauses do not apply, and a window used up
does not pause a credential whose threshold there is 100% (the default
then) while the upstream says extra usage is available: it serves on,
from extra usage, and balancers use it only when no member can serve from
its plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ccm.credentials.credential import Credential
from ccm.pool.figures import WindowName
from ccm.pool.serving import (
    NEEDS_A_PERSON,
    PAUSED_FOR,
    PAUSED_IN,
    RATE_LIMITED_IN,
    MemberState,
    Unusable,
)
from ccm.units import whole_seconds_until
from ccm.web.errors import APIError


@dataclass
class PoolMember:
    """
    A credential in a pool, with the utilization caps (percent) at which it
    pauses, and whether it may serve from paid extra usage.  One per
    credential, shared by every pool that uses it.
    """

    credential: Credential
    cap_5h: float = 99.0
    cap_weekly: float = 99.0
    allow_extra_usage: bool = False

    @property
    def tag(self) -> str:
        """
        The credential's tag.
        """
        return self.credential.tag

    def state(self, now: float) -> MemberState:
        """
        Whether this credential can serve at ``now``.
        """
        credential = self.credential
        quarantine = credential.quarantine
        if quarantine is not None:
            return MemberState(
                Unusable.QUARANTINED, problem=quarantine.cause, since=quarantine.since, at=now
            )
        problem = credential.unavailable_reason
        if problem is not None:
            return MemberState(Unusable.UNAVAILABLE, problem=problem, at=now)
        pause = credential.admin_pause
        if pause is not None:
            return MemberState(Unusable.PAUSED_BY_ADMIN, by=pause.by, since=pause.since, at=now)
        limits = credential.rate_limits
        limit = limits.limit(now)
        if limit is not None:
            return MemberState(RATE_LIMITED_IN[limit.window], until=limit.until, at=now)
        extra = limits.extra_usage
        allow = self.allow_extra_usage
        extra_pause = extra.pause(now)
        if extra_pause is not None and not allow:
            return MemberState(PAUSED_FOR[extra_pause.cause], until=extra_pause.until, at=now)
        beyond_plan = allow and extra.drawing_until > now
        for name, window, cap in (
            (WindowName.FIVE_HOUR, limits.window(WindowName.FIVE_HOUR, now), self.cap_5h),
            (WindowName.WEEKLY, limits.window(WindowName.WEEKLY, now), self.cap_weekly),
        ):
            if window.utilization >= cap:
                if allow and cap >= 100 and extra.available:
                    beyond_plan = True
                    continue
                return MemberState(
                    PAUSED_IN[name],
                    until=window.resets_at if window.resets_at > now else 0.0,
                    utilization=window.utilization,
                    cap=cap,
                    at=now,
                )
        return MemberState(extra_usage=beyond_plan, at=now)

    def observe(self, now: float) -> MemberState:
        """
        :obj:`state`, reported to the credential's state log, which logs it
        when it changed.
        """
        state = self.state(now)
        self.credential.state_log.serving(state)
        return state


def exhausted_error(members: Sequence[PoolMember], now: float) -> APIError:
    """
    The answer when no credential of a pool can serve: 503 when none is even
    loaded or all are quarantined (only a person can fix that), else 429
    with the time of the earliest reset, and a message naming each
    credential's state.
    """
    states = [(m, m.state(now)) for m in members]
    details = "; ".join(f"{m.tag}: {s.description}" for m, s in states)
    if all(s.reason in NEEDS_A_PERSON for _, s in states):
        return APIError(
            503,
            "api_error",
            f"ccm cannot serve requests: {details}",
            headers=(("x-should-retry", "false"),),
        )
    resets = [s.until for _, s in states if s.until > now]
    retry_after = whole_seconds_until(min(resets), now) if resets else 60
    return APIError(
        429,
        "rate_limit_error",
        f"every subscription available to you is rate-limited or paused; {details}",
        headers=(("retry-after", str(retry_after)), ("x-should-retry", "false")),
    )


def pool_status(members: Sequence[PoolMember], now: float) -> dict[str, float]:
    """
    Combine the members' windows into the status endpoint's figures.

    Utilization is measured, as in the reference, against each member's
    pause thresholds and weighted by its plan: a member contributes its
    headroom below its caps.  Unlike the reference, a member that cannot
    serve now (unavailable, rate-limited by a 429, or paused at a
    threshold) contributes none, so it reads as full instead of showing the
    figures it had before it hit the wall; ``plan_weight`` counts only the
    members that can serve, and is 0 when none can.

    ``five_hour_reset`` and ``weekly_reset`` say when that figure next drops,
    in whole Unix seconds (0 when no time is known): the earliest of the
    members' resets, where the reset of a member that can serve is its
    window's, and that of one that cannot is the time it can serve again
    (when known).
    """
    total_weight = 0.0
    usable_weight = 0.0
    remaining_5h = 0.0
    remaining_weekly = 0.0
    resets_5h: list[float] = []
    resets_weekly: list[float] = []
    for member in members:
        state = member.state(now)
        weight = member.credential.plan_weight
        limits = member.credential.rate_limits
        five_hour = limits.window(WindowName.FIVE_HOUR, now)
        weekly = limits.window(WindowName.WEEKLY, now)
        total_weight += weight
        if state.usable:
            usable_weight += weight
            remaining_5h += max(0.0, member.cap_5h - five_hour.utilization) * weight
            remaining_weekly += max(0.0, member.cap_weekly - weekly.utilization) * weight
        for window, resets in ((five_hour, resets_5h), (weekly, resets_weekly)):
            # Full until it can serve again, whatever its own windows say.
            reset = window.resets_at if state.usable else state.until
            if reset > now:
                resets.append(reset)
    if total_weight == 0:
        return {
            "five_hour_utilization": 100.0,
            "weekly_utilization": 100.0,
            "plan_weight": 0.0,
            "five_hour_reset": 0,
            "weekly_reset": 0,
        }
    return {
        "five_hour_utilization": 100.0 - remaining_5h / total_weight,
        "weekly_utilization": 100.0 - remaining_weekly / total_weight,
        "plan_weight": usable_weight,
        "five_hour_reset": int(min(resets_5h)) if resets_5h else 0,
        "weekly_reset": int(min(resets_weekly)) if resets_weekly else 0,
    }
