"""
Where a share policy plugs into the simulator.

A share policy decides, before the pool places a request, whether its user
may still be served (``admit``), and learns what each answer took from a
subscription (``charge``), as ccm's share code will from the unified
headers.  The simulator only ever calls these two methods.

:obj:`NoShares` admits everyone: ccm as it is on main.  The "with shares"
rows of the report stay "not yet measured" until the real share book
(``ccm/shares/``, being built for issue 14) is wired in at
:obj:`share_policy` below; the simulator deliberately has no share model
of its own, so that what it measures is ccm's.
"""

from __future__ import annotations

from typing import Protocol

from twisted.web.http_headers import Headers


class SharePolicy(Protocol):
    """
    What the simulator needs from a per-user share policy.
    """

    def admit(self, user: str, now: float) -> bool:
        """
        Whether ``user`` may send a request at ``now`` (False: ccm refuses
        it with its own 429 before any credential is chosen).
        """

    def charge(self, user: str, tag: str, status: int, headers: Headers, now: float) -> None:
        """
        Credential ``tag`` answered a request of ``user`` at ``now`` with
        ``status`` and these unified rate-limit ``headers``.
        """


class NoShares:
    """
    No shares: every user is admitted, nothing is charged.
    """

    def admit(self, user: str, now: float) -> bool:
        """
        Always.
        """
        return True

    def charge(self, user: str, tag: str, status: int, headers: Headers, now: float) -> None:
        """
        Nothing to remember.
        """


class SharesNotAvailable(Exception):
    """
    The share code is not wired into the simulator yet.
    """


def share_policy(with_shares: bool, users: list[str], plan_weights: dict[str, float]) -> SharePolicy:
    """
    The policy of a run: :obj:`NoShares`, or the real share book.

    :param users: every user of the team (each with an equal share, until
        the share configuration says otherwise).
    :param plan_weights: each credential's plan weight.
    :raises SharesNotAvailable: for ``with_shares`` until the ShareBook of
        ``ccm/shares/`` is wired here.
    """
    if not with_shares:
        return NoShares()
    # SEAM: wire the real ShareBook of ccm/shares/ here (equal share_5h and
    # share_weekly per user over the pool), adapting it to SharePolicy.
    raise SharesNotAvailable("the share code (ccm/shares/) is not wired into the simulator yet")
