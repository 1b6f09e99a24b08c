"""
End-to-end tests of the answers that judge a subscription: a real
``twistd -n ccm`` process, driven by the real Claude Code CLI, in front of
one fake upstream.  A revoked token is recovered before the CLI notices,
and a ban on one subscription of a pool moves the session to the other.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from tests import e2e
from tests.fake_anthropic import (
    FakeAnthropic,
    RecordedRequest,
    organization_disabled_reply,
    text_reply,
)
from tests.fixtures import expiry_ms, write_credentials

ALICE = "ak-ccm-verdicts-alice"
SECOND_ACCESS = "sk-ant-oat01-fake-second-subscription"
SESSION = "44444444-4444-4444-8444-444444444444"
# How long ccm may take to make its first usage poll after it started.
FIRST_POLL_SECONDS = 10.0


def message_posts(fake: FakeAnthropic) -> list[RecordedRequest]:
    """
    The ``POST /v1/messages`` requests the fake received.
    """
    return [r for r in fake.requests if r.method == "POST" and r.path.startswith("/v1/messages")]


class VerdictTestsMixin(e2e.RealClaudeCode):
    """
    The real CLI (each pinned version) through a real ccm, with a
    subscription whose standing changes under it.
    """

    timeout = 300

    def setUp(self) -> None:
        self.fake, self.url = e2e.serve_fake_anthropic(self)
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    @inlineCallbacks
    def first_poll(self) -> Any:
        """
        Wait until ccm's usage poller asked about every subscription once,
        so that what a test changes next meets a request, not a poll.
        """
        waited = 0.0
        while not any(r.path.startswith("/api/oauth/usage") for r in self.fake.requests):
            if waited >= FIRST_POLL_SECONDS:
                self.fail(f"no usage poll within {FIRST_POLL_SECONDS} s")
            yield deferLater(reactor, 0.1, lambda: None)
            waited += 0.1

    @inlineCallbacks
    def test_revoked_token_recovered(self) -> Any:
        """
        When the subscription's token is revoked, ccm refreshes it and sends
        the CLI's request again: the CLI prints the answer and succeeds, the
        credentials file holds the new token, and the log says what
        happened, with no error.
        """
        path = os.path.join(self.directory, ".credentials.json")
        write_credentials(path, self.fake.access_token, self.fake.refresh_token, expiry_ms(86400))
        config = e2e.ccm_config(self.url, path, [{"name": "alice", "token": ALICE}])
        ccm = yield e2e.start_ccm(self, config)
        yield self.first_poll()
        revoked = self.fake.access_token
        self.fake.revoke()
        self.fake.enqueue(text_reply("Served after the recovery."))
        result = yield self.run_claude(ccm.url, ALICE, "hi")
        self.assertEqual(
            (result.rc, result.stdout.strip()), (0, "Served after the recovery."), result.stderr
        )
        bearers = [(p.header("authorization") or "") for p in message_posts(self.fake)]
        self.assertEqual(bearers, ["Bearer " + revoked, "Bearer " + self.fake.access_token])
        self.assertEqual(len(self.fake.token_requests), 1)
        with open(path) as handle:
            stored = json.load(handle)["claudeAiOauth"]["accessToken"]
        self.assertEqual(stored, self.fake.access_token)
        output = ccm.output()
        self.assertIn("credential default: Anthropic rejected its access token (HTTP 403", output)
        self.assertIn("credential default: retrying with the access token from a refresh", output)
        self.assertNotIn("needs a new login", output)
        self.assertNotIn(revoked, output)

    @inlineCallbacks
    def test_ban_moves_the_session(self) -> Any:
        """
        When the subscription a session is on answers "organization
        disabled", ccm quarantines it and sends the request to the pool's
        other subscription before anything reached the CLI, which succeeds;
        the session's next turn goes to the other subscription directly.
        """
        self.fake.extra_access_tokens.add(SECOND_ACCESS)
        paths = {}
        for tag, access in (("a", self.fake.access_token), ("b", SECOND_ACCESS)):
            paths[tag] = os.path.join(self.directory, f"{tag}.json")
            write_credentials(paths[tag], access, f"sk-ant-ort01-{tag}", expiry_ms(86400))
        config = {
            "endpoint": "tcp:0:interface=127.0.0.1",
            "upstream_url": self.url,
            "oauth_token_url": self.url + "/v1/oauth/token",
            "credentials": [
                {"tag": "a", "credential_path": paths["a"]},
                {"tag": "b", "credential_path": paths["b"]},
                {
                    "tag": "pool",
                    "type": "balancer",
                    "strategy": "least_used",
                    "credentials": ["a", "b"],
                },
            ],
            "users": [{"name": "alice", "token": ALICE, "credential": "pool"}],
        }
        ccm = yield e2e.start_ccm(self, config)
        self.fake.enqueue(
            organization_disabled_reply(),
            text_reply("Served by the other subscription."),
            text_reply("Still the other one."),
        )
        first = yield self.run_claude(ccm.url, ALICE, "one", args=["--session-id", SESSION])
        self.assertEqual(
            (first.rc, first.stdout.strip()), (0, "Served by the other subscription."), first.stderr
        )
        again = yield self.run_claude(ccm.url, ALICE, "two", args=["--resume", SESSION], home=first.home, cwd=first.cwd
        )
        self.assertEqual(
            (again.rc, again.stdout.strip()), (0, "Still the other one."), again.stderr
        )
        tokens = {self.fake.access_token: "a", SECOND_ACCESS: "b"}
        used = [
            tokens.get((p.header("authorization") or "").removeprefix("Bearer "), "?")
            for p in message_posts(self.fake)
        ]
        self.assertEqual(used, ["a", "b", "b"])
        self.assertEqual(
            [p.header("x-claude-code-session-id") for p in message_posts(self.fake)], [SESSION] * 3
        )
        output = ccm.output()
        self.assertIn("credential a is quarantined: Anthropic disabled its organization", output)
        self.assertIn(f"session {SESSION} assigned to credential b, moved from a", output)


globals().update(VerdictTestsMixin.make_test_case_classes())
