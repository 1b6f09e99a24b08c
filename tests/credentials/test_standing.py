"""
Tests for :obj:`ccm.credentials.standing`: a rejected login and a quarantine
on a credential, what ends each, and the login advice they give.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.credentials.credential import Credential
from ccm.credentials.file import CredentialFile, OAuthTokens
from ccm.credentials.oauth import RefreshError, TokenGrant
from ccm.credentials.standing import Quarantine, is_new_login, login_advice, login_of
from ccm.pool.member import PoolMember
from ccm.pool.serving import MemberState, Unusable
from tests.fixtures import logged_events, write_credentials


START_TIME = 1_790_000_000.0
ACCESS = "sk-ant-oat01-standing-access"
REFRESH = "sk-ant-ort01-standing-refresh"


def refuse(refresh_token: str) -> Deferred[TokenGrant]:
    """
    A token endpoint that is down.
    """
    return fail(RefreshError("token endpoint unreachable"))


class StandingTestCase(SynchronousTestCase):
    """
    A loaded credential over a file holding ``ACCESS`` and ``REFRESH``.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START_TIME)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.path = os.path.join(directory, ".credentials.json")
        self.write(ACCESS, REFRESH)
        self.credential = Credential("work", CredentialFile(self.path), refuse, self.clock)
        self.credential.reload()
        self.member = PoolMember(self.credential)
        self.events = logged_events(self)
        self.addCleanup(self.assert_no_token_logged)

    def write(self, access: str, refresh: str) -> None:
        """
        Store these tokens in the file, never expiring.
        """
        write_credentials(self.path, access, refresh, 0)

    def errors(self) -> list[str]:
        """
        The error-level log lines so far.
        """
        return [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.error]

    def assert_no_token_logged(self) -> None:
        """
        No log line holds a token.
        """
        for event in self.events:
            self.assertNotIn("sk-ant-", formatEvent(event) + repr(event))


class LoginRejectionTests(StandingTestCase):
    """
    :obj:`ccm.credentials.standing.Standing.reject_login`.
    """

    def test_unavailable_until_other_tokens(self) -> None:
        """
        A rejected login makes the credential unavailable with a problem
        naming the answer and the command, logged once at error level
        however often it is reported; other tokens in the store end it.
        """
        for _ in range(3):
            self.credential.standing.reject_login(ACCESS, 'HTTP 401 "Invalid bearer token"')
        problem = self.credential.unavailable_reason
        assert problem is not None
        self.assertIn(
            'Anthropic rejects the subscription\'s login (HTTP 401 "Invalid bearer token")', problem
        )
        self.assertIn("claude /login` on the ccm host", problem)
        self.assertTrue(self.credential.standing.waits_for_login)
        self.assertEqual(
            self.member.state(START_TIME), MemberState(Unusable.UNAVAILABLE, problem=problem)
        )
        [line] = self.errors()
        self.assertEqual(line, f"credential work needs a new login: {problem}")
        self.write("sk-ant-oat01-new", REFRESH)
        self.credential.reload()
        self.assertIsNone(self.credential.unavailable_reason)
        self.assertFalse(self.credential.standing.waits_for_login)

    def test_other_token_held(self) -> None:
        """
        A rejection of a token the credential no longer holds changes
        nothing.
        """
        self.credential.standing.reject_login("sk-ant-oat01-older", "HTTP 401")
        self.assertIsNone(self.credential.unavailable_reason)
        self.assertEqual(self.errors(), [])


class QuarantineTests(StandingTestCase):
    """
    :obj:`ccm.credentials.standing.Standing.enter_quarantine` and its end.
    """

    def test_entered_once(self) -> None:
        """
        A ban quarantines the credential from now, with its cause and what
        ends it; the member is :obj:`Unusable.QUARANTINED` since then, and a
        second ban keeps the first quarantine.  Logged once.
        """
        self.credential.standing.enter_quarantine("Anthropic disabled its organization")
        self.clock.advance(60)
        self.credential.standing.enter_quarantine("another ban")
        quarantine = self.credential.quarantine
        assert quarantine is not None
        self.assertEqual(quarantine.since, START_TIME)
        self.assertTrue(
            quarantine.cause.startswith(
                "Anthropic disabled its organization; it serves again once a new login appears in "
                + self.path
            )
        )
        state = self.member.state(START_TIME + 60)
        self.assertEqual(
            (state.reason, state.since, state.problem),
            (Unusable.QUARANTINED, START_TIME, quarantine.cause),
        )
        self.assertIn(
            "quarantined since 2026-09-21 14:13 UTC (1m0s ago): Anthropic disabled",
            state.description,
        )
        self.assertIsNone(self.credential.unavailable_reason)
        [line] = self.errors()
        self.assertIn("credential work is quarantined: Anthropic disabled its organization", line)

    def test_same_login_keeps_it(self) -> None:
        """
        The store read again holding the banned login, or a token refreshed
        from it (same refresh token), keeps the quarantine.
        """
        self.credential.standing.enter_quarantine("banned")
        self.credential.reload()
        self.write("sk-ant-oat01-refreshed-elsewhere", REFRESH)
        self.credential.reload()
        self.assertIsNotNone(self.credential.quarantine)

    def test_new_login_ends_it(self) -> None:
        """
        A refresh token the credential never held ends the quarantine, with
        an info line; a file that vanished and came back with the banned
        login does not.
        """
        self.credential.standing.enter_quarantine("banned")
        os.remove(self.path)
        self.credential.reload()
        self.write(ACCESS, REFRESH)
        self.credential.reload()
        self.assertIsNotNone(self.credential.quarantine)
        self.write("sk-ant-oat01-new", "sk-ant-ort01-new")
        self.credential.reload()
        self.assertIsNone(self.credential.quarantine)
        self.assertTrue(self.member.state(START_TIME).usable)
        infos = [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.info]
        self.assertIn(f"credential work leaves quarantine: {self.path} holds a new login", infos)


class NewLoginTests(SynchronousTestCase):
    """
    :obj:`is_new_login` and :obj:`login_of`.
    """

    def test_rules(self) -> None:
        """
        A login is its refresh token (its access token when it has none);
        a stored login is new when it is neither the banned one nor the one
        held now (which ccm's own refresh may have brought).
        """
        banned = OAuthTokens("sk-ant-oat01-a", "sk-ant-ort01-a", 0)
        refreshed_by_ccm = OAuthTokens("sk-ant-oat01-b", "sk-ant-ort01-b", 0)
        setup_token = OAuthTokens("sk-ant-oat01-long-lived", "", 0)
        self.assertEqual(login_of(banned), "sk-ant-ort01-a")
        self.assertEqual(login_of(setup_token), "sk-ant-oat01-long-lived")
        quarantine = Quarantine("banned", START_TIME, login_of(banned))
        self.assertFalse(is_new_login(quarantine, banned, banned))
        self.assertFalse(is_new_login(quarantine, refreshed_by_ccm, refreshed_by_ccm))
        self.assertTrue(is_new_login(quarantine, refreshed_by_ccm, banned))
        self.assertTrue(is_new_login(quarantine, setup_token, None))
        self.assertFalse(is_new_login(quarantine, banned, None))


class LoginAdviceTests(SynchronousTestCase):
    """
    :obj:`login_advice`: the command that puts a new login where ccm reads.
    """

    def test_paths(self) -> None:
        """
        A ``.credentials.json`` gets ``claude /login`` with its directory
        as ``CLAUDE_CONFIG_DIR`` (quoted when needed); another file name,
        the login and a copy; a keychain item, the plain command.
        """
        self.assertEqual(
            login_advice("/home/ccm/.claude/.credentials.json"),
            "run `CLAUDE_CONFIG_DIR=/home/ccm/.claude claude /login` on the ccm host, "
            "as the user ccm runs as",
        )
        self.assertIn(
            "`CLAUDE_CONFIG_DIR='/srv/my subs/a' claude /login`",
            login_advice("/srv/my subs/a/.credentials.json"),
        )
        self.assertEqual(
            login_advice("/srv/subs/a.json"),
            "run `claude /login` on the ccm host and copy the .credentials.json it writes "
            "to /srv/subs/a.json",
        )
        self.assertEqual(
            login_advice('macOS keychain item "Claude Code-credentials"'),
            "run `claude /login` on the ccm host, as the user ccm runs as",
        )
