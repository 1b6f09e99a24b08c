# -*- test-case-name: tests.metrics.test_shares -*-
"""
The users' share gauges, read at each scrape from
:obj:`ccm.shares.view.ShareView` (a prometheus_client custom collector,
as :obj:`ccm.metrics.credentials` is): for each configured user and each
window they have a share of, the share, what they used and what remains,
as fractions of their pool's window capacity, and when their use next
falls.  Users without a share in a window have no series for it, so the
labels stay within the configured users and the two windows.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ccm.metrics.credentials import WINDOW_LABELS
from ccm.shares.standing import ShareFigures

_LABELS = dict(WINDOW_LABELS)


class ShareCollector:
    """
    The share gauges of the figures ``by_user`` reads (by user name).
    """

    def __init__(self, by_user: Callable[[], Mapping[str, Sequence[ShareFigures]]]) -> None:
        self._by_user = by_user

    def collect(self) -> Iterator[Metric]:
        """
        The gauges as they stand now.
        """
        share = GaugeMetricFamily(
            "ccm_user_share_ratio",
            "The user's share of their pool's window (1 = all of its capacity)",
            labels=["user", "window"],
        )
        used = GaugeMetricFamily(
            "ccm_user_share_used_ratio",
            "What the user used of their pool's window (1 = all of its capacity)",
            labels=["user", "window"],
        )
        remaining = GaugeMetricFamily(
            "ccm_user_share_remaining_ratio",
            "What is left of the user's share (1 = all of the pool's capacity)",
            labels=["user", "window"],
        )
        resets = GaugeMetricFamily(
            "ccm_user_share_reset_timestamp_seconds",
            "When the user's use of the window next falls (Unix seconds); absent while "
            "they used nothing",
            labels=["user", "window"],
        )
        for user, figures in self._by_user().items():
            for f in figures:
                labels = [user, _LABELS[f.window]]
                share.add_metric(labels, f.share / 100)
                used.add_metric(labels, f.used / 100)
                remaining.add_metric(labels, f.remaining / 100)
                if f.resets_at > 0:
                    resets.add_metric(labels, f.resets_at)
        yield from (share, used, remaining, resets)
