"""
Tests for :obj:`ccm.pool.poller`: background usage polls of each credential, their
skips, backoff, timeouts and the profile fetch, against the fake Anthropic
API on a :obj:`Clock`.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, cast

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.credentials.file import CredentialFile
from ccm.credentials.credential import Credential
from ccm.credentials.oauth import RefreshError, TokenGrant
from ccm.pool.poller import PROFILE_CHECK_INTERVAL_SECONDS, RETRY_AFTER_MAX_SECONDS, UsagePoller
from ccm.pool.serving import Unusable
from ccm.pool.member import PoolMember
from ccm.pool.plan import Plan
from ccm.pool.windows import Window
from ccm.upstream.anthropic_api import MAX_ANSWER_BYTES
from ccm.upstream.identity import CHECKED_CLAUDE_CODE_VERSION, ClientIdentity
from tests.fake_anthropic import (
    FIVE_HOUR_SECONDS,
    SEVEN_DAY_SECONDS,
    FakeAnthropic,
    allowed_unified_headers,
)
from tests.fixtures import logged_events, write_credentials


START_TIME = 1_790_000_000.0
UPSTREAM_URL = "http://api.fake.test"
SECOND_TOKEN = "sk-ant-oat01-second-subscription"
USAGE_PATH = "/api/oauth/usage"
PROFILE_PATH = "/api/oauth/profile"


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    """
    Unix seconds of a UTC date and time.
    """
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc).timestamp()


class _SlowClient:
    """
    An HTTP client that sends each request ``delay`` seconds late on ``clock``
    (so its answer arrives that late), through ``inner``.
    """

    def __init__(self, inner: Any, clock: Clock, delay: float) -> None:
        self.inner = inner
        self.clock = clock
        self.delay = delay

    def get(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        calls: list[IDelayedCall] = []
        answer: Deferred[Any] = Deferred(lambda _: calls[0].cancel())

        def send() -> None:
            self.inner.get(*args, **kwargs).chainDeferred(answer)
            self.inner.flush()

        calls.append(self.clock.callLater(self.delay, send))
        return answer


class _Unreachable:
    """
    An HTTP client whose every request fails at once.
    """

    def get(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return fail(ConnectionRefusedError("connection refused"))


class PollingTestCase(SynchronousTestCase):
    """
    A fake API reached through :obj:`StubTreq`, credentials over temporary
    files, and a :obj:`Clock` at :obj:`START_TIME`.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START_TIME)
        self.fake = FakeAnthropic(self.clock)
        self.http = StubTreq(self.fake.resource())
        self.log = logged_events(self)
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.refreshes: list[str] = []

    def refresh(self, refresh_token: str) -> Deferred[TokenGrant]:
        """
        A token endpoint that is down.
        """
        self.refreshes.append(refresh_token)
        return fail(RefreshError("token endpoint unreachable: ConnectError"))

    def credential(
        self,
        tag: str = "main",
        access_token: str | None = None,
        *,
        write: bool = True,
        expires_at: float = START_TIME + 86400,
        subscription_type: str = "max",
        rate_limit_tier: str = "default_claude_max_20x",
    ) -> Credential:
        """
        A loaded :obj:`Credential` over its own credentials file (none when
        ``write`` is false), holding the fake's access token by default.
        """
        path = os.path.join(self.directory, tag + ".json")
        if write:
            write_credentials(
                path,
                self.fake.access_token if access_token is None else access_token,
                self.fake.refresh_token,
                int(expires_at * 1000),
                subscription_type=subscription_type,
                rate_limit_tier=rate_limit_tier,
            )
        credential = Credential(tag, CredentialFile(path), self.refresh, self.clock)
        credential.reload()
        return credential

    def poller(
        self,
        *credentials: Credential,
        interval: float = 60.0,
        timeout: float = 5.0,
        http_client: Any = None,
        identity: ClientIdentity | None = None,
    ) -> UsagePoller:
        """
        A poller of ``credentials``, stopped at cleanup if still running.
        """
        poller = UsagePoller(
            credentials,
            cast(HTTPClient, self.http) if http_client is None else http_client,
            self.clock,
            UPSTREAM_URL,
            interval=interval,
            timeout=timeout,
            identity=identity,
        )

        def stop() -> None:
            if poller.running:
                poller.stopService()

        self.addCleanup(stop)
        return poller

    def flush(self) -> None:
        """
        Move every pending byte between the poller and the fake.
        """
        for _ in range(4):
            self.http.flush()

    def advance(self, seconds: float) -> None:
        """
        Let ``seconds`` pass, then flush.
        """
        self.clock.advance(seconds)
        self.flush()

    def start(self, poller: UsagePoller) -> None:
        """
        Start ``poller`` (its first round of polls runs at once) and flush.
        """
        poller.startService()
        self.flush()

    def stop(self, poller: UsagePoller) -> None:
        """
        Stop ``poller``; check that the stop completes (polls in flight are
        cancelled, not waited for) and that no timer is left behind.
        """
        stopped = poller.stopService()
        self.flush()
        self.successResultOf(stopped)
        self.assertFalse(poller.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def requests(self, path: str = USAGE_PATH) -> list[Any]:
        """
        The fake's requests to ``path``.
        """
        return [request for request in self.fake.requests if request.path == path]

    def poll_times(self, minutes: int, path: str = USAGE_PATH) -> list[float]:
        """
        Advance minute by minute for ``minutes`` minutes and return the
        offsets from :obj:`START_TIME` at which requests to ``path`` were made,
        those made before included.
        """
        times = [0.0] * len(self.requests(path))
        for _ in range(minutes):
            before = len(self.requests(path))
            self.advance(60)
            times += [self.clock.seconds() - START_TIME] * (len(self.requests(path)) - before)
        return times

    def messages(self, level: LogLevel | None = None) -> list[str]:
        """
        The text of every log event so far, of ``level`` when given.
        """
        return [
            formatEvent(event)
            for event in self.log
            if level is None or event.get("log_level") == level
        ]

    def assert_no_secrets(self) -> None:
        """
        No log event mentions an access or refresh token.
        """
        secrets = (self.fake.access_token, self.fake.refresh_token, SECOND_TOKEN)
        for event in self.log:
            text = formatEvent(event) + repr(sorted(event.items(), key=lambda kv: kv[0]))
            for secret in secrets:
                self.assertNotIn(secret, text)


class PollTests(PollingTestCase):
    """
    What a poll asks and what it does with a good answer.
    """

    def test_first_poll_at_start(self) -> None:
        """
        Starting the service polls at once, with the OAuth bearer, the OAuth
        beta flag, a JSON content type and the user agent of the Claude
        Code release ccm was checked against, and the answer becomes the
        credential's state.
        """
        credential = self.credential()
        poller = self.poller(credential)
        self.start(poller)
        [request] = self.requests()
        self.assertEqual(request.method, "GET")
        self.assertEqual(request.header("authorization"), "Bearer " + self.fake.access_token)
        self.assertEqual(request.header("anthropic-beta"), "oauth-2025-04-20")
        self.assertEqual(request.header("content-type"), "application/json")
        self.assertEqual(request.header("accept"), "application/json, text/plain, */*")
        self.assertEqual(
            request.header("user-agent"),
            f"claude-cli/{CHECKED_CLAUDE_CODE_VERSION} (external, cli)",
        )
        state = credential.rate_limits
        self.assertEqual(state.five_hour.utilization, 10.0)
        self.assertEqual(state.five_hour.resets_at, START_TIME + FIVE_HOUR_SECONDS)
        self.assertEqual(state.weekly.utilization, 20.0)
        self.assertEqual(state.weekly.resets_at, START_TIME + SEVEN_DAY_SECONDS)
        self.assertEqual(state.updated_at, START_TIME)
        self.stop(poller)

    def test_every_interval(self) -> None:
        """
        Without header updates a credential is polled every interval, and
        each answer replaces the state, also when utilization goes down.
        """
        credential = self.credential()
        poller = self.poller(credential)
        self.start(poller)
        self.fake.unified_headers = allowed_unified_headers(
            START_TIME, five_hour_utilization=0.04, seven_day_utilization=0.5
        )
        self.assertEqual(self.poll_times(3), [0.0, 60.0, 120.0, 180.0])
        self.assertEqual(credential.rate_limits.five_hour.utilization, 4.0)
        self.assertEqual(credential.rate_limits.weekly.utilization, 50.0)
        self.assertEqual(credential.rate_limits.updated_at, START_TIME + 180)
        self.stop(poller)

    def test_fields_applied(self) -> None:
        """
        Percentages are taken as they are, ISO 8601 resets become Unix
        seconds, a null reset keeps the known one, and other buckets are
        ignored.
        """
        credential = self.credential()
        # Known from an earlier poll, a minute ago.
        credential.rate_limits.apply_poll(None, (0.0, START_TIME + 1000), START_TIME - 60)
        self.fake.usage_body = {
            "five_hour": {"utilization": 42.5, "resets_at": "2026-09-21T19:13:20.777251+00:00"},
            "seven_day": {"utilization": 56, "resets_at": None},
            "seven_day_opus": {"utilization": 99.0, "resets_at": "2026-09-22T00:00:00Z"},
            "extra_usage": None,
        }
        poller = self.poller(credential)
        self.start(poller)
        state = credential.rate_limits
        self.assertEqual(state.five_hour.utilization, 42.5)
        self.assertAlmostEqual(
            state.five_hour.resets_at, utc(2026, 9, 21, 19, 13, 20) + 0.777251, places=5
        )
        self.assertEqual(state.weekly.utilization, 56.0)
        self.assertEqual(state.weekly.resets_at, START_TIME + 1000)
        self.stop(poller)

    def test_null_buckets(self) -> None:
        """
        A null bucket leaves its window as it was; a null utilization counts
        as zero; the poll still counts as fresh news.
        """
        credential = self.credential()
        # Known from an earlier poll, a minute ago.
        credential.rate_limits.apply_poll((30.0, START_TIME + 600), None, START_TIME - 60)
        self.fake.usage_body = {
            "five_hour": None,
            "seven_day": {"utilization": None, "resets_at": "2026-09-28T00:00:00+02:00"},
        }
        poller = self.poller(credential)
        self.start(poller)
        state = credential.rate_limits
        self.assertEqual(state.five_hour.utilization, 30.0)
        self.assertEqual(state.five_hour.resets_at, START_TIME + 600)
        self.assertEqual(state.weekly.utilization, 0.0)
        self.assertEqual(state.weekly.resets_at, utc(2026, 9, 27, 22, 0, 0))
        self.assertEqual(state.updated_at, START_TIME)
        self.stop(poller)

    def test_figures_logged_at_debug(self) -> None:
        """
        A successful poll logs the figures at debug level, and nothing at
        warning level.
        """
        poller = self.poller(self.credential())
        self.start(poller)
        [line] = [m for m in self.messages(LogLevel.debug) if "usage of main" in m]
        self.assertIn("5-hour window 10% used, resets in 5h", line)
        self.assertIn("weekly window 20% used, resets in 7d", line)
        self.assertEqual(self.messages(LogLevel.warn), [])
        self.stop(poller)
        self.assert_no_secrets()

    def test_several_credentials(self) -> None:
        """
        Every credential is polled with its own token, in the same round.
        """
        self.fake.extra_access_tokens = {SECOND_TOKEN}
        first = self.credential("a")
        second = self.credential("b", SECOND_TOKEN)
        poller = self.poller(first, second)
        self.start(poller)
        self.assertEqual(
            [r.header("authorization") for r in self.requests()],
            ["Bearer " + self.fake.access_token, "Bearer " + SECOND_TOKEN],
        )
        self.assertEqual(first.rate_limits.updated_at, START_TIME)
        self.assertEqual(second.rate_limits.weekly.utilization, 20.0)
        self.stop(poller)
        self.assert_no_secrets()

    def test_late_answer_keeps_cadence(self) -> None:
        """
        An answer that takes a few seconds does not push the next poll back
        a whole interval: freshness from the poller's own poll counts from
        when it began.
        """
        credential = self.credential()
        slow = _SlowClient(self.http, self.clock, 3.0)
        poller = self.poller(credential, http_client=slow)
        self.start(poller)
        self.assertEqual(self.requests(), [])
        self.advance(3)
        self.assertEqual(credential.rate_limits.updated_at, START_TIME + 3)
        self.advance(57)
        self.assertEqual(len(self.requests()), 1)
        self.advance(3)
        self.assertEqual(len(self.requests()), 2)
        self.assertEqual(credential.rate_limits.updated_at, START_TIME + 63)
        self.stop(poller)


class HealingTests(PollingTestCase):
    """
    A poll sent after a 429 that finds the window open ends the 429's
    limit; one sent before it, answering after, does not.
    """

    def limit(self, credential: Credential) -> None:
        """
        Set ``credential`` aside with a 429 on its 5-hour window, for an
        hour, without a reset header (so no window figure is refreshed).
        """
        rejected = Headers(
            {
                "anthropic-ratelimit-unified-status": ["rejected"],
                "anthropic-ratelimit-unified-representative-claim": ["five_hour"],
                "retry-after": ["3600"],
            }
        )
        credential.rate_limits.observe_rejection(rejected, self.clock.seconds())

    def test_later_poll_ends_limit(self) -> None:
        """
        The first poll after the 429 finds the 5-hour window at 10%: the
        credential is no longer limited.
        """
        credential = self.credential()
        poller = self.poller(credential)
        self.start(poller)
        self.limit(credential)
        self.assertTrue(credential.rate_limits.is_limited(self.clock.seconds()))
        self.advance(60)
        self.assertEqual(len(self.requests()), 2)
        self.assertFalse(credential.rate_limits.is_limited(self.clock.seconds()))
        self.stop(poller)

    def test_poll_sent_before_the_429_keeps_limit(self) -> None:
        """
        A poll that was on its way when the 429 came answers with figures
        older than the 429: the limit stands.
        """
        credential = self.credential()
        slow = _SlowClient(self.http, self.clock, 3.0)
        poller = self.poller(credential, http_client=slow)
        self.start(poller)
        self.advance(1)
        self.limit(credential)
        self.advance(2)
        self.assertEqual(credential.rate_limits.updated_at, START_TIME + 3)
        self.assertTrue(credential.rate_limits.is_limited(self.clock.seconds()))
        self.stop(poller)


class SkipTests(PollingTestCase):
    """
    Credentials that need no poll are left alone.
    """

    def test_headers_fresh(self) -> None:
        """
        A credential whose response headers updated it within the interval
        is skipped; once they are an interval old, it is polled again.
        """
        credential = self.credential()
        poller = self.poller(credential)
        self.start(poller)
        self.advance(50)
        headers = Headers()
        for name, value in allowed_unified_headers(self.clock.seconds()).items():
            headers.addRawHeader(name, value)
        self.assertTrue(credential.rate_limits.observe(headers, self.clock.seconds()))
        self.advance(10)
        self.assertEqual(len(self.requests()), 1)
        self.advance(60)
        self.assertEqual(len(self.requests()), 2)
        self.stop(poller)

    def test_unavailable(self) -> None:
        """
        A credential that cannot serve is not polled, and this counts as no
        failure: it is polled at the very next tick once it can serve.
        """
        credential = self.credential(write=False)
        self.assertIsNotNone(credential.unavailable_reason)
        poller = self.poller(credential)
        self.start(poller)
        self.advance(60)
        self.assertEqual(self.requests(), [])
        write_credentials(
            credential.store.path,
            self.fake.access_token,
            self.fake.refresh_token,
            int((START_TIME + 86400) * 1000),
        )
        credential.reload()
        self.advance(60)
        self.assertEqual(len(self.requests()), 1)
        self.assertEqual(credential.rate_limits.updated_at, START_TIME + 120)
        self.assertEqual([m for m in self.messages(LogLevel.warn) if "usage" in m], [])
        self.stop(poller)

    def test_one_unavailable_other_polled(self) -> None:
        """
        An unavailable credential does not hold up the others.
        """
        self.fake.extra_access_tokens = {SECOND_TOKEN}
        missing = self.credential("a", write=False)
        present = self.credential("b", SECOND_TOKEN)
        poller = self.poller(missing, present)
        self.start(poller)
        [request] = self.requests()
        self.assertEqual(request.header("authorization"), "Bearer " + SECOND_TOKEN)
        self.assertEqual(missing.rate_limits.updated_at, 0.0)
        self.stop(poller)

    def test_in_flight_skipped(self) -> None:
        """
        While a poll of a credential is in flight, another round skips it
        instead of waiting for it or asking again.
        """
        self.fake.usage_mode = "hang"
        poller = self.poller(self.credential())
        first = poller.poll_all()
        self.flush()
        self.assertNoResult(first)
        second = poller.poll_all()
        self.assertIsNone(self.successResultOf(second))
        self.assertEqual(len(self.requests()), 1)
        self.advance(5)
        self.assertIsNone(self.successResultOf(first))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RateLimitTests(PollingTestCase):
    """
    The usage endpoint's own 429s.
    """

    def test_retry_after(self) -> None:
        """
        A 429 holds polls back for its ``retry-after``; it is no failure: no
        warning, the credential stays usable and its state unchanged.
        """
        self.fake.usage_mode = "rate_limited"
        self.fake.usage_retry_after = "150"
        credential = self.credential()
        poller = self.poller(credential)
        self.start(poller)
        self.fake.usage_mode = "ok"
        self.assertEqual(credential.rate_limits.updated_at, 0.0)
        self.assertIsNone(credential.unavailable_reason)
        self.assertFalse(credential.rate_limits.is_limited(self.clock.seconds()))
        self.assertEqual(self.poll_times(4), [0.0, 180.0, 240.0])
        self.assertEqual(credential.rate_limits.five_hour.utilization, 10.0)
        self.assertEqual(self.messages(LogLevel.warn), [])
        self.stop(poller)

    def test_without_retry_after(self) -> None:
        """
        A 429 without ``retry-after`` holds polls back for 60 seconds.
        """
        self.fake.usage_mode = "rate_limited"
        poller = self.poller(self.credential(), interval=30)
        self.start(poller)
        self.fake.usage_mode = "ok"
        times = [0.0]
        for _ in range(4):
            before = len(self.requests())
            self.advance(30)
            if len(self.requests()) > before:
                times.append(self.clock.seconds() - START_TIME)
        self.assertEqual(times, [0.0, 60.0, 90.0, 120.0])
        self.stop(poller)

    def test_malformed_retry_after(self) -> None:
        """
        A ``retry-after`` that is not a number of seconds (here an HTTP date)
        counts as 60 seconds.
        """
        self.fake.usage_mode = "rate_limited"
        self.fake.usage_retry_after = "Wed, 21 Oct 2026 07:28:00 GMT"
        poller = self.poller(self.credential(), interval=30)
        self.start(poller)
        self.advance(30)
        self.assertEqual(len(self.requests()), 1)
        self.advance(30)
        self.assertEqual(len(self.requests()), 2)
        self.stop(poller)

    def test_retry_after_capped(self) -> None:
        """
        A long ``retry-after`` holds polls back for an hour at most.
        """
        self.fake.usage_mode = "rate_limited"
        self.fake.usage_retry_after = "7200"
        poller = self.poller(self.credential())
        self.start(poller)
        self.fake.usage_mode = "ok"
        self.assertEqual(self.poll_times(60), [0.0, float(RETRY_AFTER_MAX_SECONDS)])
        self.stop(poller)


class BoundsTests(PollingTestCase):
    """
    Absurd numbers from the usage endpoint are ignored with one warning,
    never stored, and polling goes on.
    """

    def test_absurd_retry_after(self) -> None:
        """
        A ``retry-after`` of 400 or 5000 digits, or of more than ten days, is
        ignored with one warning (repeats within the hour at debug level):
        polls wait the default minute, and the next good answer applies.
        """
        self.fake.usage_mode = "rate_limited"
        credential = self.credential()
        poller = self.poller(credential)
        self.fake.usage_retry_after = "9" * 400
        self.start(poller)
        for value in ("9" * 5000, str(11 * 86400)):
            self.fake.usage_retry_after = value
            self.advance(60)
        self.assertEqual(len(self.requests()), 3)
        [warning] = self.messages(LogLevel.warn)
        self.assertIn("retry-after", warning)
        self.assertIn("for main", warning)
        self.fake.usage_mode = "ok"
        self.advance(60)
        self.assertEqual(len(self.requests()), 4)
        self.assertEqual(credential.rate_limits.five_hour.utilization, 10.0)
        self.stop(poller)
        self.assert_no_secrets()

    def test_absurd_figures(self) -> None:
        """
        A utilization of ``1e308`` percent, a negative one and a reset a
        century ahead are ignored with a warning each, the sane figures of
        the same answer apply, and the next poll works.
        """
        credential = self.credential()
        self.fake.usage_body = {
            "five_hour": {"utilization": 1e308, "resets_at": "2126-01-01T00:00:00Z"},
            "seven_day": {"utilization": -5, "resets_at": "2026-09-25T00:00:00Z"},
        }
        poller = self.poller(credential)
        self.start(poller)
        state = credential.rate_limits
        self.assertEqual(state.five_hour, Window(0.0, 0.0))
        self.assertEqual(state.weekly, Window(0.0, utc(2026, 9, 25, 0, 0, 0)))
        self.assertEqual(state.updated_at, START_TIME)
        warnings = self.messages(LogLevel.warn)
        self.assertEqual(len(warnings), 3, warnings)
        self.assertIn("usage five_hour.utilization='1e+308'", warnings[0])
        self.assertIn("usage five_hour.resets_at", warnings[1])
        self.assertIn("usage seven_day.utilization='-5.0'", warnings[2])
        self.fake.usage_body = None
        self.advance(60)
        self.assertEqual(state.five_hour.utilization, 10.0)
        self.assertEqual(state.five_hour.resets_at, START_TIME + FIVE_HOUR_SECONDS)
        self.stop(poller)
        self.assert_no_secrets()


class FailureTests(PollingTestCase):
    """
    Failed polls keep the last known state and back off.
    """

    def assert_backoff(self, mode: str, reason: str) -> None:
        """
        After a good first poll, polls failing in ``mode`` come 1, 2, 4, 5
        and 5 minutes apart, keep the state, warn once naming ``reason``, and
        a success ends the backoff.
        """
        credential = self.credential()
        poller = self.poller(credential)
        self.start(poller)
        self.fake.usage_mode = mode
        self.assertEqual(self.poll_times(18), [0, 60, 120, 240, 480, 780, 1080])
        state = credential.rate_limits
        self.assertEqual((state.five_hour.utilization, state.weekly.utilization), (10.0, 20.0))
        self.assertEqual(state.updated_at, START_TIME)
        self.assertIsNone(credential.unavailable_reason)
        [warning] = self.messages(LogLevel.warn)
        self.assertIn("usage poll of main failed (" + reason, warning)
        self.assertIn("keeping its last known state, next try in 1m", warning)
        self.fake.usage_mode = "ok"
        self.fake.unified_headers = allowed_unified_headers(
            self.clock.seconds(), five_hour_utilization=0.33
        )
        self.assertEqual(self.poll_times(6)[-2:], [1380.0, 1440.0])
        self.assertEqual(state.five_hour.utilization, 33.0)
        self.assertTrue(
            any("works again after 6 failed" in m for m in self.messages(LogLevel.info))
        )
        self.assertEqual(len(self.messages(LogLevel.warn)), 1)
        self.stop(poller)
        self.assert_no_secrets()

    def test_server_error(self) -> None:
        """
        A 500 is a failure; failures back off 1, 2, 4, 5, 5 minutes.
        """
        self.assert_backoff("server_error", "HTTP 500")

    def test_malformed_body(self) -> None:
        """
        A 200 whose body is not JSON is a failure, with the same backoff.
        """
        self.assert_backoff("malformed", "malformed answer: not JSON")

    def test_malformed_fields(self) -> None:
        """
        A 200 whose windows have the wrong types is a failure and changes
        nothing, not even the other, well-formed window.
        """
        credential = self.credential()
        self.fake.usage_body = {
            "five_hour": {"utilization": 12.0, "resets_at": None},
            "seven_day": {"utilization": "56%", "resets_at": None},
        }
        poller = self.poller(credential)
        self.start(poller)
        self.assertEqual(credential.rate_limits.five_hour.utilization, 0.0)
        self.assertEqual(credential.rate_limits.updated_at, 0.0)
        [warning] = self.messages(LogLevel.warn)
        self.assertIn("seven_day.utilization is not a number", warning)
        self.stop(poller)

    def test_transport_error(self) -> None:
        """
        A connection failure is a failure naming the kind of error, and the
        round of polls still succeeds.
        """
        poller = self.poller(self.credential(), http_client=_Unreachable())
        self.assertIsNone(self.successResultOf(poller.poll_all()))
        [warning] = self.messages(LogLevel.warn)
        self.assertIn("(ConnectionRefusedError)", warning)

    def test_crash_keeps_loop(self) -> None:
        """
        An unexpected error while applying a poll is logged with its
        traceback, counts as a failure, and the loop keeps polling.
        """
        credential = self.credential()

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("bug")

        credential.rate_limits.apply_poll = broken  # type: ignore[method-assign]
        poller = self.poller(credential)
        self.start(poller)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        [warning] = self.messages(LogLevel.warn)
        self.assertIn("usage poll of main failed (internal error)", warning)
        self.assertEqual(self.poll_times(3), [0.0, 60.0, 180.0])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.stop(poller)

    def test_no_access_token(self) -> None:
        """
        When the token has expired and cannot be refreshed, the poll fails
        without asking the usage endpoint, and warns once.
        """
        credential = self.credential(expires_at=START_TIME - 10)
        poller = self.poller(credential)
        self.start(poller)
        self.assertEqual(self.refreshes, [self.fake.refresh_token])
        self.assertEqual(self.requests(), [])
        self.advance(60)
        self.assertEqual(len(self.refreshes), 2)
        warnings = [m for m in self.messages(LogLevel.warn) if "usage poll" in m]
        self.assertEqual(len(warnings), 1)
        self.assertIn("no access token: token refresh failed", warnings[0])
        self.stop(poller)
        self.assert_no_secrets()

    def test_timeout(self) -> None:
        """
        An endpoint that never answers fails the poll after the timeout,
        closes the request, leaves only the loop's timer, and backs off.
        """
        self.fake.usage_mode = "hang"
        credential = self.credential()
        poller = self.poller(credential)
        self.start(poller)
        self.advance(4.9)
        self.assertEqual(self.messages(LogLevel.warn), [])
        self.advance(0.1)
        [warning] = self.messages(LogLevel.warn)
        self.assertIn("(no answer within 5s)", warning)
        [request] = self.requests()
        self.assertTrue(request.disconnected)
        [loop] = self.clock.getDelayedCalls()
        self.assertEqual(loop.getTime(), START_TIME + 60)
        self.fake.usage_mode = "ok"
        self.advance(55)
        self.assertEqual(credential.rate_limits.updated_at, START_TIME + 60)
        self.stop(poller)

    def test_oversized_answer(self) -> None:
        """
        An answer larger than a megabyte is a failure that changes
        nothing.
        """
        credential = self.credential()
        self.fake.usage_body = {"five_hour": None, "padding": "x" * (MAX_ANSWER_BYTES + 1)}
        poller = self.poller(credential)
        self.start(poller)
        [warning] = self.messages(LogLevel.warn)
        self.assertIn(f"(answer larger than {MAX_ANSWER_BYTES} bytes)", warning)
        self.assertEqual(credential.rate_limits.updated_at, 0.0)
        self.stop(poller)

    def test_body_timeout(self) -> None:
        """
        The timeout covers the body too: headers followed by silence fail
        the poll and close the connection.
        """
        self.fake.usage_mode = "hang_body"
        credential = self.credential()
        poller = self.poller(credential, timeout=2.5)
        self.start(poller)
        self.advance(2.5)
        [warning] = self.messages(LogLevel.warn)
        self.assertIn("(no answer within 2.5s)", warning)
        self.assertTrue(self.requests()[0].disconnected)
        self.assertEqual(credential.rate_limits.updated_at, 0.0)
        self.stop(poller)


class ProfileTests(PollingTestCase):
    """
    The plan from ``/api/oauth/profile``.
    """

    def test_fetched_once(self) -> None:
        """
        A credential whose file names no plan gets it from the profile after
        its first good poll, once; Max 20x weighs 10.
        """
        credential = self.credential(subscription_type="", rate_limit_tier="")
        self.assertEqual(credential.plan_weight, 1.0)
        poller = self.poller(credential)
        self.start(poller)
        [request] = self.requests(PROFILE_PATH)
        self.assertEqual(request.header("authorization"), "Bearer " + self.fake.access_token)
        self.assertEqual(request.header("user-agent"), f"claude-code/{CHECKED_CLAUDE_CODE_VERSION}")
        self.assertEqual(request.header("cache-control"), "no-cache")
        self.assertIsNone(request.header("anthropic-beta"))
        self.assertEqual(credential.rate_limits.plan, Plan("max", "default_claude_max_20x"))
        self.assertEqual(credential.plan_weight, 10.0)
        self.assertEqual(self.poll_times(3), [0.0, 60.0, 120.0, 180.0])
        self.assertEqual(len(self.requests(PROFILE_PATH)), 1)
        self.stop(poller)
        self.assert_no_secrets()

    def test_known_plan(self) -> None:
        """
        A credential whose file names its tier does not ask for the profile
        at its polls (only at the hourly check, :obj:`JudgementTests`).
        """
        poller = self.poller(self.credential())
        self.start(poller)
        self.assertEqual(self.poll_times(2), [0.0, 60.0, 120.0])
        self.assertEqual(self.requests(PROFILE_PATH), [])
        self.stop(poller)

    def test_not_after_failed_poll(self) -> None:
        """
        The profile is asked for only after a good usage poll.
        """
        self.fake.usage_mode = "server_error"
        poller = self.poller(self.credential(rate_limit_tier=""))
        self.start(poller)
        self.assertEqual(self.requests(PROFILE_PATH), [])
        self.stop(poller)

    def test_failure_retried(self) -> None:
        """
        A failed profile fetch is ignored (no warning, the usage still
        counts) and tried again after the next good poll.
        """
        self.fake.profile_mode = "server_error"
        credential = self.credential(subscription_type="", rate_limit_tier="")
        poller = self.poller(credential)
        self.start(poller)
        self.assertEqual(credential.rate_limits.updated_at, START_TIME)
        self.assertEqual(self.messages(LogLevel.warn), [])
        debug = self.messages(LogLevel.debug)
        self.assertTrue(any("profile of main unavailable: HTTP 500" in m for m in debug))
        self.fake.profile_mode = "ok"
        self.fake.profile["organization"]["organization_type"] = "claude_team"
        self.fake.profile["organization"]["rate_limit_tier"] = "default_claude_max_5x"
        self.advance(60)
        self.advance(60)
        self.assertEqual(len(self.requests(PROFILE_PATH)), 2)
        self.assertEqual(credential.rate_limits.plan.subscription_type, "team")
        self.assertEqual(credential.plan_weight, 5.0)
        self.stop(poller)

    def test_answer_without_tier(self) -> None:
        """
        A profile that names no tier or no organization is still an answer:
        it is not asked for again at every poll.
        """
        self.fake.profile["organization"]["rate_limit_tier"] = None
        credential = self.credential(subscription_type="", rate_limit_tier="")
        poller = self.poller(credential)
        self.start(poller)
        self.assertEqual(credential.rate_limits.plan, Plan("max", ""))
        self.assertFalse(credential.plan_known)
        self.fake.profile = {"account": {}}
        other = self.credential("other", subscription_type="", rate_limit_tier="")
        other_poller = self.poller(other)
        self.start(other_poller)
        self.assertEqual(other.rate_limits.plan, Plan())
        self.assertEqual(self.poll_times(2, PROFILE_PATH), [0.0, 0.0])
        self.assertEqual(len(self.requests()), 6)
        other_poller.stopService()
        self.stop(poller)

    def test_hang(self) -> None:
        """
        A profile endpoint that never answers is given up after the timeout,
        leaving the usage applied and no timer but the loop's.
        """
        self.fake.profile_mode = "hang"
        credential = self.credential(rate_limit_tier="")
        poller = self.poller(credential)
        self.start(poller)
        self.assertEqual(credential.rate_limits.updated_at, START_TIME)
        self.advance(5)
        self.assertTrue(self.requests(PROFILE_PATH)[0].disconnected)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(self.messages(LogLevel.warn), [])
        self.stop(poller)

    def test_file_plan_wins(self) -> None:
        """
        A file that names the subscription but not its tier still asks for
        the profile; the file's subscription type keeps precedence.
        """
        self.fake.profile["organization"]["organization_type"] = "claude_pro"
        credential = self.credential(subscription_type="max", rate_limit_tier="")
        poller = self.poller(credential)
        self.start(poller)
        self.assertEqual(credential.rate_limits.plan.subscription_type, "pro")
        self.assertTrue(credential.plan_known)
        self.assertEqual(credential.plan_weight, 10.0)
        self.stop(poller)


class StopTests(PollingTestCase):
    """
    Stopping the service.
    """

    def test_stop_idle(self) -> None:
        """
        Stopping between polls stops the loop: no timer is left and no
        further poll happens.
        """
        poller = self.poller(self.credential())
        self.start(poller)
        self.stop(poller)
        self.advance(600)
        self.assertEqual(len(self.requests()), 1)

    def test_stop_with_poll_in_flight(self) -> None:
        """
        Stopping while a poll waits for its answer cancels it: the request
        is closed, no timer is left, and nothing is logged as a failure.
        """
        self.fake.usage_mode = "hang"
        credential = self.credential()
        poller = self.poller(credential)
        self.start(poller)
        self.advance(1)
        self.stop(poller)
        [request] = self.requests()
        self.assertTrue(request.disconnected)
        self.assertEqual(self.messages(LogLevel.warn), [])
        self.assertEqual(credential.rate_limits.updated_at, 0.0)

    def test_stop_during_body(self) -> None:
        """
        Stopping while the body is still arriving closes the connection too.
        """
        self.fake.usage_mode = "hang_body"
        poller = self.poller(self.credential())
        self.start(poller)
        self.stop(poller)
        self.assertTrue(self.requests()[0].disconnected)
        self.assertEqual(self.messages(LogLevel.warn), [])

    def test_stop_during_profile(self) -> None:
        """
        Stopping while the profile fetch is in flight cancels it as well.
        """
        self.fake.profile_mode = "hang"
        poller = self.poller(self.credential(rate_limit_tier=""))
        self.start(poller)
        self.stop(poller)
        self.assertTrue(self.requests(PROFILE_PATH)[0].disconnected)
        self.assertEqual(self.messages(LogLevel.warn), [])


class JudgementTests(PollingTestCase):
    """
    Usage and profile answers that judge the subscription: a rejected token
    recovered or needing a new login, bans, and a downgraded plan.
    """

    def test_rejected_token_recovered_from_the_store(self) -> None:
        """
        A poll whose token is revoked finds the one another program stored,
        and polls again with it, once: the figures apply, no failure.
        """
        credential = self.credential()
        self.fake.revoke()
        self.fake.extra_access_tokens.add(SECOND_TOKEN)
        write_credentials(
            os.path.join(self.directory, "main.json"),
            SECOND_TOKEN,
            self.fake.refresh_token,
            int((START_TIME + 86400) * 1000),
        )
        poller = self.poller(credential)
        self.start(poller)
        self.assertEqual(
            [r.header("authorization") for r in self.requests()],
            ["Bearer " + self.fake.access_token, "Bearer " + SECOND_TOKEN],
        )
        self.assertEqual(credential.rate_limits.updated_at, START_TIME)
        self.assertEqual(self.messages(LogLevel.warn), [])
        self.assertEqual(self.refreshes, [])
        self.stop(poller)
        self.assert_no_secrets()

    def test_rejected_token_needs_login(self) -> None:
        """
        A 401 that neither the store nor a refresh helps (the token endpoint
        is down) makes the credential need a new login: one error line, no
        poll warning, no more polls.
        """
        credential = self.credential(access_token="sk-ant-oat01-revoked")
        poller = self.poller(credential)
        self.start(poller)
        self.assertEqual(len(self.refreshes), 1)
        reason = credential.unavailable_reason
        assert reason is not None
        self.assertIn(
            "Anthropic rejects the subscription's login (HTTP 401 authentication_error", reason
        )
        [error] = self.messages(LogLevel.error)[-1:]
        self.assertIn("credential main needs a new login", error)
        self.assertEqual(self.messages(LogLevel.warn), [])
        self.advance(600)
        self.assertEqual(len(self.requests()), 1)
        self.stop(poller)
        self.assert_no_secrets()

    def test_ban_quarantines(self) -> None:
        """
        A usage answer that bans the subscription (organization disabled,
        OAuth not allowed) quarantines it, without a poll warning; a
        quarantined credential is not polled.
        """
        for mode, words in (
            ("organization_disabled", "Anthropic disabled its organization"),
            ("oauth_not_allowed", "Anthropic no longer allows OAuth"),
        ):
            self.fake.usage_mode = mode
            credential = self.credential(mode)
            poller = self.poller(credential)
            self.start(poller)
            quarantine = credential.quarantine
            assert quarantine is not None
            self.assertIn(words, quarantine.cause)
            self.assertEqual(quarantine.since, self.clock.seconds())
            before = len(self.requests())
            self.advance(600)
            self.assertEqual(len(self.requests()), before)
            self.stop(poller)
        self.assertEqual(self.messages(LogLevel.warn), [])

    def test_profile_checked_hourly(self) -> None:
        """
        The profile of a credential whose plan is known is asked for every
        hour, also while its responses keep its usage fresh (no polls).
        """
        credential = self.credential()
        poller = self.poller(credential)
        self.start(poller)
        self.assertEqual(self.requests(PROFILE_PATH), [])
        for minute in range(int(PROFILE_CHECK_INTERVAL_SECONDS // 60)):
            self.assertEqual(self.requests(PROFILE_PATH), [], minute)
            self.advance(30)
            headers = Headers()
            for name, value in allowed_unified_headers(self.clock.seconds()).items():
                headers.addRawHeader(name, value)
            credential.rate_limits.observe(headers, self.clock.seconds())
            self.advance(30)
        self.assertEqual(len(self.requests()), 1)
        self.assertEqual(len(self.requests(PROFILE_PATH)), 1)
        self.advance(PROFILE_CHECK_INTERVAL_SECONDS)
        self.assertEqual(len(self.requests(PROFILE_PATH)), 2)
        self.assertIsNone(credential.quarantine)
        self.stop(poller)

    def test_downgrade_quarantines(self) -> None:
        """
        A profile whose organization reports no paid plan (free, or no type)
        where the file says ``max`` quarantines the credential at once; its
        plan is not taken.
        """
        for tag, profile in (
            (
                "free",
                {"organization": {"organization_type": "claude_free", "rate_limit_tier": None}},
            ),
            ("none", {"account": {}, "organization": {"organization_type": None}}),
        ):
            self.fake.profile = profile
            credential = self.credential(tag, rate_limit_tier="")
            poller = self.poller(credential)
            self.start(poller)
            quarantine = credential.quarantine
            assert quarantine is not None, tag
            self.assertTrue(
                quarantine.cause.startswith(
                    f"its profile reports {'free' if tag == 'free' else 'no plan'} "
                    "where it had a paid max plan"
                ),
                quarantine.cause,
            )
            self.assertEqual(credential.rate_limits.plan, Plan())
            state = PoolMember(credential).state(self.clock.seconds())
            self.assertEqual(state.reason, Unusable.QUARANTINED)
            self.stop(poller)

    def test_no_downgrade_without_paid_plan(self) -> None:
        """
        A profile without a paid plan for a credential that never had one
        quarantines nothing; nor does an answer naming no organization at
        all (``{}``, as a gateway may give) for one that had a paid plan.
        """
        unpaid = self.credential("unpaid", subscription_type="", rate_limit_tier="")
        paid = self.credential("paid", rate_limit_tier="")
        for credential, profile in (
            (unpaid, {"account": {}, "organization": {"organization_type": None}}),
            (paid, {}),
        ):
            self.fake.profile = profile
            poller = self.poller(credential)
            self.start(poller)
            self.assertEqual(len(self.requests(PROFILE_PATH)), 1 if credential is unpaid else 2)
            self.assertIsNone(credential.quarantine)
            self.stop(poller)


class IdentityTests(PollingTestCase):
    """
    Polls identify as the newest Claude Code that talked through ccm.
    """

    def test_newer_client_followed(self) -> None:
        """
        Once a proxied request came from a newer Claude Code, the usage poll
        and the profile fetch name that release in their user agents.
        """
        identity = ClientIdentity()
        identity.observe(b"claude-cli/2.1.400 (external, cli)")
        poller = self.poller(
            self.credential(subscription_type="", rate_limit_tier=""), identity=identity
        )
        self.start(poller)
        [usage] = self.requests()
        [profile] = self.requests(PROFILE_PATH)
        self.assertEqual(usage.header("user-agent"), "claude-cli/2.1.400 (external, cli)")
        self.assertEqual(profile.header("user-agent"), "claude-code/2.1.400")
        self.stop(poller)
