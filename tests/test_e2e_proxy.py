"""
End-to-end tests of the proxy: a real ``twistd -n ccm`` process between real
clients (the Claude Code CLI and the ``anthropic`` Python SDK) and the fake
Anthropic upstream of :obj:`tests.fake_anthropic`, all on loopback.

Every test also checks, once ccm has stopped, that nothing ccm printed
contains a secret (the subscription's OAuth tokens, any client's token) or a
traceback.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests import e2e
from tests.fake_anthropic import (
    DEFAULT_INPUT_TOKENS,
    OAUTH_BETA,
    FakeAnthropic,
    RecordedRequest,
    cut_stream_reply,
    error_reply,
    midstream_error_reply,
    text_reply,
    tool_use_reply,
)
from tests.fixtures import expiry_ms, write_credentials

USER_TOKEN = "ak-ccm-alice"
OTHER_USER_TOKEN = "ak-ccm-bob"
WRONG_TOKEN = "ak-ccm-not-a-user-1234"
USERS = [
    {"name": "alice", "token": USER_TOKEN},
    {"name": "bob", "token": OTHER_USER_TOKEN},
]
MODEL = "claude-sonnet-4-5-20250929"
# A beta the Claude Code CLI always sends (anthropic-wire.md section 6.3).
CLAUDE_CODE_BETA = "claude-code-20250219"
# A beta only a subscriber-mode CLI sends, besides the OAuth one.
SUBSCRIBER_CACHE_BETA = "extended-cache-ttl-2025-04-11"


def betas_of(request: RecordedRequest) -> list[str]:
    """
    Every item of every ``anthropic-beta`` header of ``request``, in order.
    """
    return [
        item.strip()
        for value in request.headers.get("anthropic-beta", [])
        for item in value.split(",")
        if item.strip()
    ]


def api_requests(fake: FakeAnthropic) -> list[RecordedRequest]:
    """
    The requests the fake received on the API (``/v1/...``), leaving out
    ccm's background usage polls.
    """
    return [r for r in fake.requests if r.path.startswith("/v1/")]


def message_posts(fake: FakeAnthropic) -> list[RecordedRequest]:
    """
    The ``POST /v1/messages`` requests the fake received (any query).
    """
    return [
        r
        for r in fake.requests
        if r.method == "POST" and r.path.split("?")[0] == "/v1/messages"
    ]


class _CcmWithFakeUpstream(unittest.TestCase):
    """
    Each test gets a fresh fake upstream and a ccm process in front of it,
    with a valid subscription credential and the users of :obj:`USERS`.
    """

    timeout = 300
    ccm: e2e.CcmProcess

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for its Deferred
        self.fake, fake_url = e2e.serve_fake_anthropic(self)
        self.secrets = [
            self.fake.access_token,
            self.fake.refresh_token,
            USER_TOKEN,
            OTHER_USER_TOKEN,
            WRONG_TOKEN,
        ]
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        credential_path = os.path.join(directory, ".credentials.json")
        write_credentials(
            credential_path, self.fake.access_token, self.fake.refresh_token, expiry_ms(30 * 86400)
        )
        # Registered before start_ccm registers its stop, so this runs after
        # ccm has stopped and its whole output is in.
        self.addCleanup(self._check_ccm_output)
        self.ccm = yield e2e.start_ccm(self, e2e.ccm_config(fake_url, credential_path, USERS))

    def _check_ccm_output(self) -> None:
        """
        Nothing ccm printed holds a secret or a traceback.
        """
        if not hasattr(self, "ccm"):
            return  # It never started; the test failed already.
        output = self.ccm.output()
        for secret in self.secrets:
            self.assertNotIn(secret, output)
        self.assertNotIn("Traceback", output)

    @inlineCallbacks
    def wait_for_ccm_output(self, text: str, timeout: float = 5.0) -> Any:
        """
        Wait until ccm has printed ``text`` (its log reaches us through a
        pipe, a little after the client got its answer).
        """
        waited = 0.0
        while text not in self.ccm.output() and waited < timeout:
            yield deferLater(reactor, 0.1)
            waited += 0.1
        self.assertIn(text, self.ccm.output())

    def assert_oauth_only(self, request: RecordedRequest) -> None:
        """
        ``request`` reached the fake with the subscription's bearer token,
        the OAuth beta exactly once, and no API key.
        """
        self.assertEqual(request.headers.get("authorization"), ["Bearer " + self.fake.access_token])
        self.assertNotIn("x-api-key", request.headers)
        self.assertNotIn("api-key", request.headers)
        self.assertEqual(betas_of(request).count(OAUTH_BETA), 1, request.headers)

    def assert_no_client_token_upstream(self) -> None:
        """
        No request the fake received carries any ccm user token, in any
        header or in the body.
        """
        self.assertTrue(self.fake.requests)
        for request in self.fake.requests:
            for token in (USER_TOKEN, OTHER_USER_TOKEN, WRONG_TOKEN):
                self.assertNotIn(token, json.dumps(request.headers))
                self.assertNotIn(token.encode("ascii"), request.body)
                self.assertNotIn(token, request.path)


if TYPE_CHECKING:
    _Base = _CcmWithFakeUpstream
else:
    _Base = object


class ClaudeCodeTestsMixin(e2e.RealClaudeCode, _Base):
    """
    The real Claude Code CLI (``claude -p``) through ccm.
    """

    @inlineCallbacks
    def test_print_streams_through_ccm(self) -> Any:
        """
        ``claude -p`` with a ccm token prints the upstream's text and exits 0;
        the upstream got one streaming request on the CLI's own path (query
        kept), with the subscription's bearer token, the OAuth beta once
        beside the CLI's betas, and never the client's token.
        """
        self.fake.enqueue(text_reply("Hello through ccm."))
        result = yield self.run_claude(self.ccm.url, USER_TOKEN, "say hi")
        self.assertEqual((result.rc, result.stdout.strip()), (0, "Hello through ccm."), result.stderr)

        [post] = api_requests(self.fake)
        self.assertEqual(post.path, "/v1/messages?beta=true")
        self.assert_oauth_only(post)
        self.assertIn(CLAUDE_CODE_BETA, betas_of(post))
        self.assertIs(post.json().get("stream"), True)
        # The CLI's session header reaches the upstream untouched.
        self.assertTrue(post.header("x-claude-code-session-id"))
        self.assert_no_client_token_upstream()
        yield self.wait_for_ccm_output("user=alice")

    @inlineCallbacks
    def test_json_output(self) -> Any:
        """
        ``claude -p --output-format json`` reports a successful result
        holding the upstream's text.
        """
        self.fake.enqueue(text_reply("Answer as JSON."))
        result = yield self.run_claude(
            self.ccm.url, USER_TOKEN, "say hi", args=["--output-format", "json"]
        )
        self.assertEqual(result.rc, 0, result.stderr)
        parsed = json.loads(result.stdout)
        self.assertEqual((parsed["is_error"], parsed["result"]), (False, "Answer as JSON."))
        self.assert_oauth_only(message_posts(self.fake)[0])

    @inlineCallbacks
    def test_non_streaming_fallback_after_midstream_error(self) -> Any:
        """
        When the stream ends with an ``api_error`` event after
        ``message_start``, the CLI asks again without streaming and prints
        that reply's text: ccm relays the error event as it came and serves
        the non-streaming request too.  (An ``overloaded_error`` event would
        make the CLI retry with streaming instead.)
        """
        self.fake.enqueue(
            midstream_error_reply("api_error", "Internal server error"),
            text_reply("Fallback answer."),
        )
        result = yield self.run_claude(self.ccm.url, USER_TOKEN, "say hi")
        self.assertEqual((result.rc, result.stdout.strip()), (0, "Fallback answer."), result.stderr)
        self.assert_fell_back_to_non_streaming()

    @inlineCallbacks
    def test_non_streaming_fallback_after_upstream_cut(self) -> Any:
        """
        When the upstream connection breaks in the middle of a stream, ccm
        ends the client's stream with an SSE ``error`` event of its own, and
        the CLI falls back to a non-streaming request, which succeeds.
        """
        self.fake.enqueue(cut_stream_reply(after_events=3), text_reply("Fallback answer."))
        result = yield self.run_claude(self.ccm.url, USER_TOKEN, "say hi")
        self.assertEqual((result.rc, result.stdout.strip()), (0, "Fallback answer."), result.stderr)
        self.assert_fell_back_to_non_streaming()
        yield self.wait_for_ccm_output("the upstream connection was lost mid-response")

    def assert_fell_back_to_non_streaming(self) -> None:
        """
        The upstream got exactly two message requests, the first streaming
        and the second not, both with the OAuth credential only.
        """
        posts = message_posts(self.fake)
        self.assertEqual([p.json().get("stream") is True for p in posts], [True, False])
        for post in posts:
            self.assert_oauth_only(post)
        self.assert_no_client_token_upstream()

    @inlineCallbacks
    def test_tool_round_trip(self) -> Any:
        """
        A ``tool_use`` answer makes the CLI run the tool and send its output
        back as a ``tool_result`` through ccm, then print the final text.
        """
        self.fake.enqueue(
            tool_use_reply("Bash", {"command": "echo e2e-tool-ok", "description": "echo"}),
            text_reply("done"),
        )
        result = yield self.run_claude(
            self.ccm.url,
            USER_TOKEN,
            "run echo e2e-tool-ok",
            args=["--allowedTools", "Bash"],
        )
        self.assertEqual((result.rc, result.stdout.strip()), (0, "done"), result.stderr)

        first, second = message_posts(self.fake)
        tool_use_id = "toolu_fake_{}".format(self.fake.requests.index(first) + 1)
        results = [
            block
            for message in second.json()["messages"]
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]
        self.assertEqual([r["tool_use_id"] for r in results], [tool_use_id])
        self.assertIn("e2e-tool-ok", json.dumps(results[0]["content"]))
        # Both turns of the conversation carry the same session id.
        self.assertEqual(
            first.header("x-claude-code-session-id"), second.header("x-claude-code-session-id")
        )
        for post in (first, second):
            self.assert_oauth_only(post)
        self.assert_no_client_token_upstream()

    @inlineCallbacks
    def test_wrong_token_is_refused(self) -> Any:
        """
        A token that belongs to no user is refused by ccm: the CLI, with its
        default retries, gives up after one request with ccm's message,
        nothing reaches the upstream, and ccm logs the refusal without the
        token.  The next CLI run with a valid token works.
        """
        # Without x-should-retry: false the CLI retries silently for about
        # three minutes, and is killed (a ProcessTimeout) long before.
        result = yield self.run_claude(
            self.ccm.url,
            WRONG_TOKEN,
            "say hi",
            extra_env={"CLAUDE_CODE_MAX_RETRIES": None},
            timeout=60,
        )
        self.assertNotEqual(result.rc, 0)
        output = result.stdout + result.stderr
        self.assertIn("ccm token not recognised", output)
        self.assertIn("ask your ccm operator", output)
        self.assertNotIn(WRONG_TOKEN, output)
        self.assertEqual(api_requests(self.fake), [])
        yield self.wait_for_ccm_output("refused POST /v1/messages")
        self.assertEqual(self.ccm.output().count("refused POST /v1/messages"), 1)
        self.fake.enqueue(text_reply("Hello after the typo."))
        result = yield self.run_claude(self.ccm.url, USER_TOKEN, "say hi")
        self.assertEqual((result.rc, result.stdout.strip()), (0, "Hello after the typo."))

    @inlineCallbacks
    def test_api_key_with_user_token(self) -> Any:
        """
        ``ANTHROPIC_API_KEY`` set to a user's token (sent as ``x-api-key``)
        is accepted; the upstream gets the OAuth bearer and no API key.
        """
        self.fake.enqueue(text_reply("Hello, API key user."))
        result = yield self.run_claude(
            self.ccm.url, None, "say hi", extra_env={"ANTHROPIC_API_KEY": OTHER_USER_TOKEN}
        )
        self.assertEqual(
            (result.rc, result.stdout.strip()), (0, "Hello, API key user."), result.stderr
        )
        [post] = message_posts(self.fake)
        self.assert_oauth_only(post)
        self.assert_no_client_token_upstream()
        yield self.wait_for_ccm_output("user=bob")

    @inlineCallbacks
    def test_subscriber_mode_client(self) -> Any:
        """
        A CLI in subscriber mode (``CLAUDE_CODE_OAUTH_TOKEN`` set to a ccm
        token) sends the OAuth beta itself: upstream still sees it exactly
        once, next to the CLI's other subscriber beta.
        """
        self.fake.enqueue(text_reply("Hello, subscriber."))
        result = yield self.run_claude(
            self.ccm.url, None, "say hi", extra_env={"CLAUDE_CODE_OAUTH_TOKEN": USER_TOKEN}
        )
        self.assertEqual(
            (result.rc, result.stdout.strip()), (0, "Hello, subscriber."), result.stderr
        )
        [post] = message_posts(self.fake)
        self.assert_oauth_only(post)
        self.assertIn(SUBSCRIBER_CACHE_BETA, betas_of(post))
        self.assert_no_client_token_upstream()


globals().update(ClaudeCodeTestsMixin.make_test_case_classes(_CcmWithFakeUpstream))


# The SDK side of the tests: a script run in a separate interpreter, which
# prints one JSON object describing what the SDK returned.
SDK_PRELUDE = """
import json, os
import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["CCM_E2E_URL"],
    api_key=os.environ["CCM_E2E_TOKEN"],
    max_retries=0,
)
MODEL = os.environ["CCM_E2E_MODEL"]
MESSAGES = [{"role": "user", "content": "say hi"}]
out = {}
"""

SDK_SUCCESS = """
message = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
out["create_text"] = message.content[0].text
with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
    out["stream_text"] = "".join(stream.text_stream)
    final = stream.get_final_message()
out["stream_final_text"] = final.content[0].text
out["stream_usage"] = [final.usage.input_tokens, final.usage.output_tokens]
out["count_tokens"] = client.messages.count_tokens(model=MODEL, messages=MESSAGES).input_tokens
out["models"] = [model.id for model in client.models.list()]
print(json.dumps(out))
"""

SDK_ERRORS = """
for name in ("first", "second"):
    try:
        client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    except anthropic.APIStatusError as error:
        out[name] = {
            "class": type(error).__name__,
            "status": error.status_code,
            "retry_after": error.response.headers.get("retry-after"),
            "unified_status": error.response.headers.get(
                "anthropic-ratelimit-unified-status"
            ),
            "request_id": error.request_id,
            "error_type": error.body["error"]["type"],
            "message": error.body["error"]["message"],
        }
    else:
        out[name] = "no error"
print(json.dumps(out))
"""


class AnthropicSDKTests(_CcmWithFakeUpstream):
    """
    The real ``anthropic`` Python SDK (which sends its API key as a bearer
    token) through ccm.
    """

    @inlineCallbacks
    def run_sdk(self, body: str) -> Any:
        """
        Run ``SDK_PRELUDE + body`` against ccm with alice's token; fire with
        the JSON object it printed.
        """
        rc, out, err = yield e2e.run_python_script(
            self,
            SDK_PRELUDE + body,
            env={
                "CCM_E2E_URL": self.ccm.url,
                "CCM_E2E_TOKEN": USER_TOKEN,
                "CCM_E2E_MODEL": MODEL,
            },
        )
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    @inlineCallbacks
    def test_create_stream_count_tokens_models(self) -> Any:
        """
        Non-streaming ``messages.create``, ``messages.stream`` (text and final
        message with usage), ``messages.count_tokens`` and ``models.list``
        all work through ccm, each sent upstream with the OAuth bearer.
        """
        self.fake.enqueue(text_reply("Not streamed."), text_reply("Streamed."))
        result = yield self.run_sdk(SDK_SUCCESS)

        self.assertEqual(result["create_text"], "Not streamed.")
        self.assertEqual(result["stream_text"], "Streamed.")
        self.assertEqual(result["stream_final_text"], "Streamed.")
        # The fake counts about one output token per four characters.
        self.assertEqual(result["stream_usage"], [DEFAULT_INPUT_TOKENS, len("Streamed.") // 4])
        self.assertIsInstance(result["count_tokens"], int)
        self.assertGreater(result["count_tokens"], 0)
        self.assertEqual(
            result["models"],
            ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805"],
        )

        paths = [
            (r.method, r.path.split("?")[0]) for r in self.fake.requests if r.path.startswith("/v1/")
        ]
        self.assertEqual(
            paths,
            [
                ("POST", "/v1/messages"),
                ("POST", "/v1/messages"),
                ("POST", "/v1/messages/count_tokens"),
                ("GET", "/v1/models"),
            ],
        )
        create, stream = message_posts(self.fake)
        self.assertIsNot(create.json().get("stream"), True)
        self.assertIs(stream.json().get("stream"), True)
        for request in api_requests(self.fake):
            self.assert_oauth_only(request)
        self.assert_no_client_token_upstream()

    @inlineCallbacks
    def test_upstream_errors_reach_the_sdk(self) -> Any:
        """
        An upstream 529 reaches the SDK unchanged (status, error body,
        ``request-id``) as ``OverloadedError``.  A 429 saying the subscription
        is out of quota is the pool's to answer: with no other credential,
        the SDK gets ccm's own ``RateLimitError`` with ``retry-after`` until
        the window resets and ``x-should-retry: false``.
        """
        self.fake.enqueue(
            error_reply(529, "overloaded_error", "Overloaded"),
            error_reply(429, "rate_limit_error", "This request would exceed your rate limit."),
        )
        result = yield self.run_sdk(SDK_ERRORS)

        overloaded_request, limited_request = message_posts(self.fake)
        self.assertEqual(
            result["first"],
            {
                "class": "OverloadedError",
                "status": 529,
                "retry_after": None,
                "unified_status": "allowed",
                "request_id": overloaded_request.request_id,
                "error_type": "overloaded_error",
                "message": "Overloaded",
            },
        )
        # The fake's 429 says the five-hour window is exhausted and resets
        # in five hours (18000 s).
        second = result["second"]
        self.assertEqual(
            (second["class"], second["status"], second["error_type"]),
            ("RateLimitError", 429, "rate_limit_error"),
        )
        self.assertAlmostEqual(int(second["retry_after"]), 18000, delta=5)
        self.assertTrue(second["request_id"].startswith("ccm_"))
        self.assertIn("default: rate-limited (5-hour window) until", second["message"])
        for request in (overloaded_request, limited_request):
            self.assert_oauth_only(request)
        self.assert_no_client_token_upstream()
