"""
Tests for the ``extra_usage`` setting as pools apply it
(:obj:`ccm.pool.member`, :obj:`ccm.pool.select`): under ``never`` a
credential the upstream says draws on paid extra usage is paused and its
sessions move; under ``allow`` it serves on, last.
"""

from __future__ import annotations

from twisted.web.http_headers import Headers

from ccm.pool.member import PoolMember, exhausted_error, pool_status
from ccm.pool.select import BalancerPool, SingleCredentialPool
from ccm.pool.serving import Unusable
from ccm.web.errors import APIError
from tests.pool.poolcase import HOUR, NOW, PoolTestCase, headers

NEVER_WORDS = "paused: would draw on paid extra usage (extra_usage: never)"


def drawing(five_hour_reset: float) -> Headers:
    """
    The headers of an answer served from extra usage: the 5-hour window
    used up and rejected, extra usage allowed and in use.
    """
    return headers(
        status="rejected",
        representative_claim="five_hour",
        overage_status="allowed",
        overage_in_use="true",
        **{"5h_status": "rejected", "5h_utilization": "1.0", "5h_reset": str(int(five_hour_reset))},
    )


def full(five_hour_reset: float, overage_status: str) -> Headers:
    """
    An answer with the 5-hour window used up, and extra usage in
    ``overage_status``, not in use.
    """
    return headers(
        status="allowed_warning",
        overage_status=overage_status,
        **{"5h_utilization": "1.0", "5h_reset": str(int(five_hour_reset))},
    )


class NeverTests(PoolTestCase):
    """
    ``extra_usage: never`` (the default): the upstream's word that the
    credential draws on extra usage pauses it.
    """

    def test_drawing_pauses_until_the_reset(self) -> None:
        """
        An answer served from extra usage pauses the credential until the
        used-up window resets, in words that say why; at the reset it is
        usable again, and the state log said both once.
        """
        [member] = self.members("a")
        member.credential.rate_limits.observe_success(drawing(NOW + 2 * HOUR), NOW)
        state = member.observe(NOW)
        self.assertIs(state.reason, Unusable.PAUSED_EXTRA_USAGE)
        self.assertEqual(state.until, NOW + 2 * HOUR)
        self.assertTrue(state.description.startswith(NEVER_WORDS + " until "), state.description)
        self.assertIs(member.observe(NOW + 2 * HOUR - 1).reason, Unusable.PAUSED_EXTRA_USAGE)
        self.assertTrue(member.observe(NOW + 2 * HOUR).usable)
        logged = self.logged()
        self.assertEqual(len([l for l in logged if l.startswith("credential a is " + NEVER_WORDS)]), 1)
        self.assertEqual(logged.count("credential a is usable again"), 1)

    def test_pause_without_full_windows(self) -> None:
        """
        ``overage-in-use: true`` pauses even when no window reads as full
        (a sub-budget, say), for an hour when no reset is known.
        """
        [member] = self.members("a")
        member.credential.rate_limits.observe_success(
            headers(status="allowed", overage_status="allowed", overage_in_use="true"), NOW
        )
        state = member.state(NOW)
        self.assertIs(state.reason, Unusable.PAUSED_EXTRA_USAGE)
        self.assertEqual(state.until, NOW + HOUR)

    def test_third_party_refusal_pauses(self) -> None:
        """
        The third-party refusal pauses the credential until the 5-hour
        reset, in its own words.
        """
        [member] = self.members("a")
        limits = member.credential.rate_limits
        limits.observe(headers(**{"5h_utilization": "0.3", "5h_reset": str(int(NOW + HOUR))}), NOW)
        self.assertEqual(limits.observe_extra_usage_refusal(NOW), NOW + HOUR)
        state = member.state(NOW)
        self.assertIs(state.reason, Unusable.PAUSED_THIRD_PARTY)
        self.assertEqual(state.until, NOW + HOUR)
        self.assertIn("third-party traffic (extra_usage: never) until", state.description)
        self.assertTrue(member.state(NOW + HOUR).usable)

    def test_used_up_window_pauses_at_full_cap(self) -> None:
        """
        With a threshold of 100%, a used-up window pauses the credential,
        however available extra usage is.
        """
        member = PoolMember(self.credential("a"), cap_5h=100, cap_weekly=100)
        member.credential.rate_limits.observe(full(NOW + HOUR, "allowed"), NOW)
        state = member.state(NOW)
        self.assertIs(state.reason, Unusable.PAUSED_5H)
        self.assertEqual(state.until, NOW + HOUR)

    def test_a_429_limit_comes_first(self) -> None:
        """
        A 429's limit, in force, is what the state says, before a pause for
        extra usage.
        """
        [member] = self.members("a")
        limits = member.credential.rate_limits
        limits.observe_success(drawing(NOW + 2 * HOUR), NOW)
        limits.observe_rejection(
            headers(status="rejected", representative_claim="five_hour",
                    **{"5h_reset": str(int(NOW + HOUR))}),
            NOW,
        )
        self.assertIs(member.state(NOW).reason, Unusable.RATE_LIMITED_5H)
        self.assertIs(member.state(NOW + HOUR).reason, Unusable.PAUSED_EXTRA_USAGE)

    def test_every_member_paused(self) -> None:
        """
        When every member is paused for extra usage, the pool's answer is a
        429 with the time to the earliest end, naming each pause, and the
        status counts the pool as full.
        """
        a, b = self.members("a", "b")
        a.credential.rate_limits.observe_success(drawing(NOW + 2 * HOUR), NOW)
        b.credential.rate_limits.observe_extra_usage_refusal(NOW)
        error = exhausted_error([a, b], NOW)
        self.assertEqual((error.status, error.error_type), (429, "rate_limit_error"))
        self.assertIn(("retry-after", "3600"), error.headers)
        self.assertIn(("x-should-retry", "false"), error.headers)
        self.assertIn("a: " + NEVER_WORDS + " until", error.message)
        self.assertIn("b: paused: the upstream bills its requests to paid extra usage", error.message)
        status = pool_status([a, b], NOW)
        self.assertEqual((status["five_hour_utilization"], status["plan_weight"]), (100.0, 0.0))

    def test_session_moves(self) -> None:
        """
        A session on a credential that starts drawing on extra usage moves
        to the other member.
        """
        a, b = self.members("a", "b")
        pool = BalancerPool("pool", [a, b], "least_used", self.clock)
        self.assertEqual(pool.select("s").tag, "a")
        a.credential.rate_limits.observe_success(drawing(NOW + 2 * HOUR), NOW)
        self.assertEqual(pool.select("s").tag, "b")
        self.assertTrue(any("moved from a" in line for line in self.logged()))


class AllowTests(PoolTestCase):
    """
    ``extra_usage: allow``: drawing on extra usage is fine, and balancers
    use such a credential only when no other can serve from its plan.
    """

    def member(self, tag: str, cap: float = 100) -> PoolMember:
        """
        A member allowed extra usage, with both thresholds at ``cap``: 100%
        unless a reserve or a limit is set.
        """
        return PoolMember(self.credential(tag), cap, cap, allow_extra_usage=True)

    def test_drawing_serves_on(self) -> None:
        """
        An answer served from extra usage leaves the credential usable,
        marked as drawing on it until the pause would have ended; the
        state log warns once.
        """
        member = self.member("a")
        member.credential.rate_limits.observe_success(drawing(NOW + 2 * HOUR), NOW)
        state = member.observe(NOW)
        self.assertTrue(state.usable)
        self.assertTrue(state.extra_usage)
        self.assertEqual(
            state.description, "usable, drawing on paid extra usage (extra_usage: allow)"
        )
        member.observe(NOW + 60)
        self.assertEqual(
            self.logged().count(
                "credential a is usable, drawing on paid extra usage (extra_usage: allow)"
            ),
            1,
        )
        state = member.observe(NOW + 2 * HOUR)
        self.assertEqual((state.usable, state.extra_usage), (True, False))
        self.assertIn("credential a serves from its plan again", self.logged())

    def test_refusal_is_no_pause(self) -> None:
        """
        The third-party refusal does not keep the credential from serving.
        """
        member = self.member("a")
        member.credential.rate_limits.observe_extra_usage_refusal(NOW)
        state = member.state(NOW)
        self.assertEqual((state.usable, state.extra_usage), (True, False))

    def test_full_cap_serves_past_the_plan_while_available(self) -> None:
        """
        With a threshold of 100%, a used-up window does not pause the
        credential while the upstream says extra usage is available
        (``allowed`` or ``allowed_warning``); it does when it is rejected,
        or when nothing was said about it.
        """
        for overage, usable in (("allowed", True), ("allowed_warning", True), ("rejected", False)):
            member = self.member(f"a-{overage}")
            member.credential.rate_limits.observe(full(NOW + HOUR, overage), NOW)
            state = member.state(NOW)
            self.assertEqual((state.usable, state.extra_usage), (usable, usable), overage)
        member = self.member("unknown")
        member.credential.rate_limits.observe(
            headers(**{"5h_utilization": "1.0", "5h_reset": str(int(NOW + HOUR))}), NOW
        )
        self.assertIs(member.state(NOW).reason, Unusable.PAUSED_5H)

    def test_lower_cap_still_pauses(self) -> None:
        """
        Below 100%, a threshold pauses as always: allowing extra usage
        does not spend the reserve.
        """
        member = self.member("a", cap=80)
        member.credential.rate_limits.observe(full(NOW + HOUR, "allowed"), NOW)
        self.assertIs(member.state(NOW).reason, Unusable.PAUSED_5H)

    def test_setting_changes_in_place(self) -> None:
        """
        The member judges the facts at each choice: changing the setting
        (as a reload does) takes effect at once, both ways.
        """
        member = self.member("a")
        member.credential.rate_limits.observe_success(drawing(NOW + 2 * HOUR), NOW)
        self.assertTrue(member.state(NOW).usable)
        member.allow_extra_usage = False
        self.assertIs(member.state(NOW).reason, Unusable.PAUSED_EXTRA_USAGE)
        member.allow_extra_usage = True
        self.assertTrue(member.state(NOW).usable)

    def test_balancer_prefers_the_plan(self) -> None:
        """
        A credential drawing on extra usage gets no new session while
        another serves from its plan, and its sessions move there; when
        none does, it serves.
        """
        a, b = self.member("a"), self.member("b")
        pool = BalancerPool("pool", [a, b], "fallback", self.clock)
        self.assertEqual(pool.select("s").tag, "a")
        a.credential.rate_limits.observe_success(drawing(NOW + 2 * HOUR), NOW)
        self.assertEqual(pool.select("s").tag, "b")
        self.assertEqual(pool.select("new").tag, "b")
        b.credential.rate_limits.observe_success(drawing(NOW + HOUR), NOW)
        self.assertEqual(pool.select("s").tag, "a")
        sticky = BalancerPool("sticky", [a, b], "least_used", self.clock)
        self.assertEqual(sticky.select("t").tag, "a")
        self.clock.advance(HOUR)
        # b serves from its plan again: t moves there, from a still drawing.
        self.assertEqual(sticky.select("t").tag, "b")

    def test_single_pool_serves(self) -> None:
        """
        A credential alone in its pool serves while it draws on extra
        usage; under ``never`` it would answer ccm's 429.
        """
        member = self.member("a")
        pool = SingleCredentialPool(member, self.clock)
        member.credential.rate_limits.observe_success(drawing(NOW + 2 * HOUR), NOW)
        self.assertEqual(pool.select("s").tag, "a")
        member.allow_extra_usage = False
        error = self.assertRaises(APIError, pool.select, "s")
        self.assertEqual(error.status, 429)
        self.assertIn(NEVER_WORDS, error.message)
