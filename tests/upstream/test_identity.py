"""
Tests for :obj:`ccm.upstream.identity`: which Claude Code release ccm's own
calls claim to be, following the clients that talk through ccm.
"""

from __future__ import annotations


from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.upstream.identity import (
    CHECKED_AXIOS_VERSION,
    CHECKED_CLAUDE_CODE_VERSION,
    ClientIdentity,
    parse_version,
)
from tests.fixtures import logged_events


class ParseVersionTests(SynchronousTestCase):
    """
    :obj:`parse_version` reads three dot-separated numbers.
    """

    def test_version(self) -> None:
        """
        A release number becomes a tuple that orders like releases do.
        """
        self.assertEqual(parse_version("2.1.332"), (2, 1, 332))
        self.assertLess(parse_version("2.1.99"), parse_version("2.1.100"))

    def test_not_a_version(self) -> None:
        """
        Anything else is refused.
        """
        for text in ("2.1", "2.1.3.4", "2.1.x", "", "2.1.-1", " 2.1.3"):
            with self.assertRaises(ValueError, msg=text):
                parse_version(text)


class ClientIdentityTests(SynchronousTestCase):
    """
    A :obj:`ClientIdentity` claims the checked release until a newer
    Claude Code talks through ccm.
    """

    def setUp(self) -> None:
        self.identity = ClientIdentity(floor="2.1.332")
        self.events = logged_events(self)

    def test_floor(self) -> None:
        """
        Before any client was seen, the checked release is claimed, and the
        refresh names the axios read from it.
        """
        identity = ClientIdentity()
        self.assertEqual(identity.version, CHECKED_CLAUDE_CODE_VERSION)
        self.assertEqual(
            identity.usage_user_agent, f"claude-cli/{CHECKED_CLAUDE_CODE_VERSION} (external, cli)"
        )
        self.assertEqual(identity.profile_user_agent, f"claude-code/{CHECKED_CLAUDE_CODE_VERSION}")
        self.assertEqual(identity.refresh_user_agent, f"axios/{CHECKED_AXIOS_VERSION}")

    def test_newer_followed(self) -> None:
        """
        A newer release in a client's ``User-Agent`` (text or bytes, any
        entrypoint) becomes the one claimed, once, with one log line.
        """
        self.identity.observe("claude-cli/2.1.340 (external, sdk-cli)")
        self.assertEqual(self.identity.version, "2.1.340")
        self.identity.observe(b"claude-cli/2.2.0 (external, cli)")
        self.assertEqual(self.identity.version, "2.2.0")
        self.identity.observe(b"claude-cli/2.2.0 (external, cli)")
        self.assertEqual(self.identity.usage_user_agent, "claude-cli/2.2.0 (external, cli)")
        self.assertEqual(self.identity.profile_user_agent, "claude-code/2.2.0")
        self.assertEqual(
            [formatEvent(e) for e in self.events],
            [
                "Claude Code 2.1.340 talks through ccm: ccm's own calls now identify as it",
                "Claude Code 2.2.0 talks through ccm: ccm's own calls now identify as it",
            ],
        )

    def test_older_ignored(self) -> None:
        """
        An older client never lowers the release claimed, nor does one below
        the checked release.
        """
        self.identity.observe("claude-cli/2.1.400 (external, cli)")
        self.identity.observe("claude-cli/2.1.350 (external, cli)")
        self.assertEqual(self.identity.version, "2.1.400")
        identity = ClientIdentity(floor="2.1.332")
        identity.observe("claude-cli/2.1.197 (external, cli)")
        self.assertEqual(identity.version, "2.1.332")

    def test_malformed_ignored(self) -> None:
        """
        Only a well-formed ``claude-cli/X.Y.Z`` counts: other programs, other
        spellings, pre-releases and absurd numbers change nothing.
        """
        for user_agent in (
            None,
            "",
            b"",
            "claude-code/2.1.400",
            "curl/8.0 claude-cli/2.1.400",
            "claude-cli/2.1",
            "claude-cli/2.1.400-beta (external, cli)",
            "claude-cli/2.1.400.1",
            "claude-cli/2.1.99999 (external, cli)",
            "Claude-CLI/2.1.400",
            "anthropic-sdk/2.1.400",
        ):
            self.identity.observe(user_agent)
        self.assertEqual(self.identity.version, "2.1.332")
        self.assertEqual(list(self.events), [])

    def test_too_far_ahead_ignored(self) -> None:
        """
        A release more than one major version ahead of the checked one is
        not believed (any user of ccm can send any ``User-Agent``); the next
        major version is.
        """
        self.identity.observe("claude-cli/4.0.0 (external, cli)")
        self.assertEqual(self.identity.version, "2.1.332")
        self.identity.observe("claude-cli/3.0.1 (external, cli)")
        self.assertEqual(self.identity.version, "3.0.1")

    def test_axios_stays(self) -> None:
        """
        The refresh's axios version stays the one read with the checked
        release, whatever release is claimed.
        """
        identity = ClientIdentity(floor="2.1.332", axios="1.15.2")
        identity.observe("claude-cli/2.1.400 (external, cli)")
        self.assertEqual(identity.refresh_user_agent, "axios/1.15.2")
