# -*- test-case-name: tests.limits.test_window -*-
"""
:obj:`RequestWindow`: the requests one user started in the last minute, for
``requests_per_minute``.
"""

from __future__ import annotations

import math
from collections import deque

from twisted.internet.interfaces import IReactorTime

#: The length of the sliding window of ``requests_per_minute``.
WINDOW_SECONDS = 60.0


class RequestWindow:
    """
    A sliding one-minute log of the times a user's requests were let in.

    A sliding log rather than a token bucket, so that "N a minute" means
    what it says: no 60 seconds ever hold more than N requests, and the
    wait a refusal announces is exact (when the oldest of them leaves the
    window).

    :param clock: the time requests are stamped with.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - WINDOW_SECONDS:
            self._times.popleft()

    def count(self) -> int:
        """
        How many requests were let in during the last minute.
        """
        self._expire(self._clock.seconds())
        return len(self._times)

    def take(self, limit: int) -> float:
        """
        Let one request in, if fewer than ``limit`` came in the last minute.

        :return: 0 when it was let in (and is counted from now on, stamped
            with the clock's time), else the seconds until the oldest request of the window leaves it, when a
            new one may come in (more than 0).
        """
        now = self._clock.seconds()
        self._expire(now)
        if len(self._times) < limit:
            self._times.append(now)
            return 0.0
        # With a lowered limit the window may hold more than ``limit``: the
        # request that must leave is the one making room for one more.
        leaving = self._times[len(self._times) - limit]
        return max(leaving + WINDOW_SECONDS - now, 1e-9)

    def give_back(self, stamp: float) -> None:
        """
        Forget a request let in at ``stamp``: it was refused afterwards (by
        the concurrency queue), so it never reached the upstream.
        """
        for index in range(len(self._times) - 1, -1, -1):
            if self._times[index] == stamp:
                del self._times[index]
                return

    @property
    def idle(self) -> bool:
        """
        Whether the window is empty, so that it can be dropped.
        """
        return self.count() == 0


def whole_seconds(seconds: float) -> int:
    """
    ``seconds`` rounded up to a whole second, at least 1: the value of a
    ``retry-after`` header, which a client may wait exactly.
    """
    return max(1, math.ceil(seconds - 1e-9))
