"""
Tests for :obj:`ccm.metrics.shares`: the users' share gauges of a built
service, read at scrape time.
"""

from __future__ import annotations

from prometheus_client import generate_latest
from twisted.trial.unittest import SynchronousTestCase

from tests.shares.usedshare import FIVE_HOUR_RESET, used_share

SERIES = (
    "ccm_user_share_ratio",
    "ccm_user_share_used_ratio",
    "ccm_user_share_remaining_ratio",
    "ccm_user_share_reset_timestamp_seconds",
)


class ShareGaugeTests(SynchronousTestCase):
    """
    The gauges after a known sequence (:obj:`tests.shares.usedshare`).
    """

    def setUp(self) -> None:
        self.harness = used_share(self)
        metrics = self.harness.service.metrics
        assert metrics is not None
        self.registry = metrics.registry

    def value(self, name: str, user: str, window: str) -> float | None:
        return self.registry.get_sample_value(name, {"user": user, "window": window})

    def test_values(self) -> None:
        """
        alice's 5-hour share is 0.10 of the pool, all of it used, nothing
        left, freed when the window resets; her weekly share is 0.5, unused,
        with no reset time since nothing of hers has to reset.
        """
        self.assertEqual(self.value("ccm_user_share_ratio", "alice", "5h"), 0.10)
        self.assertAlmostEqual(self.value("ccm_user_share_used_ratio", "alice", "5h") or 0, 0.10)
        self.assertEqual(self.value("ccm_user_share_remaining_ratio", "alice", "5h"), 0.0)
        self.assertEqual(
            self.value("ccm_user_share_reset_timestamp_seconds", "alice", "5h"), FIVE_HOUR_RESET
        )
        self.assertEqual(self.value("ccm_user_share_ratio", "alice", "weekly"), 0.5)
        self.assertEqual(self.value("ccm_user_share_used_ratio", "alice", "weekly"), 0.0)
        self.assertEqual(self.value("ccm_user_share_remaining_ratio", "alice", "weekly"), 0.5)
        self.assertIsNone(self.value("ccm_user_share_reset_timestamp_seconds", "alice", "weekly"))

    def test_labels_bounded(self) -> None:
        """
        Only configured users with a share have series, one per window they
        have a share of (bob has none), whatever callers sent.
        """
        text = generate_latest(self.registry).decode("utf-8")
        labels = set()
        for line in text.splitlines():
            if line.startswith(SERIES):
                labels.add(line[line.index("{") : line.index("}") + 1])
        self.assertEqual(labels, {'{user="alice",window="5h"}', '{user="alice",window="weekly"}'})

    def test_read_at_scrape(self) -> None:
        """
        The figures are read when scraped: once the 5-hour window has
        reset, alice's use of it reads as 0 and all her share is left.
        """
        self.harness.clock.advance(5 * 3600 + 1)
        self.assertEqual(self.value("ccm_user_share_used_ratio", "alice", "5h"), 0.0)
        self.assertEqual(self.value("ccm_user_share_remaining_ratio", "alice", "5h"), 0.10)
