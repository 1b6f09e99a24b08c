# -*- test-case-name: tests.shares.test_standing -*-
"""
A user's standing against their shares, read from a
:obj:`ccm.shares.ledger.ShareBook`, and the 429 that refuses a user over one.

A pool's capacity in a window is ``100 * sum(plan weights)`` Pro-percent
units (one Pro window is 100); a share of ``s`` % is ``s / 100`` of that,
and the user's use is the sum of their charges on the pool's credentials.
The share frees up when enough of those credentials' windows reset to bring
the use back under it.

The same use in list-price dollars comes from each credential's running
estimate of dollars per 1 % of its window (:obj:`ShareBook.rate`): a unit
on a credential of plan weight ``w`` and rate ``r`` is worth ``r / w``.  A
credential without an estimate yet is taken at the dollars per unit of
those of the pool that have one (plan weights say a unit is a unit on every
plan); with none, the dollars are unknown (None), never 0.  Pure: the time
is handed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from ccm.pool.figures import WINDOW_SECONDS, WindowName
from ccm.pool.serving import when
from ccm.shares.ledger import FIVE_HOUR, WEEKLY, WINDOWS, ShareBook
from ccm.units import whole_seconds_until
from ccm.web.errors import APIError

# The unified rate-limit headers' names for each window.
_HEADER_KEYS = {FIVE_HOUR: "5h", WEEKLY: "7d"}
_CLAIMS = {FIVE_HOUR: "five_hour", WEEKLY: "seven_day"}


@dataclass(frozen=True)
class Shares:
    """
    A user's ``share_5h`` and ``share_weekly``, in percent of their pool's
    window capacity; 0 is no share (unlimited).
    """

    five_hour: float = 0.0
    weekly: float = 0.0

    def of(self, name: WindowName) -> float:
        """The share of window ``name``."""
        return self.five_hour if name is FIVE_HOUR else self.weekly

    def __bool__(self) -> bool:
        return bool(self.five_hour or self.weekly)


@dataclass(frozen=True)
class Entitlement:
    """
    What a user may use of their pool: their ``shares`` and the pool's
    ``capacity`` (Pro-percent units), as the share files record them.
    """

    capacity: float
    shares: Shares = Shares()


def pool_capacity(weights: Mapping[str, float]) -> float:
    """A pool's capacity in each window, units, from its credentials' plan ``weights``."""
    return 100.0 * sum(weights.values())


@dataclass(frozen=True)
class ShareFigures:
    """
    A user's standing in one window of their pool, in percent of the pool's
    capacity.

    :ivar share: the share, percent.
    :ivar used: what the user used, percent.
    :ivar capacity: the pool's capacity, Pro-percent units.
    :ivar resets_at: when the user's use next falls (over the share: when
        it falls under it); Unix seconds, 0 when unknown.
    :ivar used_usd: the use in list-price dollars, estimated; None while no
        credential of the pool has an estimate.
    :ivar usd_per_percent: the list-price dollars 1 % of the pool's window
        holds, estimated; None likewise.
    """

    window: WindowName
    share: float
    used: float
    capacity: float
    resets_at: float
    used_usd: float | None = None
    usd_per_percent: float | None = None

    @property
    def remaining(self) -> float:
        """What is left of the share, percent (never below 0)."""
        return max(0.0, self.share - self.used)

    @property
    def exhausted(self) -> bool:
        """Whether the share is used up."""
        return self.used >= self.share

    @property
    def fraction(self) -> float:
        """The used part of the share (1.0 is all of it)."""
        return self.used / self.share if self.share else 0.0


def uses_of(
    book: ShareBook, user: str, tags: Iterable[str], name: WindowName, now: float
) -> dict[str, float]:
    """``user``'s use of window ``name`` of each credential of ``tags``, units."""
    return {tag: book.used(user, tag, name, now) for tag in tags}


def figures_over(
    book: ShareBook,
    uses: Mapping[str, float],
    share: float,
    capacity: float,
    name: WindowName,
    now: float,
) -> ShareFigures:
    """
    The standing of ``uses`` (:obj:`uses_of`) against a ``share`` % of
    window ``name`` of a pool of ``capacity`` units, without dollars (as
    ``ccm usage`` reads it, with no plan weights, only the saved capacity).
    """
    used_units = sum(uses.values())
    share_units = share / 100.0 * capacity
    resets = sorted(
        (book.resets_at(tag, name, now) or now + WINDOW_SECONDS[name], units)
        for tag, units in uses.items()
        if units > 0
    )
    resets_at = resets[0][0] if resets else 0.0
    if used_units >= share_units:
        left = used_units
        for at, units in resets:
            left -= units
            resets_at = at
            if left < share_units:
                break
    percent = 100.0 * used_units / capacity if capacity else 0.0
    return ShareFigures(name, share, percent, capacity, resets_at)


def _dollars(
    book: ShareBook, uses: Mapping[str, float], weights: Mapping[str, float], name: WindowName
) -> tuple[float | None, float | None]:
    """
    The ``uses`` of window ``name`` of the pool of plan ``weights`` in
    list-price dollars, and what 1 % of the pool's window holds: both
    estimates, None while no credential of the pool has a rate.
    """
    rates = {tag: book.rate(tag, name) for tag in weights}
    known = {tag: rate for tag, rate in rates.items() if rate and weights[tag] > 0}
    if not known:
        return None, None
    # Dollars per unit where no estimate is known yet: the known ones'.
    average = sum(known.values()) / sum(weights[tag] for tag in known)
    used = sum(
        units * (known[tag] / weights[tag] if tag in known else average)
        for tag, units in uses.items()
    )
    return used, average * sum(weights.values())


def share_figures(
    book: ShareBook,
    user: str,
    share: float,
    weights: Mapping[str, float],
    name: WindowName,
    now: float,
) -> ShareFigures:
    """
    ``user``'s standing against a ``share`` % of window ``name`` of the
    pool whose credentials have plan ``weights`` (by tag), with the use in
    dollars.
    """
    uses = uses_of(book, user, weights, name, now)
    figures = figures_over(book, uses, share, pool_capacity(weights), name, now)
    used_usd, usd_per_percent = _dollars(book, uses, weights, name)
    return replace(figures, used_usd=used_usd, usd_per_percent=usd_per_percent)


def standing(
    book: ShareBook, user: str, shares: Shares, weights: Mapping[str, float], now: float
) -> list[ShareFigures]:
    """``user``'s figures for each window they have a share of."""
    return [
        share_figures(book, user, shares.of(name), weights, name, now)
        for name in WINDOWS
        if shares.of(name) > 0
    ]


def _when(at: float, now: float) -> str:
    if at <= 0:
        return "when the pool's window resets"
    return f"at {when(at, now)}"


def share_refusal(user: str, figures: list[ShareFigures], now: float) -> APIError | None:
    """
    The 429 for ``user`` when one of their shares is used up, else None:
    the unified rate-limit headers computed for their share (so that a
    client sees its own figures), ``retry-after``, ``x-should-retry:
    false``, and a message naming the share, the use and the reset.
    """
    over = [f for f in figures if f.exhausted]
    if not over:
        return None
    binding = max(over, key=lambda f: f.resets_at)
    reset = binding.resets_at or now + WINDOW_SECONDS[binding.window]
    headers: list[tuple[str, str]] = [("anthropic-ratelimit-unified-status", "rejected")]
    for f in figures:
        key = _HEADER_KEYS[f.window]
        at = f.resets_at or now + WINDOW_SECONDS[f.window]
        headers += [
            (f"anthropic-ratelimit-unified-{key}-status", "rejected" if f.exhausted else "allowed"),
            (f"anthropic-ratelimit-unified-{key}-utilization", f"{f.fraction:.2f}"),
            (f"anthropic-ratelimit-unified-{key}-reset", str(int(at))),
        ]
    headers += [
        ("anthropic-ratelimit-unified-representative-claim", _CLAIMS[binding.window]),
        ("anthropic-ratelimit-unified-reset", str(int(reset))),
        ("retry-after", str(whole_seconds_until(reset, now))),
        ("x-should-retry", "false"),
    ]
    message = (
        f"ccm: {user} has used {binding.used:.1f}% of the pool's {binding.window.value} "
        f"window, their share is {binding.share:g}%; it frees up {_when(reset, now)}"
    )
    return APIError(429, "rate_limit_error", message, headers=tuple(headers))
