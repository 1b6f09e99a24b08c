"""
Tests for :obj:`ccm.pool.affinity`, and for how a balancer places auxiliary
calls and sub-agents with it (:obj:`ccm.pool.select.BalancerPool.place`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.pool.affinity import (
    AGENT_IDLE_SECONDS,
    MAX_ID_LENGTH,
    REQUEST_IDLE_SECONDS,
    Call,
    MemoryAffinityTable,
    call_of,
)
from ccm.pool.member import PoolMember
from ccm.pool.select import BalancerPool
from ccm.pool.sessions import MemorySessionTable
from ccm.web.errors import APIError
from tests.pool.poolcase import HOUR, NOW, PoolTestCase, headers


def request_headers(**values: str) -> Headers:
    """
    Request headers, named with ``_`` for ``-``.
    """
    return Headers(
        {name.replace("_", "-").encode(): [value.encode()] for name, value in values.items()}
    )


def message(session: str = "", agent: str = "", parent: str = "") -> Call:
    """
    A ``/v1/messages`` call.
    """
    return Call(session_id=session, agent_id=agent, parent_agent_id=parent, is_message=True)


def count_tokens(session: str = "", agent: str = "", parent: str = "") -> Call:
    """
    A ``count_tokens`` call (any call that is not a message).
    """
    return Call(session_id=session, agent_id=agent, parent_agent_id=parent)


def touch(request_id: str, session: str = "") -> Call:
    """
    A cache keepalive naming ``request_id``.
    """
    return Call(session_id=session, touches=request_id)


def answered(request_id: str) -> Headers:
    """
    The headers of an answer with ``request-id: request_id``.
    """
    return Headers({b"request-id": [request_id.encode()]})


class CallOfTests(SynchronousTestCase):
    """
    :obj:`call_of` reads what a request is placed by.
    """

    def test_message(self) -> None:
        """
        A ``POST /v1/messages`` is a message; its session, agent and parent
        agent come from Claude Code's headers.
        """
        call = call_of(
            b"POST",
            b"/v1/messages",
            request_headers(
                x_claude_code_session_id="s1",
                x_claude_code_agent_id="agent-b",
                x_claude_code_parent_agent_id="agent-a",
            ),
            {"model": "m"},
        )
        self.assertEqual(
            call,
            Call(session_id="s1", agent_id="agent-b", parent_agent_id="agent-a", is_message=True),
        )

    def test_auxiliary_calls(self) -> None:
        """
        ``count_tokens``, another method and another path are not messages;
        the session still comes from the header or from the body.
        """
        user_id = json.dumps({"device_id": "d", "account_uuid": "", "session_id": "s2"})
        body = {"metadata": {"user_id": user_id}}
        for method, path in [
            (b"POST", b"/v1/messages/count_tokens"),
            (b"GET", b"/v1/messages"),
            (b"GET", b"/v1/models"),
        ]:
            self.assertEqual(call_of(method, path, Headers(), body), Call(session_id="s2"), path)

    def test_cache_touch(self) -> None:
        """
        A ``POST /v1/messages/cache_touch`` touches the request id its body
        names; another path or method with that body touches nothing.
        """
        body = {"request_id": " req_011abc "}
        call = call_of(b"POST", b"/v1/messages/cache_touch", Headers(), body)
        self.assertEqual(call.touches, "req_011abc")
        self.assertFalse(call.is_message)
        self.assertEqual(call_of(b"GET", b"/v1/messages/cache_touch", Headers(), body).touches, "")
        self.assertEqual(call_of(b"POST", b"/v1/messages", Headers(), body).touches, "")

    def test_bad_request_ids(self) -> None:
        """
        A touch whose ``request_id`` is missing, not a string, blank or too
        long touches nothing (it is placed by its session, and the API
        answers it); so does a body ccm could not read.
        """
        path = b"/v1/messages/cache_touch"
        too_long = {"request_id": "r" * (MAX_ID_LENGTH + 1)}
        documents: list[dict[str, Any] | None] = [
            {}, {"request_id": 7}, {"request_id": "  "}, too_long, None
        ]
        for document in documents:
            self.assertEqual(call_of(b"POST", path, Headers(), document).touches, "", document)
        longest = {"request_id": "r" * MAX_ID_LENGTH}
        self.assertEqual(call_of(b"POST", path, Headers(), longest).touches, "r" * MAX_ID_LENGTH)

    def test_agent_headers_cleaned(self) -> None:
        """
        Agent ids are stripped; the first non-blank value counts, and an
        overlong one is ignored.
        """
        headers = Headers(
            {
                b"x-claude-code-agent-id": [b" ", b" agent-1 "],
                b"x-claude-code-parent-agent-id": [b"p" * (MAX_ID_LENGTH + 1)],
            }
        )
        call = call_of(b"POST", b"/v1/messages", headers, None)
        self.assertEqual((call.agent_id, call.parent_agent_id), ("agent-1", ""))


class MemoryAffinityTableTests(SynchronousTestCase):
    """
    :obj:`MemoryAffinityTable`: bounded by size and by idle time, on a clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def test_requests_expire_when_idle(self) -> None:
        """
        A request id is forgotten once unused for ``REQUEST_IDLE_SECONDS``
        (longer than the one-hour cache lifetime); remembering it again
        (a touch that kept its cache) starts the time anew.
        """
        self.assertGreater(REQUEST_IDLE_SECONDS, HOUR)
        table = MemoryAffinityTable()
        table.remember_request("req_1", "a", self.clock.seconds())
        table.remember_request("req_2", "b", self.clock.seconds())
        self.clock.advance(REQUEST_IDLE_SECONDS - 1)
        table.remember_request("req_2", "b", self.clock.seconds())
        self.assertEqual(table.request_credential("req_1", self.clock.seconds()), "a")
        self.clock.advance(1)
        self.assertIsNone(table.request_credential("req_1", self.clock.seconds()))
        self.assertEqual(table.request_credential("req_2", self.clock.seconds()), "b")
        self.clock.advance(REQUEST_IDLE_SECONDS)
        self.assertIsNone(table.request_credential("req_2", self.clock.seconds()))
        self.assertEqual(table.sizes, (0, 0))

    def test_requests_bounded(self) -> None:
        """
        Past ``max_requests`` the least recently used request ids go first.
        """
        table = MemoryAffinityTable(max_requests=2)
        now = self.clock.seconds()
        table.remember_request("req_1", "a", now)
        table.remember_request("req_2", "a", now + 1)
        table.remember_request("req_1", "a", now + 2)
        table.remember_request("req_3", "b", now + 3)
        self.assertEqual(table.sizes, (2, 0))
        self.assertIsNone(table.request_credential("req_2", now + 3))
        self.assertEqual(table.request_credential("req_1", now + 3), "a")
        self.assertEqual(table.request_credential("req_3", now + 3), "b")

    def test_agents_expire_and_are_bounded(self) -> None:
        """
        Sub-agents are forgotten after ``AGENT_IDLE_SECONDS`` unused, and
        past ``max_agents``, apart from the request ids.
        """
        table = MemoryAffinityTable(max_agents=1)
        now = self.clock.seconds()
        table.remember_request("agent-1", "b", now)
        table.remember_agent("agent-1", "a", now)
        self.assertEqual(table.agent_credential("agent-1", now), "a")
        self.assertEqual(table.request_credential("agent-1", now), "b")
        table.remember_agent("agent-2", "b", now)
        self.assertIsNone(table.agent_credential("agent-1", now))
        self.assertEqual(table.agent_credential("agent-2", now + AGENT_IDLE_SECONDS - 1), "b")
        self.assertIsNone(table.agent_credential("agent-2", now + AGENT_IDLE_SECONDS))
        self.assertEqual(table.sizes, (1, 0))


class PlacementTestCase(PoolTestCase):
    """
    A balancer over credentials ``a`` and ``b`` with its own tables.
    """

    def pool(self, strategy: str = "round_robin", **kwargs: Any) -> BalancerPool:
        """
        A balancer over ``a`` and ``b``; ``self.sessions`` and
        ``self.affinity`` are its tables.
        """
        self.sessions = MemorySessionTable()
        self.affinity = MemoryAffinityTable()
        self.a, self.b = self.members("a", "b")
        return BalancerPool(
            "pool",
            [self.a, self.b],
            strategy,
            self.clock,
            sessions=self.sessions,
            affinity=self.affinity,
            **kwargs,
        )

    def limit(self, member: PoolMember, seconds: float = 600) -> None:
        """
        Rate-limit ``member`` for ``seconds`` with a 429.
        """
        member.credential.rate_limits.observe_rejection(
            headers(
                status="rejected",
                representative_claim="five_hour",
                **{"5h_reset": str(int(self.clock.seconds() + seconds))},
            ),
            self.clock.seconds(),
        )


class AuxiliaryCallTests(PlacementTestCase):
    """
    ``count_tokens`` and other calls that are not messages follow their
    session.
    """

    def test_follows_the_session(self) -> None:
        """
        A ``count_tokens`` of a session goes to the credential the session
        is on, however many come, without taking round robin's turns.
        """
        pool = self.pool()
        self.assertEqual(pool.place(message("s1")).tag, "a")
        self.assertEqual(pool.place(message("s2")).tag, "b")
        for _ in range(5):
            self.assertEqual(pool.place(count_tokens("s2")).tag, "b")
            self.assertEqual(pool.place(count_tokens("s1")).tag, "a")
        self.assertEqual(pool.place(message("s3")).tag, "a")

    def test_places_an_unassigned_session(self) -> None:
        """
        A ``count_tokens`` of a session on no credential places the session
        with the strategy, as its first message would: the message and
        the other calls that follow land there too.
        """
        pool = self.pool()
        self.assertEqual(pool.place(count_tokens("fresh")).tag, "a")
        self.assertEqual(self.sessions.credential_of("fresh", NOW), "a")
        self.assertEqual(pool.place(count_tokens("fresh")).tag, "a")
        self.assertEqual(pool.place(message("fresh")).tag, "a")
        self.assertIn("session fresh assigned to credential a (round_robin)", self.logged())

    def test_without_session(self) -> None:
        """
        A ``count_tokens`` without a session is placed by the strategy, one
        by one, and remembered nowhere.
        """
        pool = self.pool()
        self.assertEqual([pool.place(count_tokens()).tag for _ in range(3)], ["a", "b", "a"])
        self.assertEqual(len(self.sessions), 0)

    def test_moves_only_when_unusable(self) -> None:
        """
        An auxiliary call never moves its session to rebalance, as the
        session's next message may; it moves only when the session's
        credential cannot serve.
        """
        pool = self.pool("least_used", rebalance_threshold=5)
        self.assertEqual(pool.place(message("s")).tag, "a")
        self.a.credential.rate_limits.observe(headers(**{"7d_utilization": "0.9"}), NOW)
        self.assertEqual(pool.place(count_tokens("s")).tag, "a")
        self.assertEqual(pool.place(message("s")).tag, "b")
        self.limit(self.b)
        self.assertEqual(pool.place(count_tokens("s")).tag, "a")
        self.assertEqual(self.sessions.credential_of("s", NOW), "a")


class CacheTouchTests(PlacementTestCase):
    """
    A cache keepalive goes to the credential that served the answer it
    names, and nowhere else.
    """

    def served(self, pool: BalancerPool, call: Call, request_id: str, status: int = 200) -> str:
        """
        Place ``call`` and let its credential answer with ``request_id``.

        :return: the credential's tag.
        """
        tag = pool.place(call).tag
        pool.served(call, tag, status, answered(request_id))
        return tag

    def test_goes_where_the_answer_was(self) -> None:
        """
        A touch goes to the credential that served the request it names,
        whatever its session says and under every strategy.
        """
        for strategy in ("round_robin", "least_used", "random", "fallback"):
            pool = self.pool(strategy)
            self.limit(self.a)
            self.assertEqual(self.served(pool, message("s"), "req_b"), "b")
            self.a.credential.rate_limits.observe_success(Headers(), NOW)
            self.sessions.assign("s2", "a", NOW)
            self.assertEqual(pool.place(touch("req_b", session="s2")).tag, "b", strategy)
            self.assertEqual(pool.place(touch("req_b")).tag, "b", strategy)

    def test_unknown_request(self) -> None:
        """
        A touch naming a request this pool did not serve (or whose answer
        was an error) is a 404 ``not_found_error``: no credential is
        asked, and no session is placed.
        """
        pool = self.pool()
        self.served(pool, message("s"), "req_failed", status=529)
        self.served(pool, count_tokens("s"), "req_counted")
        for request_id in ("req_nowhere", "req_failed", "req_counted"):
            error = self.assertRaises(APIError, pool.place, touch(request_id, session="s"))
            self.assertEqual((error.status, error.error_type), (404, "not_found_error"))
            self.assertIn(f"prompt cache of request {request_id}", error.message)
        self.assertRaises(APIError, pool.place, touch("req_nowhere", session="fresh"))
        self.assertIsNone(self.sessions.credential_of("fresh", NOW))

    def test_forgotten_when_idle(self) -> None:
        """
        A request id is forgotten when neither served nor touched for
        ``REQUEST_IDLE_SECONDS``; each successful touch keeps it.
        """
        pool = self.pool()
        self.served(pool, message("s"), "req_1")
        for _ in range(4):
            self.clock.advance(REQUEST_IDLE_SECONDS - 60)
            self.assertEqual(self.served(pool, touch("req_1"), "req_touch"), "a")
        self.clock.advance(REQUEST_IDLE_SECONDS - 60)
        pool.served(touch("req_1"), "a", 404, answered("req_touch"))
        self.clock.advance(60)
        error = self.assertRaises(APIError, pool.place, touch("req_1"))
        self.assertEqual(error.status, 404)

    def test_credential_cannot_serve(self) -> None:
        """
        When the credential holding the cache is rate-limited, the touch
        is a 429 with ``retry-after`` naming it, never sent to another
        credential; when it is not loaded, a 503.
        """
        pool = self.pool()
        self.served(pool, message("s"), "req_1")
        self.limit(self.a, seconds=300)
        error = self.assertRaises(APIError, pool.place, touch("req_1"))
        self.assertEqual((error.status, error.error_type), (429, "rate_limit_error"))
        self.assertIn(("retry-after", "300"), error.headers)
        self.assertIn(("x-should-retry", "false"), error.headers)
        self.assertIn("request req_1 is on credential a, which cannot serve now", error.message)
        self.assertIn("rate-limited", error.message)
        self.clock.advance(300)
        self.assertEqual(pool.place(touch("req_1")).tag, "a")
        os.remove(self.a.credential.store.path)
        self.a.credential.reload()
        error = self.assertRaises(APIError, pool.place, touch("req_1"))
        self.assertEqual((error.status, error.error_type), (503, "api_error"))
        self.assertIn("unavailable", error.message)

    def test_paused_or_tried(self) -> None:
        """
        A credential paused at its threshold does not take touches (its
        sessions move at their next message), nor one this request
        already tried.
        """
        pool = self.pool()
        self.served(pool, message("s"), "req_1")
        error = self.assertRaises(APIError, pool.place, touch("req_1"), exclude=["a"])
        self.assertEqual(error.status, 429)
        self.a.credential.rate_limits.observe(headers(**{"5h_utilization": "0.995"}), NOW)
        error = self.assertRaises(APIError, pool.place, touch("req_1"))
        self.assertEqual(error.status, 429)
        self.assertIn("paused", error.message)

    def test_credential_left_the_pool(self) -> None:
        """
        After a reload takes the credential out of the pool, its answers'
        caches cannot be reached through it: 404.
        """
        pool = self.pool()
        self.served(pool, message("s"), "req_1")
        pool.reconfigure([self.b], "round_robin", 0)
        error = self.assertRaises(APIError, pool.place, touch("req_1"))
        self.assertEqual(error.status, 404)

    def test_message_without_request_id(self) -> None:
        """
        An answer without a ``request-id`` header is not remembered.
        """
        pool = self.pool()
        call = message("s")
        pool.served(call, pool.place(call).tag, 200, Headers())
        self.assertEqual(self.affinity.sizes, (0, 0))


class SubAgentTests(PlacementTestCase):
    """
    A sub-agent stays on the credential it is on, else its parent's, else
    its session's.
    """

    def test_follows_its_parent(self) -> None:
        """
        A sub-agent's first request goes to its parent agent's credential
        rather than its session's; later ones stay where it is, also
        without the parent header.
        """
        pool = self.pool()
        self.assertEqual(pool.place(message(agent="parent")).tag, "a")
        self.assertEqual(pool.place(message("s")).tag, "b")
        self.assertEqual(pool.place(message("s", agent="child", parent="parent")).tag, "a")
        self.assertEqual(pool.place(message("s", agent="child")).tag, "a")
        self.assertEqual(pool.place(count_tokens("s", agent="child")).tag, "a")
        self.assertEqual(self.affinity.agent_credential("child", NOW), "a")
        self.assertEqual(self.sessions.credential_of("s", NOW), "b")

    def test_unknown_parent_follows_the_session(self) -> None:
        """
        A sub-agent whose parent is not known (the main conversation has no
        agent id) goes to its session's credential, and is remembered there.
        """
        pool = self.pool()
        self.assertEqual(pool.place(message("s")).tag, "a")
        self.assertEqual(pool.place(message("s", agent="child", parent="main")).tag, "a")
        self.assertEqual(self.affinity.agent_credential("child", NOW), "a")
        self.assertIsNone(self.affinity.agent_credential("main", NOW))

    def test_own_credential_first(self) -> None:
        """
        A sub-agent stays where its own cache is even when its parent has
        since been placed elsewhere.
        """
        pool = self.pool()
        self.assertEqual(pool.place(message(agent="parent")).tag, "a")
        self.assertEqual(pool.place(message("s", agent="child", parent="parent")).tag, "a")
        self.clock.advance(AGENT_IDLE_SECONDS - 1)
        pool.place(message("s", agent="child", parent="parent"))
        self.clock.advance(1)
        self.assertEqual(pool.place(message(agent="parent")).tag, "b")
        self.assertEqual(pool.place(message("s", agent="child", parent="parent")).tag, "a")

    def test_places_an_unassigned_session(self) -> None:
        """
        A sub-agent placed by its parent puts its session, when on no
        credential yet, on the same one, and the log says so.
        """
        pool = self.pool()
        pool.place(message("other"))
        self.assertEqual(pool.place(message(agent="parent")).tag, "b")
        self.assertEqual(pool.place(message("new", agent="child", parent="parent")).tag, "b")
        self.assertEqual(self.sessions.credential_of("new", NOW), "b")
        self.assertIn("session new assigned to credential b (with its agent)", self.logged())

    def test_moves_when_unusable(self) -> None:
        """
        When the credential of the sub-agent and its parent cannot serve,
        the sub-agent goes to its session's credential, and stays there.
        """
        pool = self.pool()
        self.assertEqual(pool.place(message(agent="parent")).tag, "a")
        self.assertEqual(pool.place(message("s")).tag, "b")
        self.assertEqual(pool.place(message("s", agent="child", parent="parent")).tag, "a")
        self.limit(self.a)
        self.assertEqual(pool.place(message("s", agent="child", parent="parent")).tag, "b")
        self.assertEqual(self.affinity.agent_credential("child", NOW), "b")
        self.clock.advance(600)
        self.assertEqual(pool.place(message("s", agent="child", parent="parent")).tag, "b")

    def test_not_under_fallback(self) -> None:
        """
        Under ``fallback`` a sub-agent goes, as every request, to the first
        usable credential.
        """
        pool = self.pool("fallback")
        self.limit(self.a, seconds=60)
        self.assertEqual(pool.place(message("s", agent="child")).tag, "b")
        self.clock.advance(60)
        self.assertEqual(pool.place(message("s", agent="child")).tag, "a")
