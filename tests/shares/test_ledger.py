"""
Tests for :obj:`ccm.shares.ledger`: the rises of a credential's windows
charged to the requests that ran, with figures computed by hand.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ccm.pool.figures import Window
from ccm.shares.ledger import FIVE_HOUR, WEEKLY, ShareBook

RESET = 18000.0


def reading(percent: float, resets_at: float = RESET) -> dict:
    """A 5-hour reading of ``percent`` that resets at ``resets_at``."""
    return {FIVE_HOUR: Window(percent, resets_at)}


class OverlapTests(SynchronousTestCase):
    """
    Two overlapping requests on one credential, driven on a
    :obj:`Clock`: alice runs from 0 to 20 s for $2, bob from 10 to 40 s for
    $3; readings at 0 (10 %), 10 (10 %), 30 (16 %) and 50 (18 %).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.book = ShareBook()

    def observe(self, percent: float, weight: float = 1.0) -> None:
        self.book.observe("a", reading(percent), weight, self.clock.seconds())

    def run_to(self, seconds: float) -> None:
        self.clock.advance(seconds - self.clock.seconds())

    def used(self, user: str) -> float:
        return self.book.used(user, "a", FIVE_HOUR, self.clock.seconds())

    def play(self, weight: float = 1.0) -> tuple[int, int]:
        """The scenario up to bob's end at 40 s."""
        self.observe(10, weight)
        alice = self.book.begin("a", "alice", self.clock.seconds())
        self.run_to(10)
        self.observe(10, weight)
        bob = self.book.begin("a", "bob", self.clock.seconds())
        self.run_to(20)
        self.book.finish(alice, 2.0, self.clock.seconds())
        self.run_to(30)
        self.observe(16, weight)
        return alice, bob

    def test_pending_until_all_finished(self) -> None:
        """
        The 6 % rise of (10 s, 30 s] waits for bob, still running: nobody is
        charged, and with no rate learnt yet nothing is estimated.
        """
        self.play()
        self.assertEqual((self.used("alice"), self.used("bob")), (0.0, 0.0))
        self.assertIsNone(self.book.rate("a", FIVE_HOUR))

    def test_split_by_cost_in_interval(self) -> None:
        """
        When bob ends, (10 s, 30 s] is split by the cost each spent in it:
        alice $1 (10 of her 20 s), bob $2 (20 of his 30 s), so 2 % and 4 %;
        the rate is $3 / 6 % = $0.5 per 1 %, and bob's last $1 (30 to 40 s)
        is estimated at it: 2 % more before the next reading.
        """
        _, bob = self.play()
        self.run_to(40)
        self.book.finish(bob, 3.0, self.clock.seconds())
        self.assertAlmostEqual(self.book.charged("alice", "a", FIVE_HOUR, 40), 2.0)
        self.assertAlmostEqual(self.book.charged("bob", "a", FIVE_HOUR, 40), 4.0)
        self.assertAlmostEqual(self.book.rate("a", FIVE_HOUR) or 0, 0.5)
        self.assertAlmostEqual(self.book.estimated("bob", "a", FIVE_HOUR, 40), 2.0)
        self.assertAlmostEqual(self.used("bob"), 6.0)
        self.assertAlmostEqual(self.used("alice"), 2.0)

    def test_next_reading_replaces_estimate(self) -> None:
        """
        The reading at 50 s (18 %) charges its 2 % to bob, the only one who
        ran in (30 s, 50 s]; his estimate is gone, his use is 6 % either
        way, and the rate stays $0.5 ($1 for 2 %).
        """
        _, bob = self.play()
        self.run_to(40)
        self.book.finish(bob, 3.0, self.clock.seconds())
        self.run_to(50)
        self.observe(18)
        self.assertAlmostEqual(self.book.charged("bob", "a", FIVE_HOUR, 50), 6.0)
        self.assertEqual(self.book.estimated("bob", "a", FIVE_HOUR, 50), 0.0)
        self.assertAlmostEqual(self.book.rate("a", FIVE_HOUR) or 0, 0.5)
        self.assertAlmostEqual(self.used("alice"), 2.0)

    def test_plan_weight(self) -> None:
        """
        On a credential of weight 5 (Max 5x) the same rises are worth five
        times the Pro-percent units.
        """
        _, bob = self.play(weight=5.0)
        self.run_to(40)
        self.book.finish(bob, 3.0, self.clock.seconds())
        self.assertAlmostEqual(self.book.charged("alice", "a", FIVE_HOUR, 40), 10.0)
        self.assertAlmostEqual(self.book.charged("bob", "a", FIVE_HOUR, 40), 20.0)
        self.assertAlmostEqual(self.book.estimated("bob", "a", FIVE_HOUR, 40), 10.0)


class RuleTests(SynchronousTestCase):
    """
    The rules beside the split: resets, rises nobody ran, unknown costs.
    """

    def test_first_reading_is_a_baseline(self) -> None:
        """
        The first reading of a credential charges nothing, however high.
        """
        book = ShareBook()
        key = book.begin("a", "alice", 0)
        book.observe("a", reading(70), 1.0, 5)
        book.finish(key, 1.0, 6)
        book.observe("a", reading(70), 1.0, 7)
        self.assertEqual(book.used("alice", "a", FIVE_HOUR, 8), 0.0)

    def test_no_participant_is_unattributed(self) -> None:
        """
        A rise over an interval in which no request ran is nobody's
        (use from outside ccm), kept apart.
        """
        book = ShareBook()
        book.observe("a", reading(10), 1.0, 0)
        book.observe("a", reading(13), 1.0, 60)
        self.assertEqual(book.unattributed("a", FIVE_HOUR, 61), 3.0)

    def test_unknown_costs_split_evenly(self) -> None:
        """
        Without costs (usage not metered), a rise is split evenly between
        the requests that ran.
        """
        book = ShareBook()
        book.observe("a", reading(10), 1.0, 0)
        keys = [book.begin("a", user, 0) for user in ("alice", "bob", "bob")]
        for key in keys:
            book.finish(key, 0.0, 5)
        book.observe("a", reading(16), 1.0, 10)
        self.assertEqual(book.charged("alice", "a", FIVE_HOUR, 11), 2.0)
        self.assertEqual(book.charged("bob", "a", FIVE_HOUR, 11), 4.0)

    def test_instant_request_in_its_first_interval(self) -> None:
        """
        A request that took no time puts all its cost in the interval it
        began in, even when a reading came at the same instant: alice's $1
        takes all of the first 2 %; in the next interval neither has a cost,
        so its 2 % is split evenly.
        """
        book = ShareBook()
        book.observe("a", reading(10), 1.0, 0)
        book.observe("a", reading(10), 1.0, 10)
        quick = book.begin("a", "alice", 10)
        other = book.begin("a", "bob", 10)
        book.observe("a", reading(12), 1.0, 10)
        book.finish(quick, 1.0, 10)
        book.finish(other, 0.0, 10)
        book.observe("a", reading(14), 1.0, 20)
        self.assertEqual(book.charged("alice", "a", FIVE_HOUR, 21), 3.0)
        self.assertEqual(book.charged("bob", "a", FIVE_HOUR, 21), 1.0)

    def test_drop_starts_new_window(self) -> None:
        """
        A reading below the last starts a new window: the old charges go,
        and the new utilization is the interval's rise.
        """
        book = ShareBook()
        book.observe("a", reading(50), 1.0, 0)
        key = book.begin("a", "alice", 0)
        book.finish(key, 1.0, 10)
        book.observe("a", reading(60), 1.0, 20)
        self.assertEqual(book.charged("alice", "a", FIVE_HOUR, 21), 10.0)
        key = book.begin("a", "alice", 30)
        book.finish(key, 1.0, 40)
        book.observe("a", reading(3, RESET * 2), 1.0, 50)
        self.assertEqual(book.charged("alice", "a", FIVE_HOUR, 51), 3.0)

    def test_small_fall_is_not_a_reset(self) -> None:
        """
        A fall of up to 2 points (a poll's 13.7 % under a header's 14 %) keeps
        the window and its charges, and the next rise counts from the higher
        figure.
        """
        book = ShareBook()
        book.observe("a", reading(10), 1.0, 0)
        key = book.begin("a", "alice", 0)
        book.finish(key, 1.0, 10)
        book.observe("a", reading(14), 1.0, 20)
        book.observe("a", reading(13.7), 1.0, 30)
        key = book.begin("a", "alice", 30)
        book.finish(key, 1.0, 40)
        book.observe("a", reading(15), 1.0, 50)
        self.assertAlmostEqual(book.charged("alice", "a", FIVE_HOUR, 51), 5.0)

    def test_later_reset_time_starts_new_window(self) -> None:
        """
        A reset time more than a minute later than the known one is a new
        window even when the utilization did not fall.
        """
        book = ShareBook()
        book.observe("a", reading(5), 1.0, 0)
        key = book.begin("a", "alice", 0)
        book.finish(key, 1.0, 10)
        book.observe("a", reading(8), 1.0, 20)
        key = book.begin("a", "alice", 30)
        book.finish(key, 1.0, 40)
        book.observe("a", reading(9, RESET + 3600), 1.0, 50)
        self.assertEqual(book.charged("alice", "a", FIVE_HOUR, 51), 9.0)

    def test_passed_reset_reads_empty(self) -> None:
        """
        Once a window's reset time passed, its charges no longer count,
        before any new reading; the other window keeps its own.
        """
        book = ShareBook()
        both = {FIVE_HOUR: Window(1, 100), WEEKLY: Window(1, 9000)}
        book.observe("a", both, 1.0, 0)
        key = book.begin("a", "alice", 0)
        book.finish(key, 1.0, 10)
        book.observe("a", {FIVE_HOUR: Window(4, 100), WEEKLY: Window(2, 9000)}, 1.0, 20)
        self.assertEqual(book.used("alice", "a", FIVE_HOUR, 99), 3.0)
        self.assertEqual(book.used("alice", "a", FIVE_HOUR, 100), 0.0)
        self.assertEqual(book.used("alice", "a", WEEKLY, 100), 1.0)
        self.assertEqual(book.resets_at("a", FIVE_HOUR, 100), 0.0)

    def test_unknown_key_ignored(self) -> None:
        """
        Finishing a key the book never gave (or twice) changes nothing.
        """
        book = ShareBook()
        key = book.begin("a", "alice", 0)
        book.finish(key, 1.0, 1)
        book.finish(key, 5.0, 2)
        book.finish(99, 5.0, 2)
        self.assertEqual(book.used("alice", "a", FIVE_HOUR, 3), 0.0)


class SnapshotTests(SynchronousTestCase):
    """
    :obj:`ShareBook.snapshot` and :obj:`ShareBook.restore`.
    """

    def test_round_trip(self) -> None:
        """
        A restored book has the charges, reset times and rates of the
        saved one, and goes on from the saved utilization.
        """
        book = ShareBook()
        book.observe("a", reading(10), 1.0, 0)
        key = book.begin("a", "alice", 0)
        book.finish(key, 2.0, 10)
        book.observe("a", reading(14), 1.0, 20)
        restored = ShareBook()
        restored.restore("a", book.snapshot()["a"], 30)
        self.assertEqual(restored.snapshot(), book.snapshot())
        key = restored.begin("a", "alice", 30)
        restored.finish(key, 1.0, 40)
        restored.observe("a", reading(15), 1.0, 50)
        self.assertEqual(restored.charged("alice", "a", FIVE_HOUR, 51), 5.0)
        self.assertEqual(restored.rate("a", FIVE_HOUR), 0.3 * 1.0 + 0.7 * 0.5)

    def test_bad_data(self) -> None:
        """
        Data that is not a snapshot raises :obj:`ValueError`.
        """
        data: dict[str, Any]
        for data in ({}, {"5-hour": {"charges": []}}, {"5-hour": None}):
            self.assertRaises(ValueError, ShareBook().restore, "a", data, 0)
