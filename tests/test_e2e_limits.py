"""
End-to-end test of a user's ``requests_per_minute``: the real Claude Code
CLI, in both pinned versions, against a real ``twistd -n ccm`` process in
front of the fake Anthropic upstream, on loopback.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests import e2e
from tests.fake_anthropic import FakeAnthropic, text_reply
from tests.fixtures import expiry_ms, write_credentials

USER_TOKEN = "ak-ccm-limits-alice"
REFUSAL_LOG = "refused a request of alice"


class _CcmWithRateLimitedUser(unittest.TestCase):
    """
    A ccm process whose one user, alice, may start one generation a minute.
    """

    timeout = 300
    fake: FakeAnthropic
    ccm: e2e.CcmProcess

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for its Deferred
        self.fake, fake_url = e2e.serve_fake_anthropic(self)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        credential_path = os.path.join(directory, ".credentials.json")
        write_credentials(
            credential_path, self.fake.access_token, self.fake.refresh_token, expiry_ms(30 * 86400)
        )
        config = e2e.ccm_config(fake_url, credential_path, [{"name": "alice", "token": USER_TOKEN}])
        config["users"][0]["requests_per_minute"] = 1
        self.ccm = yield e2e.start_ccm(self, config)


if TYPE_CHECKING:
    _Base = _CcmWithRateLimitedUser
else:
    _Base = object


class RateLimitedClaudeCodeTestsMixin(e2e.RealClaudeCode, _Base):
    """
    What a Claude Code user over their ``requests_per_minute`` sees.
    """

    @inlineCallbacks
    def test_rpm_refusal(self) -> Any:
        """
        The second prompt within the minute fails at once, with its default
        retries on, printing ccm's message (which limit, its number, when to
        retry); ccm refused it once (no retry loop) and nothing more went
        upstream; ccm's output holds neither token.
        """
        self.fake.enqueue(text_reply("First of the minute."))
        first = yield self.run_claude(self.ccm.url, USER_TOKEN, "say hi")
        self.assertEqual((first.rc, first.stdout.strip()), (0, "First of the minute."), first.stderr)
        posts = len(self.fake.requests)
        second = yield self.run_claude(
            self.ccm.url, USER_TOKEN, "say hi again",
            extra_env={"CLAUDE_CODE_MAX_RETRIES": None}, timeout=60,
        )
        self.assertNotEqual(second.rc, 0)
        output = second.stdout + second.stderr
        self.assertIn("Request rejected (429)", output)
        self.assertIn("ccm: user alice reached the requests_per_minute limit of 1", output)
        self.assertRegex(output, r"retry in \d+ s")
        self.assertEqual(
            [r.path for r in self.fake.requests[posts:] if r.path.startswith("/v1/messages")], []
        )
        waited = 0.0
        while REFUSAL_LOG not in self.ccm.output() and waited < 5:
            yield deferLater(reactor, 0.1)
            waited += 0.1
        self.assertEqual(self.ccm.output().count(REFUSAL_LOG), 1)
        for secret in (USER_TOKEN, self.fake.access_token):
            self.assertNotIn(secret, self.ccm.output())
            self.assertNotIn(secret, output)


globals().update(RateLimitedClaudeCodeTestsMixin.make_test_case_classes(_CcmWithRateLimitedUser))
