"""
Tests for :obj:`ccm.shares.standing`: a user's use against their share of a
pool, and the 429 that refuses them.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.pool.figures import Window, WindowName
from ccm.shares.ledger import FIVE_HOUR, WEEKLY, ShareBook
from ccm.shares.standing import (
    Entitlement,
    ShareFigures,
    Shares,
    figures_over,
    pool_capacity,
    share_figures,
    share_refusal,
    standing,
    uses_of,
)

NOW = 1_800_000_000.0


def charged_book(uses: dict[str, tuple[float, float, float]], cost: float = 1.0) -> ShareBook:
    """
    A book in which alice's one request (of ``cost`` dollars) raised each
    credential's 5-hour window: ``{tag: (rise percent, weight, reset time)}``.
    """
    book = ShareBook()
    for tag, (rise, weight, resets_at) in uses.items():
        book.observe(tag, {FIVE_HOUR: Window(10, resets_at)}, weight, NOW - 100)
        key = book.begin(tag, "alice", NOW - 100)
        book.finish(key, cost, NOW - 50)
        book.observe(tag, {FIVE_HOUR: Window(10 + rise, resets_at)}, weight, NOW - 10)
    return book


class FiguresTests(SynchronousTestCase):
    """
    :obj:`share_figures`: use and capacity in percent of the pool.
    """

    def test_capacity_by_plan_weight(self) -> None:
        """
        A pool of a Pro (1) and a Max 5x (5) has 600 units; 30 % on the Max
        is 150 units, 25 % of the pool.
        """
        book = charged_book({"max": (30, 5.0, NOW + 3600)})
        figures = share_figures(book, "alice", 40, {"pro": 1.0, "max": 5.0}, FIVE_HOUR, NOW)
        self.assertEqual(figures.capacity, 600.0)
        self.assertAlmostEqual(figures.used, 25.0)
        self.assertAlmostEqual(figures.remaining, 15.0)
        self.assertFalse(figures.exhausted)
        self.assertEqual(figures.resets_at, NOW + 3600)

    def test_frees_up_when_enough_resets(self) -> None:
        """
        Over the share, it frees up at the first reset that brings the use
        back under it: 30 + 20 units against a 40 % share of 100 + 100
        (80 units) is not over; against 10 % (20 units) the earlier reset
        (of the 20) leaves 30, still over, so the later one frees it;
        against 24 % (48 units) the earlier one does.
        """
        book = charged_book({"a": (30, 1.0, NOW + 7200), "b": (20, 1.0, NOW + 3600)})
        weights = {"a": 1.0, "b": 1.0}
        self.assertFalse(share_figures(book, "alice", 40, weights, FIVE_HOUR, NOW).exhausted)
        figures = share_figures(book, "alice", 10, weights, FIVE_HOUR, NOW)
        self.assertTrue(figures.exhausted)
        self.assertEqual(figures.resets_at, NOW + 7200)
        self.assertEqual(share_figures(book, "alice", 24, weights, FIVE_HOUR, NOW).resets_at, NOW + 3600)

    def test_only_set_shares(self) -> None:
        """
        :obj:`standing` reports the windows the user has a share of.
        """
        book = charged_book({"a": (30, 1.0, NOW + 7200)})
        figures = standing(book, "alice", Shares(weekly=10), {"a": 1.0}, NOW)
        self.assertEqual([f.window for f in figures], [WEEKLY])
        self.assertFalse(Shares())


class OverTests(SynchronousTestCase):
    """
    :obj:`figures_over` and :obj:`Entitlement`: the standing from a
    capacity alone, as ``ccm usage`` reads it from the share files.
    """

    def test_same_as_by_weights(self) -> None:
        """
        Given the tags and the capacity the weights make, the figures are
        those of :obj:`share_figures`, without dollars.
        """
        book = charged_book({"a": (30, 1.0, NOW + 7200), "b": (20, 1.0, NOW + 3600)})
        weights = {"a": 1.0, "b": 1.0}
        self.assertEqual(pool_capacity(weights), 200.0)
        uses = uses_of(book, "alice", ["a", "b"], FIVE_HOUR, NOW)
        over = figures_over(book, uses, 10, 200.0, FIVE_HOUR, NOW)
        by_weights = share_figures(book, "alice", 10, weights, FIVE_HOUR, NOW)
        self.assertEqual(
            (over.used, over.remaining, over.resets_at), (25.0, 0.0, NOW + 7200)
        )
        self.assertEqual(
            (over.used, over.remaining, over.resets_at),
            (by_weights.used, by_weights.remaining, by_weights.resets_at),
        )
        self.assertEqual((over.used_usd, over.usd_per_percent), (None, None))

    def test_cap(self) -> None:
        """
        A 40 % share of 600 units is a cap of 240 units: 239 units used
        leave some, 240 use it up; no share, none.
        """
        entitlement = Entitlement(600.0, Shares(five_hour=40))
        book = ShareBook()

        def over(units: float, name: WindowName) -> ShareFigures:
            share = entitlement.shares.of(name)
            return figures_over(book, {"a": units}, share, entitlement.capacity, name, NOW)

        self.assertFalse(over(239.0, FIVE_HOUR).exhausted)
        self.assertTrue(over(240.0, FIVE_HOUR).exhausted)
        self.assertEqual(over(0.0, WEEKLY).share, 0.0)


class DollarTests(SynchronousTestCase):
    """
    The figures' ``used_usd`` and ``usd_per_percent``: the use read at each
    credential's dollars per 1 %.
    """

    def test_one_credential(self) -> None:
        """
        A $1 request raised a Pro's window by 4 %: $0.25 per 1 %, and the
        4 units alice used are $1.00.
        """
        book = charged_book({"a": (4, 1.0, NOW + 3600)})
        figures = share_figures(book, "alice", 10, {"a": 1.0}, FIVE_HOUR, NOW)
        self.assertEqual((figures.used_usd, figures.usd_per_percent), (1.0, 0.25))

    def test_plan_weights(self) -> None:
        """
        Two credentials, each raised by a $1 request: the Pro by 4 % ($0.25
        per 1 %, 4 units), the Max 5x by 2 % ($0.50 per 1 %, 10 units of
        $0.10).  alice used $1 + $1; 1 % of the pool is 1 % of each
        window, $0.25 + $0.50.
        """
        book = charged_book({"pro": (4, 1.0, NOW + 3600), "max": (2, 5.0, NOW + 3600)})
        figures = share_figures(book, "alice", 10, {"pro": 1.0, "max": 5.0}, FIVE_HOUR, NOW)
        used, per = figures.used_usd, figures.usd_per_percent
        assert used is not None and per is not None
        self.assertAlmostEqual(used, 2.0)
        self.assertAlmostEqual(per, 0.75)

    def test_credential_without_estimate(self) -> None:
        """
        A credential with no estimate yet is read at the others' dollars
        per unit: the Max 5x's 30 % rise on a $1 request is $1/150 a unit,
        so 1 % of the pool (1 unit of the Pro and 5 of the Max) is $0.04.
        """
        book = charged_book({"max": (30, 5.0, NOW + 3600)})
        figures = share_figures(book, "alice", 10, {"pro": 1.0, "max": 5.0}, FIVE_HOUR, NOW)
        used, per = figures.used_usd, figures.usd_per_percent
        assert used is not None and per is not None
        self.assertAlmostEqual(used, 1.0)
        self.assertAlmostEqual(per, 0.04)

    def test_use_on_a_credential_without_estimate(self) -> None:
        """
        alice's 2 units on ``b``, charged from a request of unknown cost
        (no estimate there), count at ``a``'s $0.25 per unit: $1.00 on
        ``a`` and $0.50 on ``b``.
        """
        book = charged_book({"a": (4, 1.0, NOW + 3600)})
        book.observe("b", {FIVE_HOUR: Window(10, NOW + 3600)}, 1.0, NOW - 100)
        book.finish(book.begin("b", "alice", NOW - 100), 0.0, NOW - 50)
        book.observe("b", {FIVE_HOUR: Window(12, NOW + 3600)}, 1.0, NOW - 10)
        self.assertEqual(book.rate("b", FIVE_HOUR), None)
        figures = share_figures(book, "alice", 10, {"a": 1.0, "b": 1.0}, FIVE_HOUR, NOW)
        used, per = figures.used_usd, figures.usd_per_percent
        assert used is not None and per is not None
        self.assertAlmostEqual(used, 1.5)
        self.assertAlmostEqual(per, 0.5)

    def test_no_estimate_is_unknown(self) -> None:
        """
        With no estimate on any credential of the pool (only requests of
        unknown cost), the dollars are unknown (None), not 0, though
        alice used 3 units.
        """
        book = charged_book({"a": (3, 1.0, NOW + 3600)}, cost=0.0)
        figures = share_figures(book, "alice", 10, {"a": 1.0}, FIVE_HOUR, NOW)
        self.assertAlmostEqual(figures.used, 3.0)
        self.assertEqual((figures.used_usd, figures.usd_per_percent), (None, None))


class RefusalTests(SynchronousTestCase):
    """
    :obj:`share_refusal`: the 429 Claude Code reads.
    """

    def test_within_share(self) -> None:
        """
        No refusal while every share has room.
        """
        book = charged_book({"a": (30, 1.0, NOW + 7200)})
        figures = standing(book, "alice", Shares(40, 50), {"a": 1.0}, NOW)
        self.assertIsNone(share_refusal("alice", figures, NOW))

    def test_shape(self) -> None:
        """
        Over a 5-hour share of 20 %: 429 ``rate_limit_error``, the unified
        headers for her share (rejected, utilization 1.50, five_hour,
        reset at the window's), ``retry-after`` to the reset,
        ``x-should-retry: false``, and a message naming the share, the use
        and the reset in UTC and from now.
        """
        reset = NOW + 2 * 3600 + 600
        book = charged_book({"a": (30, 1.0, reset)})
        figures = standing(book, "alice", Shares(five_hour=20), {"a": 1.0}, NOW)
        error = share_refusal("alice", figures, NOW)
        assert error is not None
        self.assertEqual((error.status, error.error_type), (429, "rate_limit_error"))
        self.assertEqual(
            dict(error.headers),
            {
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-5h-status": "rejected",
                "anthropic-ratelimit-unified-5h-utilization": "1.50",
                "anthropic-ratelimit-unified-5h-reset": str(int(reset)),
                "anthropic-ratelimit-unified-representative-claim": "five_hour",
                "anthropic-ratelimit-unified-reset": str(int(reset)),
                "retry-after": "7800",
                "x-should-retry": "false",
            },
        )
        self.assertEqual(
            error.message,
            "ccm: alice has used 30.0% of the pool's 5-hour window, their share is 20%; "
            "it frees up at 2027-01-15 10:10 UTC (in 2h10m)",
        )

    def test_weekly_binds(self) -> None:
        """
        Over both shares, the one that frees up last is the representative
        claim; each window's status says whether it is over.
        """
        book = ShareBook()
        windows = {FIVE_HOUR: Window(0, NOW + 600), WEEKLY: Window(0, NOW + 86400)}
        book.observe("a", windows, 1.0, NOW - 100)
        key = book.begin("a", "alice", NOW - 100)
        book.finish(key, 1.0, NOW - 50)
        windows = {FIVE_HOUR: Window(5, NOW + 600), WEEKLY: Window(5, NOW + 86400)}
        book.observe("a", windows, 1.0, NOW - 10)
        figures = standing(book, "alice", Shares(4, 5), {"a": 1.0}, NOW)
        error = share_refusal("alice", figures, NOW)
        assert error is not None
        headers = dict(error.headers)
        self.assertEqual(headers["anthropic-ratelimit-unified-representative-claim"], "seven_day")
        self.assertEqual(headers["anthropic-ratelimit-unified-7d-status"], "rejected")
        self.assertEqual(headers["anthropic-ratelimit-unified-7d-utilization"], "1.00")
        self.assertEqual(headers["retry-after"], "86400")
        self.assertIn("weekly window, their share is 5%", error.message)
        self.assertIn("(in 1d0h)", error.message)
