"""
Tests for :obj:`ccm.pool.member`: when a credential of a pool can serve, what a
pool answers when none can, and the members' combined status.
"""

from __future__ import annotations

import os

from ccm.pool.member import PoolMember, exhausted_error, pool_status
from ccm.pool.serving import Unusable
from tests.pool.poolcase import HOUR, NOW, PoolTestCase, headers


class MemberStateTests(PoolTestCase):
    """
    :obj:`PoolMember.state`: loaded, not rate-limited, under both thresholds.
    """

    def test_usable(self) -> None:
        """
        A loaded credential with no reported use is usable.
        """
        [member] = self.members("a")
        self.assertTrue(member.state(NOW).usable)

    def test_unavailable(self) -> None:
        """
        A credential whose file is gone is not usable, and says why.
        """
        [member] = self.members("a")
        os.remove(member.credential.store.path)
        member.credential.reload()
        state = member.state(NOW)
        self.assertFalse(state.usable)
        self.assertIn("does not exist", state.description)

    def test_paused_at_threshold(self) -> None:
        """
        A credential pauses when a window's utilization reaches its cap
        (100 minus the reserve), until that window resets.
        """
        member = PoolMember(self.credential("a"), cap_5h=80, cap_weekly=90)
        limits = member.credential.rate_limits
        limits.observe(headers(**{"5h_utilization": "0.79", "5h_reset": str(int(NOW + HOUR))}), NOW)
        self.assertTrue(member.state(NOW).usable)
        limits.observe(headers(**{"5h_utilization": "0.80", "5h_reset": str(int(NOW + HOUR))}), NOW)
        state = member.state(NOW)
        self.assertFalse(state.usable)
        self.assertIn("paused at its 5-hour threshold (80% used, pauses at 80%)", state.description)
        self.assertEqual(state.until, NOW + HOUR)
        limits.observe(headers(**{"7d_utilization": "0.95"}), NOW)
        limits.observe(headers(**{"5h_utilization": "0.01", "5h_reset": str(int(NOW + 6 * HOUR))}), NOW)
        self.assertIn("weekly threshold", member.state(NOW).description)

    def test_hard_limit_from_429(self) -> None:
        """
        A 429 with the unified headers makes the credential unusable until
        the binding window resets (claim ``five_hour`` or ``5h``); the limit
        clears itself at that time.
        """
        [member] = self.members("a")
        limits = member.credential.rate_limits
        until = limits.observe_rejection(
            headers(
                status="rejected",
                representative_claim="five_hour",
                **{"5h_reset": str(int(NOW + 2 * HOUR)), "5h_utilization": "1.0"},
            ),
            NOW,
        )
        self.assertEqual(until, NOW + 2 * HOUR)
        state = member.state(NOW + HOUR)
        self.assertFalse(state.usable)
        self.assertIs(state.reason, Unusable.RATE_LIMITED_5H)
        self.assertIn("rate-limited (5-hour window) until", state.description)
        # A poll started before the 429 finds the window open: stale, the
        # limit still holds.
        limits.apply_poll((0.0, 0.0), None, NOW + HOUR, started=NOW - 1)
        self.assertFalse(member.state(NOW + HOUR).usable)
        self.assertTrue(member.state(NOW + 2 * HOUR).usable)
        # Its time passed, a limit reads as over, however often it is read.
        self.assertTrue(member.state(NOW + 2 * HOUR).usable)
        self.assertFalse(limits.is_limited(NOW + 2 * HOUR))
        self.assertTrue(limits.is_limited(NOW + HOUR))

    def test_weekly_claim_and_fallbacks(self) -> None:
        """
        A weekly claim (``seven_day_opus``, ``7d``) uses the weekly reset;
        without a usable claim reset the overall reset, then ``retry-after``,
        then one minute.
        """
        limits = self.credential("a").rate_limits
        self.assertEqual(
            limits.observe_rejection(
                headers(status="rejected", representative_claim="seven_day_opus",
                        **{"7d_reset": str(int(NOW + 50 * HOUR))}),
                NOW,
            ),
            NOW + 50 * HOUR,
        )
        limits = self.credential("b").rate_limits
        self.assertEqual(
            limits.observe_rejection(
                headers(status="rejected", reset=str(int(NOW + 300))), NOW
            ),
            NOW + 300,
        )
        limits = self.credential("c").rate_limits
        self.assertEqual(
            limits.observe_rejection(
                headers(status="rejected", representative_claim="5h", retry_after="42"), NOW
            ),
            NOW + 42,
        )
        limits = self.credential("d").rate_limits
        self.assertEqual(
            limits.observe_rejection(
                headers(status="rejected", representative_claim="five_hour",
                        **{"5h_reset": "garbage"}),
                NOW,
            ),
            NOW + 60,
        )

    def test_transient_throttle(self) -> None:
        """
        A 429 without unified headers is a passing throttle: it does not
        limit the credential.
        """
        [member] = self.members("a")
        self.assertIsNone(
            member.credential.rate_limits.observe_rejection(headers(retry_after="5"), NOW)
        )
        self.assertTrue(member.state(NOW).usable)

    def test_allowed_response_clears_limit(self) -> None:
        """
        A later response saying the window is open again lifts a hard
        limit before its reset time.
        """
        [member] = self.members("a")
        limits = member.credential.rate_limits
        limits.observe_rejection(
            headers(status="rejected", representative_claim="five_hour",
                    **{"5h_reset": str(int(NOW + 2 * HOUR))}),
            NOW,
        )
        self.assertFalse(member.state(NOW).usable)
        limits.observe(headers(status="allowed"), NOW + 60)
        self.assertTrue(member.state(NOW + 60).usable)


    def test_pause_heals_when_the_window_resets(self) -> None:
        """
        A credential paused at its 5-hour cap can serve again once that
        window's reset time has passed, with no poll or header; the state
        log says once that it is usable again.
        """
        [member] = self.members("a")
        member.credential.rate_limits.observe(
            headers(**{"5h_utilization": "1.0", "5h_reset": str(int(NOW + HOUR))}), NOW
        )
        self.assertIs(member.observe(NOW).reason, Unusable.PAUSED_5H)
        self.assertIs(member.observe(NOW + HOUR - 1).reason, Unusable.PAUSED_5H)
        self.assertTrue(member.observe(NOW + HOUR).usable)
        self.assertTrue(member.observe(NOW + HOUR + 1).usable)
        self.assertEqual(self.logged().count("credential a is usable again"), 1)
        # Nothing was changed by reading: the window as reported is kept.
        self.assertEqual(member.credential.rate_limits.five_hour.utilization, 100.0)

    def test_weekly_pause_heals_and_status_counts_it_empty(self) -> None:
        """
        A weekly pause ends at the weekly reset, and from then on the status
        counts that window as a new, empty one.
        """
        [member] = self.members("a")
        member.credential.rate_limits.observe(
            headers(**{"7d_utilization": "1.0", "7d_reset": str(int(NOW + 24 * HOUR))}), NOW
        )
        self.assertEqual(pool_status([member], NOW)["weekly_utilization"], 100.0)
        self.assertTrue(member.state(NOW + 24 * HOUR).usable)
        status = pool_status([member], NOW + 24 * HOUR)
        self.assertEqual((status["weekly_utilization"], status["weekly_reset"]), (1.0, 0))

    def test_poll_clears_limit(self) -> None:
        """
        A usage poll started after a 429 that finds its window open lets
        the credential serve again before the limit's time.
        """
        [member] = self.members("a")
        limits = member.credential.rate_limits
        limits.observe_rejection(
            headers(status="rejected", representative_claim="five_hour",
                    **{"5h_reset": str(int(NOW + 2 * HOUR))}),
            NOW,
        )
        limits.apply_poll((12.0, NOW + 5 * HOUR), None, NOW + 60, started=NOW + 59)
        self.assertTrue(member.state(NOW + 60).usable)


class ExhaustedErrorTests(PoolTestCase):
    """
    :obj:`exhausted_error`: what a pool answers when none of its members can
    serve, decided by why each cannot.
    """

    def test_none_loaded(self) -> None:
        """
        When no member is loaded the answer is a 503 that only a person can
        fix, naming each member's problem.
        """
        a, b = self.members("a", "b")
        for member in (a, b):
            os.remove(member.credential.store.path)
            member.credential.reload()
        error = exhausted_error([a, b], NOW)
        self.assertEqual((error.status, error.error_type), (503, "api_error"))
        self.assertEqual(error.headers, (("x-should-retry", "false"),))
        self.assertTrue(error.message.startswith("ccm cannot serve requests: a: unavailable: "))
        self.assertIn("; b: unavailable: ", error.message)

    def test_one_paused(self) -> None:
        """
        When one member is only paused, the answer is a 429 with the time
        to the earliest reset, however the other members' problems read.
        """
        a, b = self.members("a", "b")
        os.remove(a.credential.store.path)
        a.credential.reload()
        b.credential.rate_limits.observe(
            headers(**{"5h_utilization": "1.0", "5h_reset": str(int(NOW + 90))}), NOW
        )
        self.assertIs(b.state(NOW).reason, Unusable.PAUSED_5H)
        error = exhausted_error([a, b], NOW)
        self.assertEqual((error.status, error.error_type), (429, "rate_limit_error"))
        self.assertIn(("retry-after", "90"), error.headers)
        self.assertIn("b: paused at its 5-hour threshold (100% used, pauses at 99%)", error.message)

    def test_quarantined(self) -> None:
        """
        A quarantined member cannot serve, whatever its windows say; when
        every member is quarantined or unavailable the answer is the 503,
        naming each; with one only rate-limited, the 429.
        """
        a, b = self.members("a", "b")
        a.credential.standing.enter_quarantine("banned")
        self.assertIs(a.state(NOW).reason, Unusable.QUARANTINED)
        os.remove(b.credential.store.path)
        b.credential.reload()
        error = exhausted_error([a, b], NOW)
        self.assertEqual((error.status, error.error_type), (503, "api_error"))
        self.assertTrue(
            error.message.startswith(
                "ccm cannot serve requests: a: quarantined since 2026-09-21 14:13 UTC (0ms ago): "
                "banned; "
            )
        )
        self.assertIn("; b: unavailable: ", error.message)
        [c] = self.members("c")
        rejected = headers(
            status="rejected", representative_claim="five_hour", **{"5h_reset": str(int(NOW + 90))}
        )
        c.credential.rate_limits.observe_rejection(rejected, NOW)
        self.assertEqual(exhausted_error([a, c], NOW).status, 429)

    def test_observe_reports_to_the_credential_log(self) -> None:
        """
        :obj:`PoolMember.observe` gives the state, and the credential's state
        log hears of it: a new pause is logged.
        """
        [member] = self.members("a")
        member.credential.rate_limits.observe(headers(**{"7d_utilization": "0.995"}), NOW)
        state = member.observe(NOW)
        self.assertIs(state.reason, Unusable.PAUSED_WEEKLY)
        self.assertIn(
            "credential a is paused at its weekly threshold (100% used, pauses at 99%)",
            self.logged(),
        )


class PoolStatusTests(PoolTestCase):
    """
    :obj:`pool_status`: the figures of the status endpoint.
    """

    def test_status(self) -> None:
        """
        The status combines loaded members' headroom below their caps,
        weighted by plan.
        """
        a = PoolMember(self.credential("a", "pro", ""), cap_5h=80, cap_weekly=80)
        b = PoolMember(self.credential("b"))
        a.credential.rate_limits.observe(headers(**{"5h_utilization": "0.40"}), NOW)
        # Headroom 5h: a 80-40=40 (weight 1), b 99-0=99 (weight 10):
        # 100 - (40 + 990) / 11 = 6.36...; weekly: 100 - (80 + 990) / 11.
        status = pool_status([a, b], NOW)
        self.assertAlmostEqual(status["five_hour_utilization"], 100 - 1030 / 11)
        self.assertAlmostEqual(status["weekly_utilization"], 100 - 1070 / 11)
        self.assertEqual(status["plan_weight"], 11)
        self.assertEqual((status["five_hour_reset"], status["weekly_reset"]), (0, 0))

    def test_status_counts_unusable_as_full(self) -> None:
        """
        A member that cannot serve (rate-limited by a 429, paused at its
        threshold, or unavailable) counts as full in both windows, whatever
        figures it had, and leaves ``plan_weight``; the resets are the
        earliest ones, where a member that cannot serve resets in both
        windows when it can serve again.
        """
        a = PoolMember(self.credential("a", "pro", ""))
        b = PoolMember(self.credential("b"))
        c = PoolMember(self.credential("c", "max", "default_claude_max_5x"))
        a.credential.rate_limits.observe(
            headers(**{"5h_utilization": "0.10", "5h_reset": str(int(NOW + 4 * HOUR)),
                       "7d_utilization": "0.20", "7d_reset": str(int(NOW + 100 * HOUR))}),
            NOW,
        )
        b.credential.rate_limits.observe_rejection(
            headers(status="rejected", representative_claim="seven_day",
                    **{"5h_utilization": "0.30", "5h_reset": str(int(NOW + HOUR)),
                       "7d_reset": str(int(NOW + 50 * HOUR))}),
            NOW,
        )
        c.credential.rate_limits.observe(
            headers(**{"5h_utilization": "0.99", "5h_reset": str(int(NOW + 2 * HOUR))}), NOW
        )
        # Weights: a 1 (usable), b 10 (limited), c 5 (paused).  Only a has
        # headroom: 5-hour 99 - 10, weekly 99 - 20.
        status = pool_status([a, b, c], NOW)
        self.assertAlmostEqual(status["five_hour_utilization"], 100 - 89 / 16)
        self.assertAlmostEqual(status["weekly_utilization"], 100 - 79 / 16)
        self.assertEqual(status["plan_weight"], 1)
        # b's own 5-hour window resets in an hour, but b is limited for 50;
        # c serves again in 2 hours, and then its weekly headroom counts.
        self.assertEqual(status["five_hour_reset"], int(NOW + 2 * HOUR))
        self.assertEqual(status["weekly_reset"], int(NOW + 2 * HOUR))
        status = pool_status([a, b], NOW)
        self.assertEqual(status["five_hour_reset"], int(NOW + 4 * HOUR))
        self.assertEqual(status["weekly_reset"], int(NOW + 50 * HOUR))
        os.remove(a.credential.store.path)
        a.credential.reload()
        status = pool_status([a, b, c], NOW)
        self.assertEqual(
            (status["five_hour_utilization"], status["weekly_utilization"], status["plan_weight"]),
            (100.0, 100.0, 0.0),
        )

    def test_status_after_limit_ends(self) -> None:
        """
        Once a 429's limit is over, the member counts with its figures
        again.
        """
        [member] = self.members("a")
        member.credential.rate_limits.observe_rejection(
            headers(status="rejected", representative_claim="five_hour",
                    **{"5h_reset": str(int(NOW + HOUR))}),
            NOW,
        )
        self.assertEqual(pool_status([member], NOW)["five_hour_utilization"], 100.0)
        self.assertEqual(pool_status([member], NOW)["five_hour_reset"], int(NOW + HOUR))
        status = pool_status([member], NOW + HOUR)
        self.assertEqual(status["five_hour_utilization"], 1.0)
        self.assertEqual(status["plan_weight"], 10.0)
        self.assertEqual(status["five_hour_reset"], 0)


class AdminPauseTests(PoolTestCase):
    """
    A credential an admin paused (:obj:`ccm.credentials.credential.Credential.pause`).
    """

    def test_paused_by_admin(self) -> None:
        """
        A paused credential cannot serve, says who paused it and since
        when, and serves again once resumed; observers are told each time.
        """
        [member] = self.members("a")
        told: list[None] = []
        member.credential.subscribe(lambda: told.append(None))
        self.clock.advance(NOW - self.clock.seconds())
        member.credential.pause("root")
        member.credential.pause("other")
        state = member.state(NOW + 60)
        self.assertEqual(state.reason, Unusable.PAUSED_BY_ADMIN)
        self.assertEqual((state.by, state.since), ("root", NOW))
        self.assertIn("paused by admin root since", state.description)
        self.assertIn("(1m0s ago)", state.description)
        member.credential.resume()
        self.assertTrue(member.state(NOW).usable)
        self.assertEqual(len(told), 2)
