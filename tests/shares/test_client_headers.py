"""
Tests for the unified headers each user sees through the proxy
(:obj:`ccm.shares.gate.ShareKeeper.client_headers`): alice, with a 5-hour
share, sees her share's figures; bob, without one, and alice with
``per_user_headers: false`` see the account's.
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from ccm.config.model import UserConfig
from tests.fake_anthropic import allowed_unified_headers, client_rate_limit_headers
from tests.proxyharness import ALICE, BOB, BOB_TOKEN, MAIN, SECOND, START_TIME, ProxyHarness

HELLO = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
FIVE_HOURS = 5 * 3600
P = "anthropic-ratelimit-unified-"


class ClientHeadersTests(SynchronousTestCase):
    """
    The account's 5-hour window rises from 10 % with alice's first
    request; her second answer, which reports the rise, shows what that
    first request used of her 10 % share (the running one is not charged
    until it ends).
    """

    def build(self, alice: UserConfig) -> None:
        # The extra headers say "served from extra usage", which pauses a
        # credential under the default ``never``.
        self.harness = ProxyHarness(
            self, users=(alice, BOB), extra_usage={MAIN: "allow", SECOND: "allow"}
        )
        self.extra = client_rate_limit_headers(START_TIME)

    def answer(self, fraction: float) -> None:
        self.harness.fake.unified_headers = {
            **allowed_unified_headers(START_TIME, five_hour_utilization=fraction),
            **self.extra,
        }

    def ask(self, token: str | None = None) -> IResponse:
        headers = {"authorization": f"Bearer {token}"} if token else None
        response = self.harness.messages(HELLO, headers)
        self.harness.body_of(response)
        return response

    def header(self, response: IResponse, name: str) -> list[str] | None:
        values: list[str] | None = response.headers.getRawHeaders(name)
        return values

    def test_share_and_raw(self) -> None:
        """
        A rise to 14 %: alice's second answer says 0.40, ``allowed`` (under the 90 % of the
        curve), her share's reset and claim; bob's says the account's 0.14;
        every extra-usage header and the weekly window reach both untouched.
        """
        self.build(dataclasses.replace(ALICE, share_5h=10.0))
        self.answer(0.10)
        self.ask()
        self.answer(0.14)
        alice = self.ask()
        self.assertEqual(self.header(alice, P + "5h-utilization"), ["0.40"])
        self.assertEqual(self.header(alice, P + "5h-status"), ["allowed"])
        self.assertEqual(self.header(alice, P + "5h-reset"), [str(int(START_TIME) + FIVE_HOURS)])
        self.assertEqual(self.header(alice, P + "representative-claim"), ["five_hour"])
        bob = self.ask(BOB_TOKEN)
        self.assertEqual(self.header(bob, P + "5h-utilization"), ["0.14"])
        for response in (alice, bob):
            for name, value in self.extra.items():
                self.assertEqual(self.header(response, name), [value], name)
            self.assertEqual(
                self.header(response, P + "7d-utilization"),
                self.header(bob, P + "7d-utilization"),
            )

    def test_warning(self) -> None:
        """
        A rise to 19 % is 9 of her 10 % (0.90) early in the window:
        ``allowed_warning`` with the 0.9 threshold, overall too.
        """
        self.build(dataclasses.replace(ALICE, share_5h=10.0))
        self.answer(0.10)
        self.ask()
        self.answer(0.19)
        alice = self.ask()
        self.assertEqual(self.header(alice, P + "5h-utilization"), ["0.90"])
        self.assertEqual(self.header(alice, P + "5h-status"), ["allowed_warning"])
        self.assertEqual(self.header(alice, P + "5h-surpassed-threshold"), ["0.9"])
        self.assertEqual(self.header(alice, P + "status"), ["allowed_warning"])

    def test_switched_off(self) -> None:
        """With ``per_user_headers: false`` alice sees the account's 0.14."""
        self.build(dataclasses.replace(ALICE, share_5h=10.0, per_user_headers=False))
        self.answer(0.10)
        self.ask()
        self.answer(0.14)
        self.assertEqual(self.header(self.ask(), P + "5h-utilization"), ["0.14"])
