"""
Tests for :obj:`ccm.proxy.resource`: a client's ``/v1/...`` request goes upstream with the
subscription's OAuth token, and the answer comes back untouched, chunk by
chunk; ccm's own errors have the Anthropic shape.

Everything runs through two :obj:`StubTreq` clients on a :obj:`Clock` (see
:obj:`tests.proxyharness`); backpressure, which :obj:`StubTreq` cannot show, is in
:obj:`tests.proxy.test_backpressure`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, cast

from twisted.internet import error as net_error
from treq.client import HTTPClient
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.server import Site

from ccm.config.model import ServiceConfig
from ccm.credentials.credential import Credential
from ccm.pool.poller import UsagePoller
from ccm.proxy.headers import OAUTH_BETA
from tests.fake_anthropic import (
    FakeAnthropic,
    ReplyHandle,
    allowed_unified_headers,
    cut_stream_reply,
    format_event,
    hang_reply,
    manual_reply,
    midstream_error_reply,
    text_reply,
)
from tests.fixtures import logged_events, write_credentials
from tests.proxy.messages import MESSAGE_BODY, STREAM_BODY, parse_sse, send_message, start_stream
from tests.proxyharness import (
    ALICE_TOKEN,
    BOB_TOKEN,
    UPSTREAM_URL,
    ProxyHarness,
    RawConnection,
    ScriptedUpstream,
    raw_request,
    serve_on_loopback,
)

# Headers a CDN or reverse proxy in front of ccm adds about its own hop.
CDN_REQUEST_HEADERS = {
    "cf-connecting-ip": "203.0.113.9",
    "cf-ray": "8c1d2e3f4a5b-LHR",
    "cf-ipcountry": "GB",
    "cdn-loop": "cloudflare",
    "true-client-ip": "203.0.113.9",
    "x-real-ip": "203.0.113.9",
    "x-forwarded-for": "203.0.113.9, 10.0.0.1",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "ccm.example",
    "forwarded": "for=203.0.113.9;proto=https",
    "via": "1.1 cdn.example",
}

# Response headers that must not reach the client.
STRIPPED_RESPONSE_HEADERS = {
    "set-cookie": "__cf_bm=abcdef; path=/; HttpOnly",
    "cf-ray": "8c1d2e3f4a5b-SJC",
    "cf-cache-status": "DYNAMIC",
    "via": "1.1 edge.example",
    "x-forwarded-for": "10.1.2.3",
    "true-client-ip": "10.1.2.3",
}


class ForwardingTests(SynchronousTestCase):
    """
    What the upstream receives for a client's request.
    """

    def test_request_line_and_body_forwarded(self) -> None:
        """
        The method, the path with its query string and the body reach the
        upstream unchanged.
        """
        harness = ProxyHarness(self)
        body = json.dumps(MESSAGE_BODY, indent=1).encode("utf-8") + b"  \n"
        response = harness.response(
            "POST", "/v1/messages?beta=true", body, {"content-type": "application/json"}
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(len(harness.fake.requests), 1)
        recorded = harness.fake.requests[-1]
        self.assertEqual(recorded.method, "POST")
        self.assertEqual(recorded.path, "/v1/messages?beta=true")
        self.assertEqual(recorded.body, body)
        self.assertEqual(recorded.header("content-length"), str(len(body)))

    def test_upstream_host_is_fixed(self) -> None:
        """
        The upstream is always the configured one, whatever host the client
        addressed.
        """
        harness = ProxyHarness(self)
        harness.response("GET", "/v1/models", headers={"x-forwarded-host": "evil.example"})
        self.assertEqual(harness.fake.requests[-1].headers["host"], ["api.fake.test"])

    def test_get_without_body(self) -> None:
        """
        A GET is forwarded with its query string and no body.
        """
        harness = ProxyHarness(self)
        response = harness.response("GET", "/v1/models?limit=2&after_id=x")
        self.assertEqual(response.code, 200)
        recorded = harness.fake.requests[-1]
        self.assertEqual(recorded.method, "GET")
        self.assertEqual(recorded.path, "/v1/models?limit=2&after_id=x")
        self.assertEqual(recorded.body, b"")
        self.assertEqual(json.loads(harness.body_of(response))["data"][0]["type"], "model")

    def test_oauth_token_replaces_client_token(self) -> None:
        """
        The upstream sees the subscription's OAuth bearer, and the client's
        ccm token appears in no header.
        """
        harness = ProxyHarness(self)
        harness.messages(MESSAGE_BODY)
        recorded = harness.fake.requests[-1]
        self.assertEqual(
            recorded.headers["authorization"], [f"Bearer {harness.fake.access_token}"]
        )
        for name, values in recorded.headers.items():
            for value in values:
                self.assertNotIn(ALICE_TOKEN, value, name)

    def test_oauth_beta_added_exactly_once(self) -> None:
        """
        All of the client's ``anthropic-beta`` values are merged in order,
        without repeats, with the OAuth flag once.
        """
        harness = ProxyHarness(self)
        harness.messages(
            MESSAGE_BODY,
            {
                "anthropic-beta": [
                    f"claude-code-20250219,{OAUTH_BETA}",
                    "interleaved-thinking-2025-05-14, claude-code-20250219",
                ]
            },
        )
        self.assertEqual(
            harness.fake.requests[-1].headers["anthropic-beta"],
            [f"claude-code-20250219,{OAUTH_BETA},interleaved-thinking-2025-05-14"],
        )

    def test_oauth_beta_added_when_client_sends_none(self) -> None:
        """
        A request without ``anthropic-beta`` still carries the OAuth flag.
        """
        harness = ProxyHarness(self)
        harness.messages(MESSAGE_BODY)
        self.assertEqual(harness.fake.requests[-1].headers["anthropic-beta"], [OAUTH_BETA])

    def test_client_headers_kept(self) -> None:
        """
        Ordinary client headers (API version, user agent, Claude Code's own
        headers) reach the upstream unchanged.
        """
        harness = ProxyHarness(self)
        kept = {
            "anthropic-version": "2023-06-01",
            "user-agent": "claude-cli/2.1.197 (external, cli)",
            "x-app": "cli",
            "x-claude-code-session-id": "80c50ae9-1df2-4ee4-bafa-e96205010a1c",
            "x-stainless-retry-count": "0",
        }
        harness.messages(MESSAGE_BODY, kept)
        recorded = harness.fake.requests[-1]
        for name, value in kept.items():
            self.assertEqual(recorded.headers[name], [value], name)

    def test_hygiene_headers_dropped(self) -> None:
        """
        Cookies, CDN headers, hop-by-hop headers (including those named in
        ``Connection``) and proxy credentials are not forwarded.
        """
        harness = ProxyHarness(self)
        dropped = dict(CDN_REQUEST_HEADERS)
        dropped.update(
            {
                "cookie": "session=abc; __cf_bm=xyz",
                "connection": "x-hop-secret",
                "x-hop-secret": "only for ccm",
                "keep-alive": "timeout=5",
                "proxy-authorization": "Basic dXNlcjpwYXNz",
                "proxy-connection": "keep-alive",
                "te": "trailers",
            }
        )
        harness.messages(MESSAGE_BODY, dropped)
        received = harness.server_requests[-1].requestHeaders
        for name in dropped:
            self.assertTrue(received.hasHeader(name), f"{name} never reached ccm")
        recorded = harness.fake.requests[-1]
        for name in dropped:
            if name == "connection":
                continue
            self.assertNotIn(name, recorded.headers)
        self.assertNotIn("x-hop-secret", recorded.headers.get("connection", []))

    def test_client_accept_encoding_not_forwarded(self) -> None:
        """
        The client's ``Accept-Encoding`` is replaced by the one the upstream
        client decodes itself.
        """
        harness = ProxyHarness(self)
        harness.messages(MESSAGE_BODY, {"accept-encoding": "br, zstd"})
        self.assertEqual(harness.fake.requests[-1].headers["accept-encoding"], ["gzip"])

    def test_user_api_key_not_forwarded(self) -> None:
        """
        A client that authenticates with ``x-api-key`` set to its ccm token
        is served, and neither its key nor its token goes upstream.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(text_reply("keyed"))
        response = harness.response(
            "POST",
            "/v1/messages",
            json.dumps(MESSAGE_BODY).encode("utf-8"),
            {"x-api-key": BOB_TOKEN, "content-type": "application/json"},
            token=None,
        )
        self.assertEqual(response.code, 200)
        recorded = harness.fake.requests[-1]
        self.assertNotIn("x-api-key", recorded.headers)
        self.assertNotIn("api-key", recorded.headers)
        self.assertEqual(
            recorded.headers["authorization"], [f"Bearer {harness.fake.access_token}"]
        )
        self.assertEqual([c.name for c in harness.callers], ["bob"])
        self.assertIn("user=bob", harness.exchange_lines()[0])

    def test_headers_option_applied(self) -> None:
        """
        The ``headers`` option replaces what the client sent under the same
        name; an ``anthropic-beta`` set there still gets the OAuth flag once.
        """
        harness = ProxyHarness(
            self,
            extra_headers=(
                ("anthropic-beta", ("context-1m-2025-08-07",)),
                ("User-Agent", ("ccm-test/1",)),
                ("x-extra", ("one", "two")),
            ),
        )
        harness.messages(
            MESSAGE_BODY,
            {"anthropic-beta": "claude-code-20250219", "user-agent": "claude-cli/2.1.197"},
        )
        recorded = harness.fake.requests[-1]
        self.assertEqual(
            recorded.headers["anthropic-beta"], [f"{OAUTH_BETA},context-1m-2025-08-07"]
        )
        self.assertEqual(recorded.headers["user-agent"], ["ccm-test/1"])
        self.assertEqual(recorded.headers["x-extra"], ["one", "two"])

    def test_body_not_json_still_forwarded(self) -> None:
        """
        A body that is not JSON is forwarded byte for byte; the upstream's
        answer (here a 400) comes back unchanged.
        """
        harness = ProxyHarness(self)
        body = b"\x00not json at all {"
        response = harness.response(
            "POST", "/v1/messages", body, {"content-type": "application/json"}
        )
        self.assertEqual(harness.fake.requests[-1].body, body)
        self.assertEqual(response.code, 400)
        document = json.loads(harness.body_of(response))
        self.assertEqual(document["error"]["type"], "invalid_request_error")
        self.assertEqual(response.headers.getRawHeaders("request-id"), ["req_fake_1"])

    def test_body_within_limit_forwarded(self) -> None:
        """
        A body of exactly ``max_request_body`` bytes is forwarded.
        """
        harness = ProxyHarness(self, max_request_body=40)
        body = b'{"model":"m","pad":"' + b"x" * 18 + b'"}'
        self.assertEqual(len(body), 40)
        response = harness.response(
            "POST", "/v1/messages/count_tokens", body, {"content-type": "application/json"}
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(harness.fake.requests[-1].body, body)


class ResponseTests(SynchronousTestCase):
    """
    What the client receives for an upstream response.
    """

    def respond(
        self, harness: ProxyHarness, status: int, headers: dict[str, str], body: bytes
    ) -> tuple[Any, ReplyHandle]:
        """
        Send a request and answer it with exactly ``status``, ``headers`` and
        ``body``.
        """
        reply = manual_reply()
        harness.fake.enqueue(reply)
        d = send_message(harness)
        assert reply.handle is not None
        reply.handle.start(status, headers, content_type="application/json; charset=utf-8")
        reply.handle.write(body)
        reply.handle.finish()
        harness.flush()
        return self.successResultOf(d), reply.handle

    def test_statuses_pass_through(self) -> None:
        """
        Upstream error statuses reach the client unchanged, with their
        headers and byte-identical bodies.  (A 429 that marks the
        subscription out of quota is the pool's to answer:
        :obj:`RateLimitTests`; a 401 rejects the subscription's token:
        ``tests.proxy.test_rejections``.)
        """
        for status in (400, 403, 404, 413, 500, 529):
            harness = ProxyHarness(self)
            body = (
                b'{"type": "error",  "error": {"type": "some_error", '
                b'"message": "status %d"}, "request_id": "req_up"}\n' % (status,)
            )
            headers = {
                "request-id": f"req_upstream_{status}",
                "retry-after": "17",
                "x-should-retry": "true",
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-5h-utilization": "1.0",
                "anthropic-organization-id": "org-123",
            }
            response, _ = self.respond(harness, status, headers, body)
            self.assertEqual(response.code, status)
            for name, value in headers.items():
                self.assertEqual(response.headers.getRawHeaders(name), [value], (status, name))
            self.assertEqual(
                response.headers.getRawHeaders("content-type"),
                ["application/json; charset=utf-8"],
            )
            self.assertEqual(harness.body_of(response), body)

    def test_response_headers_copied_except_hygiene(self) -> None:
        """
        ccm answers with the upstream's headers, minus cookies, CDN headers
        and the length it no longer knows; nothing else is added or
        changed.
        """
        harness = ProxyHarness(self)
        headers = dict(STRIPPED_RESPONSE_HEADERS)
        headers["x-custom"] = "kept"
        body = b'{"ok": true}'
        response, handle = self.respond(harness, 200, headers, body)
        self.assertEqual(harness.body_of(response), body)

        def table(source: Headers, dropped: set[str]) -> dict[str, list[bytes]]:
            return {
                name.decode("latin-1").lower(): list(values)
                for name, values in source.getAllRawHeaders()
                if name.decode("latin-1").lower() not in dropped
            }

        hygiene = set(STRIPPED_RESPONSE_HEADERS) | {"content-length", "transfer-encoding"}
        sent_by_upstream = table(handle.request.responseHeaders, hygiene)
        sent_by_ccm = table(harness.server_requests[-1].responseHeaders, {"transfer-encoding"})
        self.assertEqual(sent_by_ccm, sent_by_upstream)
        for name in STRIPPED_RESPONSE_HEADERS:
            self.assertIsNone(response.headers.getRawHeaders(name), name)
        self.assertEqual(response.headers.getRawHeaders("x-custom"), ["kept"])

    def test_no_content_type_stays_absent(self) -> None:
        """
        ccm adds no ``Content-Type`` of its own to an upstream response that
        has none.
        """
        harness = ProxyHarness(self)
        reply = manual_reply()
        harness.fake.enqueue(reply)
        d = send_message(harness)
        assert reply.handle is not None
        upstream_request = reply.handle.request
        upstream_request.defaultContentType = None
        upstream_request.setResponseCode(202)
        upstream_request.write(b"accepted")
        upstream_request.finish()
        harness.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 202)
        self.assertIsNone(response.headers.getRawHeaders("content-type"))
        self.assertEqual(harness.body_of(response), b"accepted")

    def test_non_streaming_message(self) -> None:
        """
        A non-streaming message comes back as the upstream's JSON, with its
        unified rate-limit headers.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(text_reply("Hi there"))
        response = harness.messages(MESSAGE_BODY)
        self.assertEqual(response.code, 200)
        document = json.loads(harness.body_of(response))
        self.assertEqual(document["content"], [{"type": "text", "text": "Hi there"}])
        self.assertEqual(
            response.headers.getRawHeaders("anthropic-ratelimit-unified-5h-utilization"),
            [harness.fake.unified_headers["anthropic-ratelimit-unified-5h-utilization"]],
        )

    def test_rate_limit_headers_observed(self) -> None:
        """
        The unified rate-limit headers of a proxied response update the
        serving credential's windows.
        """
        harness = ProxyHarness(self)
        harness.fake.unified_headers = allowed_unified_headers(
            harness.clock.seconds(), five_hour_utilization=0.42, seven_day_utilization=0.07
        )
        harness.body_of(harness.messages(MESSAGE_BODY))
        limits = harness.credential.rate_limits
        self.assertEqual(limits.five_hour.utilization, 42.0)
        self.assertEqual(limits.weekly.utilization, 7.0)


class StreamingTests(SynchronousTestCase):
    """
    Event streams reach the client as they arrive, untouched.
    """

    def test_headers_relayed_before_first_event(self) -> None:
        """
        The client gets the upstream's status and headers as soon as the
        upstream sends them, before any event.
        """
        harness = ProxyHarness(self)
        reply = manual_reply()
        harness.fake.enqueue(reply)
        d = send_message(harness, STREAM_BODY)
        assert reply.handle is not None
        reply.handle.start(content_type="text/event-stream; charset=utf-8")
        harness.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["text/event-stream; charset=utf-8"]
        )
        reply.handle.finish()
        harness.flush()
        self.assertEqual(harness.body_of(response), b"")

    def test_each_event_reaches_client_before_the_next(self) -> None:
        """
        Every upstream write is passed on at once: the client has each
        event before the upstream writes the next one, and the body is
        byte-identical.
        """
        harness = ProxyHarness(self)
        handle, response = start_stream(harness)
        chunks, done = harness.collect(response)
        written = [format_event("message_start", {"type": "message_start", "message": {}})]
        self.assertEqual(b"".join(chunks), written[0])
        pieces = [
            format_event("ping", {"type": "ping"}),
            b"event: content_block_delta\nda",
            b'ta: {"type":"content_block_delta","index":0}\n\n',
            b": a comment line\n\n",
            format_event("message_stop", {"type": "message_stop"}),
        ]
        for piece in pieces:
            handle.write(piece)
            harness.flush()
            written.append(piece)
            self.assertEqual(b"".join(chunks), b"".join(written))
            self.assertNoResult(done)
        handle.finish()
        harness.flush()
        self.successResultOf(done)
        self.assertEqual(b"".join(chunks), b"".join(written))
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_full_stream(self) -> None:
        """
        A complete streamed message arrives as the upstream's events, in
        order, with ``text/event-stream``.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(text_reply("Hello, world"))
        response = harness.messages(STREAM_BODY)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["text/event-stream; charset=utf-8"]
        )
        events = parse_sse(harness.body_of(response))
        self.assertEqual(events[0][0], "message_start")
        self.assertEqual(events[-1][0], "message_stop")
        text = "".join(
            data["delta"]["text"] for name, data in events if name == "content_block_delta"
        )
        self.assertEqual(text, "Hello, world")

    def test_upstream_error_event_passed_through(self) -> None:
        """
        An ``error`` event the upstream sends inside a 200 stream is relayed
        as it is, and ccm adds nothing after it.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(midstream_error_reply("overloaded_error", "Overloaded"))
        response = harness.messages(STREAM_BODY)
        self.assertEqual(response.code, 200)
        events = parse_sse(harness.body_of(response))
        self.assertEqual([name for name, _ in events], ["message_start", "error"])
        self.assertEqual(events[1][1]["error"]["type"], "overloaded_error")
        self.assertEqual(events[1][1]["request_id"], "req_fake_1")
        self.assertEqual(harness.log_texts(LogLevel.warn), [])


class RefusalTests(SynchronousTestCase):
    """
    Requests ccm answers itself, without going upstream.
    """

    def test_missing_token(self) -> None:
        """
        Without a token the answer is 401 ``authentication_error``, and
        nothing goes upstream.
        """
        harness = ProxyHarness(self)
        response = harness.response("POST", "/v1/messages", b"{}", token=None)
        error = harness.ccm_error(response, 401, "authentication_error")
        self.assertIn("ANTHROPIC_AUTH_TOKEN", error["message"])
        self.assertEqual(harness.fake.requests, [])

    def test_wrong_token_not_logged(self) -> None:
        """
        A wrong token gets 401, is logged as refused, and appears neither in
        the answer nor in the log.
        """
        harness = ProxyHarness(self)
        wrong = "ccm-token-guess-31337"
        response = harness.response("POST", "/v1/messages?beta=true", b"{}", token=wrong)
        error = harness.ccm_error(response, 401, "authentication_error")
        self.assertNotIn(wrong, error["message"])
        self.assertEqual(harness.fake.requests, [])
        warnings = harness.log_texts(LogLevel.warn)
        self.assertEqual(len(warnings), 1)
        self.assertIn("refused POST /v1/messages from", warnings[0])
        harness.assert_no_secrets_logged(wrong)

    def test_refusals_are_final_and_name_the_operator(self) -> None:
        """
        Every 401 (no token, a wrong one, two ``Authorization`` headers, the
        tokens of two users) carries ``x-should-retry: false`` and a message
        sending the user to the ccm operator, logs the refusal without any
        token, sends nothing upstream, and leaves the next valid request
        working.
        """
        harness = ProxyHarness(self)
        wrong = "ccm-token-typo-55aa"
        for headers, expected in (
            ({}, "missing ccm token"),
            ({"authorization": f"Bearer {wrong}"}, "ccm token not recognised"),
            (
                {"authorization": [f"Bearer {ALICE_TOKEN}", f"Bearer {ALICE_TOKEN}"]},
                "more than one Authorization header",
            ),
            (
                {"authorization": f"Bearer {ALICE_TOKEN}", "x-api-key": BOB_TOKEN},
                "different ccm users",
            ),
        ):
            response = harness.response("POST", "/v1/messages", b"{}", headers, token=None)
            error = harness.ccm_error(response, 401, "authentication_error")
            self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])
            self.assertIn(expected, error["message"])
            self.assertIn("ask your ccm operator", error["message"])
            for secret in (wrong, ALICE_TOKEN, BOB_TOKEN):
                self.assertNotIn(secret, error["message"])
            self.assertEqual(harness.fake.requests, [])
        self.assertEqual(len(harness.log_texts(LogLevel.warn)), 4)
        self.assertEqual(harness.messages(MESSAGE_BODY).code, 200)
        self.assertEqual([c.name for c in harness.callers], ["alice"])
        harness.assert_no_secrets_logged(wrong)

    def test_foreign_api_key_refused(self) -> None:
        """
        An ``x-api-key`` that is not a ccm token is refused with 401 and never
        forwarded, even alongside a valid bearer token.
        """
        harness = ProxyHarness(self)
        api_key = "sk-ant-api03-real-anthropic-key"
        for token in (None, ALICE_TOKEN):
            response = harness.response(
                "POST", "/v1/messages", b"{}", {"x-api-key": api_key}, token=token
            )
            error = harness.ccm_error(response, 401, "authentication_error")
            self.assertNotIn(api_key, error["message"])
        self.assertEqual(harness.fake.requests, [])
        harness.assert_no_secrets_logged(api_key)

    def test_api_key_refused_in_anonymous_mode(self) -> None:
        """
        Without users, an ``api-key`` header is still refused and never
        forwarded.
        """
        harness = ProxyHarness(self, users=())
        response = harness.response(
            "POST", "/v1/messages", b"{}", {"api-key": "sk-ant-api03-x"}, token=None
        )
        harness.ccm_error(response, 401, "authentication_error")
        self.assertEqual(harness.fake.requests, [])

    def test_anonymous_mode_serves_without_token(self) -> None:
        """
        Without users, a request without a token is served, and a bearer
        token the client happens to send is not forwarded.
        """
        harness = ProxyHarness(self, users=())
        response = harness.messages(MESSAGE_BODY)
        self.assertEqual(response.code, 200)
        response = harness.response(
            "POST",
            "/v1/messages",
            json.dumps(MESSAGE_BODY).encode(),
            {"content-type": "application/json"},
            token=None,
        )
        self.assertEqual(response.code, 200)
        for recorded in harness.fake.requests:
            self.assertEqual(
                recorded.headers["authorization"], [f"Bearer {harness.fake.access_token}"]
            )
        self.assertEqual([c.name for c in harness.callers], ["", ""])

    def test_body_over_limit(self) -> None:
        """
        A body larger than ``max_request_body`` gets 413
        ``request_too_large`` and no upstream request.
        """
        harness = ProxyHarness(self, max_request_body=40)
        response = harness.response(
            "POST", "/v1/messages", b"x" * 41, {"content-type": "application/json"}
        )
        error = harness.ccm_error(response, 413, "request_too_large")
        self.assertIn("40", error["message"])
        self.assertEqual(harness.fake.requests, [])

    def test_unauthenticated_body_over_limit(self) -> None:
        """
        An oversized body from a caller without a valid token gets 401: the
        caller learns nothing about the limit.
        """
        harness = ProxyHarness(self, max_request_body=40)
        response = harness.response("POST", "/v1/messages", b"x" * 41, token=None)
        harness.ccm_error(response, 401, "authentication_error")
        self.assertEqual(harness.fake.requests, [])

    def test_path_outside_v1(self) -> None:
        """
        The proxy resource itself refuses a path that is not under ``/v1/``
        (here ``/v1`` without the slash) with 404.
        """
        harness = ProxyHarness(self)
        response = harness.response("GET", "/v1")
        harness.ccm_error(response, 404, "not_found_error")
        self.assertEqual(harness.fake.requests, [])

    def test_credential_unavailable(self) -> None:
        """
        Without a credentials file the answer is 503 ``api_error`` with
        ``x-should-retry: false`` and a message saying what is wrong.
        """
        harness = ProxyHarness(self, write_credential_file=False)
        response = harness.messages(MESSAGE_BODY)
        self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])
        error = harness.ccm_error(response, 503, "api_error")
        self.assertIn("does not exist", error["message"])
        self.assertEqual(harness.fake.requests, [])
        self.assertIn("-> 503", harness.exchange_lines()[0])

    def test_token_failure(self) -> None:
        """
        An unexpected failure getting the access token is logged and
        answered with 500 ``api_error``.
        """
        harness = ProxyHarness(self)
        self.patch(
            Credential, "access_token", lambda credential: fail(RuntimeError("broken store"))
        )
        response = harness.messages(MESSAGE_BODY)
        error = harness.ccm_error(response, 500, "api_error")
        self.assertNotIn("broken store", error["message"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(harness.fake.requests, [])

    def test_bug_before_upstream(self) -> None:
        """
        An unexpected error while building the upstream request (here an
        access token that cannot go into a header) is logged and answered
        with 500 ``api_error`` instead of leaving the client waiting.
        """
        harness = ProxyHarness(self)
        self.patch(Credential, "access_token", lambda credential: succeed("t\u00f6ken"))
        response = harness.messages(MESSAGE_BODY)
        error = harness.ccm_error(response, 500, "api_error")
        self.assertEqual(error["message"], "internal error in ccm")
        self.assertEqual(len(self.flushLoggedErrors(UnicodeEncodeError)), 1)
        self.assertEqual(harness.fake.requests, [])
        self.assertEqual(harness.clock.getDelayedCalls(), [])


class MethodTests(SynchronousTestCase):
    """
    Only the methods the Anthropic API uses are forwarded.
    """

    def test_api_methods_forwarded(self) -> None:
        """
        ``GET``, ``HEAD``, ``POST``, ``PUT``, ``PATCH`` and ``DELETE`` go upstream
        with their method.
        """
        harness = ProxyHarness(self)
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        for method in methods:
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            harness.response(method, "/v1/models", body)
        self.assertEqual([r.method for r in harness.fake.requests], methods)

    def test_head_keeps_working(self) -> None:
        """
        A ``HEAD`` under ``/v1/`` is forwarded and answered without a body,
        and the ``HEAD`` of the base URL is still ccm's bodiless 404.
        """
        harness = ProxyHarness(self)
        response = harness.response("HEAD", "/v1/models")
        self.assertEqual(harness.fake.requests[-1].method, "HEAD")
        self.assertEqual(harness.body_of(response), b"")
        probe = harness.response("HEAD", "/", token=None)
        self.assertEqual(probe.code, 404)
        self.assertEqual(harness.body_of(probe), b"")
        self.assertEqual(len(harness.fake.requests), 1)

    def test_other_methods_refused(self) -> None:
        """
        Any other method gets 405 ``invalid_request_error`` with ``Allow``
        listing the forwarded methods, before authentication, logged as
        refused without the query string; nothing goes upstream, the next
        request works, and no token is in the answer or the log.
        """
        harness = ProxyHarness(self)
        for method in ("TRACE", "TRACK", "OPTIONS", "CONNECT", "PROPFIND", "BREW"):
            for token in (ALICE_TOKEN, None, "ccm-token-wrong-2"):
                before = len(harness.log_texts(LogLevel.warn))
                response = harness.response(
                    method, "/v1/messages?signature=query-secret-77", b"{}", token=token
                )
                error = harness.ccm_error(response, 405, "invalid_request_error")
                self.assertEqual(error["message"], "method not allowed")
                self.assertEqual(
                    response.headers.getRawHeaders("allow"),
                    ["GET, HEAD, POST, PUT, PATCH, DELETE"],
                )
                self.assertEqual(
                    harness.log_texts(LogLevel.warn)[before:],
                    [f"refused {method} /v1/messages from 127.0.0.1: method not allowed"],
                )
        self.assertEqual(harness.fake.requests, [])
        self.assertEqual(harness.callers, [])
        self.assertEqual(harness.messages(MESSAGE_BODY).code, 200)
        for text in harness.log_texts():
            self.assertNotIn("query-secret", text)
        harness.assert_no_secrets_logged()

    def test_path_refused_before_method(self) -> None:
        """
        A path ccm does not serve is a 404 whatever the method.
        """
        harness = ProxyHarness(self)
        for path in ("/foo", "/v1", "/v1/../api/oauth/profile"):
            harness.ccm_error(harness.response("TRACE", path), 404, "not_found_error")
        self.assertEqual(harness.fake.requests, [])

    def test_lower_case_method_refused(self) -> None:
        """
        Methods are case-sensitive: a raw ``get`` is not ``GET``, and gets
        405 on a connection that then serves the next request.
        """
        harness = ProxyHarness(self)
        connection = RawConnection(harness.site())
        connection.send(raw_request("get", "/v1/models"))
        response = connection.response()
        assert response is not None
        self.assertEqual(response.status, 405)
        self.assertEqual(response.headers["allow"], ["GET, HEAD, POST, PUT, PATCH, DELETE"])
        self.assertEqual(response.json()["error"]["type"], "invalid_request_error")
        connection.transport.clear()
        connection.send(raw_request("GET", "/v1/models"))
        harness.flush()
        response = connection.response()
        assert response is not None
        self.assertEqual(response.status, 200)
        self.assertEqual([r.method for r in harness.fake.requests], ["GET"])
        connection.close()


class UpstreamFailureTests(SynchronousTestCase):
    """
    The upstream cannot be reached, does not answer, or breaks off.
    """

    def connect_failure(self, error: Exception, status: int, error_type: str) -> str:
        """
        Answer a request with an upstream client failing with ``error`` and
        check the ccm error; return its message.
        """
        client = ScriptedUpstream(fail(error))
        harness = ProxyHarness(self, http_client=client)
        response = harness.messages(MESSAGE_BODY)
        message: str = harness.ccm_error(response, status, error_type)["message"]
        self.assertIn(UPSTREAM_URL, message)
        self.assertEqual(len(client.calls), 1)
        self.assertEqual(client.calls[0].url, UPSTREAM_URL + "/v1/messages?beta=true")
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertEqual(harness.log_texts(LogLevel.error), [])
        self.assertEqual(len(harness.exchange_lines()), 1)
        harness.assert_no_secrets_logged()
        return message

    def test_connection_refused(self) -> None:
        """
        An upstream refusing connections gives 502 ``api_error`` naming the
        upstream.
        """
        message = self.connect_failure(net_error.ConnectionRefusedError(), 502, "api_error")
        self.assertIn("cannot connect", message)

    def test_dns_failure(self) -> None:
        """
        An upstream name that does not resolve gives 502 ``api_error``.
        """
        self.connect_failure(net_error.DNSLookupError("api.fake.test"), 502, "api_error")

    def test_connect_timeout(self) -> None:
        """
        A connection attempt that times out gives 504 ``timeout_error``.
        """
        message = self.connect_failure(net_error.TimeoutError(), 504, "timeout_error")
        self.assertIn("timed out", message)

    def test_cancelled_elsewhere(self) -> None:
        """
        An upstream request cancelled by something other than ccm's own
        timers gives 502 ``api_error``.
        """
        client = ScriptedUpstream(fail(CancelledError()))
        harness = ProxyHarness(self, http_client=client)
        harness.ccm_error(harness.messages(MESSAGE_BODY), 502, "api_error")

    def test_upstream_hangs_before_headers(self) -> None:
        """
        An upstream that sends no headers within ``header_timeout`` is cut
        off and the client gets 504 ``timeout_error``.
        """
        harness = ProxyHarness(self, header_timeout=30.0)
        harness.fake.enqueue(hang_reply())
        d = send_message(harness)
        harness.clock.advance(29.9)
        harness.flush()
        self.assertNoResult(d)
        harness.clock.advance(0.1)
        harness.flush()
        error = harness.ccm_error(self.successResultOf(d), 504, "timeout_error")
        self.assertIn("30s", error["message"])
        self.assertTrue(harness.fake.requests[-1].disconnected)
        self.assertEqual(harness.fake.open_streams, [])
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertEqual(harness.log_texts(LogLevel.error), [])

    def test_header_timer_cancelled_on_answer(self) -> None:
        """
        An upstream that answers in time leaves no timer behind.
        """
        harness = ProxyHarness(self, header_timeout=30.0)
        response = harness.messages(MESSAGE_BODY)
        harness.body_of(response)
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        harness.clock.advance(60)
        self.assertEqual(response.code, 200)

    def test_upstream_closes_before_answering(self) -> None:
        """
        An upstream that closes the connection before any response gives
        502 ``api_error``.
        """
        harness = ProxyHarness(self)
        reply = manual_reply()
        harness.fake.enqueue(reply)
        d = send_message(harness)
        assert reply.handle is not None
        reply.handle.abort()
        harness.flush()
        error = harness.ccm_error(self.successResultOf(d), 502, "api_error")
        self.assertIn("closed the connection", error["message"])
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertEqual(harness.log_texts(LogLevel.error), [])

    def test_stream_cut_midway(self) -> None:
        """
        An event stream the upstream breaks off reaches the client up to
        the break, followed by an SSE ``error`` event from ccm.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(cut_stream_reply(after_events=2))
        response = harness.messages(STREAM_BODY)
        self.assertEqual(response.code, 200)
        events = parse_sse(harness.body_of(response))
        self.assertEqual(
            [name for name, _ in events], ["message_start", "content_block_start", "error"]
        )
        error = events[-1][1]
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["error"]["type"], "api_error")
        self.assertIn("lost mid-response", error["error"]["message"])
        self.assertTrue(error["request_id"].startswith("ccm_"))
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertEqual(len(harness.log_texts(LogLevel.warn)), 1)
        self.assertEqual(harness.log_texts(LogLevel.error), [])
        harness.assert_no_secrets_logged()

    def test_stream_cut_inside_an_event(self) -> None:
        """
        When the break falls inside an event, ccm's ``error`` event starts
        on a fresh event boundary.
        """
        harness = ProxyHarness(self)
        handle, response = start_stream(harness)
        chunks, done = harness.collect(response)
        handle.write(b"event: ping\ndata: {")
        handle.abort()
        harness.flush()
        self.successResultOf(done)
        body = b"".join(chunks)
        self.assertTrue(body.startswith(b"event: message_start\n"))
        head, _, frame = body.rpartition(b"\n\nevent: error\ndata: ")
        self.assertTrue(head.endswith(b'event: ping\ndata: {'), body)
        self.assertTrue(frame.endswith(b"}\n\n"), body)
        self.assertEqual(json.loads(frame)["error"]["type"], "api_error")

    def test_json_body_cut_midway(self) -> None:
        """
        A non-stream body the upstream breaks off is not finished cleanly:
        the client's connection is aborted after what arrived.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(cut_stream_reply())
        response = harness.messages(MESSAGE_BODY)
        self.assertEqual(response.code, 200)
        chunks, done = harness.collect(response)
        self.failureResultOf(done, ResponseFailed)
        self.assertTrue(b"".join(chunks).startswith(b'{"id":"msg_fake_1"'))
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertEqual(harness.log_texts(LogLevel.error), [])
        self.assertEqual(len(harness.exchange_lines()), 1)

    def test_stream_stalls(self) -> None:
        """
        A stream silent for ``idle_timeout`` is cut off upstream and ended
        for the client with an SSE ``error`` event.
        """
        harness = ProxyHarness(self, idle_timeout=120.0)
        handle, response = start_stream(harness)
        chunks, done = harness.collect(response)
        harness.clock.advance(119)
        harness.flush()
        self.assertNoResult(done)
        harness.clock.advance(1)
        harness.flush()
        self.successResultOf(done)
        events = parse_sse(b"".join(chunks))
        self.assertEqual([name for name, _ in events], ["message_start", "error"])
        self.assertIn("stalled", events[-1][1]["error"]["message"])
        self.assertTrue(handle.disconnected)
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertIn("stalled", harness.exchange_lines()[0])

    def test_json_body_stalls(self) -> None:
        """
        A non-stream body that stalls for ``idle_timeout`` is cut off
        upstream, and the client's connection is aborted rather than the
        truncated body finished cleanly.
        """
        harness = ProxyHarness(self, idle_timeout=120.0)
        reply = manual_reply()
        harness.fake.enqueue(reply)
        d = send_message(harness)
        assert reply.handle is not None
        reply.handle.start(200, {"content-length": "100"}, content_type="application/json")
        reply.handle.write(b'{"id": "msg')
        harness.flush()
        chunks, done = harness.collect(self.successResultOf(d))
        self.assertEqual(chunks, [b'{"id": "msg'])
        harness.clock.advance(120)
        harness.flush()
        self.failureResultOf(done, ResponseFailed)
        self.assertTrue(reply.handle.disconnected)
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertIn("stalled", harness.exchange_lines()[0])

    def test_header_timeout_while_connecting(self) -> None:
        """
        When the header timeout cancels a request that is still connecting,
        the client gets 504 ``timeout_error``, not a connection error.
        """

        def cancelled_while_connecting(d: Deferred[Any]) -> None:
            d.errback(net_error.ConnectingCancelledError(None))

        client = ScriptedUpstream(Deferred(cancelled_while_connecting))
        harness = ProxyHarness(self, http_client=client, header_timeout=30.0)
        d = send_message(harness)
        self.assertNoResult(d)
        harness.clock.advance(30)
        harness.flush()
        harness.ccm_error(self.successResultOf(d), 504, "timeout_error")
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_data_resets_idle_timer(self) -> None:
        """
        Each chunk from the upstream restarts the idle timer, so a slow but
        live stream is never cut.
        """
        harness = ProxyHarness(self, idle_timeout=120.0)
        handle, response = start_stream(harness)
        chunks, done = harness.collect(response)
        for _ in range(3):
            harness.clock.advance(100)
            handle.event("ping", {"type": "ping"})
            harness.flush()
        harness.clock.advance(100)
        handle.finish()
        harness.flush()
        self.successResultOf(done)
        events = parse_sse(b"".join(chunks))
        self.assertEqual([name for name, _ in events], ["message_start"] + ["ping"] * 3)
        self.assertEqual(harness.clock.getDelayedCalls(), [])


class DisconnectTests(SynchronousTestCase):
    """
    A client that goes away cancels its upstream request, quietly.
    """

    def assert_quiet_cleanup(self, harness: ProxyHarness) -> None:
        """
        Check that the upstream request ended, no timer or stream was left
        behind, nothing was logged as an error, and one line was logged.
        """
        self.assertTrue(harness.fake.requests[-1].disconnected)
        self.assertEqual(harness.fake.open_streams, [])
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(harness.log_texts(LogLevel.warn), [])
        lines = harness.exchange_lines()
        self.assertEqual(len(lines), 1)
        self.assertIn("client went away", lines[0])
        harness.assert_no_secrets_logged()

    def test_gone_before_upstream_headers(self) -> None:
        """
        A client that disconnects while ccm waits for the upstream's headers
        gets its upstream request cancelled.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(hang_reply())
        d = send_message(harness)
        self.assertEqual(len(harness.fake.open_streams), 1)
        transport = harness.server_requests[-1].channel.transport
        assert transport is not None
        transport.loseConnection()
        harness.flush()
        self.failureResultOf(d)
        self.assert_quiet_cleanup(harness)
        self.assertIn("-> -", harness.exchange_lines()[0])

    def test_client_cancels_before_upstream_headers(self) -> None:
        """
        Cancelling the client's request before any answer has the same
        effect as a disconnect.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(hang_reply())
        d = send_message(harness)
        d.cancel()
        harness.flush()
        self.failureResultOf(d, ResponseNeverReceived)
        self.assert_quiet_cleanup(harness)

    def test_gone_mid_stream(self) -> None:
        """
        A client that disconnects mid-stream closes the upstream connection;
        what was relayed so far is counted in the log line.
        """
        harness = ProxyHarness(self)
        handle, response = start_stream(harness)
        chunks, done = harness.collect(response)
        transport = harness.server_requests[-1].channel.transport
        assert transport is not None
        transport.loseConnection()
        harness.flush()
        self.failureResultOf(done, ResponseFailed)
        self.assertTrue(handle.disconnected)
        self.assertFalse(handle.write(b"event: ping\n\n"))
        self.assert_quiet_cleanup(harness)
        line = harness.exchange_lines()[0]
        self.assertIn("-> 200", line)
        self.assertIn(f"{len(b''.join(chunks))} bytes", line)

    def test_gone_while_token_pending(self) -> None:
        """
        A client that disconnects while ccm is still getting an access
        token causes no upstream request at all.
        """
        pending: Deferred[str] = Deferred()
        harness = ProxyHarness(self)
        self.patch(Credential, "access_token", lambda credential: pending)
        d = send_message(harness)
        transport = harness.server_requests[-1].channel.transport
        assert transport is not None
        transport.loseConnection()
        harness.flush()
        self.failureResultOf(d)
        pending.callback(harness.fake.access_token)
        harness.flush()
        self.assertEqual(harness.fake.requests, [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(len(harness.exchange_lines()), 1)


class ExchangeLogTests(SynchronousTestCase):
    """
    The one line ccm logs per proxied request.
    """

    def test_one_line_per_request(self) -> None:
        """
        A proxied request logs one line naming the method, path, user,
        model, credential, status and size, without the query string or
        any token.
        """
        harness = ProxyHarness(self)
        body = harness.body_of(harness.messages(STREAM_BODY))
        lines = harness.exchange_lines()
        self.assertEqual(len(lines), 1)
        self.assertEqual(
            lines[0],
            f"POST /v1/messages user=alice model={MESSAGE_BODY['model']} credential=main "
            f"-> 200 in 0.000s, {len(body)} bytes",
        )
        harness.assert_no_secrets_logged()

    def test_concurrent_requests(self) -> None:
        """
        Two requests in flight at once are relayed independently.
        """
        harness = ProxyHarness(self)
        first, first_response = start_stream(harness)
        second, second_response = start_stream(harness)
        first_chunks, first_done = harness.collect(first_response)
        second_chunks, second_done = harness.collect(second_response)
        second.event("ping", {"type": "ping"})
        second.finish()
        harness.flush()
        self.successResultOf(second_done)
        self.assertNoResult(first_done)
        first.finish()
        harness.flush()
        self.successResultOf(first_done)
        self.assertEqual(len(parse_sse(b"".join(first_chunks))), 1)
        self.assertEqual(len(parse_sse(b"".join(second_chunks))), 2)
        self.assertEqual(len(harness.exchange_lines()), 2)
        self.assertEqual(harness.clock.getDelayedCalls(), [])


class SessionTests(SynchronousTestCase):
    """
    The session and model ccm reads from a request.
    """

    def selected_sessions(self, harness: ProxyHarness) -> list[str]:
        """
        Record the session id of every credential selection.
        """
        sessions: list[str] = []
        select = harness.pool.select

        def recording_select(session_id: str, exclude: Iterable[str] = ()) -> Credential:
            sessions.append(session_id)
            return select(session_id, exclude)

        self.patch(harness.pool, "select", recording_select)
        return sessions

    def test_session_header(self) -> None:
        """
        The ``X-Claude-Code-Session-Id`` header is the session the pool is
        asked to serve.
        """
        harness = ProxyHarness(self)
        sessions = self.selected_sessions(harness)
        harness.messages(MESSAGE_BODY, {"x-claude-code-session-id": "sess-1"})
        self.assertEqual(sessions, ["sess-1"])

    def test_session_in_body(self) -> None:
        """
        A JSON body's ``metadata.user_id`` names the session when there is
        no header.
        """
        harness = ProxyHarness(self)
        sessions = self.selected_sessions(harness)
        user_id = json.dumps({"device_id": "d", "account_uuid": "", "session_id": "sess-2"})
        harness.messages(dict(MESSAGE_BODY, metadata={"user_id": user_id}))
        self.assertEqual(sessions, ["sess-2"])
        self.assertIn(f"model={MESSAGE_BODY['model']}", harness.exchange_lines()[0])

    def test_body_of_other_type_not_read(self) -> None:
        """
        A body declared as something other than JSON is forwarded but not
        read for a session or model.
        """
        harness = ProxyHarness(self)
        sessions = self.selected_sessions(harness)
        body = json.dumps(dict(MESSAGE_BODY, metadata={"user_id": "u_session_s3"})).encode()
        harness.response("POST", "/v1/messages", body, {"content-type": "text/plain"})
        self.assertEqual(sessions, [""])
        self.assertEqual(harness.fake.requests[-1].body, body)
        self.assertIn("model=-", harness.exchange_lines()[0])


class LoopbackTests(TestCase):
    """
    One smoke test on the real reactor over loopback TCP: the real upstream
    client, the real site, a real client.
    """

    async def test_client_disconnect_mid_stream(self) -> None:
        """
        A client that drops its TCP connection mid-stream makes ccm close
        its real upstream connection; finished requests leave no access log
        line (ccm logs its own, without query strings).
        """
        from twisted.internet import reactor

        events = logged_events(self)
        fake = FakeAnthropic(reactor)
        site = cast(ServerFactory, Site(fake.resource()))
        upstream_port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(upstream_port.stopListening)
        self.addCleanup(fake.abort_all)
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, ".credentials.json")
        write_credentials(path, fake.access_token, fake.refresh_token, 0)
        config = ServiceConfig(
            where="",
            listeners=(),
            credential_path=path,
            upstream_url=f"http://127.0.0.1:{cast(IPv4Address, upstream_port.getHost()).port}",
            max_request_body=1024,
        )
        _, port = serve_on_loopback(self, reactor, config)

        reply = manual_reply()
        fake.enqueue(reply)
        client_pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(client_pool.closeCachedConnections)
        client = HTTPClient(Agent(reactor, pool=client_pool))
        status = await client.get(f"http://127.0.0.1:{port}/ccm/v1/status")
        self.assertIn(b"plan_weight", await status.content())
        headers: dict[bytes | str, bytes | str] = {"content-type": "application/json"}
        requested = client.post(
            f"http://127.0.0.1:{port}/v1/messages",
            data=json.dumps(STREAM_BODY).encode("utf-8"),
            headers=headers,
            unbuffered=True,
        )
        while reply.handle is None:
            await deferLater(reactor, 0.01, lambda: None)
        handle = reply.handle
        upstream_ended: Deferred[None] = Deferred()
        handle.on_end(lambda: upstream_ended.callback(None))
        handle.start()
        handle.event("ping", {"type": "ping"})
        response = await requested
        first: Deferred[bytes] = Deferred()

        class Reader(Protocol):
            def dataReceived(self, data: bytes) -> None:
                if not first.called:
                    first.callback(data)
                    self.transport.stopProducing()  # type: ignore[union-attr]

            def connectionLost(self, reason: Any = None) -> None:
                pass

        response.deliverBody(Reader())
        self.assertEqual(await first, format_event("ping", {"type": "ping"}))
        await upstream_ended
        self.assertTrue(handle.disconnected)
        self.assertFalse(handle.finished)
        texts = [formatEvent(event) for event in events]
        self.assertEqual([t for t in texts if "HTTP/1.1" in t], [], "no access log")


class ClientIdentityTests(SynchronousTestCase):
    """
    The proxy tells the service's :obj:`ccm.upstream.identity.ClientIdentity`
    which Claude Code its callers run, so that ccm's own calls follow.
    """

    def test_newer_client_followed_by_polls(self) -> None:
        """
        After a caller's request from a newer Claude Code, the usage poll
        of the same service names that release; the caller's own
        ``User-Agent`` goes upstream unchanged.
        """
        harness = ProxyHarness(self)
        user_agent = "claude-cli/2.1.400 (external, cli)"
        harness.messages(MESSAGE_BODY, {"user-agent": user_agent})
        self.assertEqual(harness.proxy.identity.version, "2.1.400")
        self.assertEqual(harness.fake.requests[-1].header("user-agent"), user_agent)
        [poller] = [child for child in harness.service if isinstance(child, UsagePoller)]
        # The response's rate-limit headers made the windows fresh.
        harness.clock.advance(60)
        poller.poll_all()
        harness.flush()
        [poll] = [r for r in harness.fake.requests if r.path == "/api/oauth/usage"]
        self.assertEqual(poll.header("user-agent"), user_agent)

    def test_refused_caller_not_believed(self) -> None:
        """
        The ``User-Agent`` of a request refused for its token changes
        nothing.
        """
        harness = ProxyHarness(self)
        before = harness.proxy.identity.version
        harness.response(
            "POST",
            "/v1/messages",
            b"{}",
            {"user-agent": "claude-cli/2.1.999 (external, cli)"},
            token="ccm-token-guess",
        )
        self.assertEqual(harness.proxy.identity.version, before)
