"""
Tests for :obj:`ccm.pool.serving`: a credential's serving state, its reason, and
the words derived from it.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.pool.figures import WindowName
from ccm.pool.serving import (
    NEEDS_A_PERSON,
    PAUSED_IN,
    RATE_LIMITED_IN,
    MemberState,
    Unusable,
    began,
    when,
)

# 2026-09-21 14:13:20 UTC.
NOW = 1_790_000_000.0


class MemberStateTests(SynchronousTestCase):
    """
    :obj:`MemberState`: usable or not, and its description.
    """

    def test_usable(self) -> None:
        """
        A state without a reason is usable and says so.
        """
        state = MemberState(at=NOW)
        self.assertTrue(state.usable)
        self.assertEqual(state.description, "usable")

    def test_unavailable(self) -> None:
        """
        An unavailable credential says why.
        """
        state = MemberState(Unusable.UNAVAILABLE, problem="file gone", at=NOW)
        self.assertFalse(state.usable)
        self.assertEqual(state.description, "unavailable: file gone")

    def test_quarantined(self) -> None:
        """
        A quarantined credential says since when, in UTC and how long ago,
        and why; it needs a person, as an unavailable one does, and states
        since different times differ.
        """
        state = MemberState(Unusable.QUARANTINED, problem="banned", since=NOW - 7980, at=NOW)
        self.assertFalse(state.usable)
        self.assertEqual(
            state.description, "quarantined since 2026-09-21 12:00 UTC (2h13m ago): banned"
        )
        self.assertEqual(began(NOW - 60, NOW), "2026-09-21 14:12 UTC (1m0s ago)")
        self.assertNotEqual(state, MemberState(Unusable.QUARANTINED, problem="banned", since=NOW))
        self.assertEqual(NEEDS_A_PERSON, {Unusable.UNAVAILABLE, Unusable.QUARANTINED})

    def test_rate_limited(self) -> None:
        """
        A rate-limited credential names the window its 429 named (or none)
        and when the limit ends, in UTC and from now.
        """
        for reason, words in (
            (Unusable.RATE_LIMITED_5H, "rate-limited (5-hour window)"),
            (Unusable.RATE_LIMITED_WEEKLY, "rate-limited (weekly window)"),
            (Unusable.RATE_LIMITED, "rate-limited (rate limit)"),
        ):
            state = MemberState(reason, until=NOW + 7980, at=NOW)
            self.assertEqual(
                state.description, f"{words} until 2026-09-21 16:26 UTC (in 2h13m)"
            )

    def test_paused(self) -> None:
        """
        A paused credential gives its utilization and threshold, and when
        the window resets when that is known.
        """
        state = MemberState(Unusable.PAUSED_WEEKLY, utilization=80.5, cap=80, at=NOW)
        self.assertEqual(
            state.description, "paused at its weekly threshold (80.5% used, pauses at 80%)"
        )
        state = MemberState(Unusable.PAUSED_5H, NOW + 3600, utilization=99, cap=99, at=NOW)
        self.assertEqual(
            state.description,
            "paused at its 5-hour threshold (99% used, pauses at 99%) "
            "until 2026-09-21 15:13 UTC (in 1h0m)",
        )

    def test_equal_whenever_taken(self) -> None:
        """
        Two states that say the same are equal, whenever they were taken;
        a different reason, end or figure makes them differ.
        """
        limited = MemberState(Unusable.RATE_LIMITED_5H, until=NOW + 60, at=NOW)
        self.assertEqual(limited, MemberState(Unusable.RATE_LIMITED_5H, until=NOW + 60, at=NOW + 30))
        self.assertNotEqual(limited, MemberState(Unusable.RATE_LIMITED_5H, until=NOW + 61, at=NOW))
        self.assertNotEqual(limited, MemberState(Unusable.RATE_LIMITED, until=NOW + 60, at=NOW))

    def test_window_tables(self) -> None:
        """
        Each window has its own rate-limited and paused reason; a 429 that
        names no window has one too.
        """
        self.assertIs(RATE_LIMITED_IN[WindowName.FIVE_HOUR], Unusable.RATE_LIMITED_5H)
        self.assertIs(RATE_LIMITED_IN[WindowName.WEEKLY], Unusable.RATE_LIMITED_WEEKLY)
        self.assertIs(RATE_LIMITED_IN[None], Unusable.RATE_LIMITED)
        self.assertIs(PAUSED_IN[WindowName.FIVE_HOUR], Unusable.PAUSED_5H)
        self.assertIs(PAUSED_IN[WindowName.WEEKLY], Unusable.PAUSED_WEEKLY)

    def test_when_never_negative(self) -> None:
        """
        A time already past reads as in no time at all.
        """
        self.assertEqual(when(NOW - 60, NOW), "2026-09-21 14:12 UTC (in 0ms)")
