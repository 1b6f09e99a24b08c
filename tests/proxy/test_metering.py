"""
Tests for usage counting in the proxy (:obj:`ccm.proxy.metering`): what the proxy
hands to its usage recorder for each kind of response, however the response
ends.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting.counters import UsageRecord
from ccm.accounting.meter import TokenUsage
from tests.fake_anthropic import (
    cut_stream_reply,
    error_reply,
    manual_reply,
    midstream_error_reply,
    text_reply,
)
from tests.fixtures import MemoryRecorder
from tests.proxy.messages import USAGE
from tests.proxyharness import BOB_TOKEN, ProxyHarness

MODEL = "claude-sonnet-4-5-20250929"
BODY = {
    "model": MODEL,
    "max_tokens": 64,
    "messages": [
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "Again"},
    ],
}
EXPECTED = TokenUsage(
    model=MODEL,
    input_tokens=21,
    output_tokens=9,
    cache_read_input_tokens=300,
    cache_creation_input_tokens=50,
    cache_creation_5m_input_tokens=20,
    cache_creation_1h_input_tokens=30,
)


class ProxyUsageTests(SynchronousTestCase):
    """
    The proxy counts the tokens of successful Messages API responses.
    """

    def setUp(self) -> None:
        self.recorder = MemoryRecorder()
        self.harness = ProxyHarness(self, recorder=self.recorder)

    def request(self, stream: bool, **headers: Any) -> bytes:
        """
        Send a Messages request and return the whole response body.
        """
        response = self.harness.messages(dict(BODY, stream=stream), headers=headers)
        return self.harness.body_of(response)

    def test_streaming(self) -> None:
        """
        A streamed answer is counted with the figures of its events, the
        caller's name, the request's message count and the week of the
        subscription's weekly window.
        """
        self.harness.fake.enqueue(text_reply("Hello", usage=USAGE))
        self.request(stream=True)
        [record] = self.recorder.records
        self.assertEqual(record.tokens, EXPECTED)
        self.assertEqual(
            (record.model, record.user, record.messages, record.context_window),
            (MODEL, "alice", 3, 200000),
        )
        reset = int(self.harness.fake.unified_headers["anthropic-ratelimit-unified-7d-reset"])
        expected_week = round((reset - 604800) / 3600) * 3600
        self.assertEqual(record.week_start_unix, expected_week)
        self.assertIn(f"credential={self.harness.credential.tag} ", self.harness.exchange_lines()[0])
        self.assertIn("tokens in=21 out=9", self.harness.exchange_lines()[0])

    def test_non_streaming(self) -> None:
        """
        A non-streaming answer is counted from its JSON body, for the user
        who sent it.
        """
        self.harness.fake.enqueue(text_reply("Hello", usage=USAGE))
        response = self.harness.response(
            "POST",
            "/v1/messages",
            json.dumps(BODY).encode("utf-8"),
            {"content-type": "application/json"},
            token=BOB_TOKEN,
        )
        self.harness.body_of(response)
        [record] = self.recorder.records
        self.assertEqual((record.tokens, record.user), (EXPECTED, "bob"))

    def test_long_context(self) -> None:
        """
        A prompt over 200k tokens with the 1M-context beta is counted in the
        1M context window; the same prompt without the beta is not.
        """
        big = dict(USAGE, cache_read_input_tokens=250_000)
        self.harness.fake.enqueue(text_reply("a", usage=big), text_reply("b", usage=big))
        self.request(stream=True, **{"anthropic-beta": "claude-code-20250219,context-1m-2025-08-07"})
        self.request(stream=True, **{"anthropic-beta": "claude-code-20250219"})
        self.assertEqual(
            [r.context_window for r in self.recorder.records], [1_000_000, 200_000]
        )

    def test_native_long_context(self) -> None:
        """
        The window is chosen by the model the response names: an Opus 5.5
        prompt over 200k tokens is counted in the 1M window without the
        beta (its window is native), a Haiku 5.5 prompt over 100k tokens
        too (its long-prompt tier), and a Sonnet 4.5 prompt over 200k
        without the beta is not.
        """
        big = dict(USAGE, cache_read_input_tokens=250_000)
        medium = dict(USAGE, cache_read_input_tokens=120_000)
        self.harness.fake.enqueue(
            text_reply("a", model="claude-opus-5-5", usage=big),
            text_reply("b", model="claude-haiku-5-5", usage=medium),
            text_reply("c", usage=big),
        )
        for _ in range(3):
            self.request(stream=True, **{"anthropic-beta": "claude-code-20250219"})
        self.assertEqual(
            [(r.model, r.context_window) for r in self.recorder.records],
            [("claude-opus-5-5", 1_000_000), ("claude-haiku-5-5", 1_000_000), (MODEL, 200_000)],
        )

    def test_errors_not_counted(self) -> None:
        """
        An error status from upstream is passed on and not counted.
        """
        self.harness.fake.enqueue(error_reply(529, "overloaded_error", "Overloaded"))
        self.request(stream=True)
        self.assertEqual(self.recorder.records, [])

    def test_midstream_error_counts_what_was_used(self) -> None:
        """
        A stream that ends with an error event still counts the tokens its
        first event reported.
        """
        self.harness.fake.enqueue(midstream_error_reply("api_error", "boom"))
        self.request(stream=True)
        [record] = self.recorder.records
        self.assertGreater(record.tokens.input_tokens, 0)

    def test_upstream_cut_counts_what_was_used(self) -> None:
        """
        A stream the upstream cuts off is counted with what arrived.
        """
        self.harness.fake.enqueue(cut_stream_reply(after_events=1))
        self.request(stream=True)
        [record] = self.recorder.records
        self.assertGreater(record.tokens.input_tokens, 0)

    def test_client_gone_counts_what_was_used(self) -> None:
        """
        When the client goes away mid-stream, the tokens reported so far
        are counted all the same.
        """
        reply = manual_reply()
        self.harness.fake.enqueue(reply)
        d = self.harness.send(
            "POST",
            "/v1/messages",
            json.dumps(dict(BODY, stream=True)).encode("utf-8"),
            {"content-type": "application/json"},
        )
        assert reply.handle is not None
        reply.handle.start(content_type="text/event-stream")
        reply.handle.event(
            "message_start",
            {
                "type": "message_start",
                "message": {"model": MODEL, "usage": {"input_tokens": 77, "output_tokens": 1}},
            },
        )
        self.harness.flush()
        self.successResultOf(d)
        self.assertEqual(self.recorder.records, [])
        [server_request] = self.harness.server_requests
        transport = server_request.channel.transport
        assert transport is not None
        transport.loseConnection()
        self.harness.flush()
        [record] = self.recorder.records
        self.assertEqual(record.tokens.input_tokens, 77)
        self.assertTrue(reply.handle.disconnected)

    def test_no_tokens_not_counted(self) -> None:
        """
        Responses without usage (here the model list) are not counted.
        """
        response = self.harness.response("GET", "/v1/models")
        self.harness.body_of(response)
        self.assertEqual(self.recorder.records, [])

    def test_recorder_failure_logged(self) -> None:
        """
        A recorder that fails is logged and does not disturb the response.
        """

        def broken(record: UsageRecord) -> None:
            raise ValueError("disk on fire")

        self.recorder.record = broken  # type: ignore[method-assign]
        self.harness.fake.enqueue(text_reply("Hello", usage=USAGE))
        body = self.request(stream=True)
        self.assertIn(b"message_stop", body)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class NoUsageTests(SynchronousTestCase):
    """
    Without a usage file nothing is metered.
    """

    def test_default_counts_nothing(self) -> None:
        """
        A credential without a recorder (no ``usages_path``) relays
        responses and keeps no meter.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(text_reply("Hello", usage=USAGE))
        response = harness.messages(dict(BODY, stream=True))
        self.assertIn(b"message_stop", harness.body_of(response))
        self.assertNotIn("tokens in=", harness.exchange_lines()[0])
