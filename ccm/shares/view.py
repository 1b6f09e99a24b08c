# -*- test-case-name: tests.shares.test_view -*-
"""
:obj:`ShareView`: every configured user's standing against their shares,
read now, for the readers that show them to admins (the dashboard,
:obj:`ccm.web.overview`, and the metrics, :obj:`ccm.metrics.shares`).

It only reads: the figures are those :obj:`ccm.shares.gate.ShareKeeper`
refuses callers by (:obj:`ccm.shares.standing.standing`), each user
against the pool that serves them, so what an admin sees is what the
proxy decides on.  The share files record each user's shares and pool
capacity from here too (:obj:`ShareView.entitlements`), for ``ccm usage``.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ccm.config.model import UserConfig
from ccm.pool.users import UserPools
from ccm.shares.gate import ShareKeeper, pool_weights, shares_of
from ccm.shares.standing import Entitlement, ShareFigures, pool_capacity
from ccm.web.auth import Caller


class ShareView:
    """
    The users' shares as they stand.

    :param keeper: the service's share keeper (its book and clock).
    :param users: the users configured now (a reload changes them).
    :param pools: the pool of each user.
    """

    def __init__(
        self, keeper: ShareKeeper, users: Callable[[], Sequence[UserConfig]], pools: UserPools
    ) -> None:
        self._keeper = keeper
        self._users = users
        self._pools = pools

    def by_user(self) -> dict[str, tuple[ShareFigures, ...]]:
        """
        Each configured user's figures, one per window they have a share
        of (none for a user without shares), by name.
        """
        figures = {}
        for user in self._users():
            caller = Caller(user)
            figures[user.name] = tuple(self._keeper.figures(caller, self._pools.pool_for(caller)))
        return figures

    def entitlements(self) -> dict[str, dict[str, Entitlement]]:
        """
        For each credential (by tag), every configured user whose pool
        holds it: their shares and that pool's capacity, the capacity the
        proxy measures their use against.
        """
        found: dict[str, dict[str, Entitlement]] = {}
        for user in self._users():
            caller = Caller(user)
            weights = pool_weights(self._pools.pool_for(caller))
            entitlement = Entitlement(pool_capacity(weights), shares_of(caller))
            for tag in weights:
                found.setdefault(tag, {})[user.name] = entitlement
        return found
