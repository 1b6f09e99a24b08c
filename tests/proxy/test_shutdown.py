"""
Tests for the proxy at shutdown (:obj:`ccm.proxy.resource.ProxyResource.drain` and
:obj:`ccm.proxy.resource.ProxyResource.cut`): new requests are refused, those in
progress may finish within the grace period, and those still running then
are ended properly: a stream with an SSE error event and a clean end, a
request still waiting for the upstream with a 503, a half-sent JSON body
by an abort; what each used so far is counted.
"""

from __future__ import annotations

import json
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseFailed

from ccm.credentials.credential import Credential
from ccm.accounting.meter import TokenUsage
from tests.fake_anthropic import ReplyHandle, format_event, hang_reply, manual_reply, text_reply
from tests.fixtures import MemoryRecorder
from tests.proxy.messages import MESSAGE_BODY, STREAM_BODY, parse_sse, send_message, start_stream
from tests.proxyharness import FakeUpstreamResponse, ProxyHarness, ScriptedUpstream

MODEL = "claude-sonnet-4-5-20250929"
START_USAGE = {"input_tokens": 120, "cache_read_input_tokens": 4000, "output_tokens": 1}


def assert_next_request_refused(testcase: SynchronousTestCase, harness: ProxyHarness) -> None:
    """
    After a drain began, a request on an open connection gets ccm's 503
    asking to retry, and nothing more goes upstream.
    """
    upstream_before = len(harness.fake.requests)
    response = harness.messages(MESSAGE_BODY)
    error = harness.ccm_error(response, 503, "api_error")
    testcase.assertIn("shutting down", error["message"])
    testcase.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["true"])
    testcase.assertEqual(len(harness.fake.requests), upstream_before)


class DrainTests(SynchronousTestCase):
    """
    At shutdown the proxy refuses new requests and lets those in progress
    finish, for a bounded time.
    """

    def test_nothing_in_progress(self) -> None:
        """
        With no request in progress, a drain is over at once; a request
        arriving afterwards (on a kept-alive connection) gets a 503 that
        tells the client to retry, and nothing is sent upstream.
        """
        harness = ProxyHarness(self)
        self.assertIsNone(self.successResultOf(harness.proxy.drain(30.0)))
        assert_next_request_refused(self, harness)
        self.assertEqual(harness.fake.requests, [])
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_waits_for_a_stream(self) -> None:
        """
        A drain waits for a stream in progress, which goes on being
        relayed, and is over when that stream ends.
        """
        harness = ProxyHarness(self)
        handle, response = start_stream(harness)
        chunks, done = harness.collect(response)
        self.assertEqual(harness.proxy.in_progress, 1)
        drained = harness.proxy.drain(30.0)
        self.assertNoResult(drained)
        harness.clock.advance(20)
        handle.event("message_stop", {"type": "message_stop"})
        handle.finish()
        harness.flush()
        self.successResultOf(done)
        self.assertEqual(
            [name for name, _ in parse_sse(b"".join(chunks))], ["message_start", "message_stop"]
        )
        self.assertIsNone(self.successResultOf(drained))
        self.assertEqual(harness.proxy.in_progress, 0)
        self.assertTrue(any("waiting up to 30s for 1 request(s)" in line for line in harness.log_texts()))
        # The grace period is a number in a field of its own, too.
        self.assertIn(30.0, [event.get("grace_seconds") for event in harness.log])
        self.assertEqual(harness.log_texts(LogLevel.warn), [])
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_client_leaving_ends_its_request(self) -> None:
        """
        A client that goes away during the drain no longer holds it up.
        """
        harness = ProxyHarness(self)
        handle, response = start_stream(harness)
        chunks, done = harness.collect(response)
        drained = harness.proxy.drain(30.0)
        self.assertNoResult(drained)
        transport = harness.server_requests[-1].channel.transport
        assert transport is not None
        transport.loseConnection()
        harness.flush()
        self.failureResultOf(done)
        self.assertIsNone(self.successResultOf(drained))
        self.assertTrue(handle.disconnected)
        self.assertEqual(harness.clock.getDelayedCalls(), [])


class CutTests(SynchronousTestCase):
    """
    When the grace period ends, or a second signal asks for it, the
    requests still in progress are ended, each in the way its client
    understands, and their usage is counted.
    """

    def setUp(self) -> None:
        self.recorder = MemoryRecorder()
        self.harness = ProxyHarness(self, idle_timeout=600.0, recorder=self.recorder)

    def open_stream(self) -> tuple[ReplyHandle, list[bytes], Deferred[None]]:
        """
        A stream whose ``message_start`` (reporting :obj:`START_USAGE`) reached
        the client, and the client reading it.
        """
        reply = manual_reply()
        self.harness.fake.enqueue(reply)
        d = self.harness.send(
            "POST",
            "/v1/messages?beta=true",
            json.dumps(dict(STREAM_BODY, model=MODEL)).encode("utf-8"),
            {"content-type": "application/json"},
        )
        assert reply.handle is not None
        reply.handle.start(content_type="text/event-stream")
        reply.handle.event(
            "message_start",
            {"type": "message_start", "message": {"model": MODEL, "usage": START_USAGE}},
        )
        self.harness.flush()
        chunks, done = self.harness.collect(self.successResultOf(d))
        return reply.handle, chunks, done

    def test_stream_gets_error_event_at_grace_end(self) -> None:
        """
        A stream still running when the grace period ends gets an SSE
        ``error`` event (``overloaded_error``, saying ccm is restarting) and a
        clean end of body; its upstream request is dropped, the usage its
        first event reported is counted, the drain is over, and one
        warning says how many requests were ended.
        """
        harness = self.harness
        handle, chunks, done = self.open_stream()
        drained = harness.proxy.drain(30.0)
        harness.clock.advance(29)
        self.assertNoResult(drained)
        self.assertEqual(self.recorder.records, [])
        harness.clock.advance(1)
        harness.flush()
        self.assertIsNone(self.successResultOf(drained))
        self.successResultOf(done)
        events = parse_sse(b"".join(chunks))
        self.assertEqual([name for name, _ in events], ["message_start", "error"])
        error = events[-1][1]
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["error"]["type"], "overloaded_error")
        self.assertIn("ccm is restarting", error["error"]["message"])
        self.assertTrue(error["request_id"].startswith("ccm_"))
        self.assertTrue(handle.disconnected)
        self.assertFalse(handle.event("ping", {"type": "ping"}))
        [record] = self.recorder.records
        self.assertEqual(
            record.tokens,
            TokenUsage(model=MODEL, input_tokens=120, output_tokens=1, cache_read_input_tokens=4000),
        )
        [warning] = harness.log_texts(LogLevel.warn)
        self.assertIn("1 request(s) still in progress after 30s; ending them", warning)
        [line] = harness.exchange_lines()
        self.assertIn("-> 200", line)
        self.assertIn("(ended by ccm's shutdown)", line)
        self.assertEqual(harness.proxy.in_progress, 0)
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertEqual(self.flushLoggedErrors(), [])
        assert_next_request_refused(self, harness)
        harness.assert_no_secrets_logged()

    def test_waiting_for_headers_gets_503(self) -> None:
        """
        A request still waiting for the upstream's response headers gets
        ccm's 503 (``api_error``, ``x-should-retry: true``, saying ccm is
        restarting), and its upstream request is cancelled.
        """
        harness = self.harness
        harness.fake.enqueue(hang_reply())
        d = send_message(harness)
        self.assertNoResult(d)
        self.assertEqual(len(harness.fake.open_streams), 1)
        drained = harness.proxy.drain(5.0)
        harness.clock.advance(5)
        harness.flush()
        self.assertIsNone(self.successResultOf(drained))
        response = self.successResultOf(d)
        self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["true"])
        error = harness.ccm_error(response, 503, "api_error")
        self.assertIn("ccm is restarting", error["message"])
        # The upstream request was cancelled: the fake's reply is over.
        self.assertEqual(len(harness.fake.requests), 1)
        self.assertEqual(harness.fake.open_streams, [])
        self.assertIn("-> 503", harness.exchange_lines()[0])
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        self.assertEqual(self.flushLoggedErrors(), [])
        assert_next_request_refused(self, harness)

    def test_waiting_for_token_gets_503(self) -> None:
        """
        A request still waiting for its access token (a refresh) gets the
        same 503, and the token arriving later sends nothing upstream.
        """
        harness = self.harness
        pending: Deferred[str] = Deferred()
        self.patch(Credential, "access_token", lambda credential: pending)
        d = send_message(harness)
        harness.proxy.drain(5.0)
        harness.clock.advance(5)
        harness.flush()
        harness.ccm_error(self.successResultOf(d), 503, "api_error")
        pending.callback(harness.fake.access_token)
        harness.flush()
        self.assertEqual(harness.fake.requests, [])
        self.assertEqual(len(harness.exchange_lines()), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_half_sent_json_body_is_aborted(self) -> None:
        """
        A non-stream body that is half relayed cannot be completed: the
        client's connection is aborted, so the truncation shows, and the
        upstream request is dropped.
        """
        harness = self.harness
        reply = manual_reply()
        harness.fake.enqueue(reply)
        d = send_message(harness)
        assert reply.handle is not None
        reply.handle.start(200, {"content-length": "100"}, content_type="application/json")
        reply.handle.write(b'{"id": "msg')
        harness.flush()
        chunks, done = harness.collect(self.successResultOf(d))
        drained = harness.proxy.drain(5.0)
        harness.clock.advance(5)
        harness.flush()
        self.assertIsNone(self.successResultOf(drained))
        self.failureResultOf(done, ResponseFailed)
        self.assertEqual(chunks, [b'{"id": "msg'])
        self.assertTrue(reply.handle.disconnected)
        self.assertEqual(harness.proxy.in_progress, 0)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_cut_ends_the_drain_at_once(self) -> None:
        """
        :obj:`ProxyResource.cut` (a second stop signal) ends a waiting drain
        before its grace period, with no timer left; requests that
        finished before are untouched, and the stream in progress gets its
        error event.
        """
        harness = self.harness
        harness.fake.enqueue(text_reply("done"))
        finished = harness.messages(MESSAGE_BODY)
        self.assertEqual(finished.code, 200)
        self.assertIn(b"done", harness.body_of(finished))
        handle, chunks, done = self.open_stream()
        drained = harness.proxy.drain(600.0)
        harness.clock.advance(1)
        self.assertNoResult(drained)
        self.assertEqual(harness.proxy.cut(), 1)
        harness.flush()
        self.assertIsNone(self.successResultOf(drained))
        self.successResultOf(done)
        self.assertEqual(
            [name for name, _ in parse_sse(b"".join(chunks))], ["message_start", "error"]
        )
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        # cut logs nothing itself: whoever asks for it says why.
        self.assertEqual(harness.log_texts(LogLevel.warn), [])
        self.assertEqual(len(self.recorder.records), 2)
        assert_next_request_refused(self, harness)

    def test_cut_with_nothing_in_progress(self) -> None:
        """
        With nothing in progress, a cut ends nothing and refuses what
        comes next.
        """
        harness = self.harness
        self.assertEqual(harness.proxy.cut(), 0)
        assert_next_request_refused(self, harness)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_late_upstream_data_is_dropped(self) -> None:
        """
        Upstream data already on its way when a stream was ended, and the
        upstream connection's end that follows, are neither relayed nor
        counted again: the client's body ends with the error event.
        """
        recorder = MemoryRecorder()
        upstream = ScriptedUpstream()
        harness = ProxyHarness(self, http_client=upstream, recorder=recorder)
        d = harness.send(
            "POST",
            "/v1/messages",
            json.dumps(dict(STREAM_BODY, model=MODEL)).encode("utf-8"),
            {"content-type": "application/json"},
        )
        response = FakeUpstreamResponse()
        upstream.calls[0].result.callback(response)
        response.protocol.dataReceived(
            format_event("message_start", {"type": "message_start", "message": {"model": MODEL, "usage": START_USAGE}})
        )
        harness.flush()
        chunks, done = harness.collect(self.successResultOf(d))
        self.assertEqual(harness.proxy.cut(), 1)
        self.assertEqual(response.transport.producerState, "stopped")
        response.protocol.dataReceived(format_event("ping", {"type": "ping"}))
        response.protocol.connectionLost(Failure(ResponseFailed([Failure(ConnectionLost())])))
        harness.flush()
        self.successResultOf(done)
        self.assertEqual(
            [name for name, _ in parse_sse(b"".join(chunks))], ["message_start", "error"]
        )
        self.assertEqual(len(recorder.records), 1)
        self.assertEqual(harness.log_texts(LogLevel.warn), [])
        self.assertEqual(harness.clock.getDelayedCalls(), [])
