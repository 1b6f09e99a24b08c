"""
Tests for :obj:`ccm.pool.plan`: the plan weight table.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.pool.plan import plan_weight


class PlanWeightTests(SynchronousTestCase):
    """
    :obj:`plan_weight` gives a plan's capacity relative to Pro.
    """

    def test_table(self) -> None:
        """
        Max 20x weighs 10, any other Max 5, Team with the 5x tier 5, and
        everything else (Pro, Team standard, Enterprise, unknown) 1.
        """
        cases = [
            ("max", "default_claude_max_20x", 10.0),
            ("max", "default_claude_max_5x", 5.0),
            ("max", "", 5.0),
            ("max", "something_new", 5.0),
            ("team", "default_claude_max_5x", 5.0),
            ("team", "default_claude_max_20x", 1.0),
            ("team", "", 1.0),
            ("pro", "default_claude_max_20x", 1.0),
            ("pro", "", 1.0),
            ("enterprise", "", 1.0),
            ("", "", 1.0),
        ]
        for subscription, tier, weight in cases:
            self.assertEqual(plan_weight(subscription, tier), weight, (subscription, tier))
