# -*- test-case-name: tests.credentials.test_credential,tests.credentials.test_locked_refresh -*-
"""
A subscription ccm can serve with: its OAuth tokens, kept fresh.

A :obj:`Credential` follows its credentials file (it may appear, change or
vanish at any time), hands out an access token that is valid for at least
another minute, and refreshes it when needed: one refresh at a time, under
Claude Code's own lock (:obj:`ccm.credentials.lock`), re-reading the file
before, under the lock and after a failure in case Claude Code refreshed
it, and refusing to refresh when the rotated tokens could not be saved.
When it cannot serve, it says why in words a person can act on.
When Anthropic rejects its token, it looks for another
(:obj:`ccm.credentials.recovery`); its :obj:`ccm.credentials.standing`
keeps a rejected login or a ban.

The credential is also the one owner of the subscription's window state
(:obj:`ccm.pool.windows.WindowState`, injected so that a shared store can
replace it) and of its state log: both are facts about the subscription,
not about a pool, since one credential may serve several pools.  Their
modules live in :obj:`ccm.pool` and import nothing of
:obj:`ccm.credentials`, so the imports go one way.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ccm.credentials.file import CredentialFileError, OAuthTokens
# REFRESH_RETRY_SECONDS is this module's name for it too.
from ccm.credentials.holdoff import REFRESH_RETRY_SECONDS, RefreshHoldoff
from ccm.credentials.lock import HeldLock, LockBusy, LockError, RefreshLocking
from ccm.web.errors import APIError
from ccm.credentials.store import CredentialStore
from ccm.credentials.oauth import RefreshError, TokenGrant
from ccm.credentials.recovery import TokenRecovery
from ccm.credentials.standing import Quarantine, Standing
from ccm.pool.observers import Observer, Observers
from ccm.pool.statelog import CredentialStateLog
from ccm.pool.plan import Plan, plan_weight
from ccm.pool.windows import MemoryWindowState, WindowState

# A token this close to expiry is refreshed before it is used.
USE_MARGIN_SECONDS = 60.0


class CredentialUnavailable(Exception):
    """
    The credential cannot serve now; the message says why.
    """


class Credential:
    """
    One subscription's OAuth credential, backed by its credentials file.

    Its changes of state are logged by its :obj:`state_log`.

    :param refresh: exchanges a refresh token for a :obj:`TokenGrant`.
    :param rate_limits: the subscription's window state, which the proxy
        and the usage poller update; a new :obj:`MemoryWindowState` by default.
    :param lock: taken around each refresh: Claude Code's lock on the
        directory of its credentials (:obj:`ccm.credentials.lock.RefreshLock`);
        none by default.
    """

    def __init__(
        self,
        tag: str,
        store: CredentialStore,
        refresh: Callable[[str], Deferred[TokenGrant]],
        clock: IReactorTime,
        rate_limits: WindowState | None = None,
        lock: RefreshLocking | None = None,
    ) -> None:
        self.tag = tag
        self.store = store
        self._refresh_tokens = refresh
        self._clock = clock
        self.tokens: OAuthTokens | None = None
        self.problem: str | None = "credentials not loaded yet"
        self.rate_limits: WindowState = (
            rate_limits if rate_limits is not None else MemoryWindowState(tag)
        )
        self.state_log = CredentialStateLog(tag)
        self._observers = Observers()
        self._refreshing: Deferred[OAuthTokens] | None = None
        self._waiters: list[Deferred[OAuthTokens]] = []
        self._holdoff = RefreshHoldoff(clock)
        self._lock = lock
        self.standing = Standing(
            clock, self.state_log, tokens=lambda: self.tokens, store_path=lambda: self.store.path
        )
        self._recovery = TokenRecovery(
            clock,
            self.state_log,
            catch_up=lambda: self.store.catch_up(),
            reload=self.reload,
            holds_other_than=self._holds_other_than,
            refresh=self._refresh_for_recovery,
        )

    @property
    def available(self) -> bool:
        """
        Whether the credential has tokens it can serve with: the file was
        read, and the token is unexpired or has not failed to refresh.
        """
        return self.unavailable_reason is None

    @property
    def unavailable_reason(self) -> str | None:
        """
        Why the credential cannot serve, or None when it can.
        """
        if self.tokens is None or self.problem is not None:
            return self.problem or "credentials not loaded"
        login_problem = self.standing.login_problem
        if login_problem is not None:
            return login_problem
        if self.tokens.expires_within(self._clock.seconds(), 0):
            # Unless a failure explains why not, the next request refreshes.
            return self._holdoff.explains(self.tokens.refresh_token)
        return None

    @property
    def plan_weight(self) -> float:
        """
        The subscription's capacity relative to Pro.
        """
        if self.tokens is None:
            return 1.0
        reported = self.rate_limits.plan
        subscription = self.tokens.subscription_type or reported.subscription_type
        tier = self.tokens.rate_limit_tier or reported.rate_limit_tier
        return plan_weight(subscription, tier)

    @property
    def plan_known(self) -> bool:
        """
        Whether the plan's rate-limit tier is known, from the credentials
        file or from the OAuth profile.
        """
        tokens = self.tokens
        return bool(
            (tokens is not None and tokens.rate_limit_tier) or self.rate_limits.plan.rate_limit_tier
        )

    def set_profile(self, subscription_type: str, rate_limit_tier: str) -> None:
        """
        Remember the plan reported by the OAuth profile endpoint; the
        credentials file's own values take precedence.
        """
        self.rate_limits.apply_profile(Plan(subscription_type, rate_limit_tier))
        self.state_log.plan_learned(subscription_type, rate_limit_tier, self.plan_weight)

    def _set_state(self, tokens: OAuthTokens | None, problem: str | None) -> None:
        was_available = self.tokens is not None and self.problem is None
        before = self.problem
        self.tokens = tokens
        self.problem = problem
        if tokens is not None and problem is None and not was_available:
            plan = tokens.subscription_type or "unknown plan"
            if tokens.expires_within(self._clock.seconds(), 0):
                self.state_log.loaded_expired(plan)
            else:
                self.state_log.available(plan, self._remaining(tokens))
        elif problem is not None and problem != before:
            self.state_log.unavailable(problem)
        self._observers.notify()

    def _remaining(self, tokens: OAuthTokens) -> float | None:
        """
        The seconds ``tokens`` stay valid, or None when they never expire.
        """
        if tokens.expires_at_ms == 0:
            return None
        return max(0.0, tokens.expires_at_ms / 1000 - self._clock.seconds())

    def reload(self) -> None:
        """
        Read the credentials file again; called at start-up and whenever the
        file changes.  A missing or broken file makes the credential
        unavailable at once; a good one makes it available again.
        """
        try:
            tokens = self.store.read()
        except CredentialFileError as error:
            self._set_state(None, str(error))
            return
        if tokens != self.tokens:
            # Someone (a new login, Claude Code's own refresh) changed the
            # file: any earlier refresh failure no longer applies.
            self._holdoff.clear()
        self.standing.stored(tokens)
        self._set_state(tokens, None)

    def access_token(self) -> Deferred[str]:
        """
        An access token valid for at least another minute, refreshing first
        if needed.

        :return: a Deferred failing with :obj:`CredentialUnavailable` when the
            credential cannot serve.
        """
        tokens = self.tokens
        if tokens is None or self.problem is not None:
            return fail(CredentialUnavailable(self.problem or "credentials not loaded"))
        now = self._clock.seconds()
        if not tokens.expires_within(now, USE_MARGIN_SECONDS):
            return succeed(tokens.access_token)
        return self.refresh().addCallback(lambda fresh: fresh.access_token)

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
        await self.store.catch_up()
        try:
            return self.store.read()
        except CredentialFileError as error:
            self._set_state(None, str(error))
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
        if stored != self.tokens:
            self.state_log.adopted()
            self._holdoff.clear()
            self._set_state(stored, None)
        return stored

    def _unrefreshable(self, stored: OAuthTokens) -> OAuthTokens | None:
        """
        The outcome when ``stored`` cannot be refreshed at all (no refresh
        token, or one already rejected), else None.
        """
        if stored.refresh_token == self._holdoff.rejected_refresh_token:
            return self._still_usable_or_raise(
                self._holdoff.problem or "the refresh token was rejected"
            )
        if not stored.refresh_token:
            return self._refresh_failed(
                f"{self.store.path} has no refresh token; "
                "log in again with `claude /login`"
            )
        return None

    async def _refresh(self) -> OAuthTokens:
        if self._holdoff.problem is not None and self._holdoff.holding():
            return self._still_usable_or_raise(self._holdoff.problem)
        entry = self.tokens
        stored = await self._read_store()
        done = self._adopt_newer(stored, entry) or self._unrefreshable(stored)
        if done is not None:
            return done
        try:
            self.store.check_writable()
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
        self.state_log.refreshing()
        try:
            grant = await self._refresh_tokens(stored.refresh_token)
        except RefreshError as error:
            # The other process may have won the race that failed ours.
            adopted = self._adopt_newer(await self._read_store(), entry)
            if adopted is not None:
                return adopted
            return self._refresh_failed(self._holdoff.refused(error, stored.refresh_token))
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
            self.store.write_tokens(fresh)
        except CredentialFileError as error:
            try:
                self.store.read()
            except CredentialFileError as changed:
                # The file was deleted (a logout) or broken during the
                # refresh: like any such change, it makes the credential
                # unavailable, instead of serving tokens stored nowhere.
                self._set_state(None, str(changed))
                raise CredentialUnavailable(str(changed)) from None
            self.state_log.not_saved(str(error))
        self._holdoff.clear()
        self._set_state(fresh, None)
        self.state_log.refreshed(self._remaining(fresh))
        return fresh

    def _refresh_failed(self, problem: str) -> OAuthTokens:
        self._holdoff.failed(problem)
        self.state_log.refresh_failed(problem)
        self._observers.notify()
        return self._still_usable_or_raise(problem)

    def _still_usable_or_raise(self, problem: str) -> OAuthTokens:
        """
        After a failed refresh, keep serving with a token that has not yet
        expired; only an expired one makes the credential unavailable.
        """
        tokens = self.tokens
        if tokens is not None and not tokens.expires_within(self._clock.seconds(), 0):
            return tokens
        raise CredentialUnavailable(problem)

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """
        Call ``observer`` after each change of what this credential can
        do: its tokens loaded, replaced or lost, a refresh that failed, and
        every write to its :obj:`rate_limits`.

        :return: what ends the subscription.
        """
        ends = (self._observers.subscribe(observer), self.rate_limits.subscribe(observer))

        def unsubscribe() -> None:
            for end in ends:
                end()

        return unsubscribe

    def unavailable_error(self, reason: str) -> APIError:
        """
        The error a client gets when this credential cannot serve.
        """
        return APIError(
            503,
            "api_error",
            f"ccm cannot serve requests: {reason}",
            headers=(("x-should-retry", "false"),),
        )

    @property
    def quarantine(self) -> Quarantine | None:
        """
        The credential's ban, if it is banned (see :obj:`Standing`).
        """
        return self.standing.quarantine

    def recover(self, rejected_access_token: str, answer: str = "") -> Deferred[bool]:
        """
        Anthropic rejected ``rejected_access_token`` (with ``answer``, in
        words): look for another, in the store, then with a refresh (see
        :obj:`TokenRecovery`); a quarantined credential does not look.

        :return: a Deferred firing with whether there is another to try.
        """
        if self.quarantine is not None:
            return succeed(False)
        return self._recovery.recover(rejected_access_token, answer)

    def look_for_login(self) -> Deferred[None]:
        """
        Read the store again, as a credential waiting for a new login does
        now and then: a keychain item is not watched as a file is.
        """
        return self.store.catch_up().addCallback(lambda _: self.reload())

    def _holds_other_than(self, access_token: str) -> bool:
        tokens = self.tokens
        return tokens is not None and self.problem is None and tokens.access_token != access_token

    def _refresh_for_recovery(self) -> Deferred[None]:
        """
        :obj:`refresh`, firing with None whether it worked or was refused.
        """

        def refused(failure: Failure) -> None:
            failure.trap(CredentialUnavailable)

        return self.refresh().addCallbacks(lambda _: None, refused)
