# -*- test-case-name: tests.pool.test_poller -*-
"""
Background polls of each subscription's usage, never on the request path.

Every ``interval`` a :obj:`UsagePoller` asks ``/api/oauth/usage`` how much of each
credential's 5-hour and weekly windows is used, and hands the figures to the
credential's :obj:`ccm.pool.windows.WindowState`.  A credential is left alone while it cannot
serve, while its response headers kept its state fresh, while the usage
endpoint asked (with a 429) to be left alone, and after failed polls (1, 2,
4, then every 5 minutes).  A failed poll changes nothing: the last known
state stands, so a flaky usage endpoint never stops traffic.  After the
first successful poll of a credential whose plan tier is unknown, the
OAuth profile supplies it; every hour the profile is asked again, as a
plan downgraded to none is an early sign of a ban.  A rejected token or a
ban is acted on as on the request path (:obj:`ccm.pool.judgement`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Coroutine, Sequence

from treq.client import HTTPClient
from twisted.application.internet import TimerService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from ccm.credentials.credential import Credential, CredentialUnavailable
from ccm.credentials.oauth import is_cancellation
from ccm.units import format_duration
from ccm.upstream.anthropic_api import (
    PROFILE_PATH,
    USAGE_PATH,
    AnswerTooLarge,
    WindowFigures,
    parse_profile,
    parse_usage,
    profile_request_headers,
    read_answer,
    usage_request_headers,
)
from ccm.pool.judgement import JUDGED_STATUSES, act_on_profile, act_on_rejection
from ccm.upstream.verdicts import Verdict, classify
from ccm.upstream.identity import ClientIdentity

POLL_INTERVAL_SECONDS = 60.0
POLL_TIMEOUT_SECONDS = 5.0
# After a 429 without a usable Retry-After (absent, or beyond the bounds of
# ccm.pool.figures), and the most a Retry-After may hold polls back.
RETRY_AFTER_DEFAULT_SECONDS = 60
RETRY_AFTER_MAX_SECONDS = 3600
# Consecutive failures wait 1, 2, 4, then 5 minutes.
BACKOFF_BASE_SECONDS = 60.0
BACKOFF_MAX_SECONDS = 300.0
# The delay after the nth failure in a row, for n = 1, 2, ...: Twisted's
# reconnection policy, without jitter so that the schedule is the same at
# each start.
_backoff = backoffPolicy(BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS, 2, jitter=lambda: 0.0)
# How early a tick may come relative to a time computed from an earlier
# tick: a real reactor fires each tick a little late, by varying amounts.
TICK_SLACK_SECONDS = 1.0
# How often the profile is asked again, poll or no poll, to notice a plan
# that was downgraded (an early sign of a ban).
PROFILE_CHECK_INTERVAL_SECONDS = 3600.0


class PollError(Exception):
    """
    A usage or profile poll failed; the message says how, and never holds a
    token.
    """


@dataclass
class _PollState:
    """
    What the poller remembers about one credential.
    """

    polling: bool = False
    # Consecutive failed polls, and no poll before this time because of them.
    failures: int = 0
    backoff_until: float = 0.0
    # No poll before this time: the usage endpoint answered 429.
    retry_at: float = 0.0
    # The ``updated_at`` our last successful poll set, and when that poll
    # began: a tick counts freshness from the start of our own poll.
    applied_at: float | None = None
    applied_started_at: float = 0.0
    profile_fetched: bool = False
    # When the profile was last asked for (or, before that, when the poller
    # first saw the credential).
    profile_checked_at: float | None = None


class UsagePoller(TimerService):
    """
    Poll the usage of every credential in the background.

    :param credentials: the credentials to poll.
    :param http_client: a treq ``HTTPClient`` (or ``StubTreq``).
    :param clock: the clock for the loop, timeouts and backoff.
    :param upstream_url: the API base URL, e.g. ``https://api.anthropic.com``.
    :param interval: seconds between polls of one credential.
    :param timeout: seconds one request, headers and body, may take.
    :param identity: the Claude Code the polls identify as.
    :param polls: whether to poll a credential (by tag) now; all by default.
    """

    log = Logger()

    def __init__(
        self,
        credentials: Sequence[Credential],
        http_client: HTTPClient,
        clock: IReactorTime,
        upstream_url: str,
        interval: float = POLL_INTERVAL_SECONDS,
        timeout: float = POLL_TIMEOUT_SECONDS,
        identity: ClientIdentity | None = None, polls: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(interval, self.poll_all)
        self._polls = polls or (lambda tag: True)
        self._identity = identity if identity is not None else ClientIdentity()
        self.clock: IReactorTime = clock
        self._interval = interval
        self._credentials = [(credential, _PollState()) for credential in credentials]
        self._http = http_client
        self._upstream_url = upstream_url.rstrip("/")
        self._timeout = timeout
        self._slack = min(TICK_SLACK_SECONDS, interval / 10)
        self._in_flight: set[Deferred[None]] = set()

    def stopService(self) -> Deferred[None]:
        """
        Stop polling; polls in flight are cancelled.
        """
        stopped: Deferred[None] = super().stopService()
        for poll in list(self._in_flight):
            poll.cancel()
        return stopped

    def poll_all(self) -> Deferred[None]:
        """
        Poll, concurrently, every credential that needs a poll now.

        :return: a Deferred that fires when those polls are over; it never
            fails, as each poll handles its own errors.
        """
        now = self.clock.seconds()
        polls: list[Deferred[None]] = []
        for credential, state in self._credentials:
            if state.profile_checked_at is None:
                state.profile_checked_at = now
            try:
                polled = self._polls(credential.tag)
                due = polled and self._due(credential, state, now)
                profile_due = polled and self._profile_check_due(credential, state, now)
            except Exception:
                self.log.failure("cannot tell whether to poll {tag}", tag=credential.tag)
                continue
            if due:
                polls.append(self._start(state, self._poll(credential, state)))
            elif profile_due and not state.polling:
                polls.append(self._start(state, self._check_profile(credential, state)))
        return DeferredList(polls, consumeErrors=True).addCallback(lambda _: None)

    def _due(self, credential: Credential, state: _PollState, now: float) -> bool:
        if state.polling or credential.unavailable_reason is not None:
            return False
        if credential.quarantine is not None:
            return False
        if now < state.retry_at or now < state.backoff_until - self._slack:
            return False
        updated_at = credential.rate_limits.updated_at
        if updated_at == state.applied_at:
            updated_at = state.applied_started_at
        return now - updated_at >= self._interval - self._slack

    def _profile_check_due(self, credential: Credential, state: _PollState, now: float) -> bool:
        """
        Whether the profile is to be asked again now, whatever the usage.
        """
        if credential.unavailable_reason is not None or credential.quarantine is not None:
            return False
        checked_at = state.profile_checked_at
        return (
            checked_at is not None
            and now - checked_at >= PROFILE_CHECK_INTERVAL_SECONDS - self._slack
        )

    def _start(
        self, state: _PollState, work: Coroutine[Deferred[object], object, None]
    ) -> Deferred[None]:
        state.polling = True
        poll = Deferred.fromCoroutine(work)
        if not poll.called:
            self._in_flight.add(poll)
            poll.addBoth(self._forget, poll)
        return poll

    def _forget(self, result: object, poll: Deferred[None]) -> object:
        self._in_flight.discard(poll)
        return result

    async def _poll(self, credential: Credential, state: _PollState) -> None:
        started = self.clock.seconds()
        try:
            token = await self._token(credential)
            code, headers, body = await self._get(
                USAGE_PATH, usage_request_headers(token, self._identity)
            )
            if code in JUDGED_STATUSES:
                # A rejected token is looked for again, as on the request
                # path; a retry that is rejected too, or a ban, ends the poll
                # without a failure: the credential's own line says it.
                reading = classify(code, body)
                if reading.verdict is Verdict.TOKEN_REJECTED and await credential.recover(
                    token, reading.describe()
                ):
                    token = await self._token(credential)
                    code, headers, body = await self._get(
                        USAGE_PATH, usage_request_headers(token, self._identity)
                    )
                if code in JUDGED_STATUSES and act_on_rejection(
                    credential, classify(code, body), token
                ):
                    return
            if code == 429:
                delay = credential.rate_limits.retry_after(headers, self.clock.seconds())
                if delay is None:
                    delay = RETRY_AFTER_DEFAULT_SECONDS
                self._rate_limited(credential, state, min(delay, RETRY_AFTER_MAX_SECONDS))
                return
            if code != 200:
                raise PollError(f"HTTP {code}")
            try:
                five_hour, weekly = parse_usage(body)
            except ValueError as error:
                raise PollError(f"malformed answer: {error}") from None
            self._succeeded(credential, state, started, five_hour, weekly)
            if (
                not state.profile_fetched and not credential.plan_known
            ) or self._profile_check_due(credential, state, self.clock.seconds()):
                await self._fetch_profile(credential, state, token)
        except PollError as error:
            self._poll_failed(credential, state, started, str(error))
        except CancelledError:
            # The service is stopping.
            pass
        except Exception:
            self.log.failure("usage poll of {tag} crashed", tag=credential.tag)
            self._poll_failed(credential, state, started, "internal error")
        finally:
            state.polling = False

    async def _token(self, credential: Credential) -> str:
        """
        The credential's access token, or :obj:`PollError` saying why not.
        """
        try:
            return await credential.access_token()
        except CredentialUnavailable as error:
            raise PollError(f"no access token: {error}") from None
        except Exception as error:
            if is_cancellation(error):
                raise
            raise PollError(f"no access token: {type(error).__name__}") from None

    async def _check_profile(self, credential: Credential, state: _PollState) -> None:
        """
        Ask for the profile alone: the hourly check of a credential whose
        usage its responses keep fresh.
        """
        try:
            await self._fetch_profile(credential, state, await self._token(credential))
        except PollError as error:
            self.log.debug(
                "profile of {tag} unavailable: {reason}", tag=credential.tag, reason=str(error)
            )
        except CancelledError:
            pass
        except Exception:
            self.log.failure("profile check of {tag} crashed", tag=credential.tag)
        finally:
            state.polling = False

    def _get(self, path: str, headers: Headers) -> Deferred[tuple[int, Headers, bytes]]:
        """
        GET ``path`` upstream with ``headers`` (which hold the token), the
        answer's headers and body within the timeout.

        :return: a Deferred firing with the status, headers and body, or
            failing with :obj:`PollError` (or :obj:`CancelledError` when cancelled).
        """
        attempt = Deferred.fromCoroutine(self._fetch(path, headers))

        def timed_out(result: object, timeout: float) -> tuple[int, Headers, bytes]:
            raise PollError(f"no answer within {timeout:g}s")

        attempt.addTimeout(self._timeout, self.clock, onTimeoutCancel=timed_out)
        return attempt

    async def _fetch(self, path: str, headers: Headers) -> tuple[int, Headers, bytes]:
        try:
            # treq types reactor= as the reactor its Agent needs, but only
            # asks it for time (and would otherwise import the global one).
            response = await self._http.get(
                self._upstream_url + path,
                headers=headers,
                reactor=self.clock,  # type: ignore[arg-type]
                unbuffered=True,
                allow_redirects=False,
            )
            body = await read_answer(response)
        except AnswerTooLarge as error:
            raise PollError(str(error)) from None
        except Exception as error:
            if is_cancellation(error):
                raise CancelledError() from None
            raise PollError(type(error).__name__) from None
        return response.code, response.headers, body

    async def _fetch_profile(self, credential: Credential, state: _PollState, token: str) -> None:
        state.profile_checked_at = self.clock.seconds()
        try:
            code, _, body = await self._get(
                PROFILE_PATH, profile_request_headers(token, self._identity)
            )
            if code in JUDGED_STATUSES and act_on_rejection(credential, classify(code, body)):
                return
            if code != 200:
                raise PollError(f"HTTP {code}")
            try:
                plan = parse_profile(body)
            except ValueError as error:
                raise PollError(f"malformed answer: {error}") from None
        except PollError as error:
            self.log.debug(
                "profile of {tag} unavailable: {reason}", tag=credential.tag, reason=str(error)
            )
            return
        state.profile_fetched = True
        if act_on_profile(credential, plan):
            return
        if plan is None:
            self.log.debug("profile of {tag} names no organization", tag=credential.tag)
            return
        credential.set_profile(*plan)

    def _succeeded(
        self,
        credential: Credential,
        state: _PollState,
        started: float,
        five_hour: WindowFigures | None,
        weekly: WindowFigures | None,
    ) -> None:
        now = self.clock.seconds()
        credential.rate_limits.apply_poll(five_hour, weekly, now, started=started)
        state.applied_at = credential.rate_limits.updated_at
        state.applied_started_at = started
        credential.state_log.polled()
        if state.failures:
            credential.state_log.poll_works_again(state.failures)
        state.failures = 0
        state.backoff_until = 0.0
        state.retry_at = 0.0
        self.log.debug(
            "usage of {tag}: 5-hour window {five_hour}, weekly window {weekly}",
            tag=credential.tag,
            five_hour=self._describe(five_hour, now),
            weekly=self._describe(weekly, now),
            five_hour_figures=five_hour,
            weekly_figures=weekly,
        )

    @staticmethod
    def _describe(window: WindowFigures | None, now: float) -> str:
        if window is None:
            return "not reported"
        utilization, resets_at = window
        if not resets_at:
            return f"{utilization:g}% used"
        return f"{utilization:g}% used, resets in {format_duration(max(0.0, resets_at - now))}"

    def _rate_limited(self, credential: Credential, state: _PollState, delay: float) -> None:
        state.retry_at = self.clock.seconds() + delay
        credential.state_log.poll_rate_limited(delay)

    def _poll_failed(
        self, credential: Credential, state: _PollState, started: float, reason: str
    ) -> None:
        state.failures += 1
        delay = _backoff(state.failures - 1)
        state.backoff_until = started + delay
        credential.state_log.poll_failed(reason, state.failures, delay)
