# -*- test-case-name: tests.shares.test_ledger -*-
"""
:obj:`ShareBook`: who used how much of each credential's windows, in
subscription units.  Pure bookkeeping on times handed in: no clock, no I/O.

Units.  A charge is in *Pro-percent*: one percent of one Pro plan's
window.  A rise of ``d`` percent on a credential of plan weight ``w`` is
``d * w`` units, so the charges of credentials of different plans add up.

Attribution.  Each upstream answer carries the credential's utilization
(:obj:`observe`).  Between two consecutive readings on one credential (an
*interval*) the rise is split over the requests that ran in it: those
between :obj:`begin` and :obj:`finish` at some time of the interval.  Each
request's estimated cost (list-price dollars, from its tokens) is spread
evenly over its running time, and the rise is split by the part of that
cost that falls into the interval (a request that took no time puts all of
it in its first interval).  When no participant has a known cost, the rise
is split evenly between them; with no participant it is charged to nobody
(use from outside ccm).  An interval is settled once all its participants
have finished, since only then are their costs known.

Before it is settled, the cost of a finished request counts at the
credential's running estimate of dollars per 1 % of each window
(:obj:`rate`), learnt from the settled intervals, so that a user is held to
their share before the next header arrives.  A running request counts from
its end.

Resets.  A reading whose reset time is later than the last one, or whose
utilization fell by more than :obj:`RESET_DROP_PERCENT`, starts a new window: the old window's charges are
dropped, and the new reading's utilization is the rise of the interval.  A
window whose reset time has passed counts as empty until the next reading.
The first reading of a credential only sets where it stands.

The API, for the proxy and for the replay simulator (``bench/``)::

    book = ShareBook()
    book.observe("a", {FIVE_HOUR: Window(12.0, reset)}, weight=1.0, now=t0)
    key = book.begin("a", "alice", now=t0)
    book.finish(key, cost=0.30, now=t1)
    book.used("alice", "a", FIVE_HOUR, now=t2)  # Pro-percent units

:obj:`snapshot` and :obj:`restore` carry the settled charges and the rates
across restarts (see :obj:`ccm.shares.files`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ccm.pool.figures import Window, WindowName

FIVE_HOUR = WindowName.FIVE_HOUR
WEEKLY = WindowName.WEEKLY
WINDOWS = (FIVE_HOUR, WEEKLY)

# A reset time this much later than the one known is a new window, not the
# wobble of a reset time computed from a rolling clock.
RESET_MOVE_SECONDS = 60.0
# A utilization this much lower than the last is a new window; less is the
# difference between a header's whole percent and a poll's finer figure.
RESET_DROP_PERCENT = 2.0
# How much a new estimate of dollars per 1 % moves the running one.
RATE_SMOOTHING = 0.3


@dataclass(eq=False)
class _Request:
    """One request on a credential, from :obj:`ShareBook.begin` to its end."""

    user: str
    started: float
    first: _Interval
    ended: float | None = None
    cost: float = 0.0
    settled: float = 0.0
    # The intervals (the current one and those pending) it is a
    # participant of: settled once none holds it.
    holders: int = 0


@dataclass(eq=False)
class _Interval:
    """The time between two readings of a credential, and who ran in it."""

    start: float
    end: float | None = None
    weight: float = 1.0
    rises: dict[WindowName, float] = field(default_factory=dict)
    generations: dict[WindowName, int] = field(default_factory=dict)
    participants: list[_Request] = field(default_factory=list)
    # False while the rises wait for their claim (a shared book's).
    claimed: bool = True


@dataclass
class _Window:
    """One window of one credential: where it stands and who used it."""

    utilization: float | None = None
    resets_at: float = 0.0
    generation: int = 0
    charges: dict[str, float] = field(default_factory=dict)
    unattributed: float = 0.0
    rate: float | None = None


@dataclass
class _Credential:
    """What the book keeps for one credential."""

    windows: dict[WindowName, _Window]
    weight: float
    current: _Interval
    pending: list[_Interval] = field(default_factory=list)
    unsettled: list[_Request] = field(default_factory=list)
    tag: str = ""


def _portion(request: _Request, interval: _Interval) -> float:
    """The part of ``request``'s cost that falls into ``interval``."""
    assert request.ended is not None and interval.end is not None
    span = request.ended - request.started
    if span <= 0:
        return request.cost if interval is request.first else 0.0
    overlap = min(request.ended, interval.end) - max(request.started, interval.start)
    return request.cost * max(0.0, overlap) / span


class ShareBook:
    """
    The in-memory share ledger of every credential (see the module
    docstring).  Its one owner is the service; a store shared by several
    processes would implement the same methods.
    """

    def __init__(self) -> None:
        self._credentials: dict[str, _Credential] = {}
        self._keys: dict[int, tuple[str, _Request]] = {}
        self._next_key = 0

    def _credential(self, tag: str, now: float) -> _Credential:
        found = self._credentials.get(tag)
        if found is None:
            found = _Credential(
                {name: _Window() for name in WINDOWS}, 1.0, _Interval(now), tag=tag
            )
            self._credentials[tag] = found
        return found

    def observe(
        self, tag: str, windows: Mapping[WindowName, Window], weight: float, now: float
    ) -> None:
        """
        Credential ``tag`` (of plan ``weight``) reported ``windows`` at
        ``now``: the interval since its last reading is over.
        """
        credential = self._credential(tag, now)
        credential.weight = weight
        closed = credential.current
        closed.end = now
        closed.weight = weight
        for name, reading in windows.items():
            window = credential.windows[name]
            closed.rises[name] = self._rise(window, reading, now)
            closed.generations[name] = window.generation
        still = [r for r in closed.participants if r.ended is None]
        for request in still:
            request.holders += 1
        credential.current = _Interval(now, participants=list(still))
        credential.pending.append(closed)
        self._claim(credential, closed, windows, now)
        self._settle(credential)

    def _claim(
        self,
        credential: _Credential,
        interval: _Interval,
        readings: Mapping[WindowName, Window],
        now: float,
    ) -> None:
        """
        The rises of ``interval`` are computed from this book's readings:
        a book shared with other processes replaces them with the part no
        other process charged (setting ``interval.claimed`` false until
        then).
        """

    @staticmethod
    def _rise(window: _Window, reading: Window, now: float) -> float:
        """How much ``reading`` adds to ``window``, starting a new one on a reset."""
        before = window.utilization
        new_window = before is not None and (
            reading.utilization < before - RESET_DROP_PERCENT
            or (window.resets_at > 0 and reading.resets_at > window.resets_at + RESET_MOVE_SECONDS)
            or (0 < window.resets_at <= now)
        )
        if new_window:
            window.generation += 1
            window.charges = {}
            window.unattributed = 0.0
        if before is None or new_window:
            rise = 0.0 if before is None else reading.utilization
            window.utilization = reading.utilization
        else:
            # A small fall is a poll's finer figure under a header's rounded
            # one, not a reset: the next rise counts from the higher.
            rise = reading.utilization - before
            window.utilization = max(before, reading.utilization)
        if reading.resets_at > 0:
            window.resets_at = reading.resets_at
        return max(0.0, rise)

    def begin(self, tag: str, user: str, now: float) -> int:
        """
        ``user``'s request started running on credential ``tag``.

        :return: the key to :obj:`finish` it with.
        """
        credential = self._credential(tag, now)
        request = _Request(user, now, credential.current, holders=1)
        credential.current.participants.append(request)
        credential.unsettled.append(request)
        key = self._next_key
        self._next_key += 1
        self._keys[key] = (tag, request)
        return key

    def finish(self, key: int, cost: float, now: float) -> None:
        """
        The request of ``key`` ended at ``now``, its tokens worth ``cost``
        dollars at list price (0 when unknown).  Unknown keys are ignored.
        """
        found = self._keys.pop(key, None)
        if found is None:
            return
        tag, request = found
        request.ended = now
        request.cost = max(0.0, cost)
        self._settle(self._credentials[tag])

    def _settle(self, credential: _Credential) -> None:
        """Charge every closed interval whose participants have all finished."""
        waiting = []
        for interval in credential.pending:
            if not interval.claimed or any(r.ended is None for r in interval.participants):
                waiting.append(interval)
            else:
                self._charge(credential, interval)
        credential.pending = waiting
        # Linear in the requests: what was a set of every pending interval's
        # participants grew with the square of the concurrency.
        credential.unsettled = [
            r for r in credential.unsettled if r.ended is None or r.holders > 0
        ]

    def _charge(self, credential: _Credential, interval: _Interval) -> None:
        portions = [(r, _portion(r, interval)) for r in interval.participants]
        for request, part in portions:
            request.settled += part
            request.holders -= 1
        cost = sum(part for _, part in portions)
        if cost <= 0 and portions:
            # No cost known (usage not metered): an even split.
            portions = [(r, 1.0) for r, _ in portions]
        total = sum(part for _, part in portions)
        for name, rise in interval.rises.items():
            window = credential.windows[name]
            if rise > 0 and cost > 0:
                rate = cost / rise
                window.rate = rate if window.rate is None else (
                    RATE_SMOOTHING * rate + (1 - RATE_SMOOTHING) * window.rate
                )
            if interval.generations[name] != window.generation or rise <= 0:
                continue
            units = rise * interval.weight
            if total <= 0:
                window.unattributed += units
                continue
            for request, part in portions:
                self._add_charge(credential, name, request.user, units * part / total)

    def _add_charge(
        self, credential: _Credential, name: WindowName, user: str, units: float
    ) -> None:
        """Charge ``user`` ``units`` on ``credential``'s ``name`` window."""
        window = credential.windows[name]
        window.charges[user] = window.charges.get(user, 0.0) + units

    def _window(self, tag: str, name: WindowName, now: float) -> _Window | None:
        credential = self._credentials.get(tag)
        if credential is None:
            return None
        window = credential.windows[name]
        if 0 < window.resets_at <= now:
            return None
        return window

    def charged(self, user: str, tag: str, name: WindowName, now: float) -> float:
        """``user``'s settled charges on ``tag``'s current ``name`` window (units)."""
        window = self._window(tag, name, now)
        return 0.0 if window is None else window.charges.get(user, 0.0)

    def estimated(self, user: str, tag: str, name: WindowName, now: float) -> float:
        """
        What ``user``'s finished, not yet settled requests on ``tag`` add
        to its ``name`` window, at the credential's :obj:`rate` (units).
        """
        window = self._window(tag, name, now)
        if window is None or not window.rate:
            return 0.0
        credential = self._credentials[tag]
        dollars = sum(
            r.cost - r.settled
            for r in credential.unsettled
            if r.user == user and r.ended is not None
        )
        return max(0.0, dollars) / window.rate * credential.weight

    def used(self, user: str, tag: str, name: WindowName, now: float) -> float:
        """``user``'s use of ``tag``'s ``name`` window: charged plus estimated."""
        return self.charged(user, tag, name, now) + self.estimated(user, tag, name, now)

    def resets_at(self, tag: str, name: WindowName, now: float) -> float:
        """When ``tag``'s ``name`` window resets (Unix seconds; 0 unknown)."""
        window = self._window(tag, name, now)
        return 0.0 if window is None else window.resets_at

    def rate(self, tag: str, name: WindowName) -> float | None:
        """The running estimate of list-price dollars per 1 % of ``tag``'s window."""
        credential = self._credentials.get(tag)
        return None if credential is None else credential.windows[name].rate

    def unattributed(self, tag: str, name: WindowName, now: float) -> float:
        """The rises on ``tag``'s window that ran no request of ccm's (units)."""
        window = self._window(tag, name, now)
        return 0.0 if window is None else window.unattributed

    def snapshot(self) -> dict[str, Any]:
        """The settled state, as JSON-ready data (see :obj:`restore`)."""
        return {
            tag: {
                name.value: {
                    "utilization": window.utilization,
                    "resets_at": window.resets_at,
                    "charges": dict(window.charges),
                    "unattributed": window.unattributed,
                    "rate": window.rate,
                }
                for name, window in credential.windows.items()
            }
            for tag, credential in self._credentials.items()
        }

    def restore(self, tag: str, data: Mapping[str, Any], now: float) -> None:
        """
        Take credential ``tag``'s part of a :obj:`snapshot` back.

        :raises ValueError: when ``data`` is not what :obj:`snapshot` wrote.
        """
        credential = self._credential(tag, now)
        try:
            for name in WINDOWS:
                saved = data[name.value]
                utilization = saved["utilization"]
                rate = saved["rate"]
                credential.windows[name] = _Window(
                    utilization=None if utilization is None else float(utilization),
                    resets_at=float(saved["resets_at"]),
                    charges={str(k): float(v) for k, v in saved["charges"].items()},
                    unattributed=float(saved["unattributed"]),
                    rate=None if rate is None else float(rate),
                )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"not a share ledger: {error!r}") from None
