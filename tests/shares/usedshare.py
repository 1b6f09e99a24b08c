"""
A known sequence that leaves one user at a known standing, for the tests
of the readers that show shares (the view, the metrics, the dashboard).
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from ccm.shares.gate import ShareKeeper
from ccm.shares.view import ShareView
from tests.fake_anthropic import allowed_unified_headers, text_reply
from tests.proxyharness import ALICE, BOB, START_TIME, ProxyHarness

HELLO = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
#: When alice's 5-hour use falls: the fake's window resets five hours on.
FIVE_HOUR_RESET = START_TIME + 5 * 3600


def used_share(testcase: SynchronousTestCase) -> ProxyHarness:
    """
    A service where alice (an admin) has shares of 10 % of the 5-hour
    window and 50 % of the weekly one, bob none, after two requests of
    alice's: the first answer (5-hour at 10 %) is where the credential
    stands, the second (15 %) charges the 5 % rise to her first request,
    and her second, of the same cost, is estimated at 5 % too: she has
    used 10.0 % of the 5-hour window (all her share) and nothing of the
    weekly one, which did not move.  Each answer is 100,000 input and
    20,000 output tokens of Sonnet 4.5 ($0.60), so 1 % of the 5-hour
    window holds $0.12 and her use is $1.20; of the weekly window nothing
    is known.
    """
    alice = dataclasses.replace(ALICE, share_5h=10.0, share_weekly=50.0, admin=True)
    harness = ProxyHarness(testcase, users=(alice, BOB))
    harness.fake.default_reply = text_reply(usage={"input_tokens": 100_000, "output_tokens": 20_000})
    for fraction in (0.10, 0.15):
        harness.fake.unified_headers = allowed_unified_headers(
            START_TIME, five_hour_utilization=fraction
        )
        harness.body_of(harness.messages(HELLO))
    return harness


def share_view(harness: ProxyHarness) -> ShareView:
    """The :obj:`ShareView` of ``harness``'s service."""
    keeper = harness.proxy.context.shares
    assert isinstance(keeper, ShareKeeper)
    service = harness.service
    return ShareView(keeper, lambda: service.config.users, service.user_pools)
