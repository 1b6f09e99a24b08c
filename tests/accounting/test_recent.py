"""
Tests for :obj:`ccm.accounting.recent`: the last five hours of usage, per
user.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting.recent import RECENT_SECONDS, RecentUsage, RecordingTee, recording_also
from tests.fixtures import MemoryRecorder, record, usage_record


class RecentUsageTests(SynchronousTestCase):
    """
    :obj:`RecentUsage` on a fake clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.recent = RecentUsage(self.clock)

    def test_per_user(self) -> None:
        """
        Requests, all their tokens and their cost add up per user.
        """
        record(self.recent, user="alice", input_tokens=100_000, output_tokens=50, cache_read_input_tokens=10)
        record(self.recent, user="alice", input_tokens=100_000, output_tokens=50)
        record(self.recent, user="", input_tokens=1)
        figures = self.recent.by_user(0)
        self.assertEqual(figures["alice"].requests, 2)
        self.assertEqual(figures["alice"].tokens, 200_110)
        self.assertGreater(figures["alice"].cost_usd, 0)
        self.assertEqual(figures[""].requests, 1)

    def test_since(self) -> None:
        """
        Only what was recorded from ``since`` on counts (to the minute), and
        nothing older than five hours.
        """
        record(self.recent, user="alice", input_tokens=1)
        self.clock.advance(3600)
        since = self.clock.seconds()
        record(self.recent, user="alice", input_tokens=2)
        self.assertEqual(self.recent.by_user(since)["alice"].tokens, 2)
        self.assertEqual(self.recent.by_user(0)["alice"].tokens, 3)
        self.clock.advance(RECENT_SECONDS - 1800)
        self.assertEqual(self.recent.by_user(0)["alice"].tokens, 2)

    def test_old_buckets_go(self) -> None:
        """
        Recording drops the buckets older than five hours, so memory stays
        bounded.
        """
        for _ in range(400):
            record(self.recent, user="alice", input_tokens=1)
            self.clock.advance(60)
        self.assertLessEqual(len(self.recent._buckets), RECENT_SECONDS / 60 + 2)

    def test_uncountable_records(self) -> None:
        """
        A record without a model is not counted, as the usage file does not
        count it.
        """
        self.recent.record(usage_record(model="", input_tokens=5))
        self.assertEqual(self.recent.by_user(0), {})


class TeeTests(SynchronousTestCase):
    """
    :obj:`RecordingTee` and :obj:`recording_also`.
    """

    def test_tee(self) -> None:
        """
        Each record goes to every recorder.
        """
        first, second = MemoryRecorder(), MemoryRecorder()
        record(RecordingTee([first, second]), user="bob")
        self.assertEqual(len(first.records), 1)
        self.assertEqual(first.records, second.records)

    def test_recording_also(self) -> None:
        """
        Without a recorder nothing is counted (None); with one, the recent
        usage records beside it.
        """
        recent = RecentUsage(Clock())
        self.assertIsNone(recording_also(None, recent))
        saver = MemoryRecorder()
        self.assertIs(recording_also(saver, None), saver)
        tee = recording_also(saver, recent)
        assert isinstance(tee, RecordingTee)
        self.assertEqual(tee.recorders, (saver, recent))
