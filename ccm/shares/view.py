# -*- test-case-name: tests.shares.test_view -*-
"""
:obj:`ShareView`: every configured user's standing against their shares,
read now, for the readers that show them to admins (the dashboard,
:obj:`ccm.web.overview`, and the metrics, :obj:`ccm.metrics.shares`).

It only reads: the figures are those :obj:`ccm.shares.gate.ShareKeeper`
refuses callers by (:obj:`ccm.shares.standing.standing`), each user
against the pool that serves them, so what an admin sees is what the
proxy decides on.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ccm.config.model import UserConfig
from ccm.pool.users import UserPools
from ccm.shares.gate import ShareKeeper
from ccm.shares.standing import ShareFigures
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
