# -*- test-case-name: tests.accounting.test_recent -*-
"""
The usage of the last five hours, per user, for the dashboard.

The usages file counts by weekly cycle only, so it cannot say what a user
used in the subscription's current 5-hour window.  :obj:`RecentUsage`
records the same records a credential's usage file gets (through
:obj:`RecordingTee`), in one-minute buckets kept for five hours, and
answers for any moment within them.  Costs use the price table of
:obj:`ccm.accounting.pricing`, rounded to cents once per answer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

from twisted.internet.interfaces import IReactorTime

from ccm.accounting.counters import UsageRecord, UsageRecorder
from ccm.accounting.pricing import cost_usd, prices_for, round_cents

#: How far back the buckets go: the length of the 5-hour window.
RECENT_SECONDS = 5 * 3600.0
BUCKET_SECONDS = 60.0


@dataclass
class RecentFigures:
    """
    What one user used: requests, tokens (input, output, cache reads and
    writes together) and cost in USD.
    """

    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: RecentFigures) -> None:
        """
        Add ``other``'s figures to these.
        """
        self.requests += other.requests
        self.tokens += other.tokens
        self.cost_usd += other.cost_usd


@dataclass
class _Bucket:
    start: float
    by_user: dict[str, RecentFigures] = field(default_factory=dict)


def record_figures(record: UsageRecord) -> RecentFigures:
    """
    The figures of one record, its cost not rounded yet.
    """
    tokens = record.tokens.counts()
    cache_writes = tokens.cache_creation_input_tokens or (
        tokens.cache_creation_5m_input_tokens + tokens.cache_creation_1h_input_tokens
    )
    total = (
        tokens.input_tokens + tokens.output_tokens + tokens.cache_read_input_tokens + cache_writes
    )
    cost = cost_usd(prices_for(record.model, record.context_window), tokens)
    return RecentFigures(1, total, cost)


class RecentUsage:
    """
    The usage of one credential in the last :obj:`RECENT_SECONDS`, per user
    (the empty name for anonymous callers): a :obj:`UsageRecorder`.
    Records that the usage file would not count (no model, no context
    window) are not counted here either.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._buckets: deque[_Bucket] = deque()

    def record(self, record: UsageRecord) -> None:
        """
        Count one response in the bucket of now; buckets older than five
        hours go.
        """
        if not record.model or record.context_window <= 0:
            return
        now = self._clock.seconds()
        while self._buckets and self._buckets[0].start <= now - RECENT_SECONDS - BUCKET_SECONDS:
            self._buckets.popleft()
        start = now - now % BUCKET_SECONDS
        if not self._buckets or self._buckets[-1].start != start:
            self._buckets.append(_Bucket(start))
        figures = self._buckets[-1].by_user.setdefault(record.user, RecentFigures())
        figures.add(record_figures(record))

    def by_user(self, since: float) -> dict[str, RecentFigures]:
        """
        What each user used from ``since`` on (to the minute), at most five
        hours back; costs rounded to cents.  A query: nothing changes.
        """
        now = self._clock.seconds()
        since = max(since, now - RECENT_SECONDS)
        result: dict[str, RecentFigures] = {}
        for bucket in self._buckets:
            if bucket.start + BUCKET_SECONDS <= since:
                continue
            for user, figures in bucket.by_user.items():
                result.setdefault(user, RecentFigures()).add(figures)
        for figures in result.values():
            figures.cost_usd = round_cents(figures.cost_usd)
        return result


class RecordingTee:
    """
    A :obj:`UsageRecorder` that hands each record to several: a usage
    file's saver and the recent usage.
    """

    def __init__(self, recorders: Sequence[UsageRecorder]) -> None:
        self.recorders = tuple(recorders)

    def record(self, record: UsageRecord) -> None:
        """
        Record ``record`` in each recorder, in order.
        """
        for recorder in self.recorders:
            recorder.record(record)


def recording_also(
    recorder: UsageRecorder | None, recent: RecentUsage | None
) -> UsageRecorder | None:
    """
    ``recorder`` (a usage file's saver, or None: nothing is counted), with
    ``recent`` recording the same records when both are given.
    """
    if recorder is None or recent is None:
        return recorder
    return RecordingTee([recorder, recent])
