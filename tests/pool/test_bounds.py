"""
Tests for :obj:`ccm.pool.bounds`: which numbers the API can mean, and the words
that say why one cannot be used.  How a reader ignores such a value is
tested in :obj:`tests.pool.test_figures`.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.pool.bounds import (
    OVERAGE_RESET_AHEAD_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    MAX_UTILIZATION_PERCENT,
    RESET_AHEAD_SECONDS,
    RESET_BEHIND_SECONDS,
    delay_problem,
    parse_delay,
    parse_number,
    reset_problem,
    utilization_problem,
)

NOW = 1_790_000_000.0


class ParseTests(SynchronousTestCase):
    """
    :obj:`parse_number` and :obj:`parse_delay` read numbers out of header text.
    """

    def test_parse_number(self) -> None:
        """
        Only finite numbers of plausible length are numbers.
        """
        self.assertEqual(parse_number("0.5"), 0.5)
        for text in ("nan", "inf", "abc", "1" * 40, ""):
            self.assertIsNone(parse_number(text), text)

    def test_parse_delay(self) -> None:
        """
        A delay is a number of seconds, or the time from now to an HTTP
        date; anything else is None.
        """
        self.assertEqual(parse_delay("42", NOW), 42.0)
        # 2026-09-21 14:13:20 UTC is NOW; a minute later.
        self.assertEqual(parse_delay("Mon, 21 Sep 2026 14:14:20 GMT", NOW), 60.0)
        for text in ("", "soon", "Mon, 99 Foo 2026"):
            self.assertIsNone(parse_delay(text, NOW), text)


class BoundsTests(SynchronousTestCase):
    """
    Each check is None for a usable value and says why for any other.
    """

    def test_utilization(self) -> None:
        """
        A utilization is a percentage from 0 to :obj:`MAX_UTILIZATION_PERCENT`.
        """
        for percent in (0.0, 100.0, MAX_UTILIZATION_PERCENT):
            self.assertIsNone(utilization_problem(percent), percent)
        for percent in (-0.1, MAX_UTILIZATION_PERCENT + 1, float("nan"), float("inf")):
            self.assertEqual(
                utilization_problem(percent), "not a utilization between 0 and 1000%", percent
            )

    def test_reset(self) -> None:
        """
        A reset time is at most a day in the past and at most ten days
        ahead.
        """
        for moment in (NOW, NOW - RESET_BEHIND_SECONDS, NOW + RESET_AHEAD_SECONDS):
            self.assertIsNone(reset_problem(moment, NOW), moment)
        self.assertEqual(
            reset_problem(NOW - RESET_BEHIND_SECONDS - 1, NOW), "more than 1 day(s) in the past"
        )
        self.assertEqual(
            reset_problem(NOW + RESET_AHEAD_SECONDS + 1, NOW), "more than 10 days ahead"
        )
        self.assertEqual(reset_problem(float("nan"), NOW), "not a time")

    def test_reset_further_ahead(self) -> None:
        """
        A reset allowed further ahead, as extra usage's monthly one is,
        is held to that bound instead.
        """
        ahead = OVERAGE_RESET_AHEAD_SECONDS
        self.assertIsNone(reset_problem(NOW + ahead, NOW, ahead))
        self.assertEqual(reset_problem(NOW + ahead + 1, NOW, ahead), "more than 32 days ahead")

    def test_delay(self) -> None:
        """
        A delay is from 0 to :obj:`MAX_RETRY_AFTER_SECONDS`, as long as a
        window can last.
        """
        for seconds in (0.0, 60.0, MAX_RETRY_AFTER_SECONDS):
            self.assertIsNone(delay_problem(seconds), seconds)
        for seconds in (-1.0, MAX_RETRY_AFTER_SECONDS + 1, float("inf")):
            self.assertEqual(
                delay_problem(seconds), "not a delay between 0 and 10 days", seconds
            )
