# -*- test-case-name: tests.accounting.test_book -*-
"""
The seam of usage accounting: what the proxy records about a response
(:obj:`UsageRecord`), to whom (a :obj:`UsageRecorder`), what a usages file holds
(each :obj:`Combination` with its :obj:`UsageCounts`, taken together in a :obj:`UsageSnapshot`),
and the small interface of the counters behind it (:obj:`UsageCounters`).

:obj:`ccm.accounting.book.UsageBook` keeps the counters in memory; a store
shared by several ccm processes can take its place behind
:obj:`UsageCounters` without the proxy or the saver noticing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ccm.accounting.pricing import cost_usd, prices_for, round_cents
from ccm.accounting.tokens import TokenCounts


@dataclass(frozen=True)
class UsageRecord:
    """
    What one response used, as the proxy records it.

    :ivar model: The model that answered; an empty one is not counted.
    :ivar context_window: 200000 or 1000000; ``<= 0`` is not counted.
    :ivar week_start_unix: The weekly cycle (Unix seconds; 0: untagged).
    :ivar user: The configured user name, ``""`` when anonymous (counted in
        the total only).
    :ivar tokens: The tokens of the response.
    :ivar messages: The number of messages in the request.
    """

    model: str
    context_window: int
    week_start_unix: int
    user: str
    tokens: TokenCounts
    messages: int


class UsageRecorder(Protocol):
    """
    Where the tokens of a proxied request are counted.
    """

    def record(self, record: UsageRecord) -> None:
        """
        Count one response.
        """


@dataclass
class UsageCounts:
    """
    One statistics object of the usages file: the requests, messages and
    tokens of a combination, in total or for one user.
    """

    request_count: int = 0
    messages_count: int = 0
    tokens: TokenCounts = field(default_factory=TokenCounts)

    def __add__(self, other: UsageCounts) -> UsageCounts:
        """
        The counts of both.
        """
        return UsageCounts(
            self.request_count + other.request_count,
            self.messages_count + other.messages_count,
            self.tokens + other.tokens,
        )

    def __sub__(self, other: UsageCounts) -> UsageCounts:
        """
        These counts less ``other``'s, field by field (possibly negative).
        """
        return UsageCounts(
            self.request_count - other.request_count,
            self.messages_count - other.messages_count,
            self.tokens - other.tokens,
        )

    def cost(self, model: str, context_window: int) -> float:
        """
        What these tokens cost in USD, rounded half-up to cents.
        """
        return round_cents(cost_usd(prices_for(model, context_window), self.tokens))


@dataclass
class Combination:
    """
    The usage of one model at one context window in one weekly cycle
    (``week_start_unix`` 0: untagged), in total and per user.
    """

    model: str
    context_window: int
    week_start_unix: int
    total: UsageCounts = field(default_factory=UsageCounts)
    by_user: dict[str, UsageCounts] = field(default_factory=dict)


@dataclass(frozen=True)
class UsageSnapshot:
    """
    What a usages file holds at one moment, to be written or shown.  It is
    a copy: later records do not change it.

    :ivar combinations: The combinations, in the order they were first seen.
    :ivar last_updated: Unix seconds of the last record, or ``None`` when
        nothing was ever recorded (written as Go's zero time).
    :ivar last_updated_ns: The exact Unix nanoseconds of ``last_updated`` as
        a file gave them, which a float cannot hold, so that a file is
        written back unchanged; ``None`` once something was recorded.
    :ivar revision: How many records the counters have taken since they
        were made or loaded: a snapshot with the revision of the last one
        saved holds nothing new.
    """

    combinations: tuple[Combination, ...] = ()
    last_updated: float | None = None
    last_updated_ns: int | None = None
    revision: int = 0


class UsageCounters(UsageRecorder, Protocol):
    """
    The counters of one usages file: the proxy's records go in
    (:obj:`UsageRecorder.record`), and the saver takes a :obj:`snapshot` out to
    write them.
    """

    def snapshot(self) -> UsageSnapshot:
        """
        A copy of what is counted now.
        """
