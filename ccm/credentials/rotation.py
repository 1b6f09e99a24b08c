# -*- test-case-name: tests.credentials.test_credential,tests.credentials.test_locked_refresh -*-
"""
Spending a credential's refresh token: :obj:`TokenRotation`.

One refresh at a time, under Claude Code's own lock
(:obj:`ccm.credentials.lock`), re-reading the store before, under the lock
and after a failure, in case another process (Claude Code first of all)
refreshed the same login meanwhile: its tokens are taken instead of
spending a refresh token that may be consumed already.  Rotated tokens
that cannot be written back are not refreshed at all; failures hold the
next refresh back (:obj:`ccm.credentials.holdoff`).

The rotation changes the credential only through the callbacks it is
given, so that the credential stays the one owner of its tokens.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ccm.credentials.file import CredentialFileError, OAuthTokens
from ccm.credentials.holdoff import RefreshHoldoff
from ccm.credentials.lock import HeldLock, LockBusy, LockError, RefreshLocking
from ccm.credentials.oauth import RefreshError, TokenGrant
from ccm.credentials.store import CredentialStore
from ccm.pool.statelog import CredentialStateLog

# A token this close to expiry is refreshed before it is used.
USE_MARGIN_SECONDS = 60.0


class CredentialUnavailable(Exception):
    """
    The credential cannot serve now; the message says why.
    """


class TokenRotation:
    """
    The refreshes of one credential's tokens.

    :param refresh: exchanges a refresh token for a :obj:`TokenGrant`.
    :param lock: taken around each refresh, or None for no lock.
    :param current: the tokens the credential serves with now.
    :param serve: make the credential serve with these tokens.
    :param lose: make the credential unavailable, for this reason.
    :param failed: called after each failed refresh, once its hold-off is
        recorded.
    """

    def __init__(
        self,
        store: CredentialStore,
        state_log: CredentialStateLog,
        clock: IReactorTime,
        refresh: Callable[[str], Deferred[TokenGrant]],
        lock: RefreshLocking | None,
        *,
        current: Callable[[], OAuthTokens | None],
        serve: Callable[[OAuthTokens], None],
        lose: Callable[[str], None],
        failed: Callable[[], None],
    ) -> None:
        self._store = store
        self._state_log = state_log
        self._clock = clock
        self._refresh_tokens = refresh
        self._lock = lock
        self._current = current
        self._serve = serve
        self._lose = lose
        self._failed = failed
        self.holdoff = RefreshHoldoff(clock)
        self._refreshing: Deferred[OAuthTokens] | None = None
        self._waiters: list[Deferred[OAuthTokens]] = []

    def refresh(self) -> Deferred[OAuthTokens]:
        """
        Refresh the tokens; concurrent callers share one refresh.

        :return: a Deferred firing with the new tokens, or failing with
            :obj:`CredentialUnavailable`.
        """
        waiter: Deferred[OAuthTokens] = Deferred()
        self._waiters.append(waiter)
        if self._refreshing is None:
            self._refreshing = Deferred.fromCoroutine(self._refresh())
            self._refreshing.addBoth(self._refresh_done)
        return waiter

    def _refresh_done(self, result: OAuthTokens | Failure) -> None:
        self._refreshing = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    async def _read_store(self) -> OAuthTokens:
        """
        The tokens stored now (another process may have changed them); a
        store that cannot be read makes the credential unavailable.
        """
        await self._store.catch_up()
        try:
            return self._store.read()
        except CredentialFileError as error:
            self._lose(str(error))
            raise CredentialUnavailable(str(error)) from None

    def _adopt_newer(self, stored: OAuthTokens, entry: OAuthTokens | None) -> OAuthTokens | None:
        """
        Serve with ``stored`` when another process refreshed (or a new login
        was stored) since this refresh began with ``entry``: they differ and
        stay valid a while.
        """
        now = self._clock.seconds()
        if stored == entry or stored.expires_within(now, USE_MARGIN_SECONDS):
            return None
        if stored != self._current():
            self._state_log.adopted()
            self.holdoff.clear()
            self._serve(stored)
        return stored

    def _unrefreshable(self, stored: OAuthTokens) -> OAuthTokens | None:
        """
        The outcome when ``stored`` cannot be refreshed at all (no refresh
        token, or one already rejected), else None.
        """
        if stored.refresh_token == self.holdoff.rejected_refresh_token:
            return self._still_usable_or_raise(
                self.holdoff.problem or "the refresh token was rejected"
            )
        if not stored.refresh_token:
            return self._refresh_failed(
                f"{self._store.path} has no refresh token; log in again with `claude /login`"
            )
        return None

    async def _refresh(self) -> OAuthTokens:
        if self.holdoff.problem is not None and self.holdoff.holding():
            return self._still_usable_or_raise(self.holdoff.problem)
        entry = self._current()
        stored = await self._read_store()
        done = self._adopt_newer(stored, entry) or self._unrefreshable(stored)
        if done is not None:
            return done
        try:
            self._store.check_writable()
        except CredentialFileError as error:
            return self._refresh_failed(str(error))
        if self._lock is None:
            return await self._refresh_with(stored, entry, None)
        # Claude Code's lock: it never spends the refresh token while
        # another process may be spending it too.
        try:
            held = await self._lock.acquire()
        except (LockBusy, LockError) as error:
            # The holder may have finished by now.
            adopted = self._adopt_newer(await self._read_store(), entry)
            if adopted is not None:
                return adopted
            return self._refresh_failed(f"token refresh not started: {error}; will retry")
        try:
            # Whoever held the lock before may have rotated the tokens.
            stored = await self._read_store()
            done = self._adopt_newer(stored, entry) or self._unrefreshable(stored)
            if done is not None:
                return done
            return await self._refresh_with(stored, entry, held)
        finally:
            held.release()

    async def _refresh_with(
        self, stored: OAuthTokens, entry: OAuthTokens | None, held: HeldLock | None
    ) -> OAuthTokens:
        """
        Spend ``stored``'s refresh token, holding ``held`` (or no lock).
        """
        if held is not None and held.compromised is not None:
            return self._refresh_failed(f"token refresh not started: {held.compromised}")
        self._state_log.refreshing()
        try:
            grant = await self._refresh_tokens(stored.refresh_token)
        except RefreshError as error:
            # The other process may have won the race that failed ours.
            adopted = self._adopt_newer(await self._read_store(), entry)
            if adopted is not None:
                return adopted
            return self._refresh_failed(self.holdoff.refused(error, stored.refresh_token))
        fresh = stored.refreshed(
            grant.access_token,
            grant.refresh_token,
            int((self._clock.seconds() + grant.expires_in_seconds) * 1000),
        )
        if held is not None and held.compromised is not None:
            # Whoever took the lock over may have stored a login since:
            # it wins over ours.
            current = await self._read_store()
            if current.refresh_token != stored.refresh_token:
                adopted = self._adopt_newer(current, entry)
                if adopted is not None:
                    return adopted
        try:
            self._store.write_tokens(fresh)
        except CredentialFileError as error:
            try:
                self._store.read()
            except CredentialFileError as changed:
                # The file was deleted (a logout) or broken during the
                # refresh: like any such change, it makes the credential
                # unavailable, instead of serving tokens stored nowhere.
                self._lose(str(changed))
                raise CredentialUnavailable(str(changed)) from None
            self._state_log.not_saved(str(error))
        self.holdoff.clear()
        self._serve(fresh)
        self._state_log.refreshed(fresh.seconds_left(self._clock.seconds()))
        return fresh

    def _refresh_failed(self, problem: str) -> OAuthTokens:
        self.holdoff.failed(problem)
        self._state_log.refresh_failed(problem)
        self._failed()
        return self._still_usable_or_raise(problem)

    def _still_usable_or_raise(self, problem: str) -> OAuthTokens:
        """
        After a failed refresh, keep serving with a token that has not yet
        expired; only an expired one makes the credential unavailable.
        """
        tokens = self._current()
        if tokens is not None and not tokens.expires_within(self._clock.seconds(), 0):
            return tokens
        raise CredentialUnavailable(problem)
