# -*- test-case-name: tests.accounting.test_book -*-
"""
Usage accounting in memory: who used how many tokens of which model.

Usage is kept per *combination* of model, context window and weekly
cycle, in total and per user, as the reference's usages file keeps it
(:obj:`ccm.accounting.document`); :obj:`ccm.accounting.usagefile` keeps it on disk
across restarts.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ccm.accounting.counters import Combination, UsageCounts, UsageRecord, UsageSnapshot
from ccm.accounting.gojson import LATEST_TIMESTAMP


class UsageBook:
    """
    All usage recorded in one usages file, in memory: the
    :obj:`ccm.accounting.counters.UsageCounters` of a single ccm process.

    :ivar combinations: the combinations, in the order they were first seen.
    :ivar last_updated: Unix seconds of the last record, or ``None`` when
        nothing was ever recorded (written as Go's zero time).
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, loaded: UsageSnapshot | None = None) -> None:
        """
        :param clock: tells the time of each record.
        :param loaded: what a usages file held, to count on from; nothing
            when ``None``.
        """
        self._clock = clock
        if loaded is None:
            loaded = UsageSnapshot()
        self.combinations: list[Combination] = copy.deepcopy(list(loaded.combinations))
        self.last_updated: float | None = loaded.last_updated
        # The exact nanoseconds of a loaded last_updated, which a float
        # cannot hold, so that a loaded file is written back unchanged.
        self._loaded_time: tuple[float | None, int] | None = None
        if loaded.last_updated_ns is not None:
            self._loaded_time = (loaded.last_updated, loaded.last_updated_ns)
        self._revision = 0

    def record(self, record: UsageRecord) -> None:
        """
        Count one response: one request, its messages and its tokens, in the
        combination's total and, for a named user, in theirs.

        A record without a model or with a context window ``<= 0`` is
        ignored; a week start that cannot be written down counts as
        untagged.  When the tokens' ``cache_creation_input_tokens`` is 0,
        the sum of the 5-minute and 1-hour writes is counted instead.
        """
        if not record.model or record.context_window <= 0:
            self.log.debug(
                "not recording usage with model {model!r} and context window {context_window}",
                model=record.model[:100],
                context_window=record.context_window,
            )
            return
        tokens = record.tokens.counts()
        if not tokens.cache_creation_input_tokens:
            tokens = replace(
                tokens,
                cache_creation_input_tokens=tokens.cache_creation_5m_input_tokens
                + tokens.cache_creation_1h_input_tokens,
            )
        counts = UsageCounts(1, record.messages, tokens)
        week_start_unix = record.week_start_unix
        if not 0 < week_start_unix <= LATEST_TIMESTAMP:
            week_start_unix = 0
        combination = self._combination(record.model, record.context_window, week_start_unix)
        combination.total += counts
        if record.user:
            combination.by_user[record.user] = combination.by_user.get(record.user, UsageCounts()) + counts
        self.last_updated = self._clock.seconds()
        self._revision += 1

    def _combination(self, model: str, context_window: int, week_start_unix: int) -> Combination:
        for combination in self.combinations:
            if (
                combination.model == model
                and combination.context_window == context_window
                and combination.week_start_unix == week_start_unix
            ):
                return combination
        combination = Combination(model, context_window, week_start_unix)
        self.combinations.append(combination)
        return combination

    def snapshot(self) -> UsageSnapshot:
        """
        A copy of the book, for saving or showing.
        """
        loaded_ns = None
        if self._loaded_time is not None and self._loaded_time[0] == self.last_updated:
            loaded_ns = self._loaded_time[1]
        return UsageSnapshot(
            combinations=tuple(copy.deepcopy(self.combinations)),
            last_updated=self.last_updated,
            last_updated_ns=loaded_ns,
            revision=self._revision,
        )
