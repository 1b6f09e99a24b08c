# -*- test-case-name: tests.pool.test_select,tests.pool.test_affinity,tests.pool.test_extrausage_policy -*-
"""
Which subscription serves a request.

A pool chooses, for each request, the credential that serves it: a single
credential, or a balancer over several that keeps each Claude Code session
on one subscription (its prompt cache stays warm) and moves it only when
that subscription stops being usable (see :obj:`ccm.pool.member`).  A
balancer also keeps a conversation's auxiliary calls and sub-agents with it
(see :obj:`ccm.pool.affinity`).
"""

from __future__ import annotations

import random as random_module
from typing import Iterable, Protocol, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from ccm.credentials.credential import Credential
from ccm.pool.affinity import (
    AffinityTable,
    Call,
    MemoryAffinityTable,
    agent_member,
    note_served,
    touched_member,
)
from ccm.pool.figures import WindowName
from ccm.pool.member import PoolMember, exhausted_error, pool_status
from ccm.pool.sessions import MemorySessionTable, SessionTable

HOURS_PER_WEEK = 168.0

log = Logger(namespace="ccm.pool.select")


class Pool(Protocol):
    """
    What the proxy and the status endpoint need from a pool of credentials.
    """

    is_balancer: bool

    @property
    def members(self) -> tuple[PoolMember, ...]:
        """
        The credentials of this pool, in configured order.
        """

    def select(self, session_id: str, exclude: Iterable[str] = ()) -> Credential:
        """
        The credential to serve a request of session ``session_id``
        (possibly empty), never one of ``exclude`` (those already tried).

        :raises APIError: when no credential can serve.
        """

    def place(self, call: Call, exclude: Iterable[str] = ()) -> Credential:
        """
        The credential to serve ``call``, never one of ``exclude``: as
        :obj:`select` for its session, and with its sub-agent or the answer
        whose cache it keeps warm.

        :raises APIError: when no credential can serve it.
        """

    def served(self, call: Call, tag: str, status: int, headers: Headers) -> None:
        """
        Credential ``tag`` answered ``call`` with ``status`` and ``headers``.
        """

    def status(self) -> dict[str, float]:
        """
        The caller's view of the pool, for the status endpoint; see
        :obj:`pool_status`.
        """

    def serving(self, session_id: str) -> PoolMember | None:
        """
        The member session ``session_id`` is on now, for the status
        endpoint, or None when it is on none; a query, which places or
        refreshes no session.
        """


class _MemberPool:
    """
    What both pools share: members, and their status on a clock.
    """

    def __init__(self, members: Sequence[PoolMember], clock: IReactorTime) -> None:
        self._members = tuple(members)
        self._clock = clock

    @property
    def members(self) -> tuple[PoolMember, ...]:
        """
        The credentials of this pool, in configured order.
        """
        return self._members

    def status(self) -> dict[str, float]:
        """
        The caller's view of the pool, for the status endpoint; see
        :obj:`pool_status`.
        """
        return pool_status(self._members, self._clock.seconds())


class SingleCredentialPool(_MemberPool):
    """
    A pool of one credential: it serves whenever that credential can.
    """

    is_balancer = False

    def __init__(self, member: PoolMember, clock: IReactorTime) -> None:
        super().__init__((member,), clock)
        self.member = member

    def select(self, session_id: str, exclude: Iterable[str] = ()) -> Credential:
        """
        The credential to serve a request of session ``session_id``.

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

    def place(self, call: Call, exclude: Iterable[str] = ()) -> Credential:
        """
        The credential, for any call: there is only one.
        """
        return self.select(call.session_id, exclude)

    def served(self, call: Call, tag: str, status: int, headers: Headers) -> None:
        """
        Nothing to remember: every call goes to the one credential.
        """

    def serving(self, session_id: str) -> PoolMember | None:
        """
        The one credential, which serves every session, whatever its state.
        """
        return self.member


class BalancerPool(_MemberPool):
    """
    Spread sessions over several credentials with a strategy: ``least_used``
    (most weekly headroom, weighted by plan and by how soon the weekly
    window resets), ``round_robin``, ``random``, or ``fallback`` (the first
    usable in order, back to earlier ones as soon as they are usable).
    A member that could serve only from paid extra usage is used only when
    no other can, and its sessions move to one that serves from its plan.
    Sessions stay on their credential while it is usable; under
    ``least_used`` with a ``rebalance_threshold``, also until its weekly
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
        sessions: SessionTable | None = None,
        affinity: AffinityTable | None = None,
    ) -> None:
        """
        :param rebalance_threshold: under ``least_used``, how many points of
            weekly utilization (divided by the plan weight) a session's
            credential may be ahead of the best pick before its sessions
            move; 0 never moves them while they are usable.
        :param sessions: where this pool remembers which credential each
            session is on; a new :obj:`MemorySessionTable` by default.
        :param affinity: where this pool remembers which credential served
            each recent answer and each sub-agent is on; a new
            :obj:`MemoryAffinityTable` by default.
        """
        super().__init__(members, clock)
        self.tag = tag
        self.strategy = strategy
        self.rebalance_threshold = rebalance_threshold
        self._random = rng if rng is not None else random_module.Random()
        self._counter = 0
        self._sessions: SessionTable = sessions if sessions is not None else MemorySessionTable()
        self._affinity: AffinityTable = affinity if affinity is not None else MemoryAffinityTable()

    def reconfigure(
        self, members: Sequence[PoolMember], strategy: str, rebalance_threshold: float
    ) -> None:
        """
        Balance over ``members`` with ``strategy`` from the next request on (a
        reloaded configuration).  Sessions stay where they are while their
        credential is still a usable member.
        """
        self._members = tuple(members)
        self.strategy = strategy
        self.rebalance_threshold = rebalance_threshold

    def select(self, session_id: str, exclude: Iterable[str] = ()) -> Credential:
        """
        The credential for a request of session ``session_id`` (possibly
        empty), never one of ``exclude`` (those already tried).

        :raises APIError: when no credential can serve.
        """
        return self.place(Call(session_id=session_id, is_message=True), exclude)

    def place(self, call: Call, exclude: Iterable[str] = ()) -> Credential:
        """
        The credential for ``call``, never one of ``exclude``.  A keepalive
        goes to the credential that served the answer it names, or nowhere.
        Under every strategy but ``fallback``, a sub-agent's request goes
        where the sub-agent is, else where its parent agent is, else where
        its session is; a session without a usable credential is placed by
        the strategy.  Only ``/v1/messages`` requests move a session to
        rebalance; the other calls follow it.

        :raises APIError: when no credential can serve.
        """
        now = self._clock.seconds()
        if call.touches:
            return touched_member(call, self._members, self._affinity, exclude, now).credential
        excluded = set(exclude)
        usable: list[PoolMember] = []
        # Those that would serve from paid extra usage: only when no other can.
        beyond_plan: list[PoolMember] = []
        for member in self._members:
            state = member.observe(now)
            if state.usable and member.tag not in excluded:
                (beyond_plan if state.extra_usage else usable).append(member)
        usable = usable or beyond_plan
        session_id = call.session_id
        if not usable:
            if session_id:
                self._sessions.forget(session_id)
            raise exhausted_error(self._members, now)
        if self.strategy == "fallback":
            return usable[0].credential
        chosen = agent_member(call, usable, self._affinity, now)
        if chosen is None:
            chosen = self._session_member(session_id, usable, now, call.is_message)
        elif session_id and self._sessions.credential_of(session_id, now) is None:
            self._sessions.assign(session_id, chosen.tag, now)
            self._log_assignment(session_id, chosen.tag, None, "with its agent")
        if call.agent_id:
            self._affinity.remember_agent(call.agent_id, chosen.tag, now)
        return chosen.credential

    def served(self, call: Call, tag: str, status: int, headers: Headers) -> None:
        """
        Remember which credential served a ``/v1/messages`` answer, or kept
        one's cache warm, for the keepalives that name it.
        """
        note_served(call, tag, status, headers, self._affinity, self._clock.seconds())

    def _session_member(
        self, session_id: str, usable: list[PoolMember], now: float, may_move: bool
    ) -> PoolMember:
        """
        The member for session ``session_id``: where it is, unless
        ``may_move`` and a rebalance moves it, or it has no usable credential
        and the strategy places it.
        """
        # An empty id is never assigned; asking still lets idle entries go.
        previous = self._sessions.credential_of(session_id, now)
        current = next((m for m in usable if previous and m.tag == previous), None)
        if current is None:
            chosen = self._pick(usable, now)
        else:
            better = self._rebalance_target(current, usable, now) if may_move else None
            if better is None:
                self._sessions.assign(session_id, current.tag, now)
                return current
            self._sessions.forget_credential(current.tag)
            chosen = better
        if session_id:
            self._sessions.assign(session_id, chosen.tag, now)
            self._log_assignment(session_id, chosen.tag, previous)
        return chosen

    def serving(self, session_id: str) -> PoolMember | None:
        """
        The member session ``session_id`` is on, as the session table knows
        it, whatever that member's state (its next request moves it when it
        cannot serve); under ``fallback``, which keeps no sessions, the
        first usable member, which serves every session.  None when the
        session is on no member: never seen, forgotten, or on a credential
        a reload took out of the pool.  Nothing is changed.
        """
        now = self._clock.seconds()
        if self.strategy == "fallback":
            return next((m for m in self._members if m.state(now).usable), None)
        tag = self._sessions.lookup(session_id, now)
        return next((m for m in self._members if m.tag == tag), None)

    def _log_assignment(
        self, session_id: str, tag: str, previous: str | None, how: str = ""
    ) -> None:
        if previous is None:
            log.info(
                "session {session} assigned to credential {tag} ({strategy})",
                session=session_id[:40],
                tag=tag,
                strategy=how or self.strategy,
            )
        else:
            log.info(
                "session {session} assigned to credential {tag}, moved from {previous} "
                "({strategy})",
                session=session_id[:40],
                tag=tag,
                previous=previous,
                strategy=self.strategy,
            )

    def _rebalance_target(
        self, current: PoolMember, usable: list[PoolMember], now: float
    ) -> PoolMember | None:
        """
        Where the sessions of ``current`` should move, or None to stay: the
        least-used pick, when ``current``'s weekly utilization is ahead of
        it by more than ``rebalance_threshold`` divided by ``current``'s plan
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
            current.credential.rate_limits.window(WindowName.WEEKLY, now).utilization
            - better.credential.rate_limits.window(WindowName.WEEKLY, now).utilization
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

    def _pick(self, usable: list[PoolMember], now: float) -> PoolMember:
        if self.strategy == "round_robin":
            self._counter += 1
            start = (self._counter - 1) % len(self._members)
            order = self._members[start:] + self._members[:start]
            return next(m for m in order if m in usable)
        if self.strategy == "random":
            return self._random.choice(usable)
        return max(usable, key=lambda m: _least_used_score(m, now))


def _least_used_score(member: PoolMember, now: float) -> float:
    """
    Remaining weekly headroom times plan weight, raised for credentials
    whose weekly window resets sooner (capacity that would otherwise
    expire unused).  Ties go to the earlier credential, as ``max`` keeps the
    first of equal scores.
    """
    weekly = member.credential.rate_limits.window(WindowName.WEEKLY, now)
    score = max(0.0, member.cap_weekly - weekly.utilization) * member.credential.plan_weight
    if weekly.resets_at > now:
        hours = max(1.0, (weekly.resets_at - now) / 3600)
        score *= HOURS_PER_WEEK / hours
    return score

