"""
The per-user limits in a whole service (:obj:`tests.proxyharness`): what
clients get from ``/v1/messages`` when a user's ``requests_per_minute`` or
``max_concurrent`` is reached, the queue's order, bound, timeout, leaving
clients and shutdown, and the reload.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from ccm.config.model import UserConfig
from ccm.limits.gate import QUEUE_WAIT_SECONDS
from tests.fake_anthropic import Reply, ReplyHandle, manual_reply, text_reply
from tests.proxy.messages import MESSAGE_BODY, STREAM_BODY
from tests.proxyharness import ALICE_TOKEN, BOB, BOB_TOKEN, ProxyHarness


def alice(**limits: int) -> UserConfig:
    """
    alice of the harness, with ``limits``.
    """
    return UserConfig("alice", ALICE_TOKEN, **limits)  # type: ignore[arg-type]


def message_posts(harness: ProxyHarness) -> int:
    """
    How many ``POST /v1/messages`` reached the upstream.
    """
    return sum(1 for r in harness.fake.requests if r.path.split("?")[0] == "/v1/messages")


def refusals(harness: ProxyHarness, user: str, limit: str) -> float | None:
    """
    The value of ``ccm_user_limit_refusals_total`` for ``user`` and ``limit``.
    """
    metrics = harness.service.metrics
    assert metrics is not None
    return metrics.registry.get_sample_value(
        "ccm_user_limit_refusals_total", {"user": user, "limit": limit}
    )


class RequestsPerMinuteTests(SynchronousTestCase):
    """
    Past ``requests_per_minute`` a user's generation gets a 429 saying
    when to retry; nothing goes upstream.
    """

    def setUp(self) -> None:
        self.harness = ProxyHarness(self, users=(alice(requests_per_minute=2), BOB))

    def test_refusal(self) -> None:
        """
        The third request in a minute is refused with an exact
        ``retry-after`` and ``x-should-retry: false``; count_tokens and the
        other user pass; a slot frees exactly when the first request
        leaves the window.
        """
        harness = self.harness
        for _ in range(2):
            harness.fake.enqueue(text_reply("ok"))
            self.assertEqual(harness.messages(MESSAGE_BODY).code, 200)
            harness.clock.advance(10)
        response = harness.messages(MESSAGE_BODY)
        error = harness.ccm_error(response, 429, "rate_limit_error")
        self.assertEqual(
            error["message"],
            "ccm: user alice reached the requests_per_minute limit of 2 "
            "(requests started in the last 60 s); retry in 40 s",
        )
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["40"])
        self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])
        self.assertEqual(message_posts(harness), 2)
        self.assertEqual(refusals(harness, "alice", "requests_per_minute"), 1)
        counted = harness.response(
            "POST", "/v1/messages/count_tokens", json.dumps(MESSAGE_BODY).encode(),
            {"content-type": "application/json"},
        )
        self.assertEqual(counted.code, 200)
        harness.fake.enqueue(text_reply("bob"))
        self.assertEqual(
            harness.response("POST", "/v1/messages", json.dumps(MESSAGE_BODY).encode(),
                             {"content-type": "application/json"}, token=BOB_TOKEN).code,
            200,
        )
        harness.clock.advance(39)
        self.assertEqual(harness.messages(MESSAGE_BODY).code, 429)
        harness.clock.advance(1)
        harness.fake.enqueue(text_reply("again"))
        self.assertEqual(harness.messages(MESSAGE_BODY).code, 200)
        self.assertTrue(
            any("refused a request of alice" in line for line in harness.log_texts())
        )
        harness.assert_no_secrets_logged()


class MaxConcurrentTests(SynchronousTestCase):
    """
    Past ``max_concurrent`` a user's generations wait in a short queue,
    first come first served, and are refused when it is full or the wait
    too long.
    """

    def setUp(self) -> None:
        self.harness = ProxyHarness(self, users=(alice(max_concurrent=1), BOB))

    def stream(self, token: str = ALICE_TOKEN) -> tuple[Reply, Deferred[Any]]:
        """
        Send a streaming request answered by a manual reply (used once it
        reaches the upstream).
        """
        reply = manual_reply()
        self.harness.fake.enqueue(reply)
        d = self.harness.send(
            "POST", "/v1/messages?beta=true", json.dumps(STREAM_BODY).encode(),
            {"content-type": "application/json"}, token=token,
        )
        return reply, d

    def answer(self, handle: ReplyHandle | None) -> None:
        """
        Answer and end a manual reply's stream.
        """
        assert handle is not None
        handle.start(content_type="text/event-stream")
        handle.event("message_stop", {"type": "message_stop"})
        handle.finish()
        self.harness.flush()

    def test_queue_order_and_bound(self) -> None:
        """
        With one stream in flight the next request waits (nothing upstream),
        the one after it is refused (the queue holds as many as may be in
        flight), and the waiting one goes upstream when the first ends;
        another user is not held up.
        """
        harness = self.harness
        first, first_response = self.stream()
        self.assertEqual(message_posts(harness), 1)
        second, second_response = self.stream()
        self.assertNoResult(second_response)
        self.assertEqual(message_posts(harness), 1)
        third = harness.messages(MESSAGE_BODY)
        error = harness.ccm_error(third, 429, "rate_limit_error")
        self.assertIn("1 requests in flight and 1 more waiting", error["message"])
        self.assertEqual(third.headers.getRawHeaders("x-should-retry"), ["true"])
        self.assertEqual(third.headers.getRawHeaders("retry-after"), ["5"])
        self.assertEqual(refusals(harness, "alice", "max_concurrent"), 1)
        bob, bob_response = self.stream(BOB_TOKEN)
        self.assertEqual(message_posts(harness), 2)
        self.answer(first.handle)
        self.assertEqual(self.successResultOf(first_response).code, 200)
        self.assertEqual(message_posts(harness), 3)
        # The fake hands out replies in the order requests reach it: bob's
        # request took the reply queued second, alice's second the last.
        self.answer(second.handle)
        self.assertEqual(self.successResultOf(bob_response).code, 200)
        self.assertNoResult(second_response)
        self.answer(bob.handle)
        self.assertEqual(self.successResultOf(second_response).code, 200)
        self.assertEqual(harness.proxy.in_progress, 0)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_queue_timeout(self) -> None:
        """
        A request that waits :obj:`QUEUE_WAIT_SECONDS` is answered 429 and
        never goes upstream, even when a slot frees afterwards.
        """
        harness = self.harness
        first, _ = self.stream()
        waiting = harness.send(
            "POST", "/v1/messages", json.dumps(MESSAGE_BODY).encode(),
            {"content-type": "application/json"},
        )
        harness.clock.advance(QUEUE_WAIT_SECONDS)
        harness.flush()
        error = harness.ccm_error(self.successResultOf(waiting), 429, "rate_limit_error")
        self.assertIn("none ended within 30 s of waiting", error["message"])
        self.answer(first.handle)
        self.assertEqual(message_posts(harness), 1)

    def test_client_leaving_the_queue(self) -> None:
        """
        A client that goes away while queued leaves the queue: the next
        request takes the freed slot, and the gone one never goes upstream.
        """
        harness = self.harness
        first, _ = self.stream()
        gone = harness.send(
            "POST", "/v1/messages", json.dumps(MESSAGE_BODY).encode(),
            {"content-type": "application/json"},
        )
        transport = harness.server_requests[-1].channel.transport
        assert transport is not None
        transport.loseConnection()
        harness.flush()
        self.failureResultOf(gone)
        slots = harness.proxy.limits.slots_of("alice")
        assert slots is not None
        self.assertEqual(slots.waiting, 0)
        next_one, next_response = self.stream()
        self.assertNoResult(next_response)
        self.answer(first.handle)
        self.assertEqual(message_posts(harness), 2)
        self.answer(next_one.handle)
        self.assertEqual(self.successResultOf(next_response).code, 200)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_shutdown_empties_the_queue(self) -> None:
        """
        A drain answers queued requests with the restart answer (503, retry)
        at once, while the stream in flight goes on.
        """
        harness = self.harness
        first, first_response = self.stream()
        waiting = harness.send(
            "POST", "/v1/messages", json.dumps(MESSAGE_BODY).encode(),
            {"content-type": "application/json"},
        )
        drained = harness.proxy.drain(30.0)
        harness.flush()
        response = self.successResultOf(waiting)
        error = harness.ccm_error(response, 503, "api_error")
        self.assertIn("shutting down", error["message"])
        self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["true"])
        self.assertNoResult(drained)
        self.answer(first.handle)
        self.successResultOf(drained)
        self.assertEqual(message_posts(harness), 1)

    def test_reload(self) -> None:
        """
        A reload lowering the limit to one ends nothing in flight; raising
        it lets the queued request in at once.
        """
        harness = self.harness
        config = harness.service.config
        harness.service.reconfigure(dataclasses.replace(config, users=(
            dataclasses.replace(config.users[0], max_concurrent=2), config.users[1],
        )))
        first, _ = self.stream()
        second, _ = self.stream()
        self.assertEqual(message_posts(harness), 2)
        harness.service.reconfigure(config)
        third, third_response = self.stream()
        self.assertEqual(message_posts(harness), 2)
        self.answer(first.handle)
        self.assertEqual(message_posts(harness), 2)
        harness.service.reconfigure(dataclasses.replace(config, users=(
            dataclasses.replace(config.users[0], max_concurrent=0), config.users[1],
        )))
        self.assertEqual(message_posts(harness), 3)
        self.answer(second.handle)
        self.answer(third.handle)
        self.assertEqual(self.successResultOf(third_response).code, 200)


class BothLimitsTests(SynchronousTestCase):
    """
    With both limits, a request refused by the queue does not use up the
    minute.
    """

    def test_queue_refusal_gives_the_minute_back(self) -> None:
        """
        Of three requests with one slot and three a minute, the third is
        refused by the full queue and does not count: once the first two
        ended, one more may start in that minute, and the one after it is
        refused by the minute, saying so.
        """
        harness = ProxyHarness(self, users=(alice(max_concurrent=1, requests_per_minute=3), BOB))
        first = manual_reply()
        harness.fake.enqueue(first, text_reply("second"), text_reply("fourth"))
        one = harness.send("POST", "/v1/messages", json.dumps(MESSAGE_BODY).encode(),
                           {"content-type": "application/json"})
        two = harness.send("POST", "/v1/messages", json.dumps(MESSAGE_BODY).encode(),
                           {"content-type": "application/json"})
        error = harness.ccm_error(harness.messages(MESSAGE_BODY), 429, "rate_limit_error")
        self.assertIn("max_concurrent", error["message"])
        assert first.handle is not None
        first.handle.respond_json(200, {"type": "message", "content": []})
        harness.flush()
        self.assertEqual(self.successResultOf(one).code, 200)
        self.assertEqual(self.successResultOf(two).code, 200)
        self.assertEqual(harness.messages(MESSAGE_BODY).code, 200)
        error = harness.ccm_error(harness.messages(MESSAGE_BODY), 429, "rate_limit_error")
        self.assertIn("requests_per_minute limit of 3", error["message"])
        self.assertEqual(message_posts(harness), 3)
