"""
Tests for :obj:`ccm.pool.standing`: one credential's standing as the status
endpoint shows it for a session, and when a pool's status next changes with
time alone.
"""

from __future__ import annotations

import os

from ccm.pool.member import PoolMember
from ccm.pool.serving import Unusable
from ccm.pool.standing import STATE_NAMES, credential_standing, next_change
from tests.pool.poolcase import HOUR, NOW, PoolTestCase, headers


class CredentialStandingTests(PoolTestCase):
    """
    :obj:`credential_standing` for each state a credential can be in.
    """

    def test_usable(self) -> None:
        """
        A usable credential: its state, no reason, its windows' own figures
        (not scaled to its thresholds), the thresholds and its plan weight.
        """
        member = PoolMember(self.credential("a"), cap_5h=80.0)
        member.credential.rate_limits.apply_poll(
            (42.0, NOW + HOUR), (7.0, NOW + 100 * HOUR), NOW
        )
        self.assertEqual(
            credential_standing(member, NOW),
            {
                "credential": "a",
                "state": "usable",
                "reason": None,
                "description": "usable",
                "unusable_until": 0,
                "quarantined_since": None,
                "five_hour_utilization": 42.0,
                "five_hour_reset": int(NOW + HOUR),
                "five_hour_cap": 80.0,
                "weekly_utilization": 7.0,
                "weekly_reset": int(NOW + 100 * HOUR),
                "weekly_cap": 99.0,
                "plan_weight": 10.0,
            },
        )

    def test_rate_limited(self) -> None:
        """
        A credential out of quota by a 429 says so, names the window, and
        when it serves again.
        """
        [member] = self.members("a")
        member.credential.rate_limits.observe_rejection(
            headers(status="rejected", representative_claim="five_hour",
                    **{"5h_reset": str(int(NOW + 100))}),
            NOW,
        )
        standing = credential_standing(member, NOW)
        self.assertEqual(
            (standing["state"], standing["reason"], standing["description"]),
            ("rate_limited", "rate_limited_5h", "rate-limited (5-hour window)"),
        )
        self.assertEqual(standing["unusable_until"], int(NOW + 100))

    def test_paused(self) -> None:
        """
        A credential paused at a threshold gives the figures of the pause
        in words, and the reset of its window as the end.
        """
        member = PoolMember(self.credential("a"), cap_weekly=50.0)
        member.credential.rate_limits.apply_poll(
            (10.0, NOW + HOUR), (60.0, NOW + 10 * HOUR), NOW
        )
        standing = credential_standing(member, NOW)
        self.assertEqual(
            (standing["state"], standing["reason"], standing["description"]),
            ("paused", "paused_weekly", "paused at its weekly threshold (60% used, pauses at 50%)"),
        )
        self.assertEqual(standing["unusable_until"], int(NOW + 10 * HOUR))

    def test_unavailable(self) -> None:
        """
        A credential whose file is gone is unavailable, with the problem in
        words and no time.
        """
        [member] = self.members("a")
        os.remove(member.credential.store.path)
        member.credential.reload()
        standing = credential_standing(member, NOW)
        self.assertEqual((standing["state"], standing["reason"]), ("unavailable", "unavailable"))
        description = standing["description"]
        assert isinstance(description, str)
        self.assertTrue(description.startswith("unavailable: "), description)
        self.assertIn("a.json", description)
        self.assertEqual(standing["unusable_until"], 0)

    def test_every_reason_named(self) -> None:
        """
        Every reason a credential cannot serve has a coarse state and a name
        of its own for programs, so no state of a session's credential
        breaks the status answer.
        """
        self.assertEqual(set(STATE_NAMES), {None, *Unusable})
        names = [name for _, name in STATE_NAMES.values()]
        self.assertEqual(len(names), len(set(names)))
        for coarse, _ in STATE_NAMES.values():
            self.assertIn(
                coarse, ("usable", "rate_limited", "paused", "unavailable", "quarantined")
            )

    def test_paused_for_extra_usage(self) -> None:
        """
        A credential paused because it would draw on paid extra usage reads
        as paused, named ``paused_extra_usage``, until the window resets.
        """
        [member] = self.members("a")
        member.credential.rate_limits.observe_success(
            headers(
                status="rejected",
                overage_status="allowed",
                overage_in_use="true",
                **{"5h_utilization": "1.0", "5h_reset": str(int(NOW + HOUR))},
            ),
            NOW,
        )
        standing = credential_standing(member, NOW)
        self.assertEqual(
            (standing["state"], standing["reason"]), ("paused", "paused_extra_usage")
        )
        self.assertEqual(standing["unusable_until"], int(NOW + HOUR))

    def test_quarantined(self) -> None:
        """
        A banned credential reads as quarantined, with why in words, since
        when in Unix seconds (the time it was banned, however long ago),
        and no time at which it serves again: only a new login ends it.
        """
        [member] = self.members("a")
        member.credential.standing.enter_quarantine("the organization was disabled")
        self.clock.advance(2 * HOUR)
        standing = credential_standing(member, NOW + 2 * HOUR)
        self.assertEqual(standing["quarantined_since"], int(NOW))
        self.assertEqual((standing["state"], standing["reason"]), ("quarantined", "quarantined"))
        description = standing["description"]
        assert isinstance(description, str)
        self.assertTrue(
            description.startswith("quarantined: the organization was disabled; "), description
        )
        self.assertIn("claude /login", description)
        self.assertEqual(standing["unusable_until"], 0)
        # The start is a fixed time, so a watch's line does not change with
        # the clock.
        self.assertEqual(credential_standing(member, NOW + 3 * HOUR), standing)

    def test_since_only_when_quarantined(self) -> None:
        """
        ``quarantined_since`` is null in every other state, an admin's pause
        included, though that has a start too: it names a quarantine's.
        """
        [member] = self.members("a")
        member.credential.pause("root")
        standing = credential_standing(member, NOW)
        self.assertEqual(
            (standing["reason"], standing["quarantined_since"]), ("paused_by_admin", None)
        )

    def test_reset_passed(self) -> None:
        """
        Once a window's reset has passed, it reads as new and empty, and a
        pause on it is over.
        """
        [member] = self.members("a")
        member.credential.rate_limits.apply_poll((100.0, NOW + HOUR), None, NOW)
        self.assertEqual(credential_standing(member, NOW)["state"], "paused")
        later = credential_standing(member, NOW + HOUR)
        self.assertEqual(
            (later["state"], later["five_hour_utilization"], later["five_hour_reset"]),
            ("usable", 0.0, 0),
        )

    def test_words_do_not_change_with_time(self) -> None:
        """
        The words name no time, so the standing stays the same from one
        second to the next while nothing happens.
        """
        [member] = self.members("a")
        member.credential.rate_limits.observe_rejection(
            headers(status="rejected", representative_claim="five_hour",
                    **{"5h_reset": str(int(NOW + HOUR))}),
            NOW,
        )
        self.assertEqual(credential_standing(member, NOW), credential_standing(member, NOW + 61))


class NextChangeTests(PoolTestCase):
    """
    :obj:`next_change`: the earliest moment at which time alone changes the
    status of some members.
    """

    def test_nothing_due(self) -> None:
        """
        Fresh credentials, with no reset known, change with nothing.
        """
        self.assertIsNone(next_change(self.members("a", "b"), NOW))

    def test_earliest_reset(self) -> None:
        """
        The earliest window reset among the members, passed ones left out.
        """
        a, b = self.members("a", "b")
        a.credential.rate_limits.apply_poll((10.0, NOW + 3 * HOUR), (10.0, NOW + 90 * HOUR), NOW)
        b.credential.rate_limits.apply_poll((10.0, NOW + 2 * HOUR), None, NOW)
        self.assertEqual(next_change([a, b], NOW), NOW + 2 * HOUR)
        self.assertEqual(next_change([a, b], NOW + 2 * HOUR), NOW + 3 * HOUR)
        self.assertEqual(next_change([a, b], NOW + 3 * HOUR), NOW + 90 * HOUR)
        self.assertIsNone(next_change([a, b], NOW + 90 * HOUR))

    def test_end_of_limit(self) -> None:
        """
        A 429's limit that ends before any window's reset is the next
        change.
        """
        [a] = self.members("a")
        a.credential.rate_limits.apply_poll((10.0, NOW + 3 * HOUR), None, NOW)
        a.credential.rate_limits.observe_rejection(
            headers(status="rejected", retry_after="60"), NOW
        )
        self.assertEqual(next_change([a], NOW), NOW + 60)
