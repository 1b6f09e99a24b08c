# -*- test-case-name: tests.metrics.test_credentials -*-
"""
The credentials' gauges, read from the running objects at each scrape
(a prometheus_client custom collector), so that nothing is copied into
the metrics ahead of time and nothing can go stale: each credential's state
(one series per state, 1 for the current one and 0 for the others), the
utilization and reset time of its two windows, and when its access token
expires.  Windows whose reset time has passed read as new and empty, as
they do for every decision.
"""

from __future__ import annotations

from typing import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from twisted.internet.interfaces import IReactorTime

from ccm.pool.figures import WindowName
from ccm.pool.member import PoolMember
from ccm.pool.standing import STATES, state_name

#: The ``window`` label of each window.
WINDOW_LABELS = ((WindowName.FIVE_HOUR, "5h"), (WindowName.WEEKLY, "weekly"))


class CredentialCollector:
    """
    The gauges of the credentials ``members`` holds, at ``clock``'s time.
    """

    def __init__(self, members: Mapping[str, PoolMember], clock: IReactorTime) -> None:
        self._members = members
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """
        The gauges as they stand now.
        """
        now = self._clock.seconds()
        state = GaugeMetricFamily(
            "ccm_credential_state",
            "1 for the credential's current state, 0 for the others",
            labels=["credential", "state"],
        )
        utilization = GaugeMetricFamily(
            "ccm_credential_utilization_ratio",
            "Share of the window used, as Anthropic reports it (1 = all of it)",
            labels=["credential", "window"],
        )
        resets = GaugeMetricFamily(
            "ccm_credential_reset_timestamp_seconds",
            "When the window resets (Unix seconds); absent while unknown",
            labels=["credential", "window"],
        )
        expiry = GaugeMetricFamily(
            "ccm_credential_token_expiry_timestamp_seconds",
            "When the access token expires (Unix seconds); absent without a token "
            "or for one that never expires",
            labels=["credential"],
        )
        for tag, member in self._members.items():
            current = state_name(member.state(now))
            for name in STATES:
                state.add_metric([tag, name], 1.0 if name == current else 0.0)
            limits = member.credential.rate_limits
            for window_name, label in WINDOW_LABELS:
                window = limits.window(window_name, now)
                utilization.add_metric([tag, label], window.utilization / 100)
                if window.resets_at > 0:
                    resets.add_metric([tag, label], window.resets_at)
            tokens = member.credential.tokens
            if tokens is not None and tokens.expires_at_ms:
                expiry.add_metric([tag], tokens.expires_at_ms / 1000)
        yield from (state, utilization, resets, expiry)
