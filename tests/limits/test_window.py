"""
Tests for :obj:`ccm.limits.window`: the sliding one-minute log of a user's
requests and the wait it announces.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ccm.limits.window import RequestWindow, whole_seconds


class RequestWindowTests(SynchronousTestCase):
    """
    No 60 seconds hold more requests than the limit, and a refusal says
    exactly when the next one may come in.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.window = RequestWindow(self.clock)

    def test_lets_in_up_to_the_limit(self) -> None:
        """
        ``limit`` requests are let in; the next one is refused with the
        time until the oldest leaves the window.
        """
        for _ in range(3):
            self.assertEqual(self.window.take(3), 0)
            self.clock.advance(10)
        self.assertEqual(self.window.count(), 3)
        # The first came at 1000, now is 1030: it leaves at 1060.
        self.assertEqual(self.window.take(3), 30)
        self.assertEqual(self.window.count(), 3)

    def test_window_slides(self) -> None:
        """
        A request leaves the window exactly 60 s after it came in, making
        room for one more, not for a whole new minute's worth.
        """
        self.window.take(2)
        self.clock.advance(30)
        self.window.take(2)
        self.clock.advance(29.5)
        self.assertEqual(self.window.take(2), 0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.window.take(2), 0)
        self.assertEqual(self.window.take(2), 30)

    def test_lowered_limit(self) -> None:
        """
        With more requests in the window than a lowered limit, the wait
        runs until enough of them left for one more.
        """
        for second in range(4):
            self.window.take(4)
            self.clock.advance(1)
        # Stamps 1000..1003, now 1004, limit 2: 1002 must leave (at 1062).
        self.assertEqual(self.window.take(2), 58)

    def test_give_back(self) -> None:
        """
        A request given back no longer counts, whichever came after it.
        """
        self.window.take(5)
        stamp = self.clock.seconds()
        self.clock.advance(1)
        self.window.take(5)
        self.window.give_back(stamp)
        self.assertEqual(self.window.count(), 1)
        self.clock.advance(59.5)
        # The one left came at 1001.
        self.assertEqual(self.window.count(), 1)
        self.assertFalse(self.window.idle)
        self.clock.advance(0.5)
        self.assertTrue(self.window.idle)


class WholeSecondsTests(SynchronousTestCase):
    """
    ``retry-after`` values are whole seconds, rounded up, at least 1.
    """

    def test_rounding(self) -> None:
        """
        Fractions round up, whole numbers stay, and nothing is below 1.
        """
        self.assertEqual(
            [whole_seconds(s) for s in (0.001, 0.5, 1.0, 1.2, 17.0, 59.99)],
            [1, 1, 1, 2, 17, 60],
        )
