"""
Tests for :obj:`ccm.shares.gate`: a built service attributes the rises of
the fake upstream's utilization to its users, refuses one over their
share before anything goes upstream, and shows their share in
``/ccm/v1/status``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting.counters import UsageRecord
from ccm.accounting.tokens import TokenCounts
from ccm.shares.gate import usage_cost
from tests.fake_anthropic import allowed_unified_headers, text_reply
from tests.proxyharness import ALICE, BOB, BOB_TOKEN, START_TIME, ProxyHarness

HELLO = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
FIVE_HOURS = 5 * 3600


class ShareGateTests(SynchronousTestCase):
    """
    alice has a 5-hour share of 10 %; bob has none.  Each request's answer
    reports the fake's 5-hour utilization, which the test raises.
    """

    def setUp(self) -> None:
        alice = dataclasses.replace(ALICE, share_5h=10.0)
        self.harness = ProxyHarness(self, users=(alice, BOB))

    def utilization(self, fraction: float) -> None:
        self.harness.fake.unified_headers = allowed_unified_headers(
            START_TIME, five_hour_utilization=fraction
        )

    def ask(self, token: str | None = None) -> Any:
        harness = self.harness
        headers = {"authorization": f"Bearer {token}"} if token else None
        response = harness.messages(HELLO, headers)
        harness.body_of(response)
        return response

    def status(self) -> dict[str, Any]:
        response = self.harness.response("GET", "/ccm/v1/status")
        status: dict[str, Any] = json.loads(self.harness.body_of(response))
        return status

    def test_refused_over_share(self) -> None:
        """
        The first answer (10 %) is where the credential stands; the rise to
        15 % is charged to alice's first request, the only one that ran
        before it, and her second, of the same cost and not settled yet, is
        estimated at the same 5 %: 10 % of the pool, her whole share.  Her
        next request gets the share's 429, which never reaches the
        upstream; bob, without a share, is served.
        """
        self.utilization(0.10)
        self.ask()
        self.utilization(0.15)
        self.ask()
        sent = len(self.harness.fake.requests)
        refused = self.harness.messages(HELLO)
        error = self.harness.ccm_error(refused, 429, "rate_limit_error")
        self.assertIn("alice has used 10.0% of the pool's 5-hour window", error["message"])
        self.assertIn("their share is 10%", error["message"])
        headers = refused.headers
        self.assertEqual(headers.getRawHeaders("x-should-retry"), ["false"])
        self.assertEqual(
            headers.getRawHeaders("anthropic-ratelimit-unified-5h-utilization"), ["1.00"]
        )
        self.assertEqual(
            headers.getRawHeaders("anthropic-ratelimit-unified-reset"),
            [str(int(START_TIME) + FIVE_HOURS)],
        )
        self.assertEqual(len(self.harness.fake.requests), sent)
        self.assertEqual(self.ask(BOB_TOKEN).code, 200)

    def test_status_shows_share(self) -> None:
        """
        ``/ccm/v1/status`` gives alice her share, use, remainder and reset,
        and the use in dollars: each answer is 100,000 input and 20,000
        output tokens of Sonnet 4.5, $0.30 + $0.30; the rise to 14 % is her
        first request's, so 1 % holds $0.60 / 4 = $0.15, and her second, of
        the same cost and not settled by a later answer, is estimated at
        the same 4 %: 8 % used, $1.20.  bob, without a share, gets no
        ``share`` object.
        """
        self.harness.fake.default_reply = text_reply(
            usage={"input_tokens": 100_000, "output_tokens": 20_000}
        )
        self.utilization(0.10)
        self.ask()
        self.utilization(0.14)
        self.ask()
        self.assertEqual(
            self.status()["share"],
            {
                "five_hour": {
                    "share": 10.0,
                    "used": 8.0,
                    "remaining": 2.0,
                    "reset": int(START_TIME) + FIVE_HOURS,
                    "used_usd": 1.2,
                    "usd_per_percent": 0.15,
                }
            },
        )
        response = self.harness.response("GET", "/ccm/v1/status", token=BOB_TOKEN)
        self.assertNotIn("share", json.loads(self.harness.body_of(response)))


    def test_unreported_window_is_no_reading(self) -> None:
        """
        Answers without the unified headers leave the windows unknown,
        which is not 0 %: the first answer that reports 30 % only says where
        the credential stands, and charges nothing.
        """
        self.harness.fake.unified_headers = {}
        self.ask()
        self.utilization(0.30)
        self.ask()
        self.assertEqual(self.status()["share"]["five_hour"]["used"], 0.0)

    def test_no_estimate_is_null(self) -> None:
        """
        Before any rise was charged, nothing tells what 1 % is worth: the
        dollar figures are null, not 0.
        """
        self.utilization(0.10)
        self.ask()
        five_hour = self.status()["share"]["five_hour"]
        self.assertEqual((five_hour["used_usd"], five_hour["usd_per_percent"]), (None, None))


class UsageCostTests(SynchronousTestCase):
    """
    :obj:`usage_cost`: a response's list price, the split's weight.
    """

    def test_cost(self) -> None:
        """
        A million output tokens of Sonnet 4.5 cost its output price; no
        usage or no model costs nothing.
        """
        tokens = TokenCounts(output_tokens=1_000_000)
        record = UsageRecord("claude-sonnet-4-5", 200000, 0, "alice", tokens, 1)
        self.assertEqual(usage_cost(record), 15.0)
        self.assertEqual(usage_cost(None), 0.0)
        self.assertEqual(usage_cost(dataclasses.replace(record, model="")), 0.0)
