"""
Tests for :obj:`tests.fake_anthropic`: the fake API must itself behave as
documented before other tests rely on it.
"""

from __future__ import annotations

import json
from typing import Any, cast

import treq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ServerFactory
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseFailed
from twisted.web.iweb import IResponse

from tests.fake_anthropic import (
    OAUTH_NOT_ALLOWED_MESSAGE,
    ORGANIZATION_DISABLED_MESSAGE,
    PROMPT_TOO_LONG_MESSAGE,
    REVOKED_401_MESSAGE,
    REVOKED_403_MESSAGE,
    THIRD_PARTY_MESSAGE,
    FakeAnthropic,
    allowed_unified_headers,
    client_rate_limit_headers,
    cut_stream_reply,
    error_reply,
    hang_reply,
    manual_reply,
    midstream_error_reply,
    overage_unified_headers,
    oauth_not_allowed_reply,
    organization_disabled_reply,
    prompt_too_long_reply,
    revoked_reply,
    slow_stream_reply,
    text_reply,
    thinking_reply,
    third_party_reply,
    tool_use_reply,
)
from tests.proxyharness import StubClient

ACCESS_TOKEN = "sk-ant-oat01-fake-access"
REFRESH_TOKEN = "sk-ant-ort01-fake-refresh"
CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
BASE = "http://api.fake.test"
UNIFIED = "anthropic-ratelimit-unified-"
START_TIME = 1_790_000_000.0
LIMIT_MESSAGE = "This request would exceed your account's rate limit."

OAUTH_HEADERS = {
    "authorization": f"Bearer {ACCESS_TOKEN}",
    "anthropic-beta": "claude-code-20250219,oauth-2025-04-20",
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
}


def parse_event(chunk: bytes) -> tuple[str, dict[str, Any]]:
    """
    Parse one chunk that must hold exactly one SSE event.
    """
    assert chunk.endswith(b"\n\n"), chunk
    lines = chunk[:-2].decode("utf-8").split("\n")
    assert len(lines) == 2, chunk
    assert lines[0].startswith("event: ") and lines[1].startswith("data: "), chunk
    return lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])


class FakeTestCase(SynchronousTestCase):
    """
    A fake on a :obj:`Clock`, reached through :obj:`StubTreq`.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START_TIME)
        self.fake = FakeAnthropic(self.clock)
        self.client = StubClient(self.fake.resource())

    def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> Deferred[IResponse]:
        d = self.client.request(
            method,
            BASE + path,
            data=body or None,
            headers=OAUTH_HEADERS if headers is None else headers,
        )
        self.client.flush()
        # A Deferred of treq's response, which is an IResponse.
        return cast("Deferred[IResponse]", d)

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> IResponse:
        return self.successResultOf(self.send(method, path, body, headers))

    def messages(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> IResponse:
        return self.request("POST", "/v1/messages?beta=true", json.dumps(body).encode(), headers)

    def json_of(self, response: IResponse) -> Any:
        d = treq.json_content(response)
        self.client.flush()
        return self.successResultOf(d)

    def collect(self, response: IResponse) -> tuple[list[bytes], Deferred[None]]:
        chunks: list[bytes] = []
        d = treq.collect(response, chunks.append)
        self.client.flush()
        return chunks, d

    def stream(self, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        response = self.messages(dict(body, stream=True))
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["text/event-stream; charset=utf-8"]
        )
        chunks, done = self.collect(response)
        self.successResultOf(done)
        return [parse_event(chunk) for chunk in chunks]

    def token(self, body: Any, raw: bytes | None = None) -> IResponse:
        data = raw if raw is not None else json.dumps(body).encode()
        return self.request(
            "POST", "/v1/oauth/token", data, {"content-type": "application/json"}
        )


class RecordingTests(FakeTestCase):
    """
    Every request is recorded as it arrived.
    """

    def test_request_recorded(self) -> None:
        """
        Method, path with query, lower-cased multi-valued headers and body are
        recorded; ``header`` is case-insensitive and ``json`` parses the body.
        """
        body = {"model": "claude-haiku-4-5", "messages": [], "max_tokens": 5}
        headers = dict(OAUTH_HEADERS, **{"X-Custom": "one"})
        self.client.request(
            "POST",
            BASE + "/v1/messages?beta=true",
            data=json.dumps(body).encode(),
            headers={**headers, "X-Multi": ["a", "b"]},
        )
        self.client.flush()
        [recorded] = self.fake.requests
        self.assertEqual(recorded.method, "POST")
        self.assertEqual(recorded.path, "/v1/messages?beta=true")
        self.assertEqual(recorded.headers["x-multi"], ["a", "b"])
        self.assertEqual(recorded.header("X-CUSTOM"), "one")
        self.assertEqual(recorded.header("Authorization"), f"Bearer {ACCESS_TOKEN}")
        self.assertIsNone(recorded.header("x-absent"))
        self.assertEqual(recorded.json(), body)
        self.assertFalse(recorded.disconnected)
        self.assertEqual(self.fake.token_requests, [])

    def test_request_ids(self) -> None:
        """
        Every response, on any path, carries ``request-id: req_fake_<n>``
        counting requests from 1, also recorded on the request.
        """
        first = self.messages({"model": "m"})
        second = self.request("GET", "/nowhere")
        self.assertEqual(first.headers.getRawHeaders("request-id"), ["req_fake_1"])
        self.assertEqual(second.headers.getRawHeaders("request-id"), ["req_fake_2"])
        self.assertEqual([r.request_id for r in self.fake.requests], ["req_fake_1", "req_fake_2"])

    def test_unknown_path(self) -> None:
        """
        Unknown paths (and methods) get 404 in the API error shape and are
        still recorded.
        """
        for method, path in [("GET", "/v1/unknown"), ("GET", "/v1/messages"), ("HEAD", "/")]:
            response = self.request(method, path)
            self.assertEqual(response.code, 404)
        body = self.json_of(self.request("GET", "/v1/unknown"))
        self.assertEqual(body["type"], "error")
        self.assertEqual(body["error"]["type"], "not_found_error")
        self.assertEqual(body["request_id"], "req_fake_4")
        self.assertEqual(len(self.fake.requests), 4)

    def test_token_requests(self) -> None:
        """
        ``token_requests`` holds only ``POST /v1/oauth/token``; ``requests``
        holds everything.
        """
        self.messages({"model": "m"})
        self.token(
            {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN, "client_id": CLIENT_ID}
        )
        self.assertEqual([r.path for r in self.fake.token_requests], ["/v1/oauth/token"])
        self.assertEqual(len(self.fake.requests), 2)


class AuthTests(FakeTestCase):
    """
    The fake authenticates OAuth like the real API.
    """

    def assert_unauthorized(self, response: IResponse, message: str) -> None:
        self.assertEqual(response.code, 401)
        body = self.json_of(response)
        self.assertEqual(body["error"], {"type": "authentication_error", "message": message})

    def test_valid(self) -> None:
        """
        The current bearer plus the oauth beta among other betas is accepted.
        """
        self.assertEqual(self.messages({"model": "m"}).code, 200)

    def test_missing_beta(self) -> None:
        """
        Without ``oauth-2025-04-20`` in ``anthropic-beta`` the answer is the
        real API's "OAuth ... not supported" 401.
        """
        headers = dict(OAUTH_HEADERS, **{"anthropic-beta": "claude-code-20250219"})
        self.assert_unauthorized(
            self.messages({"model": "m"}, headers),
            "OAuth authentication is currently not supported.",
        )

    def test_wrong_or_missing_bearer(self) -> None:
        """
        A wrong or missing bearer gets 401 "invalid x-api-key".
        """
        wrong = dict(OAUTH_HEADERS, authorization="Bearer sk-ant-oat01-other")
        self.assert_unauthorized(self.messages({"model": "m"}, wrong), "invalid x-api-key")
        missing = {k: v for k, v in OAUTH_HEADERS.items() if k != "authorization"}
        self.assert_unauthorized(self.messages({"model": "m"}, missing), "invalid x-api-key")

    def test_x_api_key_rejected(self) -> None:
        """
        Any ``x-api-key`` header is rejected even next to a valid bearer.
        """
        headers = dict(OAUTH_HEADERS, **{"x-api-key": "sk-ant-api03-client"})
        self.assert_unauthorized(self.messages({"model": "m"}, headers), "invalid x-api-key")

    def test_rejection_keeps_queue(self) -> None:
        """
        A rejected request does not use up an enqueued reply and carries no
        unified headers.
        """
        self.fake.enqueue(text_reply("queued"))
        response = self.messages({"model": "m"}, dict(OAUTH_HEADERS, authorization="Bearer x"))
        self.assertFalse(response.headers.hasHeader(UNIFIED + "status"))
        body = self.json_of(self.messages({"model": "m"}))
        self.assertEqual(body["content"], [{"type": "text", "text": "queued"}])

    def test_other_endpoints_checked(self) -> None:
        """
        count_tokens, models, usage and profile also check the bearer; only
        profile does without the beta.
        """
        bad = dict(OAUTH_HEADERS, authorization="Bearer nope")
        no_beta = {k: v for k, v in OAUTH_HEADERS.items() if k != "anthropic-beta"}
        for method, path in [
            ("POST", "/v1/messages/count_tokens"),
            ("GET", "/v1/models"),
            ("GET", "/v1/models/claude-sonnet-4-5-20250929"),
            ("GET", "/api/oauth/usage"),
            ("GET", "/api/oauth/profile"),
        ]:
            self.assertEqual(self.request(method, path, b"{}", bad).code, 401, path)
        self.assertEqual(self.request("GET", "/api/oauth/usage", headers=no_beta).code, 401)
        self.assertEqual(self.request("GET", "/v1/models", headers=no_beta).code, 401)
        self.assertEqual(self.request("GET", "/api/oauth/profile", headers=no_beta).code, 200)


class NonStreamingTests(FakeTestCase):
    """
    Requests without ``"stream": true`` get one Message JSON.
    """

    def test_default_text(self) -> None:
        """
        With nothing enqueued the default text reply answers with the
        request's model, realistic usage and a content-length.
        """
        response = self.messages({"model": "claude-opus-4-8", "max_tokens": 10})
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        body = self.json_of(response)
        self.assertEqual(response.length, len(json.dumps(body, separators=(",", ":"))))
        self.assertEqual(body["id"], "msg_fake_1")
        self.assertEqual(body["type"], "message")
        self.assertEqual(body["role"], "assistant")
        self.assertEqual(body["model"], "claude-opus-4-8")
        self.assertEqual(body["content"], [{"type": "text", "text": "Hello from the fake."}])
        self.assertEqual(body["stop_reason"], "end_turn")
        self.assertIsNone(body["stop_sequence"])
        self.assertEqual(
            body["usage"],
            {
                "input_tokens": 12,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 5,
                "service_tier": "standard",
            },
        )

    def test_model_and_usage_override(self) -> None:
        """
        ``model`` and ``usage`` given to ``text_reply`` replace the defaults;
        a cache write without a split counts as 5 minute cache.
        """
        usage = {
            "input_tokens": 3,
            "cache_creation_input_tokens": 40,
            "cache_read_input_tokens": 500,
            "output_tokens": 77,
        }
        self.fake.enqueue(text_reply("x", model="claude-haiku-4-5", usage=usage))
        body = self.json_of(self.messages({"model": "claude-opus-4-8"}))
        self.assertEqual(body["model"], "claude-haiku-4-5")
        self.assertEqual(body["usage"]["output_tokens"], 77)
        self.assertEqual(body["usage"]["cache_read_input_tokens"], 500)
        self.assertEqual(
            body["usage"]["cache_creation"],
            {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 0},
        )

    def test_thinking(self) -> None:
        """
        ``thinking_reply`` gives a signed thinking block, then text.
        """
        self.fake.enqueue(thinking_reply("hmm", "ok"))
        content = self.json_of(self.messages({"model": "m"}))["content"]
        self.assertEqual([block["type"] for block in content], ["thinking", "text"])
        self.assertEqual(content[0]["thinking"], "hmm")
        self.assertTrue(content[0]["signature"])
        self.assertEqual(content[1]["text"], "ok")

    def test_tool_use(self) -> None:
        """
        ``tool_use_reply`` gives a tool_use block and stop_reason tool_use.
        """
        self.fake.enqueue(tool_use_reply("Bash", {"command": "ls"}, tool_id="toolu_1"))
        body = self.json_of(self.messages({"model": "m"}))
        self.assertEqual(body["stop_reason"], "tool_use")
        self.assertEqual(
            body["content"],
            [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}],
        )

    def test_queue_order(self) -> None:
        """
        Enqueued replies answer the next requests first in first out, then
        the default reply takes over.
        """
        self.fake.enqueue(text_reply("one"), text_reply("two"))
        texts = [
            self.json_of(self.messages({"model": "m"}))["content"][0]["text"] for _ in range(3)
        ]
        self.assertEqual(texts, ["one", "two", "Hello from the fake."])

    def test_bad_body(self) -> None:
        """
        A body that is not a JSON object gets 400 invalid_request_error and
        leaves the queue alone.
        """
        self.fake.enqueue(text_reply("kept"))
        for raw in [b"not json", b"[1, 2]", b"\xff\xfe"]:
            response = self.request("POST", "/v1/messages", raw)
            self.assertEqual(response.code, 400)
            self.assertEqual(self.json_of(response)["error"]["type"], "invalid_request_error")
        self.assertEqual(self.json_of(self.messages({"model": "m"}))["content"][0]["text"], "kept")


class StreamingTests(FakeTestCase):
    """
    Requests with ``"stream": true`` get the SSE event sequence of the real
    API, one ``request.write`` per event.
    """

    def test_text_events(self) -> None:
        """
        A text reply streams message_start, content_block_start, ping, a few
        text deltas, content_block_stop, message_delta and message_stop, each
        in its own chunk, and the deltas add up to the text.
        """
        events = self.stream({"model": "claude-sonnet-4-5"})
        names = [name for name, _ in events]
        self.assertEqual(names[:3], ["message_start", "content_block_start", "ping"])
        self.assertEqual(names[-3:], ["content_block_stop", "message_delta", "message_stop"])
        deltas = events[3:-3]
        self.assertGreater(len(deltas), 1)
        self.assertEqual({name for name, _ in deltas}, {"content_block_delta"})
        self.assertEqual("".join(d["delta"]["text"] for _, d in deltas), "Hello from the fake.")
        for name, data in events:
            self.assertEqual(data["type"], name)
        message = events[0][1]["message"]
        self.assertEqual(message["model"], "claude-sonnet-4-5")
        self.assertEqual(message["content"], [])
        self.assertEqual(events[1][1]["content_block"], {"type": "text", "text": ""})

    def test_usage(self) -> None:
        """
        message_start carries the input side with a provisional
        output_tokens; message_delta carries cumulative totals with the final
        output_tokens.
        """
        usage = {
            "input_tokens": 9,
            "cache_creation_input_tokens": 2122,
            "cache_read_input_tokens": 123663,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 122,
                "ephemeral_1h_input_tokens": 2000,
            },
            "output_tokens": 566,
        }
        self.fake.enqueue(text_reply("hi", usage=usage))
        events = dict(self.stream({"model": "m"}))
        start = events["message_start"]["message"]["usage"]
        self.assertEqual(start["input_tokens"], 9)
        self.assertEqual(start["cache_creation"], usage["cache_creation"])
        self.assertEqual(start["output_tokens"], 1)
        self.assertEqual(
            events["message_delta"]["usage"],
            {
                "input_tokens": 9,
                "cache_creation_input_tokens": 2122,
                "cache_read_input_tokens": 123663,
                "output_tokens": 566,
            },
        )
        self.assertEqual(
            events["message_delta"]["delta"], {"stop_reason": "end_turn", "stop_sequence": None}
        )

    def test_thinking(self) -> None:
        """
        A thinking block streams thinking deltas and one signature delta
        before its stop, then the text block follows at index 1.
        """
        self.fake.enqueue(thinking_reply("deep thought here", "answer"))
        events = self.stream({"model": "m"})
        block0 = [d for n, d in events if n == "content_block_delta" and d["index"] == 0]
        kinds = [d["delta"]["type"] for d in block0]
        self.assertEqual(kinds[-1], "signature_delta")
        self.assertEqual(set(kinds[:-1]), {"thinking_delta"})
        self.assertEqual("".join(d["delta"]["thinking"] for d in block0[:-1]), "deep thought here")
        starts = [d["content_block"] for n, d in events if n == "content_block_start"]
        self.assertEqual(
            starts,
            [{"type": "thinking", "thinking": "", "signature": ""}, {"type": "text", "text": ""}],
        )
        text = [
            d["delta"]["text"] for n, d in events if n == "content_block_delta" and d["index"] == 1
        ]
        self.assertEqual("".join(text), "answer")

    def test_tool_use(self) -> None:
        """
        A tool_use block streams input_json_delta chunks, the first empty,
        that concatenate to the input JSON; stop_reason is tool_use.
        """
        tool_input = {"command": "echo hello world", "timeout": 5}
        self.fake.enqueue(tool_use_reply("Bash", tool_input))
        events = self.stream({"model": "m"})
        start = [d for n, d in events if n == "content_block_start"][0]["content_block"]
        self.assertEqual(
            start, {"type": "tool_use", "id": "toolu_fake_1", "name": "Bash", "input": {}}
        )
        partial = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
        self.assertEqual(partial[0], "")
        self.assertGreater(len(partial), 2)
        self.assertEqual(json.loads("".join(partial)), tool_input)
        self.assertEqual(dict(events)["message_delta"]["delta"]["stop_reason"], "tool_use")


class HeaderTests(FakeTestCase):
    """
    Unified rate-limit headers on ``/v1/messages`` responses.
    """

    def test_default_unified(self) -> None:
        """
        The default set is "allowed" with utilizations 0.1 / 0.2 and resets a
        5 h and 7 d window after the clock's time at construction.
        """
        response = self.messages({"model": "m"})
        header = lambda name: response.headers.getRawHeaders(UNIFIED + name)[0]  # noqa: E731
        self.assertEqual(header("status"), "allowed")
        self.assertEqual(header("5h-utilization"), "0.1")
        self.assertEqual(header("7d-utilization"), "0.2")
        self.assertEqual(header("5h-reset"), str(int(START_TIME) + 18000))
        self.assertEqual(header("7d-reset"), str(int(START_TIME) + 604800))
        self.assertEqual(header("reset"), header("5h-reset"))
        self.assertEqual(header("representative-claim"), "five_hour")

    def test_custom_unified(self) -> None:
        """
        Replacing ``unified_headers`` changes what streaming responses carry.
        """
        self.fake.unified_headers = {UNIFIED + "status": "allowed_warning"}
        response = self.messages({"model": "m", "stream": True})
        self.assertEqual(response.headers.getRawHeaders(UNIFIED + "status"), ["allowed_warning"])
        self.assertFalse(response.headers.hasHeader(UNIFIED + "5h-reset"))
        self.successResultOf(self.collect(response)[1])

    def test_unified_by_token(self) -> None:
        """
        ``unified_headers_by_token`` gives one subscription's responses their
        own headers; other tokens keep ``unified_headers``.
        """
        self.fake.extra_access_tokens = {"sk-ant-oat01-second"}
        self.fake.unified_headers_by_token = {
            "sk-ant-oat01-second": {UNIFIED + "5h-utilization": "0.91"}
        }
        second = dict(OAUTH_HEADERS, authorization="Bearer sk-ant-oat01-second")
        response = self.messages({"model": "m"}, headers=second)
        self.assertEqual(response.headers.getRawHeaders(UNIFIED + "5h-utilization"), ["0.91"])
        response = self.messages({"model": "m"})
        self.assertEqual(response.headers.getRawHeaders(UNIFIED + "5h-utilization"), ["0.1"])

    def test_overage(self) -> None:
        """
        ``overage_unified_headers`` describe a used-up 5-hour window served
        from extra usage: plan rejected, extra usage allowed and in use (or
        not said), no disabled reason; they reach the response as set.
        """
        headers = overage_unified_headers(START_TIME)
        self.assertEqual(headers[UNIFIED + "status"], "rejected")
        self.assertEqual(headers[UNIFIED + "5h-status"], "rejected")
        self.assertEqual(headers[UNIFIED + "overage-status"], "allowed")
        self.assertEqual(headers[UNIFIED + "overage-in-use"], "true")
        self.assertNotIn(UNIFIED + "overage-disabled-reason", headers)
        quiet = overage_unified_headers(START_TIME, in_use=False, overage_status="allowed_warning")
        self.assertNotIn(UNIFIED + "overage-in-use", quiet)
        self.assertEqual(quiet[UNIFIED + "overage-status"], "allowed_warning")
        self.assertEqual(
            allowed_unified_headers(START_TIME)[UNIFIED + "overage-status"], "rejected"
        )
        self.fake.unified_headers = headers
        response = self.messages({"model": "m"})
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(UNIFIED + "overage-in-use"), ["true"])

    def test_client_rate_limit_headers(self) -> None:
        """
        ``client_rate_limit_headers`` hold every ``overage-*``, ``slow-*``
        and ``grace-*`` name Claude Code 2.1.332 reads, all unified.
        """
        names = {name[len(UNIFIED):] for name in client_rate_limit_headers(START_TIME)}
        self.assertEqual(len([n for n in names if n.startswith("overage-")]), 12)
        self.assertEqual(
            {n for n in names if not n.startswith("overage-")},
            {
                "slow-status",
                "slow-offer",
                "slow-retry-after",
                "slow-max-wait",
                "slow-budget-utilization",
                "slow-budget-reset",
                "grace-status",
                "grace-5h-utilization",
                "grace-7d-utilization",
            },
        )


class ErrorReplyTests(FakeTestCase):
    """
    ``error_reply`` answers with the API's error shape.
    """

    def test_rate_limited(self) -> None:
        """
        A 429 by default carries rejected unified headers and a retry-after
        equal to the time left until the binding reset.
        """
        self.fake.enqueue(error_reply(429, "rate_limit_error", LIMIT_MESSAGE))
        self.clock.advance(100)
        response = self.messages({"model": "m", "stream": True})
        self.assertEqual(response.code, 429)
        header = lambda name: response.headers.getRawHeaders(name)[0]  # noqa: E731
        self.assertEqual(header(UNIFIED + "status"), "rejected")
        self.assertEqual(header(UNIFIED + "5h-status"), "rejected")
        self.assertEqual(header(UNIFIED + "representative-claim"), "five_hour")
        reset = int(header(UNIFIED + "reset"))
        self.assertEqual(int(header("retry-after")), reset - int(self.clock.seconds()))
        self.assertEqual(
            self.json_of(response),
            {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": LIMIT_MESSAGE},
                "request_id": "req_fake_1",
            },
        )

    def test_explicit_headers(self) -> None:
        """
        Explicit headers replace the unified set; ``{}`` gives a 429 without
        any unified header (a transient throttle).
        """
        self.fake.enqueue(error_reply(429, "rate_limit_error", "slow down", headers={}))
        response = self.messages({"model": "m"})
        self.assertEqual(response.code, 429)
        self.assertFalse(response.headers.hasHeader(UNIFIED + "status"))
        self.assertFalse(response.headers.hasHeader("retry-after"))
        self.assertEqual(response.headers.getRawHeaders("request-id"), ["req_fake_1"])

    def test_other_status(self) -> None:
        """
        Other statuses keep the fake's unified headers.
        """
        self.fake.enqueue(error_reply(529, "overloaded_error", "Overloaded"))
        response = self.messages({"model": "m"})
        self.assertEqual(response.code, 529)
        self.assertEqual(response.headers.getRawHeaders(UNIFIED + "status"), ["allowed"])
        self.assertEqual(self.json_of(response)["error"]["type"], "overloaded_error")


class JudgingAnswerTests(FakeTestCase):
    """
    The answers that judge a subscription, and :obj:`FakeAnthropic.revoke`.
    """

    def error_of(self, response: IResponse) -> tuple[int, dict[str, Any]]:
        """
        The status and ``error`` object of an answer.
        """
        document = self.json_of(response)
        self.assertEqual(document["type"], "error")
        self.assertTrue(document["request_id"].startswith("req_fake_"))
        error: dict[str, Any] = document["error"]
        return response.code, error

    def test_replies(self) -> None:
        """
        Each constructor answers with the real API's status, type and words;
        ``oauth_not_allowed_reply`` also carries its error code.
        """
        self.fake.enqueue(
            revoked_reply(),
            revoked_reply(401),
            organization_disabled_reply(),
            oauth_not_allowed_reply(),
            third_party_reply(),
            prompt_too_long_reply(),
        )
        answers = [self.error_of(self.messages({"model": "m"})) for _ in range(6)]
        self.assertEqual(
            answers,
            [
                (403, {"type": "permission_error", "message": REVOKED_403_MESSAGE}),
                (401, {"type": "authentication_error", "message": REVOKED_401_MESSAGE}),
                (400, {"type": "invalid_request_error", "message": ORGANIZATION_DISABLED_MESSAGE}),
                (
                    403,
                    {
                        "type": "permission_error",
                        "message": OAUTH_NOT_ALLOWED_MESSAGE,
                        "details": {"error_code": "oauth_org_not_allowed"},
                    },
                ),
                (400, {"type": "invalid_request_error", "message": THIRD_PARTY_MESSAGE}),
                (400, {"type": "invalid_request_error", "message": PROMPT_TOO_LONG_MESSAGE}),
            ],
        )

    def test_revoke(self) -> None:
        """
        A revoked token gets its answer on every authenticated path, before
        any queued reply; a refresh still works and its token is accepted.
        """
        self.fake.revoke()
        self.fake.enqueue(text_reply("kept"))
        self.assertEqual(self.error_of(self.messages({"model": "m"}))[0], 403)
        self.assertEqual(self.request("GET", "/api/oauth/usage").code, 403)
        self.fake.revoke(status=401)
        self.assertEqual(
            self.error_of(self.request("GET", "/api/oauth/profile")),
            (401, {"type": "authentication_error", "message": REVOKED_401_MESSAGE}),
        )
        response = self.token(
            {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN, "client_id": CLIENT_ID}
        )
        access = self.json_of(response)["access_token"]
        headers = dict(OAUTH_HEADERS, authorization=f"Bearer {access}")
        response = self.messages({"model": "m"}, headers)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.json_of(response)["content"][0]["text"], "kept")

    def test_usage_bans(self) -> None:
        """
        The usage endpoint answers the two bans when told to.
        """
        self.fake.usage_mode = "organization_disabled"
        self.assertEqual(
            self.error_of(self.request("GET", "/api/oauth/usage")),
            (400, {"type": "invalid_request_error", "message": ORGANIZATION_DISABLED_MESSAGE}),
        )
        self.fake.usage_mode = "oauth_not_allowed"
        self.assertEqual(
            self.error_of(self.request("GET", "/api/oauth/usage")),
            (403, {"type": "permission_error", "message": OAUTH_NOT_ALLOWED_MESSAGE}),
        )


class MidstreamErrorTests(FakeTestCase):
    """
    ``midstream_error_reply`` fails inside a 200 stream.
    """

    def test_streaming(self) -> None:
        """
        The stream has message_start, then an error event, then ends cleanly.
        """
        self.fake.enqueue(midstream_error_reply())
        events = self.stream({"model": "m"})
        self.assertEqual([name for name, _ in events], ["message_start", "error"])
        self.assertEqual(
            events[1][1],
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"},
                "request_id": "req_fake_1",
            },
        )
        self.assertEqual(self.fake.open_streams, [])

    def test_non_streaming_fallback(self) -> None:
        """
        The same reply to a non-streaming request is a normal text message.
        """
        self.fake.enqueue(midstream_error_reply("api_error", "boom"))
        response = self.messages({"model": "m"})
        self.assertEqual(response.code, 200)
        self.assertEqual(self.json_of(response)["content"][0]["text"], "Hello from the fake.")


class CutStreamTests(FakeTestCase):
    """
    ``cut_stream_reply`` drops the connection mid-body.
    """

    def test_streaming(self) -> None:
        """
        The client receives the given number of events, then the body fails
        with data loss; the request is marked disconnected.
        """
        self.fake.enqueue(cut_stream_reply(after_events=3))
        response = self.messages({"model": "m", "stream": True})
        chunks, done = self.collect(response)
        self.failureResultOf(done, ResponseFailed)
        self.assertEqual(
            [parse_event(c)[0] for c in chunks], ["message_start", "content_block_start", "ping"]
        )
        self.assertTrue(self.fake.requests[0].disconnected)
        self.assertEqual(self.fake.open_streams, [])

    def test_non_streaming(self) -> None:
        """
        A non-streaming request gets a content-length longer than the body
        that is written before the connection drops.
        """
        self.fake.enqueue(cut_stream_reply())
        response = self.messages({"model": "m"})
        self.assertEqual(response.code, 200)
        d = treq.content(response)
        self.client.flush()
        self.failureResultOf(d, ResponseFailed)
        self.assertTrue(self.fake.requests[0].disconnected)


class HangReplyTests(FakeTestCase):
    """
    ``hang_reply`` never answers.
    """

    def test_hang_then_client_gives_up(self) -> None:
        """
        No response arrives and the handle stays open; when the client
        cancels, the request is marked disconnected and leaves open_streams.
        """
        reply = hang_reply()
        self.fake.enqueue(reply)
        d = self.send("POST", "/v1/messages", b'{"stream": true}')
        self.assertNoResult(d)
        self.assertEqual(self.fake.open_streams, [reply.handle])
        self.clock.advance(3600)
        self.client.flush()
        self.assertNoResult(d)
        d.cancel()
        self.client.flush()
        self.failureResultOf(d)
        self.assertTrue(self.fake.requests[0].disconnected)
        self.assertEqual(self.fake.open_streams, [])


class ManualReplyTests(FakeTestCase):
    """
    ``manual_reply`` lets the test drive the response.
    """

    def setUp(self) -> None:
        super().setUp()
        self.reply = manual_reply()
        self.fake.enqueue(self.reply)
        self.pending = self.send("POST", "/v1/messages?beta=true", b'{"stream": true}')

    def test_driven(self) -> None:
        """
        The handle appears on arrival; ``start`` sends headers, each ``event``
        reaches the client at once as its own chunk, ``finish`` ends the body.
        """
        handle = self.reply.handle
        assert handle is not None
        self.assertEqual(self.fake.open_streams, [handle])
        self.assertEqual(handle.request.method, b"POST")
        self.assertNoResult(self.pending)
        handle.start(headers={"x-extra": "1"})
        self.client.flush()
        response = self.successResultOf(self.pending)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        self.assertEqual(response.headers.getRawHeaders("x-extra"), ["1"])
        self.assertEqual(response.headers.getRawHeaders(UNIFIED + "status"), ["allowed"])
        chunks, done = self.collect(response)
        self.assertTrue(handle.event("ping", {"type": "ping"}))
        self.client.flush()
        self.assertEqual(chunks, [b'event: ping\ndata: {"type":"ping"}\n\n'])
        handle.write(b": comment\n\n")
        self.client.flush()
        self.assertEqual(chunks[1], b": comment\n\n")
        self.assertNoResult(done)
        handle.finish()
        self.client.flush()
        self.successResultOf(done)
        self.assertFalse(handle.event("ping", {"type": "ping"}))
        self.assertEqual(self.fake.open_streams, [])
        self.assertFalse(self.fake.requests[0].disconnected)

    def test_abort(self) -> None:
        """
        ``abort`` cuts the body after what was written; nothing is written
        afterwards.
        """
        handle = self.reply.handle
        assert handle is not None
        handle.event("ping", {"type": "ping"})
        self.client.flush()
        chunks, done = self.collect(self.successResultOf(self.pending))
        handle.abort()
        self.assertFalse(handle.event("ping", {"type": "ping"}))
        handle.finish()
        self.client.flush()
        self.failureResultOf(done, ResponseFailed)
        self.assertEqual(len(chunks), 1)
        self.assertTrue(handle.aborted)
        self.assertTrue(handle.disconnected)

    def test_client_disconnect(self) -> None:
        """
        When the client goes away mid-stream the handle and the recorded
        request say so, and later writes and finish are ignored.
        """
        handle = self.reply.handle
        assert handle is not None
        handle.start()
        self.client.flush()

        def stop(data: bytes) -> None:
            raise ValueError("client hangs up")

        done = treq.collect(self.successResultOf(self.pending), stop)
        handle.event("ping", {"type": "ping"})
        self.client.flush()
        self.failureResultOf(done, ValueError)
        self.assertTrue(handle.disconnected)
        self.assertTrue(self.fake.requests[0].disconnected)
        self.assertEqual(self.fake.open_streams, [])
        self.assertFalse(handle.event("ping", {"type": "ping"}))
        handle.finish()


class SlowStreamTests(FakeTestCase):
    """
    ``slow_stream_reply`` paces events on the injected clock.
    """

    def test_paced(self) -> None:
        """
        message_start arrives at once, then one event per interval, and no
        delayed call is left once the stream is done.
        """
        self.fake.enqueue(slow_stream_reply(2.0, events=3))
        response = self.messages({"model": "m", "stream": True})
        chunks, done = self.collect(response)
        self.assertEqual([parse_event(c)[0] for c in chunks], ["message_start"])
        self.clock.advance(1.9)
        self.client.flush()
        self.assertEqual(len(chunks), 1)
        self.clock.advance(0.1)
        self.client.flush()
        self.assertEqual(parse_event(chunks[1])[0], "content_block_start")
        self.assertNoResult(done)
        for _ in range(20):
            self.clock.advance(2.0)
            self.client.flush()
        self.successResultOf(done)
        events = [parse_event(c) for c in chunks]
        text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
        self.assertEqual(text, "tick 1 tick 2 tick 3 ")
        self.assertEqual(events[-1][0], "message_stop")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_disconnect_cancels(self) -> None:
        """
        A client disconnect cancels the pending call.
        """
        self.fake.enqueue(slow_stream_reply(1.0))
        response = self.messages({"model": "m", "stream": True})

        def stop(data: bytes) -> None:
            raise ValueError("client hangs up")

        done = treq.collect(response, stop)
        self.client.flush()
        self.failureResultOf(done, ValueError)
        self.assertTrue(self.fake.requests[0].disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_non_streaming(self) -> None:
        """
        A non-streaming request is answered after interval * events.
        """
        self.fake.enqueue(slow_stream_reply(1.5, events=4))
        d = self.send("POST", "/v1/messages", b'{"model": "m"}')
        self.clock.advance(5.9)
        self.client.flush()
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.client.flush()
        body = self.json_of(self.successResultOf(d))
        self.assertEqual(body["content"][0]["text"], "tick 1 tick 2 tick 3 tick 4 ")


class OtherEndpointTests(FakeTestCase):
    """
    count_tokens, models, usage and profile.
    """

    def test_count_tokens(self) -> None:
        """
        count_tokens answers ``input_tokens`` derived from the body length.
        """
        messages = [{"role": "user", "content": "x" * 400}]
        raw = json.dumps({"model": "m", "messages": messages}).encode()
        response = self.request("POST", "/v1/messages/count_tokens?beta=true", raw)
        self.assertEqual(self.json_of(response), {"input_tokens": len(raw) // 4})

    def test_count_tokens_held(self) -> None:
        """
        With ``hold_count_tokens``, count_tokens answers wait in
        ``held_count_tokens`` until ``release_count_tokens`` sends each its
        own answer; a held request whose client left is dropped.
        """
        self.fake.hold_count_tokens = True
        raws = [
            json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * n}]}).encode()
            for n in (40, 400, 4000)
        ]
        pending = [self.send("POST", "/v1/messages/count_tokens", raw) for raw in raws]
        for d in pending:
            self.assertNoResult(d)
        self.assertEqual([h.recorded.body for h in self.fake.held_count_tokens], raws)
        pending[1].cancel()
        self.client.flush()
        self.failureResultOf(pending[1])
        self.assertEqual(len(self.fake.held_count_tokens), 2)
        self.fake.release_count_tokens()
        self.client.flush()
        for index in (0, 2):
            answer = self.json_of(self.successResultOf(pending[index]))
            self.assertEqual(answer, {"input_tokens": len(raws[index]) // 4})
        self.assertEqual(self.fake.held_count_tokens, [])
        later = self.request("POST", "/v1/messages/count_tokens", raws[0])
        self.assertEqual(self.json_of(later), {"input_tokens": len(raws[0]) // 4})

    def test_models(self) -> None:
        """
        The model list has the API's paging fields; one model is served by
        id, an unknown id is 404.
        """
        listing = self.json_of(self.request("GET", "/v1/models?limit=1000"))
        self.assertFalse(listing["has_more"])
        ids = [model["id"] for model in listing["data"]]
        self.assertEqual(listing["first_id"], ids[0])
        self.assertEqual(listing["last_id"], ids[-1])
        one = self.json_of(self.request("GET", "/v1/models/" + ids[0]))
        self.assertEqual(one, listing["data"][0])
        self.assertEqual(one["type"], "model")
        self.assertEqual(self.request("GET", "/v1/models/claude-nope").code, 404)

    def test_usage(self) -> None:
        """
        /api/oauth/usage reports the unified utilizations as percentages with
        ISO 8601 resets.
        """
        body = self.json_of(self.request("GET", "/api/oauth/usage"))
        self.assertEqual(body["five_hour"]["utilization"], 10.0)
        self.assertEqual(body["seven_day"]["utilization"], 20.0)
        self.assertEqual(body["five_hour"]["resets_at"], "2026-09-21T19:13:20+00:00")
        self.assertIsNone(body["seven_day_opus"])
        self.assertEqual([limit["percent"] for limit in body["limits"]], [10, 20])

    def test_profile(self) -> None:
        """
        /api/oauth/profile reports a Max account.
        """
        headers = {"authorization": f"Bearer {ACCESS_TOKEN}"}
        body = self.json_of(self.request("GET", "/api/oauth/profile", headers=headers))
        self.assertEqual(body["account"]["email"], "fake@example.com")
        self.assertEqual(body["organization"]["organization_type"], "claude_max")
        self.assertEqual(body["organization"]["rate_limit_tier"], "default_claude_max_20x")

    def test_usage_body_override(self) -> None:
        """
        ``usage_body``, when set, is the usage answer as given.
        """
        self.fake.usage_body = {
            "five_hour": None,
            "seven_day": {"utilization": 3.5, "resets_at": None},
        }
        response = self.request("GET", "/api/oauth/usage")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.json_of(response), self.fake.usage_body)

    def test_usage_rate_limited(self) -> None:
        """
        ``usage_mode = "rate_limited"`` answers 429 with ``usage_retry_after``
        as ``retry-after``, or without that header when it is ``None``.
        """
        self.fake.usage_mode = "rate_limited"
        response = self.request("GET", "/api/oauth/usage")
        self.assertEqual(response.code, 429)
        self.assertIsNone(response.headers.getRawHeaders("retry-after"))
        self.assertEqual(self.json_of(response)["error"]["type"], "rate_limit_error")
        self.fake.usage_retry_after = "120"
        response = self.request("GET", "/api/oauth/usage")
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["120"])

    def test_usage_server_error_and_malformed(self) -> None:
        """
        ``"server_error"`` answers 500 in the API's error shape;
        ``"malformed"`` answers 200 with a body that is not JSON.
        """
        self.fake.usage_mode = "server_error"
        response = self.request("GET", "/api/oauth/usage")
        self.assertEqual(response.code, 500)
        self.assertEqual(self.json_of(response)["error"]["type"], "api_error")
        self.fake.usage_mode = "malformed"
        response = self.request("GET", "/api/oauth/usage")
        self.assertEqual(response.code, 200)
        d = treq.content(response)
        self.client.flush()
        body = self.successResultOf(d)
        self.assertRaises(ValueError, json.loads, body)

    def test_usage_hang(self) -> None:
        """
        ``"hang"`` never answers; ``"hang_body"`` sends the headers and part
        of the body, then nothing.  Both requests stay open until the
        client gives up.
        """
        self.fake.usage_mode = "hang"
        d = self.send("GET", "/api/oauth/usage")
        self.clock.advance(600)
        self.client.flush()
        self.assertNoResult(d)
        d.cancel()
        self.client.flush()
        self.failureResultOf(d)
        self.assertTrue(self.fake.requests[-1].disconnected)
        self.fake.usage_mode = "hang_body"
        response = self.request("GET", "/api/oauth/usage")
        self.assertEqual(response.code, 200)
        chunks, done = self.collect(response)
        self.clock.advance(600)
        self.client.flush()
        self.assertEqual(b"".join(chunks), b'{"five_hour": ')
        self.assertNoResult(done)
        self.assertFalse(self.fake.requests[-1].disconnected)
        self.fake.abort_all()
        self.client.flush()
        self.failureResultOf(done)

    def test_profile_modes(self) -> None:
        """
        ``profile`` is the profile answer; ``profile_mode = "server_error"``
        answers 500 and ``"hang"`` never answers.
        """
        self.fake.profile["organization"]["organization_type"] = "claude_pro"
        body = self.json_of(self.request("GET", "/api/oauth/profile"))
        self.assertEqual(body["organization"]["organization_type"], "claude_pro")
        self.fake.profile_mode = "server_error"
        self.assertEqual(self.request("GET", "/api/oauth/profile").code, 500)
        self.fake.profile_mode = "hang"
        d = self.send("GET", "/api/oauth/profile")
        self.clock.advance(600)
        self.client.flush()
        self.assertNoResult(d)
        d.cancel()
        self.client.flush()
        self.failureResultOf(d)

    def test_profile_copy(self) -> None:
        """
        Changing one fake's ``profile`` leaves other fakes' alone.
        """
        self.fake.profile["organization"]["organization_type"] = "claude_team"
        other = FakeAnthropic(self.clock)
        self.assertEqual(other.profile["organization"]["organization_type"], "claude_max")

    def test_extra_access_tokens(self) -> None:
        """
        Tokens in ``extra_access_tokens`` are accepted like ``access_token``;
        others are not.
        """
        self.fake.extra_access_tokens = {"sk-ant-oat01-second"}
        second = dict(OAUTH_HEADERS, authorization="Bearer sk-ant-oat01-second")
        self.assertEqual(self.request("GET", "/api/oauth/usage", headers=second).code, 200)
        third = dict(OAUTH_HEADERS, authorization="Bearer sk-ant-oat01-third")
        self.assertEqual(self.request("GET", "/api/oauth/usage", headers=third).code, 401)


class CacheTouchTests(FakeTestCase):
    """
    ``POST /v1/messages/cache_touch``, Claude Code's prompt-cache keepalive.
    """

    def touch(self, request_id: Any, headers: dict[str, str] | None = None) -> IResponse:
        body = json.dumps({"request_id": request_id}).encode()
        return self.request("POST", "/v1/messages/cache_touch?beta=true", body, headers)

    def test_touch_of_an_answer(self) -> None:
        """
        A touch naming the request id of a finished ``/v1/messages``
        answer of the same subscription is a 200 with an empty object.
        """
        answer = self.messages({"model": "m"})
        self.successResultOf(self.collect(answer)[1])
        [request_id] = answer.headers.getRawHeaders("request-id")
        response = self.touch(request_id)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.json_of(response), {})
        self.assertEqual(self.fake.message_bearers, {request_id: ACCESS_TOKEN})

    def test_other_subscription(self) -> None:
        """
        Another subscription cannot touch that cache: 404, with a
        ``request-id`` of its own.
        """
        self.fake.extra_access_tokens = {"sk-ant-oat01-second"}
        answer = self.messages({"model": "m"})
        self.successResultOf(self.collect(answer)[1])
        [request_id] = answer.headers.getRawHeaders("request-id")
        second = dict(OAUTH_HEADERS, authorization="Bearer sk-ant-oat01-second")
        response = self.touch(request_id, second)
        self.assertEqual(response.code, 404)
        self.assertEqual(self.json_of(response)["error"]["type"], "not_found_error")
        self.assertEqual(response.headers.getRawHeaders("request-id"), ["req_fake_2"])

    def test_unknown_failed_or_unfinished(self) -> None:
        """
        An unknown id, the id of an error answer, and that of a stream not
        finished yet are 404; a body without a string ``request_id`` is 400;
        a bad bearer is 401.
        """
        self.assertEqual(self.touch("req_nowhere").code, 404)
        self.fake.enqueue(error_reply(529, "overloaded_error", "Overloaded"))
        failed = self.messages({"model": "m"})
        self.successResultOf(self.collect(failed)[1])
        self.assertEqual(self.touch(failed.headers.getRawHeaders("request-id")[0]).code, 404)
        reply = manual_reply()
        self.fake.enqueue(reply)
        pending = self.send("POST", "/v1/messages", json.dumps({"model": "m"}).encode())
        streaming = self.fake.requests[-1].request_id
        self.assertEqual(self.touch(streaming).code, 404)
        assert reply.handle is not None
        reply.handle.finish()
        self.client.flush()
        self.successResultOf(pending)
        self.assertEqual(self.touch(streaming).code, 200)
        self.assertEqual(self.touch(7).code, 400)
        bad = dict(OAUTH_HEADERS, authorization="Bearer nope")
        self.assertEqual(self.touch("req_fake_2", bad).code, 401)


class TokenEndpointTests(FakeTestCase):
    """
    ``POST /v1/oauth/token`` and its modes.
    """

    def refresh_body(self, refresh_token: str = REFRESH_TOKEN, **extra: str) -> dict[str, str]:
        return {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            **extra,
        }

    def test_rotation(self) -> None:
        """
        A valid refresh rotates both tokens: the new access token is accepted
        on /v1/messages, the old ones no longer are.
        """
        self.fake.token_expires_in = 3600
        response = self.token(self.refresh_body(scope="user:inference user:profile"))
        self.assertEqual(response.code, 200)
        body = self.json_of(response)
        self.assertEqual(body["access_token"], "sk-ant-oat01-fake-1")
        self.assertEqual(body["refresh_token"], "sk-ant-ort01-fake-1")
        self.assertEqual(body["expires_in"], 3600)
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["scope"], "user:inference user:profile")
        self.assertEqual(self.fake.access_token, body["access_token"])
        self.assertEqual(self.fake.refresh_token, body["refresh_token"])
        self.assertEqual(self.messages({"model": "m"}).code, 401)
        fresh = dict(OAUTH_HEADERS, authorization=f"Bearer {body['access_token']}")
        self.assertEqual(self.messages({"model": "m"}, fresh).code, 200)
        self.assertEqual(self.token(self.refresh_body()).code, 400)
        second = self.json_of(self.token(self.refresh_body(body["refresh_token"])))
        self.assertEqual(second["access_token"], "sk-ant-oat01-fake-2")
        self.assertEqual(self.fake.token_requests[0].json()["client_id"], CLIENT_ID)

    def test_wrong_refresh_token(self) -> None:
        """
        An unknown refresh token gets the OAuth invalid_grant body and
        nothing rotates.
        """
        response = self.token(self.refresh_body("sk-ant-ort01-stale"))
        self.assertEqual(response.code, 400)
        self.assertEqual(
            self.json_of(response),
            {"error": "invalid_grant", "error_description": "Refresh token not found or invalid"},
        )
        self.assertEqual(self.fake.access_token, ACCESS_TOKEN)

    def test_invalid_grant_mode(self) -> None:
        """
        Mode invalid_grant rejects even the right refresh token.
        """
        self.fake.token_mode = "invalid_grant"
        response = self.token(self.refresh_body())
        self.assertEqual(response.code, 400)
        self.assertEqual(self.json_of(response)["error"], "invalid_grant")
        self.assertEqual(self.fake.refresh_token, REFRESH_TOKEN)

    def test_server_error_mode(self) -> None:
        """
        Mode server_error answers 500.
        """
        self.fake.token_mode = "server_error"
        self.assertEqual(self.token(self.refresh_body()).code, 500)
        self.assertEqual(self.fake.access_token, ACCESS_TOKEN)

    def test_rate_limited_mode(self) -> None:
        """
        Mode rate_limited answers 429 with a rate_limit_error, with the
        ``retry-after`` of ``token_retry_after`` only when it is set, and
        nothing rotates.
        """
        self.fake.token_mode = "rate_limited"
        response = self.token(self.refresh_body())
        self.assertEqual(response.code, 429)
        self.assertEqual(self.json_of(response)["error"]["type"], "rate_limit_error")
        self.assertIsNone(response.headers.getRawHeaders(b"retry-after"))
        self.fake.token_retry_after = "120"
        self.assertEqual(
            self.token(self.refresh_body()).headers.getRawHeaders(b"retry-after"), [b"120"]
        )
        self.assertEqual(self.fake.refresh_token, REFRESH_TOKEN)

    def test_hang_mode(self) -> None:
        """
        Mode hang never answers; the request is recorded and marked
        disconnected when the client gives up.
        """
        self.fake.token_mode = "hang"
        d = self.send("POST", "/v1/oauth/token", json.dumps(self.refresh_body()).encode(), {})
        self.clock.advance(600)
        self.client.flush()
        self.assertNoResult(d)
        self.assertEqual(len(self.fake.token_requests), 1)
        d.cancel()
        self.client.flush()
        self.failureResultOf(d)
        self.assertTrue(self.fake.token_requests[0].disconnected)

    def test_bad_bodies(self) -> None:
        """
        A non-JSON body is invalid_request; a JSON body of the wrong grant or
        without client_id is rejected too.
        """
        response = self.token(None, raw=b"grant_type=refresh_token")
        self.assertEqual(response.code, 400)
        self.assertEqual(self.json_of(response), {"error": "invalid_request"})
        wrong_grant = self.token(dict(self.refresh_body(), grant_type="authorization_code"))
        self.assertEqual(self.json_of(wrong_grant)["error"], "unsupported_grant_type")
        body = self.refresh_body()
        del body["client_id"]
        self.assertEqual(self.json_of(self.token(body))["error"], "invalid_request")
        self.assertEqual(self.fake.refresh_token, REFRESH_TOKEN)


class RealReactorTests(TestCase):
    """
    The fake served by a real :obj:`Site` on loopback.
    """

    def setUp(self) -> None:
        from treq.client import HTTPClient
        from twisted.internet import reactor
        from twisted.web.client import Agent, HTTPConnectionPool
        from twisted.web.server import Site

        self.fake = FakeAnthropic(reactor)
        # Twisted's types want a ServerFactory of any protocol; a Site is one.
        port = reactor.listenTCP(
            0, cast(ServerFactory, Site(self.fake.resource())), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.addCleanup(self.fake.abort_all)
        self.http = HTTPClient(Agent(reactor, pool=pool))
        self.url = f"http://127.0.0.1:{cast(IPv4Address, port.getHost()).port}/v1/messages?beta=true"

    async def post_stream(self) -> tuple[IResponse, list[bytes], Deferred[None]]:
        body = json.dumps({"model": "m", "stream": True}).encode()
        headers: dict[bytes | str, bytes | str] = dict(OAUTH_HEADERS.items())
        response = await self.http.post(
            self.url, data=body, headers=headers, unbuffered=True
        )
        chunks: list[bytes] = []
        return response, chunks, treq.collect(response, chunks.append)

    def test_stream_over_tcp(self) -> Deferred[None]:
        """
        Over real TCP a streamed text reply arrives complete.
        """

        async def run() -> None:
            response, chunks, done = await self.post_stream()
            await done
            names = [parse_event(e + b"\n\n")[0] for e in b"".join(chunks).split(b"\n\n")[:-1]]
            self.assertEqual(names[0], "message_start")
            self.assertEqual(names[-1], "message_stop")

        return Deferred.fromCoroutine(run())

    def test_cut_over_tcp(self) -> Deferred[None]:
        """
        Over real TCP a cut stream still delivers the events written before
        the cut, then fails with data loss.
        """
        self.fake.enqueue(cut_stream_reply(after_events=2))

        async def run() -> None:
            response, chunks, done = await self.post_stream()
            with self.assertRaises(ResponseFailed):
                await done
            self.assertEqual(b"".join(chunks).count(b"event: "), 2)
            self.assertTrue(self.fake.requests[0].disconnected)

        return Deferred.fromCoroutine(run())
