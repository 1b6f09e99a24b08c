"""
Tests for :obj:`ccm.limits.slots`: one user's requests in flight and the
queue of those waiting.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ccm.limits.slots import ConcurrencySlots, QueueTimeout


class ConcurrencySlotsTests(SynchronousTestCase):
    """
    At most ``limit`` in flight; the rest wait first come first served,
    for a bounded time, and may leave.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.slots = ConcurrencySlots(self.clock, 2)

    def test_no_limit(self) -> None:
        """
        With limit 0 every request enters, and they are still counted.
        """
        slots = ConcurrencySlots(self.clock)
        self.assertEqual([slots.try_enter() for _ in range(50)], [True] * 50)
        self.assertEqual(slots.in_flight, 50)

    def test_fifo(self) -> None:
        """
        Waiting requests get the freed slots in the order they came.
        """
        self.assertTrue(self.slots.try_enter())
        self.assertTrue(self.slots.try_enter())
        self.assertFalse(self.slots.try_enter())
        order: list[str] = []
        for name in "abc":
            self.slots.wait(30).addCallback(lambda _, name: order.append(name), name)
        self.assertEqual(self.slots.waiting, 3)
        self.slots.leave()
        self.assertEqual(order, ["a"])
        self.slots.leave()
        self.slots.leave()
        self.assertEqual(order, ["a", "b", "c"])
        self.assertEqual((self.slots.in_flight, self.slots.waiting), (2, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_overtaking(self) -> None:
        """
        A new request does not take a freed slot before a waiting one.
        """
        self.slots.try_enter()
        self.slots.try_enter()
        waiting = self.slots.wait(30)
        self.slots.leave()
        self.successResultOf(waiting)
        self.assertFalse(self.slots.try_enter())

    def test_timeout(self) -> None:
        """
        A request that waited ``timeout`` seconds fails with
        :obj:`QueueTimeout` and leaves the queue.
        """
        self.slots.try_enter()
        self.slots.try_enter()
        waiting = self.slots.wait(30)
        self.clock.advance(29.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        self.failureResultOf(waiting, QueueTimeout)
        self.assertEqual(self.slots.waiting, 0)
        self.slots.leave()
        self.assertEqual(self.slots.in_flight, 1)

    def test_cancel_leaves_the_queue(self) -> None:
        """
        Cancelling a wait (the client went away) removes it from the queue
        and its timer; the next one in line gets the slot.
        """
        self.slots.try_enter()
        self.slots.try_enter()
        first = self.slots.wait(30)
        second = self.slots.wait(30)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(self.slots.waiting, 1)
        self.slots.leave()
        self.successResultOf(second)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_raised_limit_admits(self) -> None:
        """
        A raised limit lets waiting requests in at once; removing the limit
        lets them all in.
        """
        self.slots.try_enter()
        self.slots.try_enter()
        waits = [self.slots.wait(30) for _ in range(3)]
        self.slots.set_limit(3)
        self.successResultOf(waits[0])
        self.assertNoResult(waits[1])
        self.slots.set_limit(0)
        self.successResultOf(waits[1])
        self.successResultOf(waits[2])
        self.assertEqual(self.slots.in_flight, 5)

    def test_lowered_limit_ends_nothing(self) -> None:
        """
        A lowered limit leaves the requests in flight alone; the next one
        enters only when fewer than the new limit are left.
        """
        self.slots.try_enter()
        self.slots.try_enter()
        self.slots.set_limit(1)
        self.assertEqual(self.slots.in_flight, 2)
        waiting = self.slots.wait(30)
        self.slots.leave()
        self.assertNoResult(waiting)
        self.slots.leave()
        self.successResultOf(waiting)

    def test_close(self) -> None:
        """
        Closing fails every waiting request with the reason given, and
        cancels their timers.
        """
        self.slots.try_enter()
        self.slots.try_enter()
        waits = [self.slots.wait(30) for _ in range(2)]
        self.slots.close(ValueError("shutting down"))
        for waiting in waits:
            self.failureResultOf(waiting, ValueError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
