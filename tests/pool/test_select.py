"""
Tests for L{ccm.pool.select}: when a credential can serve, and how pools choose
among several.
"""

from __future__ import annotations

import json
import os
import random

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.credentials.file import CredentialFile
from ccm.credentials.credential import Credential
from ccm.web.errors import APIError
from ccm.pool.select import (
    BalancerPool,
    PoolMember,
    SingleCredentialPool,
    pool_status,
)

NOW = 1_790_000_000.0
HOUR = 3600.0


def headers(**values: str) -> Headers:
    """
    Unified rate-limit headers, named by their suffix with C{_} for C{-}.
    """
    result = Headers()
    for name, value in values.items():
        suffix = name.replace("_", "-")
        if name == "retry_after":
            result.addRawHeader("retry-after", value)
        else:
            result.addRawHeader("anthropic-ratelimit-unified-" + suffix, value)
    return result


class PoolTestCase(SynchronousTestCase):
    """
    Credentials over real files in a temporary directory, on a clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def credential(self, tag: str, plan: str = "max", tier: str = "default_claude_max_20x") -> Credential:
        """
        A loaded credential named C{tag} with a token valid for a day.
        """
        path = os.path.join(self.directory, tag + ".json")
        with open(path, "w") as handle:
            json.dump(
                {
                    "claudeAiOauth": {
                        "accessToken": f"sk-ant-oat01-{tag}",
                        "refreshToken": f"sk-ant-ort01-{tag}",
                        "expiresAt": int((NOW + 86400) * 1000),
                        "subscriptionType": plan,
                        "rateLimitTier": tier,
                    }
                },
                handle,
            )
        credential = Credential(tag, CredentialFile(path), lambda token: Deferred(), self.clock)
        credential.reload()
        return credential

    def members(self, *tags: str) -> list[PoolMember]:
        """
        Pool members for credentials named C{tags}, with default caps.
        """
        return [PoolMember(self.credential(tag)) for tag in tags]

    def logged(self) -> list[str]:
        """
        The formatted log messages so far.
        """
        return [formatEvent(e) for e in self.events]


class MemberStateTests(PoolTestCase):
    """
    L{PoolMember.state}: loaded, not rate-limited, under both thresholds.
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
        the binding window resets (claim C{five_hour} or C{5h}); the limit
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
        self.assertIn("rate-limited (5-hour window) until", state.description)
        limits.five_hour.utilization = 0
        self.assertTrue(member.state(NOW + 2 * HOUR).usable)

    def test_weekly_claim_and_fallbacks(self) -> None:
        """
        A weekly claim (C{seven_day_opus}, C{7d}) uses the weekly reset;
        without a usable claim reset the overall reset, then C{retry-after},
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


class SingleCredentialPoolTests(PoolTestCase):
    """
    A pool of one credential.
    """

    def test_serves_while_usable(self) -> None:
        """
        The credential serves while usable; rate-limited it gives a 429
        with C{retry-after} and C{x-should-retry: false} naming its state;
        unloaded it gives a 503.
        """
        [member] = self.members("a")
        pool = SingleCredentialPool(member, self.clock)
        self.assertIs(pool.select(""), member.credential)
        member.credential.rate_limits.observe_rejection(
            headers(status="rejected", representative_claim="five_hour",
                    **{"5h_reset": str(int(NOW + 100))}),
            NOW,
        )
        error = self.assertRaises(APIError, pool.select, "")
        self.assertEqual((error.status, error.error_type), (429, "rate_limit_error"))
        self.assertIn(("retry-after", "100"), error.headers)
        self.assertIn(("x-should-retry", "false"), error.headers)
        self.assertIn("a: rate-limited (5-hour window) until", error.message)
        os.remove(member.credential.store.path)
        member.credential.reload()
        error = self.assertRaises(APIError, pool.select, "")
        self.assertEqual(error.status, 503)

    def test_state_changes_logged_once(self) -> None:
        """
        Each change of a credential's state is logged once, with its reason,
        and its recovery too.
        """
        [member] = self.members("logged")
        pool = SingleCredentialPool(member, self.clock)
        member.credential.rate_limits.observe(headers(**{"5h_utilization": "0.99"}), NOW)
        for _ in range(3):
            self.assertRaises(APIError, pool.select, "")
        paused = [line for line in self.logged() if "credential logged is paused" in line]
        self.assertEqual(len(paused), 1)
        member.credential.rate_limits.apply_poll((10.0, NOW + HOUR), None, NOW)
        pool.select("")
        self.assertIn("credential logged is usable again", self.logged())


    def test_state_log_belongs_to_the_member(self) -> None:
        """
        Pools sharing a member (a credential's own pool and a balancer over
        it) log its change once; another member with the same tag, as in a
        second service in the process, keeps its own record and logs too.
        """
        [member] = self.members("shared")
        [other] = self.members("shared")
        single = SingleCredentialPool(member, self.clock)
        balancer = BalancerPool("pool", [member], "fallback", self.clock)
        elsewhere = SingleCredentialPool(other, self.clock)
        for limits in (member.credential.rate_limits, other.credential.rate_limits):
            limits.observe(headers(**{"5h_utilization": "0.99"}), NOW)
        self.assertRaises(APIError, single.select, "")
        self.assertRaises(APIError, balancer.select, "")
        paused = [line for line in self.logged() if "credential shared is paused" in line]
        self.assertEqual(len(paused), 1)
        self.assertRaises(APIError, elsewhere.select, "")
        paused = [line for line in self.logged() if "credential shared is paused" in line]
        self.assertEqual(len(paused), 2)

class BalancerPoolTests(PoolTestCase):
    """
    Pools over several credentials: strategies and sticky sessions.
    """

    def test_round_robin_and_stickiness(self) -> None:
        """
        Under C{round_robin} new sessions go to the credentials in turn and
        each session stays where it was assigned.
        """
        members = self.members("a", "b")
        pool = BalancerPool("pool", members, "round_robin", self.clock)
        first = pool.select("session-1")
        second = pool.select("session-2")
        self.assertEqual([first.tag, second.tag], ["a", "b"])
        for _ in range(3):
            self.assertIs(pool.select("session-1"), first)
            self.assertIs(pool.select("session-2"), second)

    def test_session_moves_only_when_unusable(self) -> None:
        """
        A session moves when its credential stops being usable, logs the
        move, and stays on the new one after the old one recovers.
        """
        members = self.members("a", "b")
        pool = BalancerPool("pool", members, "least_used", self.clock)
        self.assertEqual(pool.select("s").tag, "a")
        limits = members[0].credential.rate_limits
        limits.observe_rejection(
            headers(status="rejected", representative_claim="five_hour",
                    **{"5h_reset": str(int(NOW + 100))}),
            NOW,
        )
        self.assertEqual(pool.select("s").tag, "b")
        self.assertTrue(any("moved from a" in line for line in self.logged()))
        self.clock.advance(101)
        self.assertEqual(pool.select("s").tag, "b")

    def test_rebalance_threshold(self) -> None:
        """
        Under C{least_used} with a C{rebalance_threshold}, a session stays
        on its credential while its weekly utilization is at most that many
        points (divided by the plan weight) above the best pick's; beyond,
        it moves, with every other session on that credential, and the move
        is logged.
        """
        a = PoolMember(self.credential("a", "pro", ""))
        b = PoolMember(self.credential("b", "pro", ""))
        pool = BalancerPool("pool", [a, b], "least_used", self.clock, rebalance_threshold=10.0)
        self.assertEqual(pool.select("one").tag, "a")
        b.credential.rate_limits.observe(headers(**{"7d_utilization": "0.50"}), NOW)
        self.assertEqual(pool.select("two").tag, "a")
        a.credential.rate_limits.observe(headers(**{"7d_utilization": "0.55"}), NOW)
        # 5 points ahead of b: within the threshold, the sessions stay.
        self.assertEqual([pool.select("one").tag, pool.select("two").tag], ["a", "a"])
        a.credential.rate_limits.observe(headers(**{"7d_utilization": "0.61"}), NOW)
        # 11 points ahead: "one" moves, and "two" is placed anew too.
        self.assertEqual(pool.select("one").tag, "b")
        self.assertEqual(pool.session_count(), 1)
        self.assertEqual(pool.select("two").tag, "b")
        [line] = [line for line in self.logged() if "moving sessions" in line]
        self.assertIn("pool pool: moving sessions from credential a to b", line)
        self.assertIn("11.0 points higher, above the threshold of 10.0", line)
        self.assertTrue(any("session one assigned to credential b, moved from a" in t for t in self.logged()))

    def test_rebalance_threshold_scaled_by_plan(self) -> None:
        """
        The threshold is divided by the plan weight of the session's
        credential: on a Max 20x plan (weight 10) a threshold of 10 moves
        sessions once it is more than 1 point ahead.
        """
        a = PoolMember(self.credential("a"))
        b = PoolMember(self.credential("b"))
        pool = BalancerPool("pool", [a, b], "least_used", self.clock, rebalance_threshold=10.0)
        self.assertEqual(pool.select("s").tag, "a")
        a.credential.rate_limits.observe(headers(**{"7d_utilization": "0.01"}), NOW)
        self.assertEqual(pool.select("s").tag, "a")
        a.credential.rate_limits.observe(headers(**{"7d_utilization": "0.02"}), NOW)
        self.assertEqual(pool.select("s").tag, "b")

    def test_rebalance_only_under_least_used(self) -> None:
        """
        Other strategies ignore C{rebalance_threshold}, and 0 (the default)
        never moves a usable session.
        """
        for strategy, threshold in (("round_robin", 10.0), ("random", 10.0), ("least_used", 0.0)):
            a, b = self.members("a", "b")
            pool = BalancerPool("pool", [a, b], strategy, self.clock, random.Random(1), threshold)
            first = pool.select("s").tag
            busy = a if first == "a" else b
            busy.credential.rate_limits.observe(headers(**{"7d_utilization": "0.90"}), NOW)
            self.assertEqual(pool.select("s").tag, first, strategy)

    def test_least_used(self) -> None:
        """
        C{least_used} prefers weekly headroom times plan weight times the
        urgency of the weekly reset.
        """
        a = PoolMember(self.credential("a", "pro", ""))
        b = PoolMember(self.credential("b"))
        pool = BalancerPool("pool", [a, b], "least_used", self.clock)
        # Pro (weight 1) with 99 points of headroom scores 99; Max 20x
        # (weight 10) at 85% used has 14 points and scores 140.
        b.credential.rate_limits.observe(headers(**{"7d_utilization": "0.85"}), NOW)
        self.assertEqual(pool.select("").tag, "b")
        # At 92% it has 7 points, 70, and Pro's 99 wins.
        b.credential.rate_limits.observe(headers(**{"7d_utilization": "0.92"}), NOW)
        self.assertEqual(pool.select("").tag, "a")
        # Max 20x at 95% (4 points, 40) against Pro whose week resets in 2
        # hours (99 * 168 / 2 = 8316): the expiring capacity wins.
        b.credential.rate_limits.observe(headers(**{"7d_utilization": "0.95"}), NOW)
        a.credential.rate_limits.observe(
            headers(**{"7d_utilization": "0.0", "7d_reset": str(int(NOW + 2 * HOUR))}), NOW
        )
        self.assertEqual(pool.select("").tag, "a")

    def test_random(self) -> None:
        """
        C{random} picks among the usable credentials with the given
        random source.
        """
        members = self.members("a", "b", "c")
        pool = BalancerPool("pool", members, "random", self.clock, random.Random(7))
        picks = {pool.select("").tag for _ in range(30)}
        self.assertEqual(picks, {"a", "b", "c"})
        members[1].credential.rate_limits.observe(headers(**{"5h_utilization": "1.0"}), NOW)
        picks = {pool.select("").tag for _ in range(30)}
        self.assertEqual(picks, {"a", "c"})

    def test_fallback_returns_to_earlier(self) -> None:
        """
        C{fallback} takes the first usable credential in order and goes back
        to an earlier one as soon as it is usable again, sessions or not.
        """
        members = self.members("a", "b")
        pool = BalancerPool("pool", members, "fallback", self.clock)
        limits = members[0].credential.rate_limits
        limits.observe_rejection(
            headers(status="rejected", representative_claim="five_hour",
                    **{"5h_reset": str(int(NOW + 100))}),
            NOW,
        )
        self.assertEqual(pool.select("s").tag, "b")
        self.clock.advance(100)
        self.assertEqual(pool.select("s").tag, "a")

    def test_exclude_tried(self) -> None:
        """
        Credentials already tried for a request are not chosen again; when
        none is left the pool answers 429 naming each credential.
        """
        members = self.members("a", "b")
        pool = BalancerPool("pool", members, "round_robin", self.clock)
        self.assertEqual(pool.select("", exclude=["a"]).tag, "b")
        for member in members:
            member.credential.rate_limits.observe_rejection(
                headers(status="rejected", representative_claim="five_hour",
                        **{"5h_reset": str(int(NOW + 500))}),
                NOW,
            )
        members[1].credential.rate_limits.limited_until = NOW + 200
        error = self.assertRaises(APIError, pool.select, "")
        self.assertEqual(error.status, 429)
        self.assertIn(("retry-after", "200"), error.headers)
        self.assertIn("a: rate-limited", error.message)
        self.assertIn("b: rate-limited", error.message)

    def test_sessions_expire(self) -> None:
        """
        A session unused for a day is forgotten.
        """
        pool = BalancerPool("pool", self.members("a", "b"), "round_robin", self.clock)
        pool.select("old")
        self.clock.advance(24 * HOUR + 1)
        pool.select("new")
        self.assertEqual(pool.session_count(), 1)

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
        figures it had, and leaves C{plan_weight}; the resets are the
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
