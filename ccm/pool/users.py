# -*- test-case-name: tests.test_service -*-
"""
Which pool serves each caller: the one its user's ``credential`` names, or,
without a ``credentials`` list (or without users), the service's only
pool.  The proxy and the status endpoint both ask here.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ccm.config.model import UserConfig
from ccm.pool.select import Pool
from ccm.web.auth import Caller


class UserPools:
    """
    The pool of each caller.

    :param pools: every pool of the service (single credentials and
        balancers), by tag.
    :param default: the pool of anonymous callers, and of every user when
        ``by_name`` is false.
    :param by_name: whether users name their pool (a ``credentials`` list
        is configured).
    :param users: the configured users.
    """

    def __init__(
        self,
        pools: Mapping[str, Pool],
        default: Pool,
        by_name: bool,
        users: Sequence[UserConfig],
    ) -> None:
        self.pools = pools
        self.default = default
        self._by_name = by_name
        self._of_user: dict[str, Pool] = {}
        self.set_users(users)

    def set_users(self, users: Sequence[UserConfig]) -> None:
        """
        Serve ``users`` from now on (a reloaded configuration); each names a
        pool of :obj:`pools` when users name their pool.
        """
        self._of_user = {
            user.name: self.pools[user.credential] if self._by_name else self.default
            for user in users
        }

    def pool_for(self, caller: Caller) -> Pool:
        """
        The pool that serves ``caller``.
        """
        if caller.user is None:
            return self.default
        return self._of_user[caller.user.name]
