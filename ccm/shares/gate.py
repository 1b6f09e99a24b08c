# -*- test-case-name: tests.shares.test_gate -*-
"""
The proxy's seam to the shares: :obj:`ShareGate`, what an exchange tells
and asks (is the caller within their shares, a request started running on
a credential, it ended with this usage), and :obj:`ShareKeeper`, which
turns that into :obj:`ccm.shares.ledger.ShareBook` calls on the service's
clock.  :obj:`NO_SHARES` keeps no books (a proxy built without shares).
"""

from __future__ import annotations

from typing import Protocol, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.web.http_headers import Headers

from ccm.accounting.counters import UsageRecord
from ccm.accounting.pricing import cost_usd, prices_for
from ccm.credentials.credential import Credential
from ccm.pool.select import Pool
from ccm.shares.headers import share_headers
from ccm.shares.ledger import FIVE_HOUR, WEEKLY, ShareBook
from ccm.shares.standing import ShareFigures, Shares, share_refusal, standing
from ccm.web.auth import Caller


class ShareGate(Protocol):
    """
    What the proxy tells the shares, and asks them.
    """

    def check(self, caller: Caller, pool: Pool) -> None:
        """
        :raises ccm.web.errors.APIError: the 429 for a caller over a share.
        """

    def started(self, caller: Caller, credential: Credential) -> int:
        """
        ``credential`` answered the caller's request (its headers are
        observed already) and it runs from now.

        :return: the key its end is told with.
        """

    def ended(self, keys: Sequence[int], usage: UsageRecord | None) -> None:
        """
        The request started with ``keys`` is over; the last key is the one
        that served, with ``usage`` (None when not metered), the others ran
        and were answered again (a token recovery).
        """

    def client_headers(self, caller: Caller, pool: Pool, code: int, headers: Headers) -> Headers:
        """
        The headers the caller gets with an answer of status ``code``: on
        a success, the unified 5h/7d headers describe their share when
        they have one (``per_user_headers``); else ``headers`` as they are.
        """


class _NoShares:
    """A :obj:`ShareGate` that keeps nothing and refuses nobody."""

    def check(self, caller: Caller, pool: Pool) -> None:
        pass

    def started(self, caller: Caller, credential: Credential) -> int:
        return 0

    def ended(self, keys: Sequence[int], usage: UsageRecord | None) -> None:
        pass

    def client_headers(self, caller: Caller, pool: Pool, code: int, headers: Headers) -> Headers:
        return headers


NO_SHARES: ShareGate = _NoShares()

#: The key of each window in the status answer's ``share`` object.
STATUS_KEYS = {FIVE_HOUR: "five_hour", WEEKLY: "weekly"}


def shares_of(caller: Caller) -> Shares:
    """The configured shares of ``caller`` (none for anonymous callers)."""
    user = caller.user
    if user is None:
        return Shares()
    return Shares(user.share_5h, user.share_weekly)


def pool_weights(pool: Pool) -> dict[str, float]:
    """The plan weight of each credential of ``pool``, by tag."""
    return {member.tag: member.credential.plan_weight for member in pool.members}


def usage_cost(usage: UsageRecord | None) -> float:
    """What ``usage``'s tokens cost at list price, in dollars (0 unknown)."""
    if usage is None or not usage.model:
        return 0.0
    return cost_usd(prices_for(usage.model, usage.context_window), usage.tokens)


def _rounded(value: float | None) -> float | None:
    """``value`` to four significant digits, so that a small estimate stays above 0."""
    return None if value is None else float(f"{value:.4g}")


class ShareKeeper:
    """
    The :obj:`ShareGate` of a service: feeds ``book`` on ``clock``'s time
    and refuses callers over their shares.
    """

    def __init__(self, book: ShareBook, clock: IReactorTime) -> None:
        self.book = book
        self._clock = clock

    def figures(self, caller: Caller, pool: Pool) -> list[ShareFigures]:
        """The caller's standing in each window they have a share of."""
        shares = shares_of(caller)
        if not shares:
            return []
        now = self._clock.seconds()
        return standing(self.book, caller.name, shares, pool_weights(pool), now)

    def status(self, caller: Caller, pool: Pool) -> dict[str, object]:
        """
        The caller's ``share`` object of ``/ccm/v1/status``: for each window
        they have a share of, the share, what they used and what remains
        (percent of the pool's window), when it next frees up (Unix
        seconds, 0 unknown), and the use and 1 % of the window in estimated
        list-price dollars (four significant digits; null until the pool
        has an estimate); empty without shares.
        """
        return {
            STATUS_KEYS[f.window]: {
                "share": f.share,
                "used": round(f.used, 2),
                "remaining": round(f.remaining, 2),
                "reset": int(f.resets_at),
                "used_usd": _rounded(f.used_usd),
                "usd_per_percent": _rounded(f.usd_per_percent),
            }
            for f in self.figures(caller, pool)
        }

    def check(self, caller: Caller, pool: Pool) -> None:
        figures = self.figures(caller, pool)
        refusal = share_refusal(caller.name, figures, self._clock.seconds())
        if refusal is not None:
            raise refusal

    def started(self, caller: Caller, credential: Credential) -> int:
        now = self._clock.seconds()
        windows = credential.rate_limits
        readings = {FIVE_HOUR: windows.five_hour, WEEKLY: windows.weekly}
        # A window never reported (no reset time) is not a reading of 0 %.
        known = {name: window for name, window in readings.items() if window.resets_at > 0}
        self.book.observe(credential.tag, known, credential.plan_weight, now)
        return self.book.begin(credential.tag, caller.name, now)

    def ended(self, keys: Sequence[int], usage: UsageRecord | None) -> None:
        now = self._clock.seconds()
        for index, key in enumerate(keys):
            last = index == len(keys) - 1
            self.book.finish(key, usage_cost(usage) if last else 0.0, now)

    def client_headers(self, caller: Caller, pool: Pool, code: int, headers: Headers) -> Headers:
        user = caller.user
        if not 200 <= code < 300 or user is None or not user.per_user_headers:
            return headers
        figures = self.figures(caller, pool)
        return share_headers(headers, figures, self._clock.seconds()) if figures else headers
