"""
End-to-end tests of credential pools: a real ``twistd -n ccm`` process with
two subscriptions, driven by the real Claude Code CLI, in front of one fake
upstream that accepts both subscriptions' tokens.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import inlineCallbacks

from tests import e2e
from tests.fake_anthropic import FakeAnthropic, RecordedRequest, error_reply, text_reply
from tests.fixtures import expiry_ms, write_credentials

ALICE = "ak-ccm-pools-alice"
SECOND_ACCESS = "sk-ant-oat01-fake-second-subscription"
SESSION_1 = "11111111-1111-4111-8111-111111111111"
SESSION_2 = "22222222-2222-4222-8222-222222222222"


def message_posts(fake: FakeAnthropic) -> list[RecordedRequest]:
    """
    The ``POST /v1/messages`` requests the fake received.
    """
    return [r for r in fake.requests if r.method == "POST" and r.path.startswith("/v1/messages")]


class PoolTestsMixin(e2e.RealClaudeCode):
    """
    Two subscriptions, ``a`` and ``b``, in a balancer used by alice.
    """

    timeout = 300

    @inlineCallbacks
    def start(self, strategy: str, reserve_5h_a: int = 0) -> Any:
        """
        Start the fake and ccm with a balancer of the given strategy, and
        the given 5-hour reserve on credential ``a``.
        """
        self.fake, url = e2e.serve_fake_anthropic(self)
        self.fake.extra_access_tokens.add(SECOND_ACCESS)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        paths = {}
        for tag, access in (("a", self.fake.access_token), ("b", SECOND_ACCESS)):
            paths[tag] = os.path.join(directory, f"{tag}.json")
            write_credentials(paths[tag], access, f"sk-ant-ort01-{tag}", expiry_ms(86400))
        config = {
            "endpoint": "tcp:0:interface=127.0.0.1",
            "upstream_url": url,
            "oauth_token_url": url + "/v1/oauth/token",
            "credentials": [
                {"tag": "a", "credential_path": paths["a"], "reserve_5h": reserve_5h_a},
                {"tag": "b", "credential_path": paths["b"]},
                {"tag": "pool", "type": "balancer", "strategy": strategy, "credentials": ["a", "b"]},
            ],
            "users": [{"name": "alice", "token": ALICE, "credential": "pool"}],
        }
        self.ccm = yield e2e.start_ccm(self, config)

    def bearer(self, request: RecordedRequest) -> str:
        """
        Which subscription a request upstream used.
        """
        token = (request.header("authorization") or "").removeprefix("Bearer ")
        return {self.fake.access_token: "a", SECOND_ACCESS: "b"}.get(token, "?")

    @inlineCallbacks
    def test_round_robin_sessions_stay_put(self) -> Any:
        """
        Under ``round_robin``, two Claude Code sessions land on different
        subscriptions, and each one's second turn stays on its own.
        """
        yield self.start("round_robin")
        first = yield self.run_claude(self.ccm.url, ALICE, "one", args=["--session-id", SESSION_1])
        second = yield self.run_claude(self.ccm.url, ALICE, "two", args=["--session-id", SESSION_2])
        for result in (first, second):
            self.assertEqual(result.rc, 0, result.stderr)
        again_1 = yield self.run_claude(
            self.ccm.url, ALICE, "three", args=["--resume", SESSION_1],
            home=first.home, cwd=first.cwd,
        )
        again_2 = yield self.run_claude(
            self.ccm.url, ALICE, "four", args=["--resume", SESSION_2],
            home=second.home, cwd=second.cwd,
        )
        for result in (again_1, again_2):
            self.assertEqual(result.rc, 0, result.stderr)
        posts = message_posts(self.fake)
        by_session = [(p.header("x-claude-code-session-id"), self.bearer(p)) for p in posts]
        self.assertEqual(
            by_session,
            [(SESSION_1, "a"), (SESSION_2, "b"), (SESSION_1, "a"), (SESSION_2, "b")],
        )

    @inlineCallbacks
    def test_429_invisible_when_another_can_serve(self) -> Any:
        """
        When the first subscription answers 429 out of quota, the request is
        sent again on the second before anything reached the CLI, which
        prints the answer as if nothing happened; the next request goes
        straight to the second.
        """
        yield self.start("fallback")
        self.fake.enqueue(
            error_reply(429, "rate_limit_error", "This request would exceed your rate limit."),
            text_reply("Served by the second subscription."),
            text_reply("Still the second."),
        )
        result = yield self.run_claude(self.ccm.url, ALICE, "hi")
        self.assertEqual(
            (result.rc, result.stdout.strip()), (0, "Served by the second subscription."), result.stderr
        )
        result = yield self.run_claude(self.ccm.url, ALICE, "again")
        self.assertEqual((result.rc, result.stdout.strip()), (0, "Still the second."), result.stderr)
        self.assertEqual([self.bearer(p) for p in message_posts(self.fake)], ["a", "b", "b"])
        self.assertIn("429 from credential a", self.ccm.output())

    @inlineCallbacks
    def test_session_moves_when_subscription_pauses(self) -> Any:
        """
        When a subscription's responses report its 5-hour window past its
        reserve, the session on it moves to the other subscription at its
        next turn; the status endpoint shows the pool's use, the paused one
        counting as full; failing usage polls (the usage endpoint answers
        500) change nothing of that.
        """
        yield self.start("least_used", reserve_5h_a=20)
        self.fake.usage_mode = "server_error"
        rising = dict(self.fake.unified_headers)
        rising["anthropic-ratelimit-unified-5h-utilization"] = "0.85"
        self.fake.unified_headers_by_token = {self.fake.access_token: rising}
        first = yield self.run_claude(self.ccm.url, ALICE, "one", args=["--session-id", SESSION_1])
        self.assertEqual(first.rc, 0, first.stderr)
        again = yield self.run_claude(
            self.ccm.url, ALICE, "two", args=["--resume", SESSION_1],
            home=first.home, cwd=first.cwd,
        )
        self.assertEqual(again.rc, 0, again.stderr)
        self.assertEqual([self.bearer(p) for p in message_posts(self.fake)], ["a", "b"])
        output = self.ccm.output()
        self.assertIn("credential a is paused at its 5-hour threshold (85% used, pauses at 80%)", output)
        self.assertIn("moved from a", output)
        rc, out, err = yield e2e.run_python_script(
            self,
            "import json, urllib.request\n"
            f"request = urllib.request.Request({self.ccm.url + '/ccm/v1/status'!r},"
            f" headers={{'authorization': 'Bearer {ALICE}'}})\n"
            "print(urllib.request.urlopen(request).read().decode())\n",
        )
        self.assertEqual(rc, 0, err)
        status = json.loads(out)
        # a is paused, so it has no headroom in either window and its weight
        # leaves plan_weight; b: 5-hour 99 - 10 = 89, weekly 99 - 20 = 79
        # (both weight 10): 100 - (0 + 890) / 20 = 55.5, 100 - 790 / 20.
        self.assertEqual(status["plan_weight"], 10)
        self.assertAlmostEqual(status["five_hour_utilization"], 55.5)
        self.assertAlmostEqual(status["weekly_utilization"], 60.5)


globals().update(PoolTestsMixin.make_test_case_classes())
