# -*- test-case-name: tests.limits.test_slots -*-
"""
:obj:`ConcurrencySlots`: one user's requests in flight, and the short FIFO
queue of those waiting for one of them to end (``max_concurrent``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime


class QueueTimeout(Exception):
    """
    A request waited in the queue as long as it may, and no slot freed.
    """


@dataclass
class _Waiter:
    deferred: Deferred[None]
    timer: IDelayedCall | None = None


class ConcurrencySlots:
    """
    How many of one user's requests are in flight, at most :obj:`limit`
    at once, and the requests waiting for a slot, first come first served.

    A lowered limit never ends a request in flight: the next one simply
    waits until fewer than the new limit are left.

    :param clock: times the waits.
    :ivar limit: the most requests in flight at once; 0 for no limit.
    :ivar in_flight: how many hold a slot now.
    """

    def __init__(self, clock: IReactorTime, limit: int = 0) -> None:
        self._clock = clock
        self.limit = limit
        self.in_flight = 0
        self._queue: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        """
        How many requests wait in the queue.
        """
        return len(self._queue)

    def _free(self) -> bool:
        return self.limit == 0 or self.in_flight < self.limit

    def try_enter(self) -> bool:
        """
        Take a slot now, if one is free and nobody waits before this request.

        :return: whether the slot was taken; it is given back with
            :obj:`leave`.
        """
        if self._queue or not self._free():
            return False
        self.in_flight += 1
        return True

    def wait(self, timeout: float) -> Deferred[None]:
        """
        Queue for a slot, behind those waiting already.

        :param timeout: seconds to wait at most.
        :return: fires when the slot is taken (given back with
            :obj:`leave`); fails with :obj:`QueueTimeout` after
            ``timeout``; cancelling it (the client went away) leaves the
            queue.
        """
        waiter = _Waiter(Deferred(lambda d: self._forget(waiter)))
        waiter.timer = self._clock.callLater(timeout, self._time_out, waiter)
        self._queue.append(waiter)
        return waiter.deferred

    def _forget(self, waiter: _Waiter) -> None:
        if waiter in self._queue:
            self._queue.remove(waiter)
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()
        waiter.timer = None

    def _time_out(self, waiter: _Waiter) -> None:
        waiter.timer = None
        self._forget(waiter)
        waiter.deferred.errback(QueueTimeout())

    def leave(self) -> None:
        """
        A request holding a slot ended: the first waiting one takes it.
        """
        self.in_flight -= 1
        self._admit()

    def set_limit(self, limit: int) -> None:
        """
        Apply a reloaded limit: a higher one (or none) lets waiting
        requests in at once; a lower one ends nothing.
        """
        self.limit = limit
        self._admit()

    def _admit(self) -> None:
        while self._queue and self._free():
            waiter = self._queue.popleft()
            self._forget(waiter)
            self.in_flight += 1
            waiter.deferred.callback(None)

    def close(self, reason: Exception) -> None:
        """
        Empty the queue, failing every waiting request with ``reason``
        (a shutdown).
        """
        while self._queue:
            waiter = self._queue.popleft()
            self._forget(waiter)
            waiter.deferred.errback(reason)
