"""
Tests for :obj:`ccm.credentials.recovery`, through
:obj:`ccm.credentials.credential.Credential.recover`: after Anthropic rejected
an access token, the store is read again, then one refresh is forced, at
most once per interval, shared by everyone who asks at the same time.

The credential reads a real file in a temporary directory and refreshes at
the fake token endpoint through :obj:`StubTreq`; time is a :obj:`Clock`.
"""

from __future__ import annotations

import os
from typing import cast

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.credentials.credential import Credential
from ccm.credentials.file import CredentialFile
from ccm.credentials.oauth import REFRESH_TIMEOUT_SECONDS, TokenEndpoint
from ccm.credentials.recovery import FORCED_REFRESH_INTERVAL_SECONDS
from tests.fake_anthropic import FakeAnthropic
from tests.fixtures import expiry_ms, logged_events, write_credentials


START_TIME = 1_790_000_000.0
ACCESS = "sk-ant-oat01-fake-access"
REFRESH = "sk-ant-ort01-fake-refresh"
OTHER = "sk-ant-oat01-stored-by-another-program"


class RecoverTests(SynchronousTestCase):
    """
    :obj:`Credential.recover` on a credential whose file holds ``ACCESS``.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START_TIME)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.path = os.path.join(directory, ".credentials.json")
        self.write(ACCESS)
        self.fake = FakeAnthropic(self.clock)
        self.http = StubTreq(self.fake.resource())
        endpoint = TokenEndpoint(
            cast(HTTPClient, self.http), self.clock, "https://platform.claude.com/v1/oauth/token"
        )
        self.credential = Credential(
            "work", CredentialFile(self.path), endpoint.refresh, self.clock
        )
        self.credential.reload()
        self.events = logged_events(self)
        self.addCleanup(self.assert_no_token_logged)

    def write(self, access: str, refresh: str = REFRESH) -> None:
        """
        Store ``access`` (valid for a day) and ``refresh`` in the file.
        """
        write_credentials(self.path, access, refresh, expiry_ms(86400, now=START_TIME))

    def recover(self, rejected: str = ACCESS) -> bool:
        """
        Recover from ``rejected`` and let the token endpoint answer.
        """
        d = self.credential.recover(rejected, "HTTP 401")
        self.http.flush()
        found: bool = self.successResultOf(d)
        return found

    def logged(self) -> list[str]:
        """
        Every log message so far.
        """
        return [formatEvent(event) for event in self.events]

    def assert_no_token_logged(self) -> None:
        """
        No log line holds a token.
        """
        for text in self.logged():
            self.assertNotIn("sk-ant-", text)

    def test_store_holds_another(self) -> None:
        """
        A token another program stored is taken without a refresh.
        """
        self.write(OTHER)
        self.assertTrue(self.recover())
        assert self.credential.tokens is not None
        self.assertEqual(self.credential.tokens.access_token, OTHER)
        self.assertEqual(self.fake.token_requests, [])
        texts = self.logged()
        self.assertTrue(any("Anthropic rejected its access token (HTTP 401)" in t for t in texts))
        self.assertTrue(any("retrying with the access token from its store" in t for t in texts))

    def test_already_another(self) -> None:
        """
        A credential that already holds another token (someone else's
        recovery got it) answers at once.
        """
        self.assertTrue(self.recover("sk-ant-oat01-some-older-token"))
        self.assertEqual(self.fake.token_requests, [])

    def test_refresh(self) -> None:
        """
        With nothing new in the store, one refresh brings a new token.
        """
        self.assertTrue(self.recover())
        self.assertEqual(len(self.fake.token_requests), 1)
        assert self.credential.tokens is not None
        self.assertEqual(self.credential.tokens.access_token, self.fake.access_token)
        self.assertTrue(
            any("retrying with the access token from a refresh" in t for t in self.logged())
        )

    def test_refresh_refused(self) -> None:
        """
        A refresh the OAuth server refuses finds nothing.
        """
        self.fake.token_mode = "invalid_grant"
        self.assertFalse(self.recover())
        self.assertEqual(len(self.fake.token_requests), 1)

    def test_one_forced_refresh_per_interval(self) -> None:
        """
        Within the interval after a forced refresh, a rejected token is
        looked for in the store only; after it, a refresh is forced again.
        """
        self.assertTrue(self.recover())
        fresh = self.fake.access_token
        self.clock.advance(FORCED_REFRESH_INTERVAL_SECONDS - 1)
        self.assertFalse(self.recover(fresh))
        self.assertEqual(len(self.fake.token_requests), 1)
        self.write(OTHER, refresh=self.fake.refresh_token)
        self.assertTrue(self.recover(fresh))
        self.clock.advance(1)
        self.assertTrue(self.recover(OTHER))
        self.assertEqual(len(self.fake.token_requests), 2)

    def test_shared(self) -> None:
        """
        Recoveries of the same token at the same time share one refresh, and
        the rejection is logged once; each gets the answer.
        """
        self.fake.token_mode = "hang"
        first = self.credential.recover(ACCESS, "HTTP 401")
        second = self.credential.recover(ACCESS, "HTTP 401")
        self.http.flush()
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertNoResult(first)
        self.clock.advance(REFRESH_TIMEOUT_SECONDS)
        self.http.flush()
        self.assertEqual(
            [self.successResultOf(first), self.successResultOf(second)], [False, False]
        )
        rejected = [t for t in self.logged() if "Anthropic rejected its access token" in t]
        self.assertEqual(len(rejected), 1)

    def test_quarantined(self) -> None:
        """
        A quarantined credential does not look: its store is not read and
        nothing is refreshed.
        """
        self.credential.standing.enter_quarantine("banned")
        os.remove(self.path)
        self.assertFalse(self.recover())
        self.assertIsNone(self.credential.problem)
        self.assertEqual(self.fake.token_requests, [])
