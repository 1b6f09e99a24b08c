"""
Tests for :obj:`ccm.credentials.credential`: a subscription's credential following its
file, refreshing its token, and saying why it cannot serve.

The credential uses a real :obj:`CredentialFile` in a temporary directory and
the fake token endpoint through :obj:`StubTreq`; time is a :obj:`Clock`.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any, cast

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.credentials import file as credentialfile
from ccm.credentials.file import CredentialFile, CredentialFileError, OAuthTokens
from ccm.credentials.credential import (
    REFRESH_RETRY_SECONDS,
    USE_MARGIN_SECONDS,
    Credential,
    CredentialUnavailable,
)
from ccm.web.errors import APIError
from ccm.credentials.oauth import REFRESH_TIMEOUT_SECONDS, TokenEndpoint, TokenGrant
from ccm.pool.plan import Plan
from ccm.pool.windows import MemoryWindowState
from ccm.credentials.watch import DEBOUNCE_SECONDS, POLL_INTERVAL_SECONDS, FileWatcher
from tests.fake_anthropic import FakeAnthropic
from tests.fixtures import expiry_ms, logged_events, write_credentials


START_TIME = 1_790_000_000.0
TOKEN_URL = "https://platform.claude.com/v1/oauth/token"
# The fake token endpoint accepts this refresh token at first.
ACCESS = "sk-ant-oat01-fake-access"
REFRESH = "sk-ant-ort01-fake-refresh"
# Every token in these tests starts with this, so logs can be checked for
# any of them.
TOKEN_PREFIX = "sk-ant-"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


class ReadOnlyCredentialFile(CredentialFile):
    """
    A credentials file that cannot be written, as a read-only file or
    directory is for an ordinary user (root bypasses permission bits, so
    the tests simulate it).
    """

    def check_writable(self) -> None:
        """
        Refuse, as :obj:`CredentialFile.check_writable` does for a read-only
        file.
        """
        raise CredentialFileError(
            f"credential file {self.path} is not writable, so ccm refuses to "
            "refresh its token"
        )

    def write_tokens(self, tokens: OAuthTokens) -> None:
        """
        Fail the test: nothing may be written to a read-only file.
        """
        raise AssertionError("a refresh was attempted on a read-only file")


class CredentialTestCase(SynchronousTestCase):
    """
    A credential backed by a file in a fresh directory, refreshing at the
    fake token endpoint.  Every test also checks that no token was logged.
    """

    store_class: type[CredentialFile] = CredentialFile

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START_TIME)
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, ".credentials.json")
        self.fake = FakeAnthropic(self.clock)
        self.http = StubTreq(self.fake.resource())
        self.endpoint = TokenEndpoint(cast(HTTPClient, self.http), self.clock, TOKEN_URL)
        self.store = self.store_class(self.path)
        self.credential = Credential("work", self.store, self.endpoint.refresh, self.clock)
        self.events = logged_events(self)
        self.addCleanup(self.assert_no_token_logged)

    def assert_no_token_logged(self) -> None:
        """
        No log event, formatted or in any of its fields, holds a token.
        """
        for event in self.events:
            text = formatEvent(event) + repr(sorted(event.items(), key=lambda kv: kv[0]))
            self.assertNotIn(TOKEN_PREFIX, text)

    def logged(self, level: LogLevel | None = None) -> list[str]:
        """
        The formatted log messages so far, of ``level`` if given.
        """
        return [
            formatEvent(event)
            for event in self.events
            if level is None or event.get("log_level") == level
        ]

    def write(
        self,
        expires_in_seconds: float,
        access: str = ACCESS,
        refresh: str = REFRESH,
        **extra: Any,
    ) -> None:
        """
        Write a credentials file whose token expires ``expires_in_seconds``
        from now, with unknown keys a real file may hold.
        """
        write_credentials(
            self.path,
            access,
            refresh,
            expiry_ms(expires_in_seconds, now=self.clock.seconds()),
            scopes=["user:inference"],
            oauth=extra,
            extra={"otherTool": {"keep": True}},
        )

    def read_file(self) -> dict[str, Any]:
        """
        The credentials file's JSON.
        """
        with open(self.path) as handle:
            document: dict[str, Any] = json.load(handle)
            return document

    def access(self) -> Deferred[str]:
        """
        Ask the credential for a token and let the in-memory connection to
        the token endpoint deliver what it can.
        """
        result = self.credential.access_token()
        self.http.flush()
        return result

    def assert_unavailable(self, *fragments: str) -> str:
        """
        The credential cannot serve: it says so, and asking it for a token
        fails with the same reason, which contains each of ``fragments``.

        :return: the reason.
        """
        error = self.failureResultOf(self.access(), CredentialUnavailable).value
        reason = self.credential.unavailable_reason
        assert reason is not None
        self.assertFalse(self.credential.available)
        self.assertEqual(str(error), reason)
        for fragment in fragments:
            self.assertIn(fragment, reason)
        self.assertNotIn(TOKEN_PREFIX, reason)
        return reason

    def hold_refreshes(self) -> list[Deferred[None]]:
        """
        Replace the credential by one whose refreshes wait until the test
        releases them (the in-memory token endpoint answers at once).

        :return: one gate per refresh started; firing it lets that refresh
            go to the token endpoint.
        """
        gates: list[Deferred[None]] = []

        def held(refresh_token: str) -> Deferred[TokenGrant]:
            gate: Deferred[None] = Deferred()
            gates.append(gate)
            return gate.addCallback(lambda ignored: self.endpoint.refresh(refresh_token))

        self.credential = Credential("work", self.store, held, self.clock)
        return gates


class LoadingTests(CredentialTestCase):
    """
    :obj:`Credential.reload` follows the file as it appears, changes and
    disappears.
    """

    def test_unavailable_before_reload(self) -> None:
        """
        A new credential has not read its file and cannot serve.
        """
        self.write(3600)
        self.assert_unavailable("not loaded")
        self.assertEqual(self.fake.token_requests, [])

    def test_missing_file(self) -> None:
        """
        Without the file (the service may start before it exists) the
        credential is unavailable, naming the file and ``claude /login``,
        and a warning says so once.
        """
        self.credential.reload()
        self.credential.reload()
        self.assert_unavailable(self.path, "does not exist", "`claude /login`")
        warnings = self.logged(LogLevel.warn)
        self.assertEqual(len(warnings), 1)
        self.assertIn("credential work is unavailable", warnings[0])
        self.assertIn(self.path, warnings[0])

    def test_good_file(self) -> None:
        """
        A good file makes the credential available with its token, served
        without a refresh, and an info line tells the plan and validity.
        """
        self.write(3600)
        self.credential.reload()
        self.assertTrue(self.credential.available)
        self.assertIsNone(self.credential.unavailable_reason)
        self.assertEqual(self.successResultOf(self.access()), ACCESS)
        self.assertEqual(self.fake.token_requests, [])
        self.assertEqual(self.credential.plan_weight, 10.0)
        [info] = self.logged(LogLevel.info)
        self.assertIn("credential work is available (max, token valid for", info)

    def test_plan_weight_unloaded(self) -> None:
        """
        An unloaded credential weighs as much as Pro.
        """
        self.assertEqual(self.credential.plan_weight, 1.0)

    def test_window_state_given(self) -> None:
        """
        A credential keeps the window state it is given, and reads the plan
        the profile reported from it where its file names none; the file's
        own plan takes precedence.
        """
        windows = MemoryWindowState("work")
        windows.apply_profile(Plan("max", "default_claude_max_5x"))
        credential = Credential("work", self.store, self.endpoint.refresh, self.clock, windows)
        self.assertIs(credential.rate_limits, windows)
        self.write(3600, subscriptionType="", rateLimitTier="")
        credential.reload()
        self.assertTrue(credential.plan_known)
        self.assertEqual(credential.plan_weight, 5.0)
        self.write(3600)
        credential.reload()
        self.assertEqual(credential.plan_weight, 10.0)

    def test_profile_plan(self) -> None:
        """
        The plan from the OAuth profile goes to the window state, and is
        logged with the weight it gives.
        """
        self.write(3600, subscriptionType="", rateLimitTier="")
        self.credential.reload()
        self.assertFalse(self.credential.plan_known)
        self.credential.set_profile("team", "default_claude_max_5x")
        self.assertEqual(self.credential.rate_limits.plan, Plan("team", "default_claude_max_5x"))
        self.assertTrue(self.credential.plan_known)
        self.assertIn(
            "credential work: plan team (default_claude_max_5x), weight 5",
            self.logged(LogLevel.info),
        )

    def test_deleted_and_recreated(self) -> None:
        """
        Deleting the file makes the credential unavailable at the next
        reload; a new file makes it available again with the new token.
        """
        self.write(3600)
        self.credential.reload()
        os.remove(self.path)
        self.credential.reload()
        self.assert_unavailable(self.path, "does not exist")
        self.write(7200, access="sk-ant-oat01-after-login", refresh="sk-ant-ort01-after-login")
        self.credential.reload()
        self.assertTrue(self.credential.available)
        self.assertEqual(self.successResultOf(self.access()), "sk-ant-oat01-after-login")
        self.assertEqual(self.fake.token_requests, [])

    def test_broken_files(self) -> None:
        """
        An empty file, invalid JSON and a file without ``claudeAiOauth``
        each make the credential unavailable with a reason saying which,
        and a good file afterwards brings it back.
        """
        cases = [
            (b"", "is empty"),
            (b'{"claudeAiOauth": {', "not valid JSON at line 1"),
            (b'{"primaryApiKey": "x"}', "no claudeAiOauth object"),
        ]
        for content, fragment in cases:
            self.write(3600)
            self.credential.reload()
            self.assertTrue(self.credential.available)
            with open(self.path, "wb") as handle:
                handle.write(content)
            self.credential.reload()
            self.assert_unavailable(self.path, fragment)

    def test_deleted_while_running(self) -> None:
        """
        When the file vanishes without a reload and the token then needs a
        refresh, the re-read notices: the credential becomes unavailable
        and no refresh is attempted.
        """
        self.write(120)
        self.credential.reload()
        os.remove(self.path)
        self.clock.advance(61)
        self.assert_unavailable(self.path, "does not exist")
        self.assertEqual(self.fake.token_requests, [])


class RefreshTests(CredentialTestCase):
    """
    :obj:`Credential.access_token` refreshes a token close to expiry: once for
    all callers, after re-reading the file, and saving the result.
    """

    def test_no_refresh_far_from_expiry(self) -> None:
        """
        A token valid for more than a minute is served as it is.
        """
        self.write(USE_MARGIN_SECONDS + 1)
        self.credential.reload()
        self.assertEqual(self.successResultOf(self.access()), ACCESS)
        self.assertEqual(self.fake.token_requests, [])

    def test_never_expiring(self) -> None:
        """
        A token whose expiry is 0 is never refreshed.
        """
        self.write(0, expiresAt=0)
        self.credential.reload()
        self.clock.advance(10**9)
        self.assertEqual(self.successResultOf(self.access()), ACCESS)
        self.assertEqual(self.fake.token_requests, [])

    def test_refresh_within_a_minute(self) -> None:
        """
        A token expiring within a minute is refreshed first; the new token
        is served and saved in the file with the rotated refresh token, an
        expiry of now plus the granted lifetime, and every other key kept.
        """
        self.write(USE_MARGIN_SECONDS)
        self.credential.reload()
        self.clock.advance(10)
        token = self.successResultOf(self.access())
        self.assertEqual(token, self.fake.access_token)
        self.assertNotEqual(token, ACCESS)
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertEqual(self.fake.token_requests[0].json()["refresh_token"], REFRESH)
        expected_expiry = int((self.clock.seconds() + self.fake.token_expires_in) * 1000)
        self.assertEqual(
            self.read_file(),
            {
                "claudeAiOauth": {
                    "accessToken": self.fake.access_token,
                    "refreshToken": self.fake.refresh_token,
                    "expiresAt": expected_expiry,
                    "scopes": ["user:inference"],
                    "subscriptionType": "max",
                    "rateLimitTier": "default_claude_max_20x",
                },
                "otherTool": {"keep": True},
            },
        )
        assert self.credential.tokens is not None
        self.assertEqual(self.credential.tokens.expires_at_ms, expected_expiry)
        self.assertTrue(self.credential.available)
        self.assertIn(
            "credential work: token refreshed, valid for 8h", " ".join(self.logged(LogLevel.info))
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refresh_after_expiry(self) -> None:
        """
        An already expired token is refreshed the same way.
        """
        self.write(-3600)
        self.credential.reload()
        self.assertTrue(self.credential.available)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(len(self.fake.token_requests), 1)

    def test_reload_after_own_write_changes_nothing(self) -> None:
        """
        Reading back the file ccm itself just wrote (as the file watcher
        makes it do) keeps the credential as it is.
        """
        self.write(30)
        self.credential.reload()
        self.successResultOf(self.access())
        tokens = self.credential.tokens
        self.credential.reload()
        self.assertEqual(self.credential.tokens, tokens)
        self.assertTrue(self.credential.available)

    def test_single_flight(self) -> None:
        """
        Concurrent requests for a token share one refresh: exactly one
        token request is made and every caller gets the new token.
        """
        gates = self.hold_refreshes()
        self.write(30)
        self.credential.reload()
        first = self.credential.access_token()
        second = self.credential.access_token()
        third = self.credential.access_token()
        self.assertEqual(len(gates), 1)
        self.assertNoResult(first)
        self.assertNoResult(second)
        gates[0].callback(None)
        self.http.flush()
        tokens = {self.successResultOf(d) for d in (first, second, third)}
        self.assertEqual(tokens, {self.fake.access_token})
        self.assertEqual(len(gates), 1)
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(len(self.fake.token_requests), 1)

    def test_adopts_tokens_refreshed_elsewhere(self) -> None:
        """
        When another program (Claude Code) already refreshed the file, its
        tokens are used and the token endpoint is not called.
        """
        self.write(30)
        self.credential.reload()
        self.write(28800, access="sk-ant-oat01-from-claude", refresh="sk-ant-ort01-from-claude")
        self.assertEqual(self.successResultOf(self.access()), "sk-ant-oat01-from-claude")
        self.assertEqual(self.fake.token_requests, [])
        assert self.credential.tokens is not None
        self.assertEqual(self.credential.tokens.refresh_token, "sk-ant-ort01-from-claude")
        self.assertIn("adopted tokens refreshed by another program", " ".join(self.logged()))

    def test_uses_refresh_token_from_file(self) -> None:
        """
        The refresh uses the refresh token in the file at the time of the
        refresh, not a stale one held in memory.
        """
        self.write(30, refresh="sk-ant-ort01-stale")
        self.credential.reload()
        self.write(30, refresh=REFRESH)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(self.fake.token_requests[0].json()["refresh_token"], REFRESH)

    def test_no_refresh_token(self) -> None:
        """
        Without a refresh token no refresh is tried; once the token expires
        the credential is unavailable and says to log in again.
        """
        self.write(30, refresh="")
        self.credential.reload()
        self.assertEqual(self.successResultOf(self.access()), ACCESS)
        self.clock.advance(30)
        self.assert_unavailable("has no refresh token", "`claude /login`")
        self.assertEqual(self.fake.token_requests, [])

    def test_deleted_during_refresh(self) -> None:
        """
        A file deleted while a refresh is under way (a logout) wins: the
        credential stays unavailable and the refreshed tokens are neither
        served nor written anywhere.
        """
        gates = self.hold_refreshes()
        self.write(30)
        self.credential.reload()
        pending = self.credential.access_token()
        os.remove(self.path)
        self.credential.reload()
        gates[0].callback(None)
        self.http.flush()
        self.assertEqual(len(self.fake.token_requests), 1)
        error = self.failureResultOf(pending, CredentialUnavailable).value
        self.assertIn("does not exist", str(error))
        self.assert_unavailable(self.path, "does not exist")
        self.assertFalse(os.path.exists(self.path))

    def test_corrupted_during_refresh(self) -> None:
        """
        A file that became invalid while a refresh was under way is left
        alone, and the credential is unavailable until it is fixed.
        """
        gates = self.hold_refreshes()
        self.write(30)
        self.credential.reload()
        pending = self.credential.access_token()
        with open(self.path, "w") as handle:
            handle.write("{")
        gates[0].callback(None)
        self.http.flush()
        self.failureResultOf(pending, CredentialUnavailable)
        self.assert_unavailable("not valid JSON")
        with open(self.path) as handle:
            self.assertEqual(handle.read(), "{")

    def test_save_failure_keeps_new_tokens(self) -> None:
        """
        When the refreshed tokens cannot be saved although the file is
        still there (here, the disk fails), they are served from memory
        (the old refresh token is spent) and the failure is logged as an
        error.
        """
        self.write(30)
        self.credential.reload()

        def failing_fsync(descriptor: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(credentialfile.os, "fsync", failing_fsync)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertTrue(self.credential.available)
        self.assertEqual(self.read_file()["claudeAiOauth"]["accessToken"], ACCESS)
        errors = self.logged(LogLevel.error)
        self.assertEqual(len(errors), 1)
        self.assertIn("refreshed tokens could not be saved", errors[0])


class NotWritableTests(CredentialTestCase):
    """
    A credential whose file cannot be written refuses to refresh, since the
    rotated refresh token would be lost.
    """

    store_class = ReadOnlyCredentialFile

    def test_expired_token_refused(self) -> None:
        """
        An expired token is not refreshed: no token request is made and the
        credential is unavailable, saying the file is not writable.
        """
        self.write(-1)
        self.credential.reload()
        self.assert_unavailable("not writable", self.path)
        self.assertEqual(self.fake.token_requests, [])
        self.assertIn("not writable", " ".join(self.logged(LogLevel.error)))

    def test_unexpired_token_still_served(self) -> None:
        """
        A token close to expiry but still valid keeps being served without
        a refresh, until it expires.
        """
        self.write(USE_MARGIN_SECONDS / 2)
        self.credential.reload()
        self.assertEqual(self.successResultOf(self.access()), ACCESS)
        self.assertTrue(self.credential.available)
        self.assertEqual(self.fake.token_requests, [])
        self.clock.advance(USE_MARGIN_SECONDS / 2)
        self.assert_unavailable("not writable")
        self.assertEqual(self.fake.token_requests, [])


class ReadOnlyFileTests(CredentialTestCase):
    """
    A really read-only file, for when the tests do not run as root.
    """

    def test_read_only_file(self) -> None:
        """
        With a read-only credentials file no refresh is made, the file is
        untouched and the credential is unavailable once the token expired.
        """
        self.write(-1)
        os.chmod(self.path, 0o400)
        with open(self.path, "rb") as handle:
            before = handle.read()
        self.credential.reload()
        self.assert_unavailable("not writable")
        self.assertEqual(self.fake.token_requests, [])
        with open(self.path, "rb") as handle:
            self.assertEqual(handle.read(), before)

    if AS_ROOT:
        test_read_only_file.skip = (  # type: ignore[attr-defined]
            "running as root: root can write a read-only file, so it cannot be "
            "made unwritable; NotWritableTests covers the refusal with a store "
            "that reports itself unwritable"
        )


class RefreshFailureTests(CredentialTestCase):
    """
    What a credential does when the token endpoint refuses, fails or does
    not answer.
    """

    def test_invalid_grant(self) -> None:
        """
        A rejected refresh token makes an expired credential unavailable
        with advice to run ``claude /login``; further requests within the
        retry delay fail at once without another token request.
        """
        self.fake.token_mode = "invalid_grant"
        self.write(-1)
        self.credential.reload()
        self.assert_unavailable(
            "token refresh failed: token endpoint answered HTTP 400 invalid_grant",
            "`claude /login`",
        )
        self.assertEqual(len(self.fake.token_requests), 1)
        self.clock.advance(REFRESH_RETRY_SECONDS - 1)
        self.assert_unavailable("`claude /login`")
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertIn("invalid_grant", " ".join(self.logged(LogLevel.error)))

    def test_invalid_grant_before_expiry(self) -> None:
        """
        While the old token is still valid a failed refresh does not stop
        the credential from serving; it becomes unavailable at expiry.
        """
        self.fake.token_mode = "invalid_grant"
        self.write(30)
        self.credential.reload()
        self.assertEqual(self.successResultOf(self.access()), ACCESS)
        self.assertTrue(self.credential.available)
        self.clock.advance(29)
        self.assertTrue(self.credential.available)
        self.clock.advance(1)
        self.assertFalse(self.credential.available)
        self.assert_unavailable("`claude /login`")

    def test_server_error_retried(self) -> None:
        """
        A 500 says it will retry; the next attempt waits for the retry
        delay, and a success then makes the credential available again.
        """
        self.fake.token_mode = "server_error"
        self.write(-1)
        self.credential.reload()
        self.assert_unavailable("HTTP 500", "will retry")
        self.fake.token_mode = "ok"
        self.clock.advance(REFRESH_RETRY_SECONDS - 1)
        self.assert_unavailable("will retry")
        self.assertEqual(len(self.fake.token_requests), 1)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(len(self.fake.token_requests), 2)
        self.assertTrue(self.credential.available)

    def test_hanging_endpoint(self) -> None:
        """
        A token endpoint that does not answer fails the waiting request
        after the timeout, and leaves no timer behind.
        """
        self.fake.token_mode = "hang"
        self.write(-1)
        self.credential.reload()
        pending = self.access()
        self.assertNoResult(pending)
        self.clock.advance(REFRESH_TIMEOUT_SECONDS)
        self.http.flush()
        error = self.failureResultOf(pending, CredentialUnavailable).value
        self.assertIn("did not answer within 30s", str(error))
        self.assertIn("will retry", str(error))
        self.assertFalse(self.credential.available)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_changed_file_clears_failure(self) -> None:
        """
        After a rejected refresh, a new login (a changed file) makes the
        credential available at once and allows an immediate refresh,
        without waiting for the retry delay.
        """
        self.fake.token_mode = "invalid_grant"
        self.write(-1)
        self.credential.reload()
        self.assert_unavailable("`claude /login`")
        self.fake.token_mode = "ok"
        self.fake.refresh_token = "sk-ant-ort01-new-login"
        self.write(30, access="sk-ant-oat01-new-login", refresh="sk-ant-ort01-new-login")
        self.credential.reload()
        self.assertTrue(self.credential.available)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(len(self.fake.token_requests), 2)

    def test_unchanged_file_keeps_failure(self) -> None:
        """
        Reloading a file that did not change does not hide a refresh
        failure.
        """
        self.fake.token_mode = "invalid_grant"
        self.write(-1)
        self.credential.reload()
        self.assert_unavailable("`claude /login`")
        self.credential.reload()
        self.assert_unavailable("`claude /login`")
        self.assertEqual(len(self.fake.token_requests), 1)


class UnavailableErrorTests(CredentialTestCase):
    """
    :obj:`Credential.unavailable_error` is what a client gets when the
    credential cannot serve.
    """

    def test_shape(self) -> None:
        """
        It is a 503 ``api_error`` telling clients not to retry, with the
        reason in the message.
        """
        self.credential.reload()
        reason = self.credential.unavailable_reason
        assert reason is not None
        error = self.credential.unavailable_error(reason)
        self.assertIsInstance(error, APIError)
        self.assertEqual(error.status, 503)
        self.assertEqual(error.error_type, "api_error")
        self.assertEqual(error.headers, (("x-should-retry", "false"),))
        self.assertIn(self.path, error.message)
        self.assertIn("`claude /login`", error.message)
        self.assertTrue(error.message.startswith("ccm cannot serve requests: "))


class WatchedCredentialTests(CredentialTestCase):
    """
    A credential reloaded by a :obj:`FileWatcher`, as the service wires them:
    the service may start before the file exists, and follows it without a
    restart.
    """

    def test_follows_file(self) -> None:
        """
        Without a file the credential is unavailable; once the file appears
        it becomes available, a deletion makes it unavailable and a new
        login makes it available again, each within one poll.
        """
        watcher = FileWatcher(self.path, self.credential.reload, self.clock)
        self.credential.reload()
        watcher.startService()
        self.assert_unavailable("does not exist")

        def settle() -> None:
            self.clock.advance(POLL_INTERVAL_SECONDS)
            self.clock.advance(DEBOUNCE_SECONDS)

        self.write(3600)
        settle()
        self.assertEqual(self.successResultOf(self.access()), ACCESS)
        os.remove(self.path)
        settle()
        self.assert_unavailable("does not exist")
        self.write(3600, access="sk-ant-oat01-new-login")
        settle()
        self.assertEqual(self.successResultOf(self.access()), "sk-ant-oat01-new-login")
        with open(self.path, "w") as handle:
            handle.write("not json")
        settle()
        self.assert_unavailable("not valid JSON")
        watcher.stopService()
        self.assertEqual(self.fake.token_requests, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RejectedRefreshTokenTests(CredentialTestCase):
    """
    A refresh token the OAuth server rejected is not sent again until the
    credentials file brings another one.
    """

    def test_rejected_token_not_retried(self) -> None:
        """
        After ``invalid_grant`` the credential stays unavailable past the
        retry delay without another token request, and logs the rejection
        only once.
        """
        self.fake.token_mode = "invalid_grant"
        self.write(-1)
        self.credential.reload()
        self.assert_unavailable("`claude /login`")
        self.clock.advance(REFRESH_RETRY_SECONDS * 10)
        self.assert_unavailable("`claude /login`")
        self.failureResultOf(self.access(), CredentialUnavailable)
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertEqual(len(self.logged(LogLevel.error)), 1)

    def test_new_login_retried(self) -> None:
        """
        Once the file holds a different refresh token (a new login), the
        credential refreshes with it.
        """
        self.fake.token_mode = "invalid_grant"
        self.write(-1)
        self.credential.reload()
        self.assert_unavailable("`claude /login`")
        self.fake.token_mode = "ok"
        self.fake.refresh_token = "sk-ant-ort01-after-login"
        self.write(-1, refresh="sk-ant-ort01-after-login")
        self.credential.reload()
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(len(self.fake.token_requests), 2)
        self.assertTrue(self.credential.available)

    def test_transient_failure_retried_by_requests(self) -> None:
        """
        After a transient failure the credential reports itself unavailable
        only during the retry delay; afterwards it lets the next request
        through, which refreshes first.
        """
        self.fake.token_mode = "server_error"
        self.write(-1)
        self.credential.reload()
        self.failureResultOf(self.access(), CredentialUnavailable)
        self.assertIsNotNone(self.credential.unavailable_reason)
        self.clock.advance(REFRESH_RETRY_SECONDS)
        self.assertIsNone(self.credential.unavailable_reason)
        self.fake.token_mode = "ok"
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(len(self.fake.token_requests), 2)


class SubscribeTests(CredentialTestCase):
    """
    :obj:`Credential.subscribe`: observers are told of every change of what
    the credential can do, its windows' included, until they unsubscribe.
    """

    def setUp(self) -> None:
        super().setUp()
        self.told: list[str] = []
        self.unsubscribe = self.credential.subscribe(lambda: self.told.append("changed"))

    def test_file_loaded_and_lost(self) -> None:
        """
        Loading the file, replacing it and losing it each tell the
        observers.
        """
        self.write(3600)
        self.credential.reload()
        self.assertEqual(len(self.told), 1)
        self.write(7200, access="sk-ant-oat01-other")
        self.credential.reload()
        self.assertEqual(len(self.told), 2)
        os.remove(self.path)
        self.credential.reload()
        self.assertEqual(len(self.told), 3)
        self.assertFalse(self.credential.available)

    def test_refresh_failure_and_success(self) -> None:
        """
        A failed refresh tells the observers (the credential may stop
        serving), and so does a refresh that worked.
        """
        self.fake.token_mode = "server_error"
        self.write(-1)
        self.credential.reload()
        del self.told[:]
        self.failureResultOf(self.access(), CredentialUnavailable)
        self.assertEqual(len(self.told), 1)
        self.fake.token_mode = "ok"
        self.clock.advance(REFRESH_RETRY_SECONDS)
        self.successResultOf(self.access())
        self.assertEqual(len(self.told), 2)

    def test_windows_and_profile(self) -> None:
        """
        A write to the credential's windows, and the plan the profile
        reports, tell the credential's observers.
        """
        self.credential.rate_limits.apply_poll((10.0, START_TIME + 3600), None, START_TIME)
        self.assertEqual(len(self.told), 1)
        self.credential.set_profile("max", "default_claude_max_5x")
        self.assertEqual(len(self.told), 2)

    def test_unsubscribe(self) -> None:
        """
        After unsubscribing, neither the credential's own changes nor its
        windows' tell the observer; unsubscribing twice is harmless.
        """
        self.unsubscribe()
        self.unsubscribe()
        self.write(3600)
        self.credential.reload()
        self.credential.rate_limits.apply_poll((10.0, START_TIME + 3600), None, START_TIME)
        self.assertEqual(self.told, [])
