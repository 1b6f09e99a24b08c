# -*- test-case-name: tests.web.test_overview -*-
"""
What the dashboard shows, read at one moment: each credential with its
windows, state and sessions; each user's usage this week and in the
current 5-hour window, and their shares; the requests in flight; the last
problems logged.

:obj:`Sources` holds where each of those lives (their owners: the pool
members, the balancers' session tables, the usage counters, the recent
usage, the proxy, the problems ring); :obj:`read_overview` only reads them.
The weekly figures are the usage file's (:obj:`ccm.accounting.report`
makes them, as ``python -m ccm usage`` does), for the weekly cycle each
credential is in now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from ccm.accounting.counters import UsageCounters
from ccm.accounting.document import to_document
from ccm.accounting.recent import RECENT_SECONDS, RecentFigures, RecentUsage
from ccm.accounting.pricing import round_cents
from ccm.accounting.report import ANONYMOUS, priced, rows_by_user
from ccm.accounting.tokens import TokenCounts
from ccm.accounting.week import week_start_of
from ccm.pool.figures import WindowName
from ccm.pool.member import PoolMember
from ccm.pool.sessions import SessionTable
from ccm.pool.standing import STATE_NAMES
from ccm.proxy.resource import InFlight
from ccm.shares.standing import ShareFigures
from ccm.web.problems import Problem, RecentProblems

WINDOW_LABELS = {WindowName.FIVE_HOUR: "5-hour", WindowName.WEEKLY: "weekly"}


@dataclass(frozen=True)
class WindowBar:
    """
    One window of a credential: its label, percent used, the pause
    threshold (the reserve line) and its reset (Unix seconds, 0 unknown).
    """

    label: str
    utilization: float
    cap: float
    resets_at: float


@dataclass(frozen=True)
class CredentialView:
    """
    One credential as the dashboard shows it.

    :ivar state: the coarse state (``usable``, ``paused``, ...).
    :ivar reason: the reason's name for programs, None when usable.
    :ivar until: when it can serve again (0 when it can, or unknown).
    :ivar cooldown: whether a 429's limit or an extra-usage pause is on,
        which clearing the cooldown ends.
    :ivar paused_by_admin: whether an admin paused it.
    :ivar sessions: the sessions on it, (id, last use), newest first.
    :ivar path: where its login is stored.
    """

    tag: str
    state: str
    reason: str | None
    description: str
    until: float
    windows: tuple[WindowBar, ...]
    plan_weight: float
    cooldown: bool
    paused_by_admin: bool
    sessions: tuple[tuple[str, float], ...]
    path: str


@dataclass
class UserRow:
    """
    One user's usage: in the weekly cycle each credential is in now, and
    in each credential's current 5-hour window; and their shares.
    """

    name: str
    week: RecentFigures = field(default_factory=RecentFigures)
    five_hour: RecentFigures = field(default_factory=RecentFigures)
    #: Their standing in each window they have a share of.
    shares: tuple[ShareFigures, ...] = ()


@dataclass(frozen=True)
class Overview:
    """
    Everything the dashboard shows, at ``now``.
    """

    now: float
    credentials: tuple[CredentialView, ...]
    users: tuple[UserRow, ...]
    flights: tuple[InFlight, ...]
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class Sources:
    """
    Where the dashboard reads from: each owner of what it shows.
    """

    members: Mapping[str, PoolMember]
    session_tables: Mapping[str, SessionTable]
    counters: Mapping[str, UsageCounters]
    recent: Mapping[str, RecentUsage]
    user_names: Callable[[], Sequence[str]]
    in_flight: Callable[[], Sequence[InFlight]]
    problems: RecentProblems
    #: Each configured user's share figures (:obj:`ccm.shares.view`).
    shares: Callable[[], Mapping[str, Sequence[ShareFigures]]] = lambda: {}


def credential_view(member: PoolMember, tables: Sequence[SessionTable], now: float) -> CredentialView:
    """
    ``member`` at ``now``, with the sessions ``tables`` keep on it.
    """
    state = member.state(now)
    coarse, reason = STATE_NAMES[state.reason]
    limits = member.credential.rate_limits
    windows = tuple(
        WindowBar(WINDOW_LABELS[name], window.utilization, cap, window.resets_at)
        for name, cap in ((WindowName.FIVE_HOUR, member.cap_5h), (WindowName.WEEKLY, member.cap_weekly))
        for window in (limits.window(name, now),)
    )
    sessions = sorted(
        (entry for table in tables for entry in table.sessions_on(member.tag, now)),
        key=lambda entry: -entry[1],
    )
    return CredentialView(
        tag=member.tag,
        state=coarse,
        reason=reason,
        description=state.description,
        until=state.until if not state.usable else 0.0,
        windows=windows,
        plan_weight=member.credential.plan_weight,
        cooldown=limits.is_limited(now) or limits.extra_usage.pause(now) is not None,
        paused_by_admin=member.credential.admin_pause is not None,
        sessions=tuple(sessions),
        path=member.credential.store.path,
    )


def _current_week(member: PoolMember, counters: UsageCounters, now: float) -> int:
    """
    The weekly cycle ``member`` is in now, as its usage is tagged: from its
    weekly window's reset, or the newest cycle counted when that is unknown.
    """
    weekly = member.credential.rate_limits.window(WindowName.WEEKLY, now)
    if weekly.resets_at > now:
        return week_start_of(int(weekly.resets_at))
    weeks = [c.week_start_unix for c in counters.snapshot().combinations]
    return max(weeks, default=0)


def _total(tokens: TokenCounts) -> int:
    """
    All the tokens of ``tokens``: input, output, cache reads and writes.
    """
    return (
        tokens.input_tokens
        + tokens.output_tokens
        + tokens.cache_read_input_tokens
        + tokens.cache_creation_input_tokens
    )


def _user(rows: dict[str, UserRow], name: str) -> UserRow:
    name = name or ANONYMOUS
    row = rows.get(name)
    if row is None:
        row = rows[name] = UserRow(name)
    return row


def user_rows(sources: Sources, now: float) -> list[UserRow]:
    """
    Every configured user, and anyone else who used ccm this week or in
    the last five hours (anonymous callers as ``(anonymous)``).
    """
    rows: dict[str, UserRow] = {}
    for name in sources.user_names():
        _user(rows, name)
    for tag, counters in sources.counters.items():
        member = sources.members.get(tag)
        if member is None:
            continue
        week = _current_week(member, counters, now)
        snapshot = counters.snapshot()
        combinations = [
            entry for entry in priced(snapshot, to_document(snapshot))
            if entry[0].week_start_unix == week
        ]
        for row in rows_by_user(combinations):
            figures = RecentFigures(row.counts.request_count, _total(row.counts.tokens), row.cost_usd)
            _user(rows, row.labels[0] if row.labels[0] != ANONYMOUS else "").week.add(figures)
    for tag, recent in sources.recent.items():
        member = sources.members.get(tag)
        if member is None:
            continue
        five_hour = member.credential.rate_limits.window(WindowName.FIVE_HOUR, now)
        since = five_hour.resets_at - RECENT_SECONDS if five_hour.resets_at > now else now - RECENT_SECONDS
        for name, figures in recent.by_user(since).items():
            _user(rows, name).five_hour.add(figures)
    for name, shares in sources.shares().items():
        _user(rows, name).shares = tuple(shares)
    for user in rows.values():
        user.week.cost_usd = round_cents(user.week.cost_usd)
        user.five_hour.cost_usd = round_cents(user.five_hour.cost_usd)
    return sorted(rows.values(), key=lambda user: (-user.week.cost_usd, user.name))


def read_overview(sources: Sources, now: float) -> Overview:
    """
    What the dashboard shows at ``now``.
    """
    tables = list(sources.session_tables.values())
    return Overview(
        now=now,
        credentials=tuple(credential_view(m, tables, now) for m in sources.members.values()),
        users=tuple(user_rows(sources, now)),
        flights=tuple(sources.in_flight()),
        problems=sources.problems.problems,
    )
