"""
Tests for :obj:`ccm.credentials.refresher`: the background refresher renews
tokens before they expire, idle credentials included, and never stops.

The credentials are those of :obj:`CredentialTestCase`: a real file in a
temporary directory and the fake token endpoint; time is a :obj:`Clock`.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred, fail

from ccm.credentials.credential import Credential
from ccm.credentials.file import CredentialFile
from ccm.credentials.oauth import TokenGrant
from ccm.credentials.refresher import (
    PROACTIVE_MARGIN_SECONDS,
    REFRESH_CHECK_INTERVAL_SECONDS,
    TokenRefreshService,
)
from tests.credentials.test_credential import ACCESS, CredentialTestCase


class TokenRefreshServiceTests(CredentialTestCase):
    """
    :obj:`TokenRefreshService` refreshes tokens before they expire, idle
    credentials included, and never stops doing so.
    """

    def start(self, *credentials: Credential) -> TokenRefreshService:
        """
        Start a refresh service for ``credentials`` (by default the test's
        credential), stopped again at the end of the test.
        """
        service = TokenRefreshService(credentials or [self.credential], self.clock)
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        self.http.flush()
        return service

    def tick(self, seconds: float = REFRESH_CHECK_INTERVAL_SECONDS) -> None:
        """
        Let ``seconds`` pass and the token endpoint answer.
        """
        self.clock.advance(seconds)
        self.http.flush()

    def test_checks_at_start(self) -> None:
        """
        At start a token expiring within five minutes is refreshed at once
        and saved.
        """
        self.write(PROACTIVE_MARGIN_SECONDS - 1)
        self.credential.reload()
        service = self.start()
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertEqual(
            self.read_file()["claudeAiOauth"]["accessToken"], self.fake.access_token
        )
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refreshes_before_expiry(self) -> None:
        """
        A token valid for an hour is left alone until it is five minutes
        from expiry, then refreshed once.
        """
        self.write(3600)
        self.credential.reload()
        self.start()
        self.assertEqual(self.fake.token_requests, [])
        elapsed = 0.0
        while elapsed + REFRESH_CHECK_INTERVAL_SECONDS < 3600 - PROACTIVE_MARGIN_SECONDS:
            self.tick()
            elapsed += REFRESH_CHECK_INTERVAL_SECONDS
        self.assertEqual(self.fake.token_requests, [])
        self.tick()
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertEqual(self.successResultOf(self.access()), self.fake.access_token)
        self.tick()
        self.assertEqual(len(self.fake.token_requests), 1)

    def test_failures_do_not_stop_the_loop(self) -> None:
        """
        A failing refresh is tried again at later checks; the loop keeps
        running, and a success ends the failures.
        """
        self.fake.token_mode = "server_error"
        self.write(PROACTIVE_MARGIN_SECONDS - 1)
        self.credential.reload()
        service = self.start()
        self.assertEqual(len(self.fake.token_requests), 1)
        self.tick()
        self.assertEqual(len(self.fake.token_requests), 2)
        self.tick()
        self.assertEqual(len(self.fake.token_requests), 3)
        self.fake.token_mode = "ok"
        self.tick()
        self.assertEqual(len(self.fake.token_requests), 4)
        self.tick()
        self.assertEqual(len(self.fake.token_requests), 4)
        self.assertTrue(self.credential.available)
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unexpected_error_logged(self) -> None:
        """
        An unexpected error from a refresh is logged and the loop goes on.
        """
        calls: list[str] = []

        def broken(refresh_token: str) -> Deferred[TokenGrant]:
            calls.append(refresh_token)
            return fail(RuntimeError("boom"))

        credential = Credential("odd", self.store, broken, self.clock)
        self.write(60)
        credential.reload()
        service = self.start(credential)
        self.tick()
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_skips_unloaded(self) -> None:
        """
        A credential without a file is skipped, and so is one whose token
        never expires.
        """
        never = Credential("never", CredentialFile(self.path), self.endpoint.refresh, self.clock)
        self.write(0, expiresAt=0)
        never.reload()
        self.credential.store = CredentialFile(os.path.join(self.directory, "absent.json"))
        self.credential.reload()
        service = self.start(self.credential, never)
        self.tick()
        self.assertEqual(self.fake.token_requests, [])
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_leaves_no_timer(self) -> None:
        """
        Stopping the service cancels its timer.
        """
        service = self.start()
        self.assertNotEqual(self.clock.getDelayedCalls(), [])
        service.stopService()
        self.assertFalse(service.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_quarantined_left_alone(self) -> None:
        """
        A quarantined credential is never refreshed, however close to expiry
        its token is; each check reads its store again instead, so a new
        login there ends the quarantine even where no watcher would notice,
        and the refresh it needs follows as usual.
        """
        self.write(60)
        self.credential.reload()
        self.credential.standing.enter_quarantine("Anthropic disabled its organization")
        self.start()
        self.tick()
        self.assertEqual(self.fake.token_requests, [])
        self.assertIsNotNone(self.credential.quarantine)
        self.fake.refresh_token = "sk-ant-ort01-new-login"
        self.write(60, access="sk-ant-oat01-new-login", refresh=self.fake.refresh_token)
        self.tick()
        self.assertIsNone(self.credential.quarantine)
        self.assertEqual(len(self.fake.token_requests), 1)

    def test_rejected_login_looked_for(self) -> None:
        """
        A credential whose login Anthropic rejected reads its store at each
        check, and serves again once the store brings another token.
        """
        self.write(3600)
        self.credential.reload()
        self.credential.standing.reject_login(ACCESS, "HTTP 401")
        self.assertIsNotNone(self.credential.unavailable_reason)
        self.start()
        self.write(3600, access="sk-ant-oat01-new-login")
        self.assertIsNotNone(self.credential.unavailable_reason)
        self.tick()
        self.assertIsNone(self.credential.unavailable_reason)
        self.assertEqual(self.fake.token_requests, [])
