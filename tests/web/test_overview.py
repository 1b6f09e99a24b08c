"""
Tests for :obj:`ccm.web.overview`: what the dashboard reads.
"""

from __future__ import annotations

from ccm.web.overview import read_overview
from tests.web.dashcase import NOW, DashboardCase


class OverviewTests(DashboardCase):
    """
    :obj:`read_overview` of a built service.
    """

    def sources(self):  # type: ignore[no-untyped-def]
        resource = self.service.site.resource
        return resource._tree.children[b"ccm"].children[b""]._sources

    def test_credentials_and_sessions(self) -> None:
        """
        Each credential is there in order with both windows, its pause
        thresholds and the sessions the balancer keeps on it.
        """
        self.service.user_pools.pools["pool"].select("s-1")
        overview = read_overview(self.sources(), NOW)
        self.assertEqual([c.tag for c in overview.credentials], ["a", "b"])
        first = overview.credentials[0]
        self.assertEqual([w.label for w in first.windows], ["5-hour", "weekly"])
        self.assertEqual(first.windows[0].cap, 99)
        self.assertEqual([sid for sid, _ in first.sessions], ["s-1"])
        self.assertEqual(overview.credentials[1].sessions, ())

    def test_users(self) -> None:
        """
        Every configured user has a row, with nothing used.
        """
        overview = read_overview(self.sources(), NOW)
        self.assertEqual(sorted(u.name for u in overview.users), ["bob", "root"])
        self.assertEqual(overview.users[0].week.requests, 0)
