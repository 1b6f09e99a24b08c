"""
Tests for :obj:`ccm.pool.select`: how pools choose among their credentials.
"""

from __future__ import annotations

import os
import random

from ccm.pool.select import BalancerPool, Pool, PoolMember, SingleCredentialPool
from ccm.pool.sessions import MemorySessionTable
from ccm.web.errors import APIError
from tests.pool.poolcase import HOUR, NOW, PoolTestCase, headers


class SingleCredentialPoolTests(PoolTestCase):
    """
    A pool of one credential.
    """

    def test_serves_while_usable(self) -> None:
        """
        The credential serves while usable; rate-limited it gives a 429
        with ``retry-after`` and ``x-should-retry: false`` naming its state;
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

    def test_limit_logged_once_while_it_lasts(self) -> None:
        """
        A rate-limited credential is logged once, not again as the time to
        its reset counts down.
        """
        [member] = self.members("limited")
        pool = SingleCredentialPool(member, self.clock)
        member.credential.rate_limits.observe_rejection(
            headers(status="rejected", representative_claim="five_hour",
                    **{"5h_reset": str(int(NOW + 2 * HOUR))}),
            NOW,
        )
        self.assertRaises(APIError, pool.select, "")
        self.clock.advance(HOUR)
        self.assertRaises(APIError, pool.select, "")
        limited = [line for line in self.logged() if "credential limited is rate-limited" in line]
        self.assertEqual(len(limited), 1)
        self.clock.advance(HOUR)
        pool.select("")
        self.assertIn("credential limited is usable again", self.logged())

    def test_unavailable_logged_once(self) -> None:
        """
        A credential whose file went away is logged as unavailable when the
        file is read, and not again when a request finds it so.
        """
        [member] = self.members("gone")
        pool = SingleCredentialPool(member, self.clock)
        os.remove(member.credential.store.path)
        member.credential.reload()
        self.assertRaises(APIError, pool.select, "")
        gone = [line for line in self.logged() if "credential gone is unavailable" in line]
        self.assertEqual(len(gone), 1)

    def test_state_log_belongs_to_the_credential(self) -> None:
        """
        Pools sharing a member (a credential's own pool and a balancer over
        it) log its change once; another credential with the same tag, as
        in a second service in the process, keeps its own record and logs
        too.
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

class PoolProtocolTests(PoolTestCase):
    """
    Both pools provide the :obj:`Pool` protocol the proxy and the status
    endpoint use.
    """

    def test_both_pools(self) -> None:
        """
        Each pool tells whether it balances, lists its members in order,
        serves a request and reports its status.
        """
        a, b = self.members("a", "b")
        pools: list[Pool] = [
            SingleCredentialPool(a, self.clock),
            BalancerPool("pool", [a, b], "fallback", self.clock),
        ]
        self.assertEqual([pool.is_balancer for pool in pools], [False, True])
        self.assertEqual([pool.members for pool in pools], [(a,), (a, b)])
        for pool in pools:
            self.assertIs(pool.select("s"), a.credential)
            self.assertEqual(pool.status()["plan_weight"], 10.0 * len(pool.members))


class BalancerPoolTests(PoolTestCase):
    """
    Pools over several credentials: strategies and sticky sessions.
    """

    def test_round_robin_and_stickiness(self) -> None:
        """
        Under ``round_robin`` new sessions go to the credentials in turn and
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
        Under ``least_used`` with a ``rebalance_threshold``, a session stays
        on its credential while its weekly utilization is at most that many
        points (divided by the plan weight) above the best pick's; beyond,
        it moves, with every other session on that credential, and the move
        is logged.
        """
        a = PoolMember(self.credential("a", "pro", ""))
        b = PoolMember(self.credential("b", "pro", ""))
        sessions = MemorySessionTable()
        pool = BalancerPool(
            "pool", [a, b], "least_used", self.clock, rebalance_threshold=10.0, sessions=sessions
        )
        self.assertEqual(pool.select("one").tag, "a")
        b.credential.rate_limits.observe(headers(**{"7d_utilization": "0.50"}), NOW)
        self.assertEqual(pool.select("two").tag, "a")
        a.credential.rate_limits.observe(headers(**{"7d_utilization": "0.55"}), NOW)
        # 5 points ahead of b: within the threshold, the sessions stay.
        self.assertEqual([pool.select("one").tag, pool.select("two").tag], ["a", "a"])
        a.credential.rate_limits.observe(headers(**{"7d_utilization": "0.61"}), NOW)
        # 11 points ahead: "one" moves, and "two" is placed anew too.
        self.assertEqual(pool.select("one").tag, "b")
        self.assertEqual(len(sessions), 1)
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
        Other strategies ignore ``rebalance_threshold``, and 0 (the default)
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
        ``least_used`` prefers weekly headroom times plan weight times the
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
        ``random`` picks among the usable credentials with the given
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
        ``fallback`` takes the first usable credential in order and goes back
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
        for member, reset in zip(members, (NOW + 500, NOW + 200)):
            member.credential.rate_limits.observe_rejection(
                headers(status="rejected", representative_claim="five_hour",
                        **{"5h_reset": str(int(reset))}),
                NOW,
            )
        error = self.assertRaises(APIError, pool.select, "")
        self.assertEqual(error.status, 429)
        self.assertIn(("retry-after", "200"), error.headers)
        self.assertIn("a: rate-limited", error.message)
        self.assertIn("b: rate-limited", error.message)

    def test_sessions_in_their_table(self) -> None:
        """
        A balancer keeps its sessions in the table it was given: a session
        the table already places (another process may have) stays there,
        and new placements are written to it.
        """
        sessions = MemorySessionTable()
        sessions.assign("elsewhere", "b", NOW - 60)
        pool = BalancerPool(
            "pool", self.members("a", "b"), "least_used", self.clock, sessions=sessions
        )
        self.assertEqual(pool.select("elsewhere").tag, "b")
        self.assertEqual(pool.select("new").tag, "a")
        self.assertEqual(sessions.credential_of("new", NOW), "a")
        self.assertEqual(len(sessions), 2)

    def test_sessions_expire(self) -> None:
        """
        A session unused for a day is forgotten.
        """
        sessions = MemorySessionTable()
        pool = BalancerPool(
            "pool", self.members("a", "b"), "round_robin", self.clock, sessions=sessions
        )
        pool.select("old")
        self.clock.advance(24 * HOUR + 1)
        pool.select("new")
        self.assertEqual(len(sessions), 1)
        self.assertIsNone(sessions.credential_of("old", self.clock.seconds()))


class ServingTests(PoolTestCase):
    """
    :obj:`Pool.serving`: which member a session is on, for the status
    endpoint, asked without placing or refreshing any session.
    """

    def test_single_credential(self) -> None:
        """
        A single credential serves every session, known or not, and is
        named even while it cannot serve.
        """
        [member] = self.members("a")
        pool = SingleCredentialPool(member, self.clock)
        self.assertIs(pool.serving("any"), member)
        os.remove(member.credential.store.path)
        member.credential.reload()
        self.assertIs(pool.serving("any"), member)

    def test_sticky_session(self) -> None:
        """
        A balancer names the member a session was placed on, and None for
        a session it never placed; asking places nothing, so round robin
        goes on where it was.
        """
        a, b = self.members("a", "b")
        sessions = MemorySessionTable()
        pool = BalancerPool("pool", [a, b], "round_robin", self.clock, sessions=sessions)
        self.assertIsNone(pool.serving("s1"))
        self.assertEqual(len(sessions), 0)
        pool.select("s1")
        pool.select("s2")
        self.assertIs(pool.serving("s1"), a)
        self.assertIs(pool.serving("s2"), b)
        self.assertIsNone(pool.serving("s3"))
        self.assertEqual(pool.select("s3").tag, "a")

    def test_session_on_unusable_member(self) -> None:
        """
        A session whose member cannot serve is still named on it (its next
        request moves it), and asking logs no state change, as a request
        would.
        """
        a, b = self.members("a", "b")
        pool = BalancerPool("pool", [a, b], "round_robin", self.clock)
        pool.select("s1")
        a.credential.rate_limits.observe(headers(**{"5h_utilization": "1.0"}), NOW)
        self.assertIs(pool.serving("s1"), a)
        self.assertEqual([line for line in self.logged() if "is paused" in line], [])

    def test_asking_keeps_no_session_alive(self) -> None:
        """
        A session asked about all day is still forgotten a day after its
        last request.
        """
        a, b = self.members("a", "b")
        pool = BalancerPool("pool", [a, b], "round_robin", self.clock)
        pool.select("s1")
        for _ in range(24):
            self.clock.advance(HOUR - 1)
            self.assertIs(pool.serving("s1"), a)
        self.clock.advance(24)
        self.assertIsNone(pool.serving("s1"))

    def test_fallback(self) -> None:
        """
        Under ``fallback``, which keeps no sessions, every session is on
        the first usable member, and on none when none is usable.
        """
        a, b = self.members("a", "b")
        pool = BalancerPool("pool", [a, b], "fallback", self.clock)
        self.assertIs(pool.serving("s1"), a)
        a.credential.rate_limits.observe(headers(**{"5h_utilization": "1.0"}), NOW)
        self.assertIs(pool.serving("s1"), b)
        b.credential.rate_limits.observe(headers(**{"5h_utilization": "1.0"}), NOW)
        self.assertIsNone(pool.serving("s1"))

    def test_member_removed_by_reload(self) -> None:
        """
        A session on a credential a reload took out of the balancer is on
        none.
        """
        a, b = self.members("a", "b")
        pool = BalancerPool("pool", [a, b], "round_robin", self.clock)
        pool.select("s1")
        pool.reconfigure([b], "round_robin", 0.0)
        self.assertIsNone(pool.serving("s1"))
