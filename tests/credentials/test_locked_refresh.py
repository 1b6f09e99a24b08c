"""
Tests for :obj:`ccm.credentials.credential` refreshing under Claude Code's
lock (:obj:`ccm.credentials.lock.RefreshLock`), and backing off after the
token endpoint's 429s.

"Another process" is played by the test: it makes the lock directories as
proper-lockfile does, rewrites the credentials file, and removes them.
The token endpoint is the fake of :obj:`tests.fake_anthropic`, which counts
its calls; time is a :obj:`Clock`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, cast

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.credentials.credential import REFRESH_RETRY_SECONDS, Credential, CredentialUnavailable
from ccm.credentials.file import CredentialFile
from ccm.credentials.lock import LOCK_ATTEMPTS, STALE_SECONDS, UPDATE_SECONDS, RefreshLock
from ccm.credentials.oauth import RefreshError, TokenEndpoint, TokenGrant
from tests.fake_anthropic import FakeAnthropic
from tests.fixtures import expiry_ms, logged_events, write_credentials


START_TIME = 1_790_000_000.0
TOKEN_URL = "https://platform.claude.com/v1/oauth/token"
ACCESS = "sk-ant-oat01-fake-access"
REFRESH = "sk-ant-ort01-fake-refresh"
ROTATED_ACCESS = "sk-ant-oat01-rotated-by-claude-code"
ROTATED_REFRESH = "sk-ant-ort01-rotated-by-claude-code"
# Each wait between lock attempts, with the tests' jitter of 0.5.
RETRY_WAIT = 1.5


class LockedRefreshTestCase(SynchronousTestCase):
    """
    A credential over a file in its own directory, locking that directory,
    refreshing at the fake token endpoint.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START_TIME)
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, ".credentials.json")
        self.current = os.path.join(self.directory, ".oauth_refresh.lock")
        self.legacy = self.directory + ".lock"
        self.fake = FakeAnthropic(self.clock, access_token=ACCESS, refresh_token=REFRESH)
        self.http = StubTreq(self.fake.resource())
        self.endpoint = TokenEndpoint(cast(HTTPClient, self.http), self.clock, TOKEN_URL)
        self.lock = RefreshLock(self.directory, self.clock, jitter=lambda: 0.5)
        self.locked_at_refresh: list[bool] = []
        self.credential = self.credential_with(self.refresh)
        self.events = logged_events(self)

    def credential_with(self, refresh: Callable[[str], Deferred[TokenGrant]]) -> Credential:
        """
        A credential over the test's file and lock, refreshing with
        ``refresh``.
        """
        return Credential("work", CredentialFile(self.path), refresh, self.clock, lock=self.lock)

    def refresh(self, refresh_token: str) -> Deferred[TokenGrant]:
        """
        The token endpoint, noting whether both locks were held when it was
        called.
        """
        self.locked_at_refresh.append(os.path.isdir(self.current) and os.path.isdir(self.legacy))
        return self.endpoint.refresh(refresh_token)

    def write(self, expires_in_seconds: float, access: str = ACCESS, refresh: str = REFRESH) -> None:
        """
        Write the credentials file, its token expiring ``expires_in_seconds``
        from now.
        """
        write_credentials(
            self.path, access, refresh, expiry_ms(expires_in_seconds, now=self.clock.seconds())
        )

    def load(self, expires_in_seconds: float) -> None:
        """
        Write the file and have the credential read it.
        """
        self.write(expires_in_seconds)
        self.credential.reload()

    def rotate_elsewhere(self) -> None:
        """
        What Claude Code does under its lock: rotate the tokens in the file
        (in place), good for eight hours; the fake accepts the new ones.
        """
        self.fake.access_token = ROTATED_ACCESS
        self.fake.refresh_token = ROTATED_REFRESH
        with open(self.path) as handle:
            document: dict[str, Any] = json.load(handle)
        document["claudeAiOauth"].update(
            accessToken=ROTATED_ACCESS,
            refreshToken=ROTATED_REFRESH,
            expiresAt=expiry_ms(8 * 3600, now=self.clock.seconds()),
        )
        with open(self.path, "w") as handle:
            json.dump(document, handle)

    def hold_elsewhere(self, age: float = 0.0) -> None:
        """
        Take both locks as another process would, ``age`` seconds ago.
        """
        for path in (self.current, self.legacy):
            os.mkdir(path)
            moment = time.time() - age
            os.utime(path, (moment, moment))

    def release_elsewhere(self) -> None:
        """
        The other process lets go of its locks.
        """
        os.rmdir(self.legacy)
        os.rmdir(self.current)

    def access(self) -> Deferred[str]:
        """
        Ask for a token and let the fake answer what it can.
        """
        result = self.credential.access_token()
        self.http.flush()
        return result

    def advance(self, *steps: float) -> None:
        """
        Let time pass, step by step, and the fake answer.
        """
        for step in steps:
            self.clock.advance(step)
            self.http.flush()

    def assert_unlocked(self) -> None:
        """
        ccm holds no lock and waits for nothing.
        """
        self.assertFalse(os.path.exists(self.current))
        self.assertFalse(os.path.exists(self.legacy))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def refresh_tokens_sent(self) -> list[str]:
        """
        The refresh tokens the token endpoint was called with.
        """
        return [request.json()["refresh_token"] for request in self.fake.token_requests]


class LockedRefreshTests(LockedRefreshTestCase):
    """
    A refresh takes Claude Code's lock, and waits for another holder.
    """

    def test_refresh_under_lock(self) -> None:
        """
        With no other holder, the refresh calls the token endpoint while
        holding both locks, saves the new tokens and lets go of the locks.
        """
        self.load(-60)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(self.locked_at_refresh, [True])
        self.assertEqual(self.refresh_tokens_sent(), [REFRESH])
        self.assertEqual(CredentialFile(self.path).read().access_token, self.fake.access_token)
        self.assert_unlocked()

    def test_waits_for_holder_and_adopts(self) -> None:
        """
        While another process holds the lock, the refresh waits; when that
        process has rotated the tokens and let go, the refresh re-reads the
        file under the lock and serves the new tokens, never sending the
        refresh token the other process spent.
        """
        self.load(-60)
        self.hold_elsewhere()
        result = self.access()
        self.advance(RETRY_WAIT, RETRY_WAIT)
        self.assertNoResult(result)
        self.rotate_elsewhere()
        self.release_elsewhere()
        self.advance(RETRY_WAIT)
        self.assertEqual(self.successResultOf(result), ROTATED_ACCESS)
        self.assertEqual(self.fake.token_requests, [])
        self.assertTrue(self.credential.available)
        self.assertIn(
            "credential work: adopted tokens refreshed by another program",
            [formatEvent(e) for e in self.events],
        )
        self.assert_unlocked()

    def test_holder_gone_after_rotating(self) -> None:
        """
        When the holder rotated the tokens but never let go (it crashed),
        the refresh gives up on the lock, reads the file again, and serves
        the rotated tokens; the holder's lock is left to go stale.
        """
        self.load(-60)
        self.hold_elsewhere()
        result = self.access()
        self.rotate_elsewhere()
        self.advance(*[RETRY_WAIT] * (LOCK_ATTEMPTS - 1))
        self.assertEqual(self.successResultOf(result), ROTATED_ACCESS)
        self.assertEqual(self.fake.token_requests, [])
        self.assertTrue(os.path.isdir(self.current))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_busy_with_valid_token(self) -> None:
        """
        When the lock stays held and the token is still valid, it is served;
        the failure is logged, naming the lock, and nothing is sent.
        """
        self.load(30)
        self.hold_elsewhere()
        result = self.access()
        self.advance(*[RETRY_WAIT] * (LOCK_ATTEMPTS - 1))
        self.assertEqual(self.successResultOf(result), ACCESS)
        self.assertEqual(self.fake.token_requests, [])
        self.assertTrue(self.credential.available)
        logged = " ".join(formatEvent(e) for e in self.events)
        self.assertIn("held Claude Code's lock " + self.current, logged)

    def test_busy_with_expired_token(self) -> None:
        """
        When the lock stays held and the token has expired, the credential
        is unavailable for a while, saying another program holds the lock;
        once that one let go, a later request refreshes.
        """
        self.load(-60)
        self.hold_elsewhere()
        result = self.access()
        self.advance(*[RETRY_WAIT] * (LOCK_ATTEMPTS - 1))
        error = self.failureResultOf(result, CredentialUnavailable).value
        self.assertIn("another program held Claude Code's lock " + self.current, str(error))
        self.assertEqual(self.credential.unavailable_reason, str(error))
        self.assertEqual(self.fake.token_requests, [])
        self.release_elsewhere()
        self.advance(REFRESH_RETRY_SECONDS)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(self.refresh_tokens_sent(), [REFRESH])
        self.assert_unlocked()

    def test_stale_lock_taken_over(self) -> None:
        """
        A lock left by a process that died (untouched for over a minute) is
        taken at once, and the refresh goes ahead.
        """
        self.load(-60)
        self.hold_elsewhere(age=STALE_SECONDS + 5)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(self.locked_at_refresh, [True])
        self.assert_unlocked()

    def test_reload_while_waiting(self) -> None:
        """
        When the file watcher already took the rotated tokens while the
        refresh waited for the lock, the refresh serves them and does not
        spend their refresh token.
        """
        self.load(-60)
        self.hold_elsewhere()
        result = self.access()
        self.rotate_elsewhere()
        self.credential.reload()
        self.release_elsewhere()
        self.advance(RETRY_WAIT)
        self.assertEqual(self.successResultOf(result), ROTATED_ACCESS)
        self.assertEqual(self.fake.token_requests, [])
        self.assert_unlocked()

    def test_failed_refresh_rereads(self) -> None:
        """
        When the token endpoint refuses the refresh token because another
        process (one that took no lock) spent it first, the file is read
        again and its new tokens are served; the login is not given up.
        """
        self.load(-60)

        def lost_race(refresh_token: str) -> Deferred[TokenGrant]:
            self.rotate_elsewhere()
            return fail(RefreshError("token endpoint answered HTTP 400 invalid_grant", True))

        self.credential = self.credential_with(lost_race)
        self.credential.reload()
        self.assertEqual(self.successResultOf(self.access()), ROTATED_ACCESS)
        self.assertTrue(self.credential.available)
        self.assert_unlocked()

    def test_lock_released_after_failure(self) -> None:
        """
        A refresh that fails lets go of the locks too.
        """
        self.load(-60)
        self.fake.token_mode = "server_error"
        self.failureResultOf(self.access(), CredentialUnavailable)
        self.assertEqual(self.locked_at_refresh, [True])
        self.assert_unlocked()


class CompromisedLockTests(LockedRefreshTestCase):
    """
    A lock taken over while the token endpoint answers: what is stored
    since wins.
    """

    def setUp(self) -> None:
        super().setUp()
        self.gates: list[Deferred[None]] = []

        def gated(refresh_token: str) -> Deferred[TokenGrant]:
            gate: Deferred[None] = Deferred()
            self.gates.append(gate)
            return gate.addCallback(lambda _: self.endpoint.refresh(refresh_token))

        self.credential = self.credential_with(gated)

    def take_over(self) -> None:
        """
        Another process takes the lock over (it touches it as its own), and
        the heartbeat notices.
        """
        later = time.time() + 100
        os.utime(self.current, (later, later))
        self.advance(UPDATE_SECONDS)

    def test_other_login_wins(self) -> None:
        """
        When the lock was taken over and the file holds other tokens by the
        time the grant arrives, those are served and the file keeps them;
        the other process's lock stays.
        """
        self.load(-60)
        result = self.access()
        self.take_over()
        self.rotate_elsewhere()
        [gate] = self.gates
        self.fake.refresh_token = REFRESH
        gate.callback(None)
        self.http.flush()
        self.assertEqual(self.successResultOf(result), ROTATED_ACCESS)
        self.assertEqual(CredentialFile(self.path).read().access_token, ROTATED_ACCESS)
        self.assertTrue(os.path.isdir(self.current))
        self.assertFalse(os.path.exists(self.legacy))

    def test_unchanged_file_saved(self) -> None:
        """
        When the lock was taken over but the file is unchanged, the grant
        is saved as usual.
        """
        self.load(-60)
        result = self.access()
        self.take_over()
        [gate] = self.gates
        gate.callback(None)
        self.http.flush()
        fresh = self.successResultOf(result)
        self.assertEqual(fresh, self.fake.access_token)
        self.assertEqual(CredentialFile(self.path).read().access_token, fresh)


class RateLimitedRefreshTests(LockedRefreshTestCase):
    """
    A 429 from the token endpoint holds refreshes back.
    """

    def setUp(self) -> None:
        super().setUp()
        self.fake.token_mode = "rate_limited"

    def test_retry_after(self) -> None:
        """
        After a 429 asking for two minutes, an expired credential is
        unavailable saying so, and no refresh is sent before the two
        minutes passed, however often requests come; then one is.
        """
        self.fake.token_retry_after = "120"
        self.load(-60)
        error = self.failureResultOf(self.access(), CredentialUnavailable).value
        self.assertIn("HTTP 429", str(error))
        self.assertIn("waits 2m0s", str(error))
        for _ in range(3):
            self.advance(39)
            self.failureResultOf(self.access(), CredentialUnavailable)
            self.assertEqual(len(self.fake.token_requests), 1)
        self.advance(3)
        self.fake.token_mode = "ok"
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(len(self.fake.token_requests), 2)
        self.assert_unlocked()

    def test_without_retry_after(self) -> None:
        """
        Without ``Retry-After``, the first 429 holds refreshes back for a
        minute and the next one for two.
        """
        self.load(-60)
        self.failureResultOf(self.access(), CredentialUnavailable)
        self.advance(59)
        self.failureResultOf(self.access(), CredentialUnavailable)
        self.assertEqual(len(self.fake.token_requests), 1)
        self.advance(1)
        error = self.failureResultOf(self.access(), CredentialUnavailable).value
        self.assertIn("waits 2m0s", str(error))
        self.assertEqual(len(self.fake.token_requests), 2)
        self.advance(119)
        self.failureResultOf(self.access(), CredentialUnavailable)
        self.assertEqual(len(self.fake.token_requests), 2)

    def test_valid_token_served(self) -> None:
        """
        While refreshes are held back, a token that has not expired yet is
        still served.
        """
        self.load(30)
        self.assertEqual(self.successResultOf(self.access()), ACCESS)
        self.assertEqual(self.successResultOf(self.access()), ACCESS)
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertTrue(self.credential.available)

    def test_new_login_clears(self) -> None:
        """
        A new login in the file ends the wait: its expired token is
        refreshed at the next request.
        """
        self.fake.token_retry_after = "3600"
        self.load(-60)
        self.failureResultOf(self.access(), CredentialUnavailable)
        self.fake.token_mode = "ok"
        self.fake.refresh_token = "sk-ant-ort01-new-login"
        self.write(-10, access="sk-ant-oat01-new-login", refresh="sk-ant-ort01-new-login")
        self.credential.reload()
        self.assertIsNone(self.credential.unavailable_reason)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.assertEqual(self.refresh_tokens_sent(), [REFRESH, "sk-ant-ort01-new-login"])
