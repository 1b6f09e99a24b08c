# -*- test-case-name: tests.credentials.test_credential -*-
"""
A subscription ccm can serve with: its OAuth tokens, kept fresh.

A :obj:`Credential` follows its credentials file (it may appear, change or
vanish at any time), hands out an access token that is valid for at least
another minute, and refreshes it when needed: one refresh at a time,
re-reading the file first in case Claude Code already refreshed it, and
refusing to refresh when the rotated tokens could not be saved.  When it
cannot serve, it says why in words a person can act on.  When Anthropic
rejects its token, it looks for another (:obj:`ccm.credentials.recovery`);
its :obj:`ccm.credentials.standing` keeps a rejected login or a ban.

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
# After a failed refresh, requests fail fast this long before another try.
REFRESH_RETRY_SECONDS = 30.0


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
    """

    def __init__(
        self,
        tag: str,
        store: CredentialStore,
        refresh: Callable[[str], Deferred[TokenGrant]],
        clock: IReactorTime,
        rate_limits: WindowState | None = None,
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
        self._refresh_failed_at: float | None = None
        self._refresh_problem: str | None = None
        # A refresh token the OAuth server rejected: asking again with it is
        # pointless until the file brings a new one.
        self._rejected_refresh_token: str | None = None
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
        now = self._clock.seconds()
        if self._refresh_problem is not None and self.tokens.expires_within(now, 0):
            rejected = self.tokens.refresh_token == self._rejected_refresh_token
            waiting = (
                self._refresh_failed_at is not None
                and now - self._refresh_failed_at < REFRESH_RETRY_SECONDS
            )
            if rejected or waiting:
                return self._refresh_problem
        # Otherwise the next request refreshes first.
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
            self._refresh_failed_at = None
            self._refresh_problem = None
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

    async def _refresh(self) -> OAuthTokens:
        now = self._clock.seconds()
        if (
            self._refresh_failed_at is not None
            and now - self._refresh_failed_at < REFRESH_RETRY_SECONDS
            and self._refresh_problem is not None
        ):
            return self._still_usable_or_raise(self._refresh_problem)
        # Another process may have refreshed already: use its tokens.
        await self.store.catch_up()
        try:
            stored = self.store.read()
        except CredentialFileError as error:
            self._set_state(None, str(error))
            raise CredentialUnavailable(str(error)) from None
        if not stored.expires_within(now, USE_MARGIN_SECONDS) and stored != self.tokens:
            self.state_log.adopted()
            self._set_state(stored, None)
            return stored
        if (
            self._rejected_refresh_token is not None
            and stored.refresh_token == self._rejected_refresh_token
        ):
            return self._still_usable_or_raise(
                self._refresh_problem or "the refresh token was rejected"
            )
        if not stored.refresh_token:
            return self._refresh_failed(
                f"{self.store.path} has no refresh token; "
                "log in again with `claude /login`"
            )
        try:
            self.store.check_writable()
        except CredentialFileError as error:
            return self._refresh_failed(str(error))
        self.state_log.refreshing()
        try:
            grant = await self._refresh_tokens(stored.refresh_token)
        except RefreshError as error:
            if error.permanent:
                self._rejected_refresh_token = stored.refresh_token
            advice = (
                "the refresh token was rejected; log in again with `claude /login` "
                "on the ccm host"
                if error.permanent
                else "will retry"
            )
            return self._refresh_failed(f"token refresh failed: {error} ({advice})")
        fresh = stored.refreshed(
            grant.access_token,
            grant.refresh_token,
            int((self._clock.seconds() + grant.expires_in_seconds) * 1000),
        )
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
        self._refresh_failed_at = None
        self._refresh_problem = None
        self._set_state(fresh, None)
        self.state_log.refreshed(self._remaining(fresh))
        return fresh

    def _refresh_failed(self, problem: str) -> OAuthTokens:
        self._refresh_failed_at = self._clock.seconds()
        self._refresh_problem = problem
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
