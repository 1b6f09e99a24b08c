"""
End-to-end tests of what today's Claude Code sends, through a real
``twistd -n ccm`` process in front of the fake upstream: the start-up
warm-up, ``?beta=true`` queries, the session and agent headers, and bursts
of ``count_tokens`` requests.

The real CLI runs in each pinned version (see :obj:`tests.e2e.RealClaudeCode`);
a wiretap (:obj:`tests.wiretap`) between it and ccm shows what it sent and
what never went further.  What no CLI run can choose (exact header values,
exactly 25 requests at once) is sent with treq from the test process.

Every test also checks, once ccm has stopped, that nothing ccm printed
contains a secret or a traceback.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from tests import e2e
from tests.fake_anthropic import OAUTH_BETA, RecordedRequest, text_reply, tool_use_reply
from tests.fixtures import expiry_ms, write_credentials
from tests.wiretap import serve_wiretap

ALICE = "ak-ccm-client-alice"
SECOND_ACCESS = "sk-ant-oat01-fake-client-second"
SESSION = "33333333-3333-4333-8333-333333333333"
OTHER_SESSION = "44444444-4444-4444-8444-444444444444"
MODEL = "claude-sonnet-4-5-20250929"
SESSION_HEADER = "x-claude-code-session-id"
AGENT_HEADER = "x-claude-code-agent-id"
PARENT_HEADER = "x-claude-code-parent-agent-id"
AGENT_HEADERS = (SESSION_HEADER, AGENT_HEADER, PARENT_HEADER)

#: The environment of a CLI run that may warm up: Claude Code 2.1.332 skips
#: ``HEAD /api/hello`` when ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` is
#: set, so it is unset here; telemetry, error reporting and the updater stay
#: off, and ``--strict-mcp-config`` (:obj:`WARM_UP_ARGS`) stops the MCP
#: registry fetch.  Checked with ``strace -e trace=connect``: both versions
#: then connect to the base URL only, and look up no host name.
WARM_UP_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": None,
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
}
WARM_UP_ARGS = ["--strict-mcp-config"]

#: How many ``count_tokens`` requests ``/context`` must have in flight at
#: once (through ccm, 2.1.332 sent 25 and had 14 in flight together,
#: 2.1.197 sent 14 and had 12).
CONTEXT_MIN_IN_FLIGHT = 5

#: The size of the burst sent with treq (``/context`` in an interactive
#: session sends about this many).
BURST = 25

#: ccm's log line for one answered count_tokens request of alice.
_COUNT_TOKENS_LOGGED = re.compile(r"POST /v1/messages/count_tokens user=alice .*-> 200 ")


def message_posts(fake: Any) -> list[RecordedRequest]:
    """
    The ``POST /v1/messages`` requests the fake received (any query).
    """
    return [
        r for r in fake.requests if r.method == "POST" and r.path.split("?")[0] == "/v1/messages"
    ]


def count_tokens_posts(fake: Any) -> list[RecordedRequest]:
    """
    The ``POST /v1/messages/count_tokens`` requests the fake received.
    """
    return [
        r
        for r in fake.requests
        if r.method == "POST" and r.path.split("?")[0] == "/v1/messages/count_tokens"
    ]


def agent_headers(request: Any) -> tuple[Any, ...]:
    """
    The session, agent and parent-agent headers of a request (recorded by
    the fake or by the wiretap), ``None`` for those it lacks.
    """
    return tuple(request.header(name) for name in AGENT_HEADERS)


class _ClientCase(unittest.TestCase):
    """
    A fake upstream holding two subscriptions, ``a`` and ``b``, and a ccm
    process serving alice from a round-robin balancer of both.
    """

    timeout = 300
    ccm: e2e.CcmProcess

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for its Deferred
        self.fake, url = e2e.serve_fake_anthropic(self)
        self.fake.extra_access_tokens.add(SECOND_ACCESS)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        paths = {}
        for tag, access in (("a", self.fake.access_token), ("b", SECOND_ACCESS)):
            paths[tag] = os.path.join(directory, f"{tag}.json")
            write_credentials(paths[tag], access, f"sk-ant-ort01-client-{tag}", expiry_ms(86400))
        config = {
            "endpoint": "tcp:0:interface=127.0.0.1",
            "upstream_url": url,
            "oauth_token_url": url + "/v1/oauth/token",
            "credentials": [
                {"tag": "a", "credential_path": paths["a"]},
                {"tag": "b", "credential_path": paths["b"]},
                {
                    "tag": "pool",
                    "type": "balancer",
                    "strategy": "round_robin",
                    "credentials": ["a", "b"],
                },
            ],
            "users": [{"name": "alice", "token": ALICE, "credential": "pool"}],
        }
        # Registered before start_ccm registers its stop: runs after it.
        self.addCleanup(self.check_ccm_output)
        self.ccm = yield e2e.start_ccm(self, config)

    def check_ccm_output(self) -> None:
        """
        Nothing ccm printed holds a token or a traceback.
        """
        if not hasattr(self, "ccm"):
            return
        output = self.ccm.output()
        for secret in (ALICE, SECOND_ACCESS, self.fake.access_token, self.fake.refresh_token):
            self.assertNotIn(secret, output)
        self.assertNotIn("Traceback", output)

    def bearer(self, request: RecordedRequest) -> str:
        """
        Which subscription a request upstream used.
        """
        token = (request.header("authorization") or "").removeprefix("Bearer ")
        return {self.fake.access_token: "a", SECOND_ACCESS: "b"}.get(token, "?")

    def assert_oauth_only(self, request: RecordedRequest) -> None:
        """
        ``request`` reached the fake with a subscription's bearer, the OAuth
        beta once, and no API key.
        """
        self.assertIn(self.bearer(request), ("a", "b"), request.headers)
        self.assertNotIn("x-api-key", request.headers)
        betas = [
            item.strip()
            for value in request.headers.get("anthropic-beta", [])
            for item in value.split(",")
        ]
        self.assertEqual(betas.count(OAUTH_BETA), 1, request.headers)

    def assert_nothing_but_the_api_upstream(self) -> None:
        """
        The fake saw nothing but ``/v1/...`` requests and ccm's own usage
        polls: no warm-up, no token refresh.
        """
        self.assertEqual(self.fake.token_requests, [])
        for request in self.fake.requests:
            self.assertTrue(
                request.path.startswith("/v1/") or request.path == "/api/oauth/usage", request.path
            )

    @inlineCallbacks
    def wait_for_ccm_lines(
        self, pattern: re.Pattern[str], count: int, timeout: float = 10.0
    ) -> Any:
        """
        Wait until ccm has logged ``count`` lines matching ``pattern`` (its
        log reaches us through a pipe, a little after the client's answer).
        """
        waited = 0.0
        while len(pattern.findall(self.ccm.output())) < count and waited < timeout:
            yield deferLater(reactor, 0.1)
            waited += 0.1
        self.assertEqual(len(pattern.findall(self.ccm.output())), count, self.ccm.output())


if TYPE_CHECKING:
    _Base = _ClientCase
else:
    _Base = object


class WarmUpTestsMixin(e2e.RealClaudeCode, _Base):
    """
    Claude Code's start-up warm-up, answered by ccm itself.
    """

    @inlineCallbacks
    def test_warm_up_answered_by_ccm(self) -> Any:
        """
        The CLI's warm-up, sent without a token, is answered by ccm at once
        and goes no further: nothing reaches the upstream but the message.
        2.1.332 sends ``HEAD /api/hello`` and gets ccm's 204, and the warmed
        connection then carries its first message (unless that message had
        to open its connection before the 204 came); 2.1.197 sends
        ``HEAD /`` and gets ccm's 404.
        """
        tap = serve_wiretap(self, self.ccm.port)
        self.fake.enqueue(text_reply("Warmed up."))
        result = yield self.run_claude(
            tap.url, ALICE, "say hi", args=WARM_UP_ARGS, extra_env=WARM_UP_ENV
        )
        self.assertEqual((result.rc, result.stdout.strip()), (0, "Warmed up."), result.stderr)

        [(connection, warm_up)] = [(c, r) for c, r in tap.requests() if r.method == "HEAD"]
        self.assertIsNone(warm_up.header("authorization"))
        self.assertIsNone(warm_up.header("x-api-key"))
        self.assertEqual(connection.requests()[0], warm_up)
        if self.claude_code.newest:
            self.assertEqual(warm_up.target, "/api/hello")
            self.assertEqual(connection.first_status(), 204)
            [(posted_on, _)] = [(c, r) for c, r in tap.requests() if r.method == "POST"]
            assert connection.first_reply_at is not None
            if posted_on is connection:
                # The 204 left the warmed connection open and ready.
                self.assertEqual(
                    [(r.method, r.target) for r in connection.requests()],
                    [("HEAD", "/api/hello"), ("POST", "/v1/messages?beta=true")],
                )
            else:
                # Only a message that could not wait for the 204 may open a
                # connection of its own.
                self.assertLess(posted_on.opened_at, connection.first_reply_at)
        else:
            self.assertEqual(warm_up.target, "/")
            self.assertEqual(connection.first_status(), 404)
        [post] = message_posts(self.fake)
        self.assertEqual(post.path, "/v1/messages?beta=true")
        self.assert_nothing_but_the_api_upstream()
        self.assertNotIn("refused", self.ccm.output())


globals().update(WarmUpTestsMixin.make_test_case_classes(_ClientCase))


class AgentHeadersTestsMixin(e2e.RealClaudeCode, _Base):
    """
    The session, agent and parent-agent headers and the ``?beta=true``
    query, as the CLI sends them, reach the upstream unchanged.
    """

    @inlineCallbacks
    def test_nested_agents(self) -> Any:
        """
        A conversation where an agent starts an agent that starts another:
        every request carries the session id the CLI was given, the first
        agent's requests its agent id, the inner agent's its own agent id
        and the first one's as parent.  Each request reached the upstream
        with the query and these headers exactly as the CLI sent them, all
        on the session's one subscription.
        """
        tap = serve_wiretap(self, self.ccm.port)
        self.fake.enqueue(
            tool_use_reply("Agent", _agent_input("outer look", "start the inner agent")),
            tool_use_reply("Agent", _agent_input("inner look", "say inner")),
            text_reply("inner done"),
            text_reply("outer done"),
            text_reply("All agents done."),
        )
        result = yield self.run_claude(
            tap.url,
            ALICE,
            "delegate",
            args=["--session-id", SESSION, "--allowedTools", "Agent"],
        )
        self.assertEqual((result.rc, result.stdout.strip()), (0, "All agents done."), result.stderr)

        posts = message_posts(self.fake)
        seen = [agent_headers(p) for p in posts]
        self.assertEqual(len(seen), 5, seen)
        outer, inner = seen[1][1], seen[2][1]
        self.assertTrue(outer and inner and outer != inner, seen)
        self.assertEqual(
            seen,
            [
                (SESSION, None, None),
                (SESSION, outer, None),
                (SESSION, inner, outer),
                (SESSION, outer, None),
                (SESSION, None, None),
            ],
        )
        sent = [r for _, r in tap.requests() if r.method == "POST"]
        self.assertEqual(
            [(r.target, agent_headers(r)) for r in sent],
            [(p.path, agent_headers(p)) for p in posts],
        )
        self.assertEqual({p.path for p in posts}, {"/v1/messages?beta=true"})
        self.assertEqual(len({self.bearer(p) for p in posts}), 1)
        for post in posts:
            self.assert_oauth_only(post)


globals().update(AgentHeadersTestsMixin.make_test_case_classes(_ClientCase))


def _agent_input(description: str, prompt: str) -> dict[str, Any]:
    """
    The input of an ``Agent`` tool call that runs a general-purpose agent
    in the foreground (2.1.332 runs agents in the background by default).
    """
    return {
        "description": description,
        "prompt": prompt,
        "subagent_type": "general-purpose",
        "run_in_background": False,
    }


class ContextBurstTestsMixin(e2e.RealClaudeCode, _Base):
    """
    ``/context``: a burst of ``count_tokens`` requests from the CLI.
    """

    @inlineCallbacks
    def test_context_burst(self) -> Any:
        """
        ``claude -p /context`` sends its ``count_tokens`` requests at once:
        ccm has several in flight upstream together, on the session's one
        subscription, each with ``?beta=true`` and the session id as sent,
        answers every one, and the CLI prints its context table.
        """
        self.fake.hold_count_tokens = True
        running = self.run_claude(self.ccm.url, ALICE, "/context", args=["--session-id", SESSION])
        ended: list[bool] = []

        def end(outcome: Any) -> Any:
            ended.append(True)
            return outcome

        running.addBoth(end)
        in_flight, waited = 0, 0.0
        while not ended and waited < 60:
            in_flight = max(in_flight, len(self.fake.held_count_tokens))
            if in_flight >= CONTEXT_MIN_IN_FLIGHT:
                # Let the rest of the burst arrive, then answer them all.
                yield deferLater(reactor, 0.5)
                in_flight = max(in_flight, len(self.fake.held_count_tokens))
                break
            yield deferLater(reactor, 0.05)
            waited += 0.05
        self.fake.release_count_tokens()
        result = yield running
        self.assertEqual(result.rc, 0, result.stderr)
        self.assertIn("Context Usage", result.stdout)
        self.assertGreaterEqual(in_flight, CONTEXT_MIN_IN_FLIGHT)

        counts = count_tokens_posts(self.fake)
        self.assertGreaterEqual(len(counts), in_flight)
        self.assertEqual(message_posts(self.fake), [])
        self.assertEqual({r.path for r in counts}, {"/v1/messages/count_tokens?beta=true"})
        self.assertEqual({r.header(SESSION_HEADER) for r in counts}, {SESSION})
        self.assertEqual(len({self.bearer(r) for r in counts}), 1)
        for request in counts:
            self.assert_oauth_only(request)
        yield self.wait_for_ccm_lines(_COUNT_TOKENS_LOGGED, len(counts))


globals().update(ContextBurstTestsMixin.make_test_case_classes(_ClientCase))


class ExactHeadersTests(_ClientCase):
    """
    Requests sent with treq from the test process, with header values and
    queries chosen by the test, through the real ccm process.
    """

    def client(self) -> HTTPClient:
        """
        A treq client whose connections close with the test.
        """
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(reactor, pool=pool))

    @inlineCallbacks
    def test_headers_and_query_byte_for_byte(self) -> Any:
        """
        The session, agent and parent-agent headers (names in any case)
        and the query, ``?beta=true`` with odd escapes after it, reach the
        upstream exactly as sent, once each, on a message and on a
        ``count_tokens`` request.
        """
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": "Bearer " + ALICE,
            "Content-Type": "application/json",
            "X-Claude-Code-Session-Id": "Sess.ID_42~mixed-Case",
            "x-CLAUDE-code-agent-id": "a0ffe919c69ee5c9c",
            "X-Claude-Code-Parent-Agent-Id": "a9700203ef481a843",
        }
        query = "?beta=true&trace=a%2Fb%20c&empty=&flag"
        body = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
        http = self.client()
        self.fake.enqueue(text_reply("Exact."))
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            response = yield http.post(
                self.ccm.url + path + query, data=json.dumps(body).encode(), headers=headers
            )
            self.assertEqual(response.code, 200)
            yield response.content()
        for request in message_posts(self.fake) + count_tokens_posts(self.fake):
            self.assertEqual(request.path.split("?", 1)[1], query[1:])
            for name in AGENT_HEADERS:
                self.assertEqual(len(request.headers[name]), 1, request.headers)
            self.assertEqual(
                agent_headers(request),
                ("Sess.ID_42~mixed-Case", "a0ffe919c69ee5c9c", "a9700203ef481a843"),
            )
        self.assertEqual(
            (len(message_posts(self.fake)), len(count_tokens_posts(self.fake))), (1, 1)
        )

    @inlineCallbacks
    def test_count_tokens_burst(self) -> Any:
        """
        25 ``count_tokens`` requests of one session, sent at once, are all
        in flight upstream together, on that session's one subscription,
        and each gets its own answer; the next session goes to the other
        subscription.
        """
        self.fake.hold_count_tokens = True
        http = self.client()
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": "Bearer " + ALICE,
            "Content-Type": "application/json",
            SESSION_HEADER: SESSION,
        }
        bodies = [
            json.dumps(
                {"model": MODEL, "messages": [{"role": "user", "content": "x" * (8 * n)}]}
            ).encode()
            for n in range(BURST)
        ]
        url = self.ccm.url + "/v1/messages/count_tokens?beta=true"
        sent = gatherResults([http.post(url, data=body, headers=headers) for body in bodies])
        waited = 0.0
        while len(self.fake.held_count_tokens) < BURST and waited < 30:
            yield deferLater(reactor, 0.05)
            waited += 0.05
        self.assertEqual(len(self.fake.held_count_tokens), BURST)
        self.fake.release_count_tokens()
        responses = yield sent
        self.assertEqual([r.code for r in responses], [200] * BURST)
        answers = yield gatherResults([r.json() for r in responses])
        self.assertEqual(answers, [{"input_tokens": len(body) // 4} for body in bodies])

        counts = count_tokens_posts(self.fake)
        self.assertEqual(sorted(r.body for r in counts), sorted(bodies))
        self.assertEqual({r.header(SESSION_HEADER) for r in counts}, {SESSION})
        [subscription] = {self.bearer(r) for r in counts}
        other = dict(headers, **{SESSION_HEADER: OTHER_SESSION})
        response = yield http.post(url, data=bodies[0], headers=other)
        self.assertEqual(response.code, 200)
        yield response.content()
        self.assertEqual(
            self.bearer(count_tokens_posts(self.fake)[-1]), {"a": "b", "b": "a"}[subscription]
        )
        yield self.wait_for_ccm_lines(_COUNT_TOKENS_LOGGED, BURST + 1)
