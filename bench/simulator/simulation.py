"""
One simulated week per scenario: the same team week (drawn once from the
seed) replayed on a :obj:`twisted.internet.task.Clock` against fresh
subscriptions and a fresh ccm pool for each scenario.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from ccm.pool.affinity import Call
from ccm.pool.member import PoolMember
from ccm.pool.plan import plan_weight

from bench.simulator import ccmside, metrics, shares, workload
from bench.simulator.upstream import WEEK, Subscription

#: Monday 2026-09-07 00:00 UTC: the simulated week's start.
START = 1_788_739_200.0


@dataclass(frozen=True)
class Scenario:
    """
    What one run varies: the strategy, ``rebalance_threshold``, the reserve
    (percent kept below each window's end; ccm's default is 1), and shares.
    """

    strategy: str
    rebalance_threshold: float = 0.0
    reserve: float = 1.0
    with_shares: bool = False

    @property
    def name(self) -> str:
        """
        The row's label, as ``--strategies`` spells it.
        """
        name = self.strategy
        if self.rebalance_threshold:
            name += f":rebalance={self.rebalance_threshold:g}"
        if self.reserve != 1.0:
            name += f":reserve={self.reserve:g}"
        return name + ("+shares" if self.with_shares else "")

    @classmethod
    def parse(cls, text: str) -> "Scenario":
        """
        ``least_used``, ``least_used:rebalance=10``, ``fallback:reserve=5``,
        ``round_robin+shares``.
        """
        with_shares = text.endswith("+shares")
        text = text.removesuffix("+shares")
        strategy, *options = text.split(":")
        strategy = strategy.replace("-", "_")
        if strategy not in ("least_used", "round_robin", "random", "fallback"):
            raise ValueError(f"unknown strategy {strategy!r}")
        values = {"rebalance": 0.0, "reserve": 1.0}
        for option in options:
            key, _, value = option.partition("=")
            if key not in values:
                raise ValueError(f"unknown option {key!r} in {text!r}")
            values[key] = float(value)
        return cls(strategy, values["rebalance"], values["reserve"], with_shares)


@dataclass
class Setup:
    """
    The team, the subscriptions and their capacities.

    :ivar subscriptions: (tag, plan) pairs, plans as in :obj:`ccmside.PLANS`.
    :ivar pro_5h, pro_weekly: a Pro plan's capacity per window, in cost
        units; other plans have their plan weight times these.
    :ivar prior_pace: how much of its capacity each weekly window had used,
        per elapsed part of it, before the week starts.
    :ivar share_5h, share_weekly: every user's share of the pool's windows
        in the ``+shares`` scenarios, percent (None: twice a fair part,
        :func:`bench.simulator.shares.equal_share`; 0: no share).
    """

    seed: int = 1
    users: int = 10
    heavy: int = 2
    days: float = 7.0
    load: float = 0.9
    subscriptions: list[tuple[str, str]] = field(
        default_factory=lambda: [("max5-a", "max5"), ("max5-b", "max5"), ("pro", "pro")]
    )
    pro_5h: float = 15.0
    pro_weekly: float = 100.0
    prior_pace: float = 0.5
    share_5h: float | None = None
    share_weekly: float | None = None

    def shares_of(self, users: int) -> tuple[float, float]:
        """
        The (5-hour, weekly) share each of ``users`` users has with shares.
        """
        fair = shares.equal_share(users)
        return (
            fair if self.share_5h is None else self.share_5h,
            fair if self.share_weekly is None else self.share_weekly,
        )


def team_week(setup: Setup) -> list[workload.Request]:
    """
    The week every scenario replays, its costs scaled to ``load`` times the
    weekly capacity of the pool over the simulated days.
    """
    rng = random.Random(f"{setup.seed}-team")
    spec = workload.default_team(rng, setup.users, setup.heavy)
    spec.days = setup.days
    requests = workload.week_of(spec, rng)
    capacity = sum(_weight(plan) * setup.pro_weekly for _, plan in setup.subscriptions)
    return workload.scaled(requests, setup.load * capacity * setup.days / 7)


def _weight(plan: str) -> float:
    """
    The plan weight ccm gives ``plan`` (a key of :obj:`ccmside.PLANS`).
    """
    return plan_weight(*ccmside.PLANS[plan])


def run(setup: Setup, scenario: Scenario, requests: list[workload.Request]) -> dict[str, Any]:
    """
    Replay ``requests`` for ``scenario``; its figures (see
    :obj:`bench.simulator.metrics`).
    """
    users = sorted({r.user for r in requests})
    weights = {tag: _weight(plan) for tag, plan in setup.subscriptions}
    started = time.perf_counter()
    clock = Clock()
    clock.advance(START)
    share_5h, share_weekly = setup.shares_of(len(users))
    callers = shares.callers(users, share_5h, share_weekly)
    gate = shares.gate(scenario.with_shares, clock)
    phases = random.Random(f"{setup.seed}-phases")
    upstream: dict[str, Subscription] = {}
    members = []
    for tag, plan in setup.subscriptions:
        reset = START + phases.uniform(0, WEEK)
        used = setup.prior_pace * (1 - (reset - START) / WEEK)
        upstream[tag] = Subscription(
            tag, weights[tag], setup.pro_5h, setup.pro_weekly, reset, used
        )
        cap = 100.0 - scenario.reserve
        members.append(PoolMember(ccmside.credential(tag, plan, clock), cap, cap))
    balancer = ccmside.pool(
        scenario.strategy,
        members,
        clock,
        random.Random(f"{setup.seed}-pool"),
        scenario.rebalance_threshold,
    )
    tally = metrics.Tally()
    for request in requests:
        clock.advance(START + request.at - clock.seconds())
        now = clock.seconds()
        tally.ask(request.user, request.session_id, request.cost)

        def answer(tag: str, cost: float) -> tuple[int, Headers]:
            return upstream[tag].answer(cost, now)

        call = Call(session_id=request.session_id, agent_id=request.agent_id, is_message=True)
        outcome = ccmside.forward(
            balancer,
            call,
            request.cost,
            answer,
            now,
            callers[request.user],
            gate,
            shares.usage(request.user, request.cost),
        )
        if outcome.tag:
            tally.serve(request.user, request.session_id, request.cost, outcome.tag, outcome.absorbed)
        else:
            tally.refuse(outcome.absorbed, by_share=outcome.by_share)
    end = START + setup.days * 86400
    for subscription in upstream.values():
        subscription.finish(end)
    five_hour = [w for s in upstream.values() for w in s.five_hour.closed]
    weekly = [w for s in upstream.values() for w in s.weekly.closed]
    return {
        "scenario": scenario.name,
        "share_5h": share_5h if scenario.with_shares else None,
        "share_weekly": share_weekly if scenario.with_shares else None,
        "asked": tally.asked,
        "served": tally.served,
        "refused": tally.refused,
        "refused_by_share": tally.refused_by_share,
        "absorbed_429": tally.absorbed_429,
        "served_pct": 100.0 * tally.served / tally.asked if tally.asked else 100.0,
        "sessions": sum(1 for tags in tally.session_tags.values() if tags),
        "sessions_one_credential_pct": 100.0 * tally.sessions_on_one_credential(),
        "jain": metrics.fairness(tally.asked_cost, tally.served_cost),
        "unused_5h_pct": _percent(metrics.unused_at_reset(five_hour)),
        "unused_weekly_pct": _percent(metrics.unused_at_reset(weekly)),
        "served_by": {tag: s.served for tag, s in upstream.items()},
        "seconds": time.perf_counter() - started,
    }


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction
