"""
Tests for :obj:`ccm.shares.view`: every configured user's standing, as
the proxy decides on it.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.shares.ledger import FIVE_HOUR, WEEKLY
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
