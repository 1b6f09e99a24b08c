# -*- test-case-name: tests.limits.test_gate -*-
"""
:obj:`UserLimits`: the gate a user's generation passes before the proxy
starts its exchange: ``requests_per_minute`` first, then ``max_concurrent``
with its queue.

Only ``POST /v1/messages`` counts (:obj:`counts_against_limits`): the
generations a subscription's windows are spent on.  ``count_tokens`` (the
burst of about 25 that ``/context`` sends at once), ``cache_touch`` and
``/v1/models`` are cheap and pass freely.
"""

from __future__ import annotations

from typing import Callable, Iterable

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ccm.config.model import UserConfig
from ccm.limits.refusals import (
    MAX_CONCURRENT,
    REQUESTS_PER_MINUTE,
    queue_full_refusal,
    queue_timeout_refusal,
    rate_refusal,
)
from ccm.limits.slots import ConcurrencySlots, QueueTimeout
from ccm.limits.window import RequestWindow
from ccm.web.errors import APIError

#: The longest a request waits in a user's queue for a slot.
QUEUE_WAIT_SECONDS = 30.0


def counts_against_limits(method: bytes, path: bytes) -> bool:
    """
    Whether a request to ``path`` (normalized, without its query) is a
    generation that the per-user limits count.
    """
    return method == b"POST" and path == b"/v1/messages"


class Ticket:
    """
    What an admitted request holds until it ends: its concurrency slot,
    if it has one.  :obj:`release` gives it back, once.
    """

    def __init__(self, slots: ConcurrencySlots | None = None) -> None:
        self._slots = slots

    def release(self) -> None:
        """
        The request ended: its slot goes to the next waiting request.
        """
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.leave()


#: The ticket of a request no limit counts.
FREE = Ticket()


class UserLimits:
    """
    Each user's ``max_concurrent`` and ``requests_per_minute``, applied to
    the generations they send.

    :param clock: the time of the one-minute windows and the queue waits.
    :param users: the configured users; those without limits (and callers
        without a name, when no users are configured) pass freely.
    :param on_refusal: told the user and the limit's name of each refusal
        (the metrics).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        users: Iterable[UserConfig] = (),
        on_refusal: Callable[[str, str], None] = lambda user, limit: None,
    ) -> None:
        self._clock = clock
        self._on_refusal = on_refusal
        self._rates: dict[str, int] = {}
        self._concurrency: dict[str, int] = {}
        self._windows: dict[str, RequestWindow] = {}
        # Every named user's requests in flight are counted, limited or
        # not, so that a limit a reload sets sees those already running.
        self._slots: dict[str, ConcurrencySlots] = {}
        self.set_users(users)

    def set_users(self, users: Iterable[UserConfig]) -> None:
        """
        Apply the limits of ``users`` (a reload) from now on.  A raised
        limit lets queued requests in at once; a lowered one ends nothing
        in flight.  A user's requests in the last minute stay counted.
        """
        rates = {}
        concurrency = {}
        for user in users:
            if user.requests_per_minute:
                rates[user.name] = user.requests_per_minute
            concurrency[user.name] = user.max_concurrent
        self._rates = rates
        self._concurrency = concurrency
        for name in list(self._windows):
            if name not in rates:
                del self._windows[name]
        for name, slots in list(self._slots.items()):
            slots.set_limit(concurrency.get(name, 0))
            if name not in concurrency and slots.in_flight == 0 and not slots.waiting:
                del self._slots[name]

    def slots_of(self, user: str) -> ConcurrencySlots | None:
        """
        ``user``'s concurrency slots, if any request of theirs was counted.
        """
        return self._slots.get(user)

    def admit(self, user: str) -> Deferred[Ticket]:
        """
        Let one generation of ``user`` in, now or after a wait in the queue.

        :return: fires with the request's :obj:`Ticket`, to release when it
            ends; fails with the :obj:`APIError` to answer.  Cancelling it
            while it waits (the client went away) leaves the queue.
        """
        if not user:
            return succeed(FREE)
        stamp = self._clock.seconds()
        window = self._window(user)
        if window is not None:
            wait = window.take(self._rates[user])
            if wait > 0:
                error = rate_refusal(user, self._rates[user], wait)
                return self._refuse(user, REQUESTS_PER_MINUTE, error)
        slots = self._slots.get(user)
        if slots is None:
            slots = ConcurrencySlots(self._clock, self._concurrency.get(user, 0))
            self._slots[user] = slots
        if slots.try_enter():
            return succeed(Ticket(slots))
        if slots.waiting >= slots.limit:
            # The queue holds as many as may be in flight.
            if window is not None:
                window.give_back(stamp)
            return self._refuse(
                user, MAX_CONCURRENT, queue_full_refusal(user, slots.limit, slots.waiting)
            )
        self.log.info(
            "{user} waits for one of {limit} requests in flight to end (max_concurrent)",
            user=user,
            limit=slots.limit,
            waiting=slots.waiting,
        )

        def waited(result: Failure) -> Failure:
            if window is not None and result.check(QueueTimeout, CancelledError, APIError):
                window.give_back(stamp)
            if result.check(QueueTimeout):
                waited_seconds = self._clock.seconds() - stamp
                error = queue_timeout_refusal(user, slots.limit, waited_seconds)
                self._count_refusal(user, MAX_CONCURRENT, error)
                return Failure(error)
            return result

        d = slots.wait(QUEUE_WAIT_SECONDS)
        return d.addCallbacks(lambda _: Ticket(slots), waited)

    def _window(self, user: str) -> RequestWindow | None:
        if user not in self._rates:
            return None
        window = self._windows.get(user)
        if window is None:
            window = self._windows[user] = RequestWindow(self._clock)
        return window

    def _refuse(self, user: str, limit: str, error: APIError) -> Deferred[Ticket]:
        self._count_refusal(user, limit, error)
        return fail(error)

    def _count_refusal(self, user: str, limit: str, error: APIError) -> None:
        self.log.warn(
            "refused a request of {user}: {message}", user=user, limit=limit, message=error.message
        )
        try:
            self._on_refusal(user, limit)
        except Exception:
            self.log.failure("counting a refusal of {user} failed", user=user)

    def close(self, error: APIError) -> None:
        """
        Answer every queued request with ``error`` (a shutdown).
        """
        for slots in self._slots.values():
            slots.close(error)
