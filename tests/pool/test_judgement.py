"""
Tests for :obj:`ccm.pool.judgement`: what the usage poller's answers do to
a credential's standing.  (The poller's use of them is tested in
``tests.pool.test_poller``.)
"""

from __future__ import annotations

from ccm.pool.judgement import act_on_profile, act_on_rejection
from ccm.pool.windows import Plan
from ccm.upstream.verdicts import Reading, Verdict
from tests.pool.poolcase import NOW, PoolTestCase


class RejectionTests(PoolTestCase):
    """
    :obj:`act_on_rejection`.
    """

    def test_token_rejected(self) -> None:
        """
        A rejected token makes the credential need a new login, when the
        token is given; without one (the profile's answers) nothing
        happens.
        """
        credential = self.credential("a")
        reading = Reading(Verdict.TOKEN_REJECTED, 401)
        self.assertFalse(act_on_rejection(credential, reading))
        self.assertIsNone(credential.unavailable_reason)
        self.assertTrue(act_on_rejection(credential, reading, "sk-ant-oat01-a"))
        reason = credential.unavailable_reason
        assert reason is not None
        self.assertIn("(HTTP 401)", reason)

    def test_ban(self) -> None:
        """
        A ban quarantines the credential, with the ban's words.
        """
        credential = self.credential("a")
        reading = Reading(Verdict.ORGANIZATION_DISABLED, 400, "invalid_request_error", "disabled")
        self.assertTrue(act_on_rejection(credential, reading))
        quarantine = credential.quarantine
        assert quarantine is not None
        self.assertTrue(
            quarantine.cause.startswith("Anthropic disabled its organization (HTTP 400")
        )
        self.assertEqual(quarantine.since, NOW)

    def test_others(self) -> None:
        """
        Other verdicts change nothing.
        """
        credential = self.credential("a")
        for verdict in (Verdict.PASS, Verdict.THIRD_PARTY):
            self.assertFalse(act_on_rejection(credential, Reading(verdict, 400), "sk-ant-oat01-a"))
        self.assertIsNone(credential.quarantine)
        self.assertIsNone(credential.unavailable_reason)


class ProfileTests(PoolTestCase):
    """
    :obj:`act_on_profile`.
    """

    def test_downgrade_from_the_file(self) -> None:
        """
        A profile without a paid plan quarantines a credential whose file
        names a paid one.
        """
        credential = self.credential("a", plan="pro")
        self.assertTrue(act_on_profile(credential, ("free", "")))
        quarantine = credential.quarantine
        assert quarantine is not None
        self.assertTrue(
            quarantine.cause.startswith("its profile reports free where it had a paid pro plan")
        )

    def test_downgrade_from_an_earlier_profile(self) -> None:
        """
        Without a plan in the file, the plan an earlier profile reported
        counts.
        """
        credential = self.credential("a", plan="", tier="")
        self.assertFalse(act_on_profile(credential, ("", "")))
        credential.set_profile("max", "default_claude_max_5x")
        self.assertEqual(credential.rate_limits.plan, Plan("max", "default_claude_max_5x"))
        self.assertTrue(act_on_profile(credential, ("", "")))
        quarantine = credential.quarantine
        assert quarantine is not None
        self.assertIn(
            "its profile reports no plan where it had a paid max plan", quarantine.cause
        )

    def test_paid_plan(self) -> None:
        """
        A paid plan in the profile quarantines nothing, nor an answer that
        names no organization (no profile ccm can read).
        """
        credential = self.credential("a")
        self.assertFalse(act_on_profile(credential, ("team", "")))
        self.assertFalse(act_on_profile(credential, None))
        self.assertIsNone(credential.quarantine)
