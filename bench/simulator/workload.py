"""
A synthetic week of a team's Claude Code traffic, made from a seed.

Every user has a time zone and working hours; on working days they open
sessions at random times within those hours, each with a length and a
message rate; some main-agent messages fan out into sub-agents that send a
quick burst of their own.  Heavy users open more, longer, faster sessions
and work in bursts that include evenings.  Everything is drawn from one
``random.Random``, so a seed gives the same week every time.

A request's ``cost`` is in the upstream's cost units (see
:obj:`bench.simulator.upstream`); the costs are scaled at the end so that
the whole week asks for ``load`` times the pool's weekly capacity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY


@dataclass(frozen=True)
class UserProfile:
    """
    How one user works.

    :ivar utc_offset: hours east of UTC of the user's working day.
    :ivar sessions_per_day: mean number of sessions opened on a working day.
    :ivar session_minutes: mean session length.
    :ivar seconds_between: mean seconds between main-agent messages.
    :ivar fan_out: chance that a main message starts sub-agents.
    :ivar heavy: a bursty heavy user (also works evenings and some weekend).
    """

    name: str
    utc_offset: int
    start_hour: float = 9.0
    end_hour: float = 18.0
    sessions_per_day: float = 4.0
    session_minutes: float = 40.0
    seconds_between: float = 75.0
    fan_out: float = 0.05
    heavy: bool = False


@dataclass(frozen=True)
class Request:
    """
    One ``POST /v1/messages`` a Claude Code client sends.

    :ivar at: seconds since the start of the simulated week (Monday 00:00 UTC).
    :ivar agent_id: the sub-agent sending it, empty for the main agent.
    """

    at: float
    user: str
    session_id: str
    agent_id: str
    cost: float


@dataclass
class TeamSpec:
    """
    The team and its week.

    :ivar load: what the whole week asks for, as a multiple of the pool's
        weekly capacity (the costs are scaled to it).
    """

    users: list[UserProfile] = field(default_factory=list)
    days: float = 7.0
    load: float = 0.9


def default_team(rng: random.Random, size: int = 10, heavy: int = 2) -> TeamSpec:
    """
    A team of ``size`` users, mostly in Europe, some in the Americas and
    Asia, of whom ``heavy`` are bursty heavy users.
    """
    offsets = [1, 1, 1, 2, 0, -5, -5, -8, 8, 5]
    users = []
    for index in range(size):
        is_heavy = index < heavy
        users.append(
            UserProfile(
                name=f"user{index:02d}",
                utc_offset=offsets[index % len(offsets)],
                start_hour=8.0 + rng.random() * 2,
                end_hour=17.0 + rng.random() * 2 + (4.0 if is_heavy else 0.0),
                sessions_per_day=8.0 if is_heavy else 3.0 + rng.random() * 2,
                session_minutes=70.0 if is_heavy else 30.0 + rng.random() * 20,
                seconds_between=35.0 if is_heavy else 60.0 + rng.random() * 40,
                fan_out=0.15 if is_heavy else 0.04,
                heavy=is_heavy,
            )
        )
    return TeamSpec(users=users)


def week_of(spec: TeamSpec, rng: random.Random) -> list[Request]:
    """
    Every request of the team's week, in time order, before cost scaling
    (a mean cost of 1 per main message; sub-agent calls are cheaper).
    """
    requests: list[Request] = []
    for user in spec.users:
        requests.extend(_user_week(user, spec.days, rng))
    requests.sort(key=lambda r: (r.at, r.user, r.session_id, r.agent_id))
    return requests


def scaled(requests: list[Request], total_cost: float) -> list[Request]:
    """
    ``requests`` with their costs scaled so that they add up to ``total_cost``.
    """
    asked = sum(r.cost for r in requests)
    factor = total_cost / asked if asked else 0.0
    return [Request(r.at, r.user, r.session_id, r.agent_id, r.cost * factor) for r in requests]


def _user_week(user: UserProfile, days: float, rng: random.Random) -> list[Request]:
    requests: list[Request] = []
    counter = 0
    for day in range(int(days + 0.999)):
        weekday = day % 7
        weekend = weekday >= 5
        if weekend and not (user.heavy and rng.random() < 0.4):
            continue
        # A heavy user's day comes in bursts: some days double, some half.
        intensity = rng.choice((0.5, 1.0, 2.0)) if user.heavy else 1.0
        count = _poisson(rng, user.sessions_per_day * intensity * (0.3 if weekend else 1.0))
        for _ in range(count):
            local = user.start_hour + rng.random() * (user.end_hour - user.start_hour)
            start = day * DAY + (local - user.utc_offset) * HOUR
            length = rng.lognormvariate(0, 0.6) * user.session_minutes * 60
            counter += 1
            session = f"{user.name}-s{counter:04d}"
            requests.extend(_session(user, session, start, start + length, rng))
    limit = days * DAY
    return [r for r in requests if 0 <= r.at < limit]


def _session(
    user: UserProfile, session: str, start: float, end: float, rng: random.Random
) -> list[Request]:
    requests: list[Request] = []
    at = start
    agents = 0
    while at < end:
        requests.append(Request(at, user.name, session, "", rng.expovariate(1.0)))
        if rng.random() < user.fan_out:
            for _ in range(rng.randint(2, 5)):
                agents += 1
                agent = f"{session}-a{agents:03d}"
                agent_at = at + rng.uniform(1, 5)
                for _ in range(rng.randint(3, 10)):
                    requests.append(Request(agent_at, user.name, session, agent, rng.expovariate(2.0)))
                    agent_at += rng.uniform(4, 15)
        at += rng.expovariate(1.0 / user.seconds_between) + 3.0
    return requests


def _poisson(rng: random.Random, mean: float) -> int:
    """
    A Poisson draw (Knuth's method; the means here are small).
    """
    limit, count, product = pow(2.718281828459045, -mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
