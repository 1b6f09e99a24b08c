# -*- test-case-name: tests.credentials.test_recovery -*-
"""
What a credential does when Anthropic rejects its access token (a 401, or
a 403 saying it was revoked): :obj:`TokenRecovery` looks for a token that
may work, first in the store (Claude Code, or another ccm, may have
refreshed it, or someone logged in again), then with one forced refresh.

A forced refresh happens at most once per
:obj:`FORCED_REFRESH_INTERVAL_SECONDS` for a credential: a token that a
refresh brought and that is rejected again within minutes means the login
itself is gone, and more refreshes would only hammer the token endpoint
with a refresh token that is probably revoked too.  Requests that find the
same token rejected at the same time share one recovery.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ccm.pool.statelog import CredentialStateLog

# Five minutes: long enough that a login that is really revoked costs one
# refresh, short enough that a token rejected by a passing fault on
# Anthropic's side is refreshed again in the next incident.
FORCED_REFRESH_INTERVAL_SECONDS = 300.0


class TokenRecovery:
    """
    The recovery of one credential after a rejected access token.

    :param catch_up: makes the store see what other programs stored
        (:obj:`ccm.credentials.store.CredentialStore.catch_up`).
    :param reload: reads the store into the credential.
    :param holds_other_than: whether the credential holds an access token
        other than the given one, which it could serve with.
    :param refresh: refreshes the credential's tokens; fires (with None)
        whether or not that worked.
    """

    def __init__(
        self,
        clock: IReactorTime,
        state_log: CredentialStateLog,
        *,
        catch_up: Callable[[], Deferred[None]],
        reload: Callable[[], None],
        holds_other_than: Callable[[str], bool],
        refresh: Callable[[], Deferred[None]],
    ) -> None:
        self._clock = clock
        self._state_log = state_log
        self._catch_up = catch_up
        self._reload = reload
        self._holds_other_than = holds_other_than
        self._refresh = refresh
        self._forced_at: float | None = None
        # The waiters of the recovery under way for each rejected token.
        self._waiters: dict[str, list[Deferred[bool]]] = {}

    def recover(self, rejected_access_token: str, answer: str) -> Deferred[bool]:
        """
        Look for an access token other than ``rejected_access_token``.

        :param answer: the upstream's answer, in words, for the log.
        :return: a Deferred firing with whether the credential now holds
            another token to try the request with.
        """
        waiter: Deferred[bool] = Deferred()
        waiters = self._waiters.setdefault(rejected_access_token, [])
        waiters.append(waiter)
        if len(waiters) == 1:
            self._state_log.token_rejected(answer)
            attempt = Deferred.fromCoroutine(self._recover(rejected_access_token))
            attempt.addBoth(self._done, rejected_access_token)
        return waiter

    def _done(self, result: bool | Failure, rejected_access_token: str) -> None:
        for waiter in self._waiters.pop(rejected_access_token, []):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    async def _recover(self, rejected_access_token: str) -> bool:
        await self._catch_up()
        self._reload()
        if self._holds_other_than(rejected_access_token):
            self._state_log.recovered("its store")
            return True
        now = self._clock.seconds()
        if self._forced_at is not None and now - self._forced_at < FORCED_REFRESH_INTERVAL_SECONDS:
            return False
        self._forced_at = now
        await self._refresh()
        if self._holds_other_than(rejected_access_token):
            self._state_log.recovered("a refresh")
            return True
        return False
