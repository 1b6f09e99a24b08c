"""
Tests for :obj:`ccm.shares.view`: every configured user's standing, as
the proxy decides on it.
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from ccm.shares.ledger import FIVE_HOUR, WEEKLY
from ccm.shares.standing import Entitlement, Shares
from tests.proxyharness import ALICE, BOB, MAIN, SECOND, ProxyHarness
from tests.shares.usedshare import FIVE_HOUR_RESET, share_view, used_share


class ShareViewTests(SynchronousTestCase):
    """
    :obj:`ccm.shares.view.ShareView.by_user` after a known sequence.
    """

    def test_by_user(self) -> None:
        """
        alice has one figure per window she has a share of, with the use
        the ledger charged her; bob, without shares, has none.
        """
        harness = used_share(self)
        figures = share_view(harness).by_user()
        self.assertEqual(sorted(figures), ["alice", "bob"])
        self.assertEqual(figures["bob"], ())
        five_hour, weekly = figures["alice"]
        self.assertEqual(
            (five_hour.window, five_hour.share, round(five_hour.used, 6), five_hour.remaining),
            (FIVE_HOUR, 10.0, 10.0, 0.0),
        )
        self.assertEqual(five_hour.resets_at, FIVE_HOUR_RESET)
        self.assertEqual(
            (weekly.window, weekly.share, weekly.used, weekly.remaining, weekly.resets_at),
            (WEEKLY, 50.0, 0.0, 50.0, 0.0),
        )


class EntitlementTests(SynchronousTestCase):
    """
    :obj:`ccm.shares.view.ShareView.entitlements`: what the share files
    record of each user.
    """

    def test_one_credential(self) -> None:
        """
        The harness's one credential is a Max 20x (plan weight 10), so its
        pool holds 1000 units: alice's shares and bob's none, against it.
        """
        entitlements = share_view(used_share(self)).entitlements()
        self.assertEqual(
            entitlements,
            {
                MAIN: {
                    "alice": Entitlement(1000.0, Shares(10.0, 50.0)),
                    "bob": Entitlement(1000.0, Shares()),
                }
            },
        )

    def test_balancer(self) -> None:
        """
        Behind a balancer of two such credentials, each credential's file
        records the users the balancer serves, against the pool's 2000
        units.
        """
        alice = dataclasses.replace(ALICE, share_5h=10.0)
        harness = ProxyHarness(self, users=(alice, BOB), balancer="least_used")
        entitlements = share_view(harness).entitlements()
        self.assertEqual(sorted(entitlements), sorted([MAIN, SECOND]))
        for tag in (MAIN, SECOND):
            self.assertEqual(entitlements[tag]["alice"], Entitlement(2000.0, Shares(five_hour=10.0)))
            self.assertEqual(entitlements[tag]["bob"], Entitlement(2000.0, Shares()))
