"""
Tests for how the proxy keeps a conversation's auxiliary calls and sub-agents
on its credential through a balancer of two (:obj:`ccm.pool.affinity`):
``count_tokens`` follows the session, ``cache_touch`` goes to the credential
that served the answer it names, and a sub-agent to its parent's.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from ccm.pool.affinity import REQUEST_IDLE_SECONDS, MemoryAffinityTable
from tests.proxy.messages import MESSAGE_BODY
from tests.proxyharness import (
    MAIN,
    SECOND,
    SECOND_ACCESS_TOKEN,
    START_TIME,
    FakeUpstreamResponse,
    ProxyHarness,
    ScriptedUpstream,
)

SESSION = "x-claude-code-session-id"
AGENT = "x-claude-code-agent-id"
PARENT = "x-claude-code-parent-agent-id"
JSON = {"content-type": "application/json"}


class AffinityHarnessCase(SynchronousTestCase):
    """
    A ``round_robin`` balancer over ``main`` and ``second`` in front of the
    fake API, which accepts both credentials' tokens.
    """

    def setUp(self) -> None:
        self.harness = ProxyHarness(self, balancer="round_robin")
        self.harness.fake.extra_access_tokens.add(SECOND_ACCESS_TOKEN)

    def served_by(self) -> str:
        """
        The credential whose token the last upstream request carried.
        """
        bearer = self.harness.fake.requests[-1].header("authorization") or ""
        return SECOND if bearer.endswith(SECOND_ACCESS_TOKEN) else MAIN

    def message(self, **headers: str) -> tuple[str, str]:
        """
        A finished ``POST /v1/messages`` with these headers.

        :return: the credential that served it and its ``request-id``.
        """
        response = self.harness.messages(MESSAGE_BODY, self.named(headers))
        self.assertEqual(response.code, 200)
        self.harness.body_of(response)
        [request_id] = response.headers.getRawHeaders("request-id")
        return self.served_by(), request_id

    def count_tokens(self, **headers: str) -> str:
        """
        A ``count_tokens`` with these headers and no metadata, as Claude
        Code sends it.

        :return: the credential that served it.
        """
        body = {"model": MESSAGE_BODY["model"], "messages": MESSAGE_BODY["messages"]}
        response = self.harness.response(
            "POST",
            "/v1/messages/count_tokens?beta=true",
            json.dumps(body).encode(),
            {**JSON, **self.named(headers)},
        )
        self.assertEqual(response.code, 200)
        self.harness.body_of(response)
        return self.served_by()

    def touch(self, request_id: Any, **headers: str) -> IResponse:
        """
        ``POST /v1/messages/cache_touch`` naming ``request_id``.
        """
        return self.harness.response(
            "POST",
            "/v1/messages/cache_touch?beta=true",
            json.dumps({"request_id": request_id}).encode(),
            {**JSON, **self.named(headers)},
        )

    def named(self, headers: dict[str, str]) -> dict[str, str]:
        """
        Keyword headers (``session``, ``agent``, ``parent``) by their names.
        """
        names = {"session": SESSION, "agent": AGENT, "parent": PARENT}
        return {names[key]: value for key, value in headers.items()}


class CountTokensTests(AffinityHarnessCase):
    """
    ``count_tokens`` goes to its session's credential.
    """

    def test_follows_the_session(self) -> None:
        """
        A ``count_tokens`` carrying the session header goes to the credential
        the session's messages are on; a burst of them (as ``/context``
        sends) stays there and does not move round robin along.
        """
        self.assertEqual(self.message(session="s1")[0], MAIN)
        self.assertEqual(self.message(session="s2")[0], SECOND)
        for _ in range(5):
            self.assertEqual(self.count_tokens(session="s2"), SECOND)
            self.assertEqual(self.count_tokens(session="s1"), MAIN)
        self.assertEqual(self.message(session="s3")[0], MAIN)

    def test_places_a_new_session(self) -> None:
        """
        A ``count_tokens`` that comes before its session's first message
        places the session, and the message follows it.
        """
        self.assertEqual(self.count_tokens(), MAIN)
        self.assertEqual(self.count_tokens(session="fresh"), SECOND)
        self.assertEqual(self.count_tokens(session="fresh"), SECOND)
        self.assertEqual(self.message(session="fresh")[0], SECOND)


class CacheTouchTests(AffinityHarnessCase):
    """
    ``cache_touch`` goes to the credential that served the request it names.
    """

    def test_goes_where_the_answer_was(self) -> None:
        """
        A touch is sent to the credential that served the named answer,
        whatever session it carries, and the API keeps that cache (200);
        the client gets the API's answer.
        """
        main, first_id = self.message(session="s1")
        second, second_id = self.message(session="s2")
        self.assertEqual((main, second), (MAIN, SECOND))
        for request_id, session, expected in [
            (first_id, "s2", MAIN),
            (second_id, "s1", SECOND),
            (first_id, "", MAIN),
        ]:
            headers = {"session": session} if session else {}
            response = self.touch(request_id, **headers)
            self.assertEqual(response.code, 200, request_id)
            self.assertEqual(json.loads(self.harness.body_of(response)), {})
            self.assertEqual(self.served_by(), expected)
            self.assertEqual(self.harness.fake.requests[-1].json(), {"request_id": request_id})

    def test_unknown_request(self) -> None:
        """
        A touch naming a request ccm did not answer through this pool gets
        ccm's own 404, and nothing is sent upstream.
        """
        self.message(session="s1")
        sent = len(self.harness.fake.requests)
        response = self.touch("req_never_seen", session="s1")
        error = self.harness.ccm_error(response, 404, "not_found_error")
        self.assertIn("prompt cache of request req_never_seen", error["message"])
        self.assertEqual(len(self.harness.fake.requests), sent)

    def test_credential_rate_limited(self) -> None:
        """
        While the credential holding the cache is rate-limited, a touch gets
        ccm's 429 with ``retry-after`` and is sent to no other credential.
        """
        _, request_id = self.message(session="s1")
        self.harness.credential.rate_limits.observe_rejection(
            rejected_headers(START_TIME + 900), START_TIME
        )
        sent = len(self.harness.fake.requests)
        response = self.touch(request_id, session="s1")
        error = self.harness.ccm_error(response, 429, "rate_limit_error")
        self.assertIn(f"request {request_id} is on credential {MAIN}", error["message"])
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["900"])
        self.assertEqual(len(self.harness.fake.requests), sent)

    def test_forgotten_when_idle(self) -> None:
        """
        Touches keep a request known past ``REQUEST_IDLE_SECONDS``; once
        neither served nor touched for that long, it is forgotten (404).
        """
        _, request_id = self.message(session="s1")
        for _ in range(3):
            self.harness.clock.advance(REQUEST_IDLE_SECONDS - 60)
            self.assertEqual(self.touch(request_id).code, 200)
        self.harness.clock.advance(REQUEST_IDLE_SECONDS)
        self.harness.ccm_error(self.touch(request_id), 404, "not_found_error")

    def test_forgotten_past_the_bound(self) -> None:
        """
        Past the table's size, the request least recently used is forgotten
        first.
        """
        self.patch(self.harness.pool, "_affinity", MemoryAffinityTable(max_requests=2))
        ids = [self.message(session=f"s{n}")[1] for n in range(3)]
        self.harness.ccm_error(self.touch(ids[0]), 404, "not_found_error")
        self.assertEqual(self.touch(ids[1]).code, 200)
        self.assertEqual(self.touch(ids[2]).code, 200)

    def test_without_request_id(self) -> None:
        """
        A touch whose body names no request is sent on by its session, and
        the API's own answer comes back.
        """
        self.assertEqual(self.message(session="s1")[0], MAIN)
        self.message(session="s2")
        response = self.touch(None, session="s2")
        self.assertEqual(response.code, 400)
        self.assertEqual(self.served_by(), SECOND)
        self.assertTrue(response.headers.getRawHeaders("request-id")[0].startswith("req_"))


class SubAgentTests(AffinityHarnessCase):
    """
    A sub-agent goes to its parent's credential, else its session's.
    """

    def test_follows_its_parent(self) -> None:
        """
        A sub-agent (``x-claude-code-agent-id``) started by an agent on one
        credential goes there, although its session is on the other; its
        later requests and its ``count_tokens`` stay there; a sub-agent whose
        parent ccm does not know goes to its session's credential.
        """
        self.assertEqual(self.message(agent="parent")[0], MAIN)
        self.assertEqual(self.message(session="s")[0], SECOND)
        self.assertEqual(self.message(session="s", agent="child", parent="parent")[0], MAIN)
        self.assertEqual(self.message(session="s", agent="child")[0], MAIN)
        self.assertEqual(self.count_tokens(session="s", agent="child"), MAIN)
        self.assertEqual(self.message(session="s", agent="other", parent="unknown")[0], SECOND)
        self.assertEqual(self.message(session="s")[0], SECOND)


def rejected_headers(reset: float) -> Headers:
    """
    The headers of a 429 out of quota in the 5-hour window until ``reset``.
    """
    return Headers(
        {
            b"anthropic-ratelimit-unified-status": [b"rejected"],
            b"anthropic-ratelimit-unified-representative-claim": [b"five_hour"],
            b"anthropic-ratelimit-unified-5h-reset": [str(int(reset)).encode()],
        }
    )


class UpstreamRefusesTouchTests(SynchronousTestCase):
    """
    A touch the credential answers with a 429 stays on that credential.
    """

    def setUp(self) -> None:
        self.upstream = ScriptedUpstream()
        self.harness = ProxyHarness(self, http_client=self.upstream, balancer="round_robin")

    def answer(self, index: int, response: FakeUpstreamResponse, body: bytes = b"") -> None:
        """
        Answer upstream call ``index`` with ``response`` and ``body``.
        """
        self.upstream.calls[index].result.callback(response)
        self.harness.flush()
        if response.protocol is not None:
            if body:
                response.protocol.dataReceived(body)
            response.protocol.connectionLost(Failure(ResponseDone()))
        self.harness.flush()

    def served_request(self) -> None:
        """
        A message served by ``main`` with ``request-id: req_1``.
        """
        d = self.harness.send(
            "POST", "/v1/messages", json.dumps(MESSAGE_BODY).encode(), {**JSON, SESSION: "s"}
        )
        self.answer(
            0,
            FakeUpstreamResponse(
                200, {b"content-type": [b"application/json"], b"request-id": [b"req_1"]}
            ),
            b"{}",
        )
        self.assertEqual(self.successResultOf(d).code, 200)

    def send_touch(self) -> Any:
        """
        Start a touch of ``req_1``.
        """
        return self.harness.send(
            "POST",
            "/v1/messages/cache_touch",
            json.dumps({"request_id": "req_1"}).encode(),
            {**JSON, SESSION: "s"},
        )

    def test_out_of_quota(self) -> None:
        """
        A 429 out of quota sets the credential aside and gets ccm's 429; the
        touch is not sent to the other credential.
        """
        self.served_request()
        d = self.send_touch()
        reset = str(int(START_TIME + 600)).encode()
        self.answer(
            1,
            FakeUpstreamResponse(
                429,
                {
                    b"content-type": [b"application/json"],
                    b"anthropic-ratelimit-unified-status": [b"rejected"],
                    b"anthropic-ratelimit-unified-representative-claim": [b"five_hour"],
                    b"anthropic-ratelimit-unified-5h-reset": [reset],
                },
                b"Too Many Requests",
            ),
        )
        self.assertEqual(len(self.upstream.calls), 2)
        self.harness.ccm_error(self.successResultOf(d), 429, "rate_limit_error")
        self.assertTrue(self.harness.credential.rate_limits.is_limited(START_TIME + 10))

    def test_throttled(self) -> None:
        """
        A 429 without the unified headers (a passing throttle) is passed on
        unchanged, not tried elsewhere.
        """
        self.served_request()
        d = self.send_touch()
        throttle = FakeUpstreamResponse(
            429, {b"content-type": [b"application/json"], b"retry-after": [b"3"]}, b"Too Many"
        )
        self.answer(1, throttle, b'{"type":"error"}')
        self.assertEqual(len(self.upstream.calls), 2)
        response = self.successResultOf(d)
        self.assertEqual(response.code, 429)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["3"])
        self.assertEqual(self.harness.body_of(response), b'{"type":"error"}')
