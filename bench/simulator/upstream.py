"""
The simulated upstream: each subscription's 5-hour and weekly windows, in
cost units, answering as Anthropic does.

A subscription's capacity per window is its plan weight
(:obj:`ccm.pool.plan.plan_weight`: Pro 1, Max 5x 5, Max 20x 10) times a
Pro window's capacity.  The 5-hour window opens with the first request
after the previous one ended and lasts 18000 s; the weekly window resets
every 604800 s at a time of its own.  A request is served while both windows
have room (and may take utilization a little past 100 %, as the real
``1.01`` readings do); otherwise the answer is a 429 with the unified
``rejected`` headers naming the binding window and a ``retry-after``.
Every answer carries the unified headers of anthropic-wire.md section 3.2:
utilizations as fractions with two decimals, resets in epoch seconds, as
the windows stood when the request arrived (a streamed answer's headers
precede its tokens), so a request's own use shows in the next answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.web.http_headers import Headers

FIVE_HOUR = 18000.0
WEEK = 604800.0
PREFIX = "anthropic-ratelimit-unified-"
#: Above this utilization a window's status reads ``allowed_warning``.
WARNING_AT = 0.8


@dataclass
class WindowLedger:
    """
    One window of one subscription: its capacity, what it used, when it
    resets, and what was left of each window that reset.

    :ivar closed: (capacity, unused) of each window that reset.
    """

    capacity: float
    length: float
    used: float = 0.0
    resets_at: float = 0.0
    rolling: bool = False
    closed: list[tuple[float, float]] = field(default_factory=list)

    def settle(self, now: float) -> None:
        """
        Close every window whose reset time has passed by ``now``.
        """
        while self.resets_at and self.resets_at <= now:
            self.closed.append((self.capacity, max(0.0, self.capacity - self.used)))
            self.used = 0.0
            # A 5-hour window opens only with the next request.
            self.resets_at = 0.0 if self.rolling else self.resets_at + self.length

    def open(self, now: float) -> None:
        """
        Start a 5-hour window at ``now`` if none is open.
        """
        if not self.resets_at:
            self.resets_at = now + self.length

    @property
    def full(self) -> bool:
        """
        Whether no request fits any more.
        """
        return self.used >= self.capacity

    @property
    def utilization(self) -> float:
        """
        The used fraction, as the headers give it.
        """
        return self.used / self.capacity


class Subscription:
    """
    One subscription at the simulated upstream.

    :param weekly_reset: the first reset of its weekly window (epoch
        seconds), and ``weekly_used`` what that window had used already.
    """

    def __init__(
        self,
        tag: str,
        weight: float,
        five_hour_capacity: float,
        weekly_capacity: float,
        weekly_reset: float,
        weekly_used: float = 0.0,
    ) -> None:
        self.tag = tag
        self.weight = weight
        self.five_hour = WindowLedger(weight * five_hour_capacity, FIVE_HOUR, rolling=True)
        self.weekly = WindowLedger(
            weight * weekly_capacity, WEEK, used=weekly_used * weight * weekly_capacity,
            resets_at=weekly_reset,
        )
        self.served = 0
        self.rejected = 0

    def answer(self, cost: float, now: float) -> tuple[int, Headers]:
        """
        Serve a request of ``cost`` at ``now`` if both windows have room:
        200 and the allowed headers (of the windows before it), else 429
        and the rejected ones.
        """
        for ledger in (self.five_hour, self.weekly):
            ledger.settle(now)
        self.five_hour.open(now)
        binding = "five_hour" if self.five_hour.full else "seven_day" if self.weekly.full else ""
        if binding:
            self.rejected += 1
            return 429, self._headers(now, binding)
        # The headers go out before the answer is generated: they are the
        # windows as the request found them, its own use shows in the next.
        headers = self._headers(now, "")
        self.five_hour.used += cost
        self.weekly.used += cost
        self.served += 1
        return 200, headers

    def finish(self, now: float) -> None:
        """
        Close the windows whose reset has passed at the end of the run.
        """
        for ledger in (self.five_hour, self.weekly):
            ledger.settle(now)

    def _headers(self, now: float, rejected: str) -> Headers:
        values: dict[str, str] = {}
        statuses = []
        for key, claim, ledger in (
            ("5h", "five_hour", self.five_hour),
            ("7d", "seven_day", self.weekly),
        ):
            utilization = ledger.utilization
            status = (
                "rejected" if claim == rejected
                else "allowed_warning" if utilization >= WARNING_AT else "allowed"
            )
            statuses.append(status)
            values[f"{key}-status"] = status
            values[f"{key}-reset"] = str(int(ledger.resets_at))
            values[f"{key}-utilization"] = f"{utilization:.2f}"
        claim = rejected or (
            "seven_day" if self.weekly.utilization > self.five_hour.utilization else "five_hour"
        )
        overall = "rejected" if rejected else (
            "allowed_warning" if "allowed_warning" in statuses else "allowed"
        )
        values["status"] = overall
        values["representative-claim"] = claim
        values["reset"] = values["5h-reset" if claim == "five_hour" else "7d-reset"]
        values["fallback-percentage"] = "0.5"
        values["overage-status"] = "rejected"
        values["overage-disabled-reason"] = "org_level_disabled"
        headers = Headers()
        for name, value in values.items():
            headers.addRawHeader(PREFIX + name, value)
        if rejected:
            headers.addRawHeader("retry-after", str(max(1, int(float(values["reset"]) - now))))
        return headers
