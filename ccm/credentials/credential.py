# -*- test-case-name: tests.credentials.test_credential,tests.credentials.test_locked_refresh -*-
"""
A subscription ccm can serve with: its OAuth tokens, kept fresh.

A :obj:`Credential` follows its credentials file (it may appear, change or
vanish at any time), hands out an access token that is valid for at least
another minute, and refreshes it when needed, under Claude Code's own lock
and taking another process's refresh rather than spending a consumed
refresh token (:obj:`ccm.credentials.rotation`).
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
# The hold-off's retry time and the rotation's error are this module's
# names too: callers know them as the credential's.
from ccm.credentials.holdoff import REFRESH_RETRY_SECONDS as REFRESH_RETRY_SECONDS
from ccm.credentials.lock import RefreshLocking
from ccm.web.errors import APIError
from ccm.credentials.store import CredentialStore
from ccm.credentials.oauth import TokenGrant
from ccm.credentials.rotation import CredentialUnavailable as CredentialUnavailable
from ccm.credentials.rotation import USE_MARGIN_SECONDS, TokenRotation
from ccm.credentials.recovery import TokenRecovery
from ccm.credentials.standing import Quarantine, Standing
from ccm.pool.observers import Observer, Observers
from ccm.pool.statelog import CredentialEvents, CredentialStateLog
from ccm.pool.plan import Plan, plan_weight
from ccm.pool.serving import AdminPause
from ccm.pool.windows import MemoryWindowState, WindowState


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
    :param events: told the outcome of each refresh and usage poll (the
        metrics); nobody by default.
    """

    def __init__(
        self,
        tag: str,
        store: CredentialStore,
        refresh: Callable[[str], Deferred[TokenGrant]],
        clock: IReactorTime,
        rate_limits: WindowState | None = None,
        lock: RefreshLocking | None = None,
        events: CredentialEvents | None = None,
    ) -> None:
        self.tag = tag
        self.store = store
        self._clock = clock
        self.tokens: OAuthTokens | None = None
        self.problem: str | None = "credentials not loaded yet"
        self.rate_limits: WindowState = (
            rate_limits if rate_limits is not None else MemoryWindowState(tag)
        )
        self.state_log = CredentialStateLog(tag, events)
        self._admin_pause: AdminPause | None = None
        self._observers = Observers()
        self._rotation = TokenRotation(
            store,
            self.state_log,
            clock,
            refresh,
            lock,
            current=lambda: self.tokens,
            serve=lambda tokens: self._set_state(tokens, None),
            lose=lambda problem: self._set_state(None, problem),
            failed=self._observers.notify,
        )
        self._holdoff = self._rotation.holdoff
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
                self.state_log.available(plan, tokens.seconds_left(self._clock.seconds()))
        elif problem is not None and problem != before:
            self.state_log.unavailable(problem)
        self._observers.notify()

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
        Refresh the tokens; concurrent callers share one refresh (see
        :obj:`TokenRotation`).

        :return: a Deferred firing with the new tokens, or failing with
            :obj:`CredentialUnavailable`.
        """
        return self._rotation.refresh()

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

    @property
    def admin_pause(self) -> AdminPause | None:
        """
        An admin's pause of this credential, while it lasts (see :obj:`pause`).
        """
        return self._admin_pause

    def pause(self, by: str) -> None:
        """
        Serve nothing until an admin resumes it: admin ``by`` asked.  Its
        sessions move at their next request, as from any credential that
        cannot serve.  A pause kept in memory: a restart ends it.
        """
        if self._admin_pause is None:
            self._admin_pause = AdminPause(by, self._clock.seconds())
            self._observers.notify()

    def resume(self) -> None:
        """
        End an admin's pause, if there is one.
        """
        if self._admin_pause is not None:
            self._admin_pause = None
            self._observers.notify()

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
