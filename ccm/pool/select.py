# -*- test-case-name: tests.pool.test_select -*-
"""
Which subscription serves a request.

A pool chooses, for each request, the credential that serves it: a single
credential, or a balancer over several that keeps each Claude Code session
on one subscription (its prompt cache stays warm) and moves it only when
that subscription stops being usable.  A credential is usable when it is
loaded, not rate-limited by a 429, and under both of its pause thresholds.
"""

from __future__ import annotations

import random as random_module
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ccm.credentials.credential import Credential
from ccm.web.errors import APIError
from ccm.units import format_duration

SESSION_IDLE_SECONDS = 24 * 3600
MAX_SESSIONS = 10_000
HOURS_PER_WEEK = 168.0

log = Logger(namespace="ccm.pool.select")


@dataclass(frozen=True)
class MemberState:
    """
    Whether a credential can serve now, why not, and until when.
    """

    usable: bool
    description: str
    until: float = 0.0


@dataclass
class PoolMember:
    """
    A credential in a pool, with the utilization caps (percent) at which it
    pauses.  One per credential, shared by every pool that uses it, so each
    change of its state is logged once.
    """

    credential: Credential
    cap_5h: float = 99.0
    cap_weekly: float = 99.0
    _logged_state: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def tag(self) -> str:
        """
        The credential's tag.
        """
        return self.credential.tag

    def state(self, now: float) -> MemberState:
        """
        Whether this credential can serve at C{now}.
        """
        credential = self.credential
        reason = credential.unavailable_reason
        if reason is not None:
            return MemberState(False, f"unavailable: {reason}")
        limits = credential.rate_limits
        if limits.is_limited(now):
            return MemberState(
                False,
                f"rate-limited ({limits.limited_window}) until {_when(limits.limited_until, now)}",
                limits.limited_until,
            )
        for name, window, cap in (
            ("5-hour", limits.five_hour, self.cap_5h),
            ("weekly", limits.weekly, self.cap_weekly),
        ):
            if window.utilization >= cap:
                resets = (
                    f" until {_when(window.resets_at, now)}" if window.resets_at > now else ""
                )
                return MemberState(
                    False,
                    f"paused at its {name} threshold ({window.utilization:g}% used, "
                    f"pauses at {cap:g}%){resets}",
                    window.resets_at if window.resets_at > now else 0.0,
                )
        return MemberState(True, "usable")

    def observe(self, now: float) -> MemberState:
        """
        L{state}, logging it when it differs from what was last observed:
        a warning when the credential stops being usable, with the reason,
        and a note when it is usable again.
        """
        state = self.state(now)
        before = self._logged_state
        if before != state.description:
            self._logged_state = state.description
            if not state.usable:
                log.warn("credential {tag} is {state}", tag=self.tag, state=state.description)
            elif before is not None:
                log.info("credential {tag} is usable again", tag=self.tag)
        return state


def _when(moment: float, now: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(moment))
    return f"{stamp} (in {format_duration(max(0.0, moment - now))})"


def exhausted_error(members: Sequence[PoolMember], now: float) -> APIError:
    """
    The answer when no credential of a pool can serve: 503 when none is even
    loaded (only a person can fix that), else 429 with the time of the
    earliest reset, and a message naming each credential's state.
    """
    states = [(m, m.state(now)) for m in members]
    details = "; ".join(f"{m.tag}: {s.description}" for m, s in states)
    if all(s.description.startswith("unavailable") for _, s in states):
        return APIError(
            503,
            "api_error",
            f"ccm cannot serve requests: {details}",
            headers=(("x-should-retry", "false"),),
        )
    resets = [s.until for _, s in states if s.until > now]
    retry_after = max(1, int(min(resets) - now + 0.999)) if resets else 60
    return APIError(
        429,
        "rate_limit_error",
        f"every subscription available to you is rate-limited or paused; {details}",
        headers=(("retry-after", str(retry_after)), ("x-should-retry", "false")),
    )


class SingleCredentialPool:
    """
    A pool of one credential: it serves whenever that credential can.
    """

    is_balancer = False

    def __init__(self, member: PoolMember, clock: IReactorTime) -> None:
        self.member = member
        self._clock = clock

    @property
    def members(self) -> tuple[PoolMember, ...]:
        """
        The credentials of this pool.
        """
        return (self.member,)

    def select(self, session_id: str, exclude: Iterable[str] = ()) -> Credential:
        """
        The credential to serve a request of session C{session_id}.

        :raises APIError: when it cannot serve (503 when it is not loaded,
            429 while it is rate-limited or paused).
        """
        now = self._clock.seconds()
        state = self.member.observe(now)
        if not state.usable or self.member.tag in set(exclude):
            credential = self.member.credential
            reason = credential.unavailable_reason
            if reason is not None:
                raise credential.unavailable_error(reason)
            raise exhausted_error(self.members, now)
        return self.member.credential

    def status(self) -> dict[str, float]:
        """
        The caller's view of the pool, for the status endpoint.
        """
        return pool_status(self.members, self._clock.seconds())


class BalancerPool:
    """
    Spread sessions over several credentials with a strategy: C{least_used}
    (most weekly headroom, weighted by plan and by how soon the weekly
    window resets), C{round_robin}, C{random}, or C{fallback} (the first
    usable in order, back to earlier ones as soon as they are usable).
    Sessions stay on their credential while it is usable; under
    C{least_used} with a C{rebalance_threshold}, also until its weekly
    utilization runs too far ahead of the best pick's.
    """

    is_balancer = True

    def __init__(
        self,
        tag: str,
        members: Sequence[PoolMember],
        strategy: str,
        clock: IReactorTime,
        rng: random_module.Random | None = None,
        rebalance_threshold: float = 0.0,
    ) -> None:
        """
        :param rebalance_threshold: under C{least_used}, how many points of
            weekly utilization (divided by the plan weight) a session's
            credential may be ahead of the best pick before its sessions
            move; 0 never moves them while they are usable.
        """
        self.tag = tag
        self._members = tuple(members)
        self.strategy = strategy
        self.rebalance_threshold = rebalance_threshold
        self._clock = clock
        self._random = rng if rng is not None else random_module.Random()
        self._counter = 0
        # session id -> (credential tag, last used), oldest use first.
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()

    @property
    def members(self) -> tuple[PoolMember, ...]:
        """
        The credentials of this pool, in configured order.
        """
        return self._members

    def reconfigure(
        self, members: Sequence[PoolMember], strategy: str, rebalance_threshold: float
    ) -> None:
        """
        Balance over C{members} with C{strategy} from the next request on (a
        reloaded configuration).  Sessions stay where they are while their
        credential is still a usable member.
        """
        self._members = tuple(members)
        self.strategy = strategy
        self.rebalance_threshold = rebalance_threshold

    def session_count(self) -> int:
        """
        How many sessions are currently assigned.
        """
        return len(self._sessions)

    def _expire_sessions(self, now: float) -> None:
        while self._sessions:
            oldest, (_, used) = next(iter(self._sessions.items()))
            if now - used < SESSION_IDLE_SECONDS and len(self._sessions) <= MAX_SESSIONS:
                break
            del self._sessions[oldest]

    def select(self, session_id: str, exclude: Iterable[str] = ()) -> Credential:
        """
        The credential for a request of session C{session_id} (possibly
        empty), never one of C{exclude} (those already tried).

        :raises APIError: when no credential can serve.
        """
        now = self._clock.seconds()
        excluded = set(exclude)
        usable = []
        for member in self._members:
            state = member.observe(now)
            if state.usable and member.tag not in excluded:
                usable.append(member)
        if not usable:
            if session_id:
                self._sessions.pop(session_id, None)
            raise exhausted_error(self._members, now)
        if self.strategy == "fallback":
            return usable[0].credential
        self._expire_sessions(now)
        previous = self._sessions.get(session_id) if session_id else None
        current = next((m for m in usable if previous and m.tag == previous[0]), None)
        if current is None:
            chosen = self._pick(usable, now)
        else:
            better = self._rebalance_target(current, usable, now)
            if better is None:
                self._sessions[session_id] = (current.tag, now)
                self._sessions.move_to_end(session_id)
                return current.credential
            self._forget_sessions_on(current.tag)
            chosen = better
        if session_id:
            self._sessions[session_id] = (chosen.tag, now)
            self._sessions.move_to_end(session_id)
            log.info(
                "session {session} assigned to credential {tag}{moved} ({strategy})",
                session=session_id[:40],
                tag=chosen.tag,
                moved=f", moved from {previous[0]}" if previous is not None else "",
                strategy=self.strategy,
            )
            self._expire_sessions(now)
        return chosen.credential

    def _rebalance_target(
        self, current: PoolMember, usable: list[PoolMember], now: float
    ) -> PoolMember | None:
        """
        Where the sessions of C{current} should move, or None to stay: the
        least-used pick, when C{current}'s weekly utilization is ahead of
        it by more than C{rebalance_threshold} divided by C{current}'s plan
        weight (bigger plans tolerate less, as their points are worth more).
        """
        if self.strategy != "least_used" or self.rebalance_threshold <= 0:
            return None
        better = self._pick(usable, now)
        if better is current:
            return None
        weight = current.credential.plan_weight
        threshold = self.rebalance_threshold / weight
        delta = (
            current.credential.rate_limits.weekly.utilization
            - better.credential.rate_limits.weekly.utilization
        )
        if delta <= threshold:
            return None
        log.info(
            "pool {pool}: moving sessions from credential {tag} to {better}: its weekly "
            "utilization is {delta:.1f} points higher, above the threshold of {threshold:.1f} "
            "(rebalance_threshold {configured:g} / plan weight {weight:g})",
            pool=self.tag,
            tag=current.tag,
            better=better.tag,
            delta=delta,
            threshold=threshold,
            configured=self.rebalance_threshold,
            weight=weight,
        )
        return better

    def _forget_sessions_on(self, tag: str) -> None:
        """
        Unassign every session of credential C{tag}: each is placed anew at
        its next request.
        """
        for session, (assigned, _) in list(self._sessions.items()):
            if assigned == tag:
                del self._sessions[session]

    def _pick(self, usable: list[PoolMember], now: float) -> PoolMember:
        if self.strategy == "round_robin":
            self._counter += 1
            start = (self._counter - 1) % len(self._members)
            order = self._members[start:] + self._members[:start]
            return next(m for m in order if m in usable)
        if self.strategy == "random":
            return self._random.choice(usable)
        return max(usable, key=lambda m: _least_used_score(m, now))

    def status(self) -> dict[str, float]:
        """
        The caller's view of the pool, for the status endpoint.
        """
        return pool_status(self._members, self._clock.seconds())


def _least_used_score(member: PoolMember, now: float) -> float:
    """
    Remaining weekly headroom times plan weight, raised for credentials
    whose weekly window resets sooner (capacity that would otherwise
    expire unused).  Ties go to the earlier credential, as C{max} keeps the
    first of equal scores.
    """
    weekly = member.credential.rate_limits.weekly
    score = max(0.0, member.cap_weekly - weekly.utilization) * member.credential.plan_weight
    if weekly.resets_at > now:
        hours = max(1.0, (weekly.resets_at - now) / 3600)
        score *= HOURS_PER_WEEK / hours
    return score


def pool_status(members: Sequence[PoolMember], now: float) -> dict[str, float]:
    """
    Combine the members' windows into the status endpoint's figures.

    Utilization is measured, as in the reference, against each member's
    pause thresholds and weighted by its plan: a member contributes its
    headroom below its caps.  Unlike the reference, a member that cannot
    serve now (unavailable, rate-limited by a 429, or paused at a
    threshold) contributes none, so it reads as full instead of showing the
    figures it had before it hit the wall; C{plan_weight} counts only the
    members that can serve, and is 0 when none can.

    C{five_hour_reset} and C{weekly_reset} say when that figure next drops,
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
        total_weight += weight
        if state.usable:
            usable_weight += weight
            remaining_5h += max(0.0, member.cap_5h - limits.five_hour.utilization) * weight
            remaining_weekly += max(0.0, member.cap_weekly - limits.weekly.utilization) * weight
        for window, resets in ((limits.five_hour, resets_5h), (limits.weekly, resets_weekly)):
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
