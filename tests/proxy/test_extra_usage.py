"""
Tests for extra usage through the proxy: the ``overage-*``, ``slow-*`` and
``grace-*`` headers reach the client as the upstream sent them, and an
answer served from paid extra usage pauses its credential under
``extra_usage: never`` (the next session goes to the other member) and
does not under ``allow``.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from ccm.pool.serving import Unusable
from tests.fake_anthropic import (
    FIVE_HOUR_SECONDS,
    allowed_unified_headers,
    client_rate_limit_headers,
    error_reply,
    overage_unified_headers,
    third_party_reply,
)
from tests.proxyharness import MAIN, SECOND, SECOND_ACCESS_TOKEN, ProxyHarness

MESSAGE_BODY = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}
NEVER_WORDS = "paused: would draw on paid extra usage (extra_usage: never)"
THIRD_PARTY = "Third-party apps now draw from your extra usage, not your plan limits"


class ClientHeadersTests(SynchronousTestCase):
    """
    Every ``overage-*``, ``slow-*`` and ``grace-*`` header Claude Code
    2.1.332 reads reaches the client with the upstream's value, byte for
    byte.
    """

    def setUp(self) -> None:
        self.harness = ProxyHarness(self)
        self.sent = client_rate_limit_headers(self.harness.clock.seconds())
        self.harness.fake.unified_headers = {
            **allowed_unified_headers(self.harness.clock.seconds()),
            **self.sent,
        }

    def assert_intact(self, response: IResponse) -> None:
        """
        ``response`` carries each header of :obj:`client_rate_limit_headers`
        once, with the value the upstream sent, as bytes.
        """
        for name, value in self.sent.items():
            self.assertEqual(
                response.headers.getRawHeaders(name.encode("ascii")),
                [value.encode("latin-1")],
                name,
            )

    def test_json_answer(self) -> None:
        """
        On a non-streaming 200.
        """
        response = self.harness.messages(MESSAGE_BODY)
        self.assertEqual(response.code, 200)
        self.assert_intact(response)
        self.harness.body_of(response)

    def test_stream(self) -> None:
        """
        On a streaming 200, before the body.
        """
        response = self.harness.messages(dict(MESSAGE_BODY, stream=True))
        self.assertEqual(response.code, 200)
        self.assert_intact(response)
        self.assertIn(b"message_stop", self.harness.body_of(response))

    def test_error_passed_on(self) -> None:
        """
        On an upstream error that passes through, the third-party refusal
        for one.
        """
        self.harness.fake.enqueue(
            error_reply(
                400,
                "invalid_request_error",
                THIRD_PARTY,
                headers={**allowed_unified_headers(self.harness.clock.seconds()), **self.sent},
            )
        )
        response = self.harness.messages(MESSAGE_BODY)
        self.assertEqual(response.code, 400)
        self.assert_intact(response)
        self.assertIn(THIRD_PARTY.encode("ascii"), self.harness.body_of(response))


class PoolTests(SynchronousTestCase):
    """
    A ``least_used`` pool over ``main`` and ``second``, where ``main``'s
    answers are served from paid extra usage (its 5-hour window used up).
    """

    def harness(self, main: str, second_full: bool = False) -> ProxyHarness:
        """
        The pool with ``main``'s ``extra_usage`` set to ``main``; when
        ``second_full``, ``second`` reports its 5-hour window used up too
        (and no extra usage).
        """
        harness = ProxyHarness(self, balancer="least_used", extra_usage={MAIN: main})
        fake = harness.fake
        now = harness.clock.seconds()
        fake.extra_access_tokens.add(SECOND_ACCESS_TOKEN)
        fake.unified_headers_by_token[fake.access_token] = overage_unified_headers(now)
        if second_full:
            fake.unified_headers_by_token[SECOND_ACCESS_TOKEN] = allowed_unified_headers(
                now, five_hour_utilization=1.0
            )
        return harness

    def ask(self, harness: ProxyHarness, session: str) -> IResponse:
        """
        One Messages request of Claude Code session ``session``, read to
        its end.
        """
        response = harness.messages(MESSAGE_BODY, {"x-claude-code-session-id": session})
        harness.body_of(response)
        return response

    def bearers(self, harness: ProxyHarness) -> list[str]:
        """
        Which credential each upstream Messages request used, by tag.
        """
        tags = {f"Bearer {harness.fake.access_token}": MAIN, f"Bearer {SECOND_ACCESS_TOKEN}": SECOND}
        return [
            tags[request.header("authorization") or ""]
            for request in harness.fake.requests
            if request.path.startswith("/v1/messages")
        ]

    def member_state(self, harness: ProxyHarness, tag: str) -> Any:
        [member] = [m for m in harness.pool.members if m.tag == tag]
        return member.state(harness.clock.seconds())

    def test_never_pauses_and_sessions_move(self) -> None:
        """
        Under ``never``, the first answer served from extra usage reaches
        the client as it came, then ``main`` is paused until its 5-hour
        reset, logged in words that say why; that session's next request
        and a new session go to ``second``.  After the reset, with the plan
        open again, ``main`` serves again.
        """
        harness = self.harness("never")
        first = self.ask(harness, "session-1")
        self.assertEqual(first.code, 200)
        self.assertEqual(
            first.headers.getRawHeaders("anthropic-ratelimit-unified-overage-in-use"), ["true"]
        )
        state = self.member_state(harness, MAIN)
        self.assertIs(state.reason, Unusable.PAUSED_EXTRA_USAGE)
        reset = int(harness.clock.seconds()) + FIVE_HOUR_SECONDS
        self.assertEqual(state.until, reset)
        self.assertEqual(self.ask(harness, "session-1").code, 200)
        self.assertEqual(self.ask(harness, "session-2").code, 200)
        self.assertEqual(self.bearers(harness), [MAIN, SECOND, SECOND])
        self.assertTrue(
            any(f"credential main is {NEVER_WORDS} until" in line for line in harness.log_texts())
        )
        harness.clock.advance(reset - harness.clock.seconds())
        harness.fake.unified_headers_by_token.clear()
        self.assertTrue(self.member_state(harness, MAIN).usable)
        self.ask(harness, "session-3")
        self.assertEqual(self.bearers(harness)[-1], MAIN)
        harness.assert_no_secrets_logged()

    def test_never_with_nothing_else(self) -> None:
        """
        Under ``never``, when the other member cannot serve either, the
        client gets ccm's 429 naming the pause, with the time to the reset.
        """
        harness = self.harness("never", second_full=True)
        self.ask(harness, "session-1")
        self.ask(harness, "session-1")
        self.assertEqual(self.bearers(harness), [MAIN, SECOND])
        response = harness.messages(MESSAGE_BODY, {"x-claude-code-session-id": "session-1"})
        error = harness.ccm_error(response, 429, "rate_limit_error")
        self.assertIn(f"main: {NEVER_WORDS} until", error["message"])
        self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])
        self.assertEqual(response.headers.getRawHeaders("retry-after"), [str(FIVE_HOUR_SECONDS)])

    def test_allow_serves_on(self) -> None:
        """
        Under ``allow``, ``main`` is not paused: once ``second`` turned out
        unable to serve, every request goes on being served by ``main``,
        from extra usage.
        """
        harness = self.harness("allow", second_full=True)
        self.ask(harness, "session-1")
        state = self.member_state(harness, MAIN)
        self.assertEqual((state.usable, state.extra_usage), (True, True))
        for session in ("session-1", "session-1", "session-2"):
            self.assertEqual(self.ask(harness, session).code, 200)
        self.assertEqual(self.bearers(harness), [MAIN, SECOND, MAIN, MAIN])
        self.assertTrue(
            any(
                "credential main is usable, drawing on paid extra usage (extra_usage: allow)"
                in line
                for line in harness.log_texts()
            )
        )

    def test_allow_prefers_the_plan(self) -> None:
        """
        Under ``allow``, while ``second`` can serve from its plan, new
        requests go there rather than spend extra usage.
        """
        harness = self.harness("allow")
        self.ask(harness, "session-1")
        self.ask(harness, "session-1")
        self.ask(harness, "session-2")
        self.assertEqual(self.bearers(harness), [MAIN, SECOND, SECOND])
        self.assertTrue(self.member_state(harness, MAIN).usable)

    def refused(self, main: str) -> tuple[ProxyHarness, IResponse]:
        """
        A ``fallback`` pool whose first request, on ``main`` (with
        ``extra_usage`` set to ``main``), is refused as third-party traffic.
        """
        harness = ProxyHarness(self, balancer="fallback", extra_usage={MAIN: main})
        harness.fake.extra_access_tokens.add(SECOND_ACCESS_TOKEN)
        harness.fake.enqueue(third_party_reply())
        return harness, self.ask(harness, "session-1")

    def test_third_party_refusal_pauses(self) -> None:
        """
        Under ``never``, Anthropic's 400 "Third-party apps now draw from
        your extra usage" reaches the client as it came, and pauses
        ``main`` until its 5-hour reset, so the next request goes to
        ``second``; at the reset ``main`` serves again.
        """
        harness, refused = self.refused("never")
        self.assertEqual(refused.code, 400)
        state = self.member_state(harness, MAIN)
        self.assertIs(state.reason, Unusable.PAUSED_THIRD_PARTY)
        self.assertEqual(state.until, int(harness.clock.seconds()) + FIVE_HOUR_SECONDS)
        self.assertEqual(self.ask(harness, "session-1").code, 200)
        self.assertEqual(self.bearers(harness), [MAIN, SECOND])
        harness.clock.advance(FIVE_HOUR_SECONDS)
        self.assertTrue(self.member_state(harness, MAIN).usable)
        self.ask(harness, "session-1")
        self.assertEqual(self.bearers(harness)[-1], MAIN)

    def test_third_party_refusal_allowed(self) -> None:
        """
        Under ``allow``, the same refusal reaches the client and pauses
        nothing: the next request goes to ``main`` again.
        """
        harness, refused = self.refused("allow")
        self.assertEqual(refused.code, 400)
        self.assertTrue(self.member_state(harness, MAIN).usable)
        self.ask(harness, "session-1")
        self.assertEqual(self.bearers(harness), [MAIN, MAIN])
