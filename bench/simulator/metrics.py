"""
What a run measured, and how it is summed up.

* served without a user-visible 429: the requests whose client got an
  answer from a subscription (ccm may have absorbed upstream 429s on the
  way by retrying on another credential), out of all requests asked;
* sessions on one credential: the sessions (main agent and sub-agents)
  every served request of which went to the same credential, out of the
  sessions with at least one served request: their prompt cache stayed;
* Jain's index over users' entitled shares (:func:`fairness`);
* capacity unused at reset: of the capacity of every window that reset
  during the run, the part no request used (5-hour and weekly apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Tally:
    """
    The counts of one run, kept as it goes.
    """

    asked: int = 0
    served: int = 0
    refused: int = 0
    refused_by_share: int = 0
    absorbed_429: int = 0
    asked_cost: dict[str, float] = field(default_factory=dict)
    served_cost: dict[str, float] = field(default_factory=dict)
    session_tags: dict[str, set[str]] = field(default_factory=dict)

    def ask(self, user: str, session: str, cost: float) -> None:
        """
        A request of ``user`` in ``session`` costing ``cost`` was sent.
        """
        self.asked += 1
        self.asked_cost[user] = self.asked_cost.get(user, 0.0) + cost
        self.served_cost.setdefault(user, 0.0)
        self.session_tags.setdefault(session, set())

    def serve(self, user: str, session: str, cost: float, tag: str, absorbed: int) -> None:
        """
        Credential ``tag`` served it, after ``absorbed`` upstream 429s.
        """
        self.served += 1
        self.absorbed_429 += absorbed
        self.served_cost[user] += cost
        self.session_tags[session].add(tag)

    def refuse(self, absorbed: int, by_share: bool = False) -> None:
        """
        The client got a 429 (from ccm's share policy when ``by_share``).
        """
        self.refused += 1
        self.absorbed_429 += absorbed
        if by_share:
            self.refused_by_share += 1

    def sessions_on_one_credential(self) -> float:
        """
        The fraction of sessions with a served request that stayed on one
        credential.
        """
        served = [tags for tags in self.session_tags.values() if tags]
        return sum(1 for tags in served if len(tags) == 1) / len(served) if served else 1.0


def entitlements(asked: dict[str, float], total: float) -> dict[str, float]:
    """
    Each user's entitled share of ``total`` (what was served in all):
    max-min fair (water-filling), so a user asking for less than an equal
    part is entitled to all of it, and the rest is split equally among the
    others.  Every user's share is the smaller of their demand and one
    common level.
    """
    remaining = total
    pending = sorted(asked.items(), key=lambda item: item[1])
    result: dict[str, float] = {}
    while pending:
        level = remaining / len(pending)
        user, demand = pending[0]
        if demand <= level:
            result[user] = demand
            remaining -= demand
            pending.pop(0)
            continue
        for user, _ in pending:
            result[user] = level
        break
    return result


def fairness(asked: dict[str, float], served: dict[str, float]) -> float:
    """
    Jain's index ``(sum x)^2 / (n sum x^2)`` of ``x_i = served_i /
    entitled_i`` over the users who asked for anything, where ``entitled_i``
    is the max-min fair share of everything served (:func:`entitlements`):
    1 when every user got exactly their entitled share, ``1/n`` when one
    user got everything.  Costs, not request counts, are compared.
    """
    users = [u for u, cost in asked.items() if cost > 0]
    if not users:
        return 1.0
    entitled = entitlements({u: asked[u] for u in users}, sum(served[u] for u in users))
    ratios = [served[u] / entitled[u] if entitled[u] > 0 else 1.0 for u in users]
    squares = sum(x * x for x in ratios)
    if squares == 0:
        return 1.0
    return sum(ratios) ** 2 / (len(ratios) * squares)


def unused_at_reset(closed: list[tuple[float, float]]) -> float | None:
    """
    The unused part of the capacity of the windows in ``closed`` (capacity,
    unused), or None when no window reset.
    """
    capacity = sum(c for c, _ in closed)
    return sum(u for _, u in closed) / capacity if capacity else None
