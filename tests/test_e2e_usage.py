"""
End-to-end tests of usage accounting: a real ``twistd -n ccm`` process with
a ``usages_path``, real Claude Code CLI and SDK requests through it, and the
usage file it leaves behind when it shuts down.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import Agent, ResponseDone
from twisted.web.http_headers import Headers

from ccm.upstream.client import BytesProducer
from tests import e2e
from tests.fake_anthropic import manual_reply, text_reply
from tests.fixtures import expiry_ms, write_credentials

ALICE = "ak-ccm-usage-alice"
BOB = "ak-ccm-usage-bob"
USERS = [{"name": "alice", "token": ALICE}, {"name": "bob", "token": BOB}]
MODEL = "claude-sonnet-4-5-20250929"

# What each reply reports (message_start and message_delta of the fake).
ALICE_USAGE = {
    "input_tokens": 30,
    "cache_read_input_tokens": 1000,
    "cache_creation_input_tokens": 500,
    "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 300},
    "output_tokens": 40,
}
BOB_USAGE = {
    "input_tokens": 7,
    "cache_read_input_tokens": 0,
    "cache_creation_input_tokens": 0,
    "output_tokens": 11,
}


class _Collect(Protocol):
    """
    Collect a response body and fire ``started`` at the first bytes;
    ``clean`` says whether the body ended properly.
    """

    def __init__(self) -> None:
        self.data = b""
        self.clean = False
        self.started: Deferred[None] = Deferred()
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if not self.started.called:
            self.started.callback(None)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        self.clean = reason.check(ResponseDone) is not None
        self.done.callback(self.data)


class _UsageFileCase(unittest.TestCase):
    """
    ccm counts every user's tokens and writes them to the usage file: the
    fixtures.
    """

    timeout = 300
    ccm: e2e.CcmProcess

    @inlineCallbacks
    def start(self, existing: dict[str, Any] | None = None, grace: str | None = None) -> Any:
        """
        Start the fake upstream and ccm with a usage file (optionally
        already holding ``existing``), and ``grace`` as its ``shutdown_grace``
        if given.
        """
        self.fake, fake_url = e2e.serve_fake_anthropic(self)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        credential_path = os.path.join(directory, ".credentials.json")
        write_credentials(
            credential_path, self.fake.access_token, self.fake.refresh_token, expiry_ms(30 * 86400)
        )
        self.usages_path = os.path.join(directory, "usages.json")
        if existing is not None:
            with open(self.usages_path, "w") as handle:
                json.dump(existing, handle, indent=2)
        config = e2e.ccm_config(fake_url, credential_path, USERS)
        config["usages_path"] = self.usages_path
        if grace is not None:
            config["shutdown_grace"] = grace
        self.ccm = yield e2e.start_ccm(self, config)

    @inlineCallbacks
    def stop(self) -> Any:
        """
        Stop ccm with SIGTERM and return the usage file it left.
        """
        yield self.ccm.stop()
        self.assertFalse(self.ccm.was_killed)
        output = self.ccm.output()
        for secret in (ALICE, BOB, self.fake.access_token, self.fake.refresh_token):
            self.assertNotIn(secret, output)
        self.assertNotIn("Traceback", output)
        with open(self.usages_path) as handle:
            return json.load(handle)

    @inlineCallbacks
    def wait_for_file(self, timeout: float) -> Any:
        """
        Wait until ccm has written the usage file, and return its document.
        """
        waited = 0.0
        while not os.path.exists(self.usages_path):
            if waited >= timeout:
                self.fail(f"{self.usages_path} not written within {timeout} s")
            yield deferLater(reactor, 0.1)
            waited += 0.1
        with open(self.usages_path) as handle:
            return json.load(handle)


if TYPE_CHECKING:
    _Base = _UsageFileCase
else:
    _Base = object


class ClaudeCodeUsageTestsMixin(e2e.RealClaudeCode, _Base):
    """
    The usage of real Claude Code CLI requests, counted and saved.
    """

    @inlineCallbacks
    def test_cli_and_sdk_usage_saved_on_shutdown(self) -> Any:
        """
        Two Claude Code CLI requests by alice and one SDK request by bob
        are counted per user with the tokens the upstream reported, 5-minute
        and 1-hour cache writes apart; the file is written a few seconds
        after the first request (not a minute later), and shutdown saves it
        with everything and the costs.
        """
        yield self.start()
        self.fake.enqueue(
            text_reply("one", model=MODEL, usage=ALICE_USAGE),
            text_reply("two", model=MODEL, usage=ALICE_USAGE),
            text_reply("three", model=MODEL, usage=BOB_USAGE),
        )
        for prompt in ("first", "second"):
            result = yield self.run_claude(self.ccm.url, ALICE, prompt, args=["--model", MODEL])
            self.assertEqual(result.rc, 0, result.stderr)
            if prompt == "first":
                early = yield self.wait_for_file(timeout=15)
                self.assertGreaterEqual(early["combinations"][0]["total"]["request_count"], 1)
        rc, out, err = yield e2e.run_python_script(
            self,
            "import anthropic, sys\n"
            f"client = anthropic.Anthropic(base_url={self.ccm.url!r}, api_key={BOB!r}, max_retries=0)\n"
            f"message = client.messages.create(model={MODEL!r}, max_tokens=64,"
            " messages=[{'role': 'user', 'content': 'hi'}])\n"
            "print(message.content[0].text)\n",
        )
        self.assertEqual((rc, out.strip()), (0, "three"), err)
        document = yield self.stop()

        [combination] = document["combinations"]
        self.assertEqual(
            (combination["model"], combination["context_window"]), (MODEL, 200000)
        )
        total = combination["total"]
        self.assertEqual(total["request_count"], 3)
        self.assertEqual(total["input_tokens"], 30 * 2 + 7)
        self.assertEqual(total["output_tokens"], 40 * 2 + 11)
        self.assertEqual(total["cache_read_input_tokens"], 2000)
        self.assertEqual(total["cache_creation_input_tokens"], 1000)
        self.assertEqual(total["cache_creation_5m_input_tokens"], 400)
        self.assertEqual(total["cache_creation_1h_input_tokens"], 600)
        alice = combination["by_user"]["alice"]
        bob = combination["by_user"]["bob"]
        self.assertEqual((alice["request_count"], alice["output_tokens"]), (2, 80))
        self.assertEqual((bob["request_count"], bob["output_tokens"]), (1, 11))
        self.assertEqual(bob["messages_count"], 1)
        # Sonnet 4.5 costs 3 (input), 15 (output), 0.30 (cache read), 3.75
        # (5-minute write) and 6 (1-hour write) USD per million tokens.
        # One of alice's requests: 30*3 + 40*15 + 1000*0.30 + 200*3.75 +
        # 300*6 = 3540 millionths; two are 0.00708 USD, rounded to 0.01.
        # Bob's: 7*3 + 11*15 = 186 millionths, rounded to 0.
        self.assertEqual(document["costs"]["by_user"], {"alice": 0.01, "bob": 0})
        self.assertEqual(document["costs"]["total_usd"], 0.01)
        self.assertNotEqual(document["last_updated"], "0001-01-01T00:00:00Z")

    @inlineCallbacks
    def test_existing_file_keeps_counting(self) -> Any:
        """
        A usage file written earlier (here in the sing-box format, with a
        stale cost) is loaded, counted onto and saved with recomputed costs.
        """
        existing = {
            "last_updated": "2026-03-14T21:15:13.123456789+08:00",
            "costs": {"total_usd": 99.99, "by_user": {"alice": 99.99}},
            "combinations": [
                {
                    "model": MODEL,
                    "context_window": 200000,
                    "total": {
                        "request_count": 10,
                        "messages_count": 20,
                        "input_tokens": 1000000,
                        "output_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "cache_creation_input_tokens": 0,
                        "cost_usd": 99.99,
                    },
                    "by_user": {
                        "alice": {
                            "request_count": 10,
                            "messages_count": 20,
                            "input_tokens": 1000000,
                            "output_tokens": 0,
                            "cache_read_input_tokens": 0,
                            "cache_creation_input_tokens": 0,
                            "cost_usd": 99.99,
                        }
                    },
                }
            ],
        }
        yield self.start(existing)
        self.fake.enqueue(text_reply("again", model=MODEL, usage=BOB_USAGE))
        result = yield self.run_claude(self.ccm.url, ALICE, "again", args=["--model", MODEL])
        self.assertEqual(result.rc, 0, result.stderr)
        document = yield self.stop()
        # The loaded combination has no week; the new request's response
        # named its weekly window, so it is counted in a combination of
        # its own, after the loaded one.
        old, new = document["combinations"]
        self.assertEqual((old["model"], old["total"]["request_count"]), (MODEL, 10))
        self.assertNotIn("week_start_unix", old)
        self.assertEqual((new["model"], new["total"]["request_count"]), (MODEL, 1))
        self.assertGreater(new["week_start_unix"], 0)
        self.assertEqual(new["by_user"]["alice"]["input_tokens"], 7)
        # The loaded 1,000,000 input tokens at 3 USD per million cost 3.00,
        # not the stale 99.99; the new request's 7 input and 11 output
        # tokens round to 0.00.
        self.assertEqual(document["costs"]["total_usd"], 3.0)
        self.assertEqual(document["costs"]["by_user"], {"alice": 3.0})


globals().update(ClaudeCodeUsageTestsMixin.make_test_case_classes(_UsageFileCase))


class UsageFileTests(_UsageFileCase):
    """
    ccm counts the tokens of streams that shutdown interrupts or waits for.
    """

    @inlineCallbacks
    def open_stream(self, message_id: str, usage: dict[str, int]) -> Any:
        """
        Start a streaming request by alice, answered by a manual reply that
        has sent its ``message_start`` (with ``usage``); fire with the reply's
        handle and a collector of the body, once the first bytes arrived.
        """
        reply = manual_reply()
        self.fake.enqueue(reply)
        body = json.dumps(
            {"model": MODEL, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        ).encode("utf-8")
        requested = Agent(reactor).request(
            b"POST",
            (self.ccm.url + "/v1/messages").encode("ascii"),
            Headers({b"authorization": [b"Bearer " + ALICE.encode()], b"content-type": [b"application/json"]}),
            BytesProducer(body),
        )
        while reply.handle is None:
            yield deferLater(reactor, 0.05, lambda: None)
        handle = reply.handle
        handle.start(content_type="text/event-stream")
        handle.event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL,
                    "content": [],
                    "usage": usage,
                },
            },
        )
        response = yield requested
        collector = _Collect()
        response.deliverBody(collector)
        yield collector.started
        return handle, collector

    @inlineCallbacks
    def test_stream_cut_by_shutdown_counted(self) -> Any:
        """
        A stream still open when ccm is stopped, and still open when the
        shutdown grace period ends, counts the tokens its first event
        reported: shutdown does not lose it.  The client gets an SSE
        ``error`` event saying ccm is restarting, and a clean end of body.
        """
        yield self.start(grace="1s")
        _, collector = yield self.open_stream(
            "msg_cut", {"input_tokens": 123, "cache_read_input_tokens": 4000, "output_tokens": 1}
        )
        document = yield self.stop()
        data = yield collector.done
        [combination] = document["combinations"]
        self.assertEqual(combination["by_user"]["alice"]["input_tokens"], 123)
        self.assertEqual(combination["total"]["cache_read_input_tokens"], 4000)
        self.assertIn("1 request(s) still in progress after 1s; ending them", self.ccm.output())
        self.assertTrue(collector.clean)
        last = data.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        self.assertTrue(last.startswith(b"event: error\ndata: "), data)
        error = json.loads(last.split(b"data: ", 1)[1])
        self.assertEqual(error["error"]["type"], "overloaded_error")
        self.assertIn("ccm is restarting", error["error"]["message"])

    @inlineCallbacks
    def test_stream_finishes_during_shutdown(self) -> Any:
        """
        On SIGTERM, ccm stops accepting connections (a new one is refused)
        but lets a stream in progress run to its end within the grace
        period: the client gets every event, and the usage file counts the
        whole response.
        """
        yield self.start(grace="20s")
        handle, collector = yield self.open_stream("msg_drained", {"input_tokens": 55, "output_tokens": 1})
        stopped = self.ccm.stop()
        for _ in range(200):
            if "request(s) in progress to finish" in self.ccm.output():
                break
            yield deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail("ccm did not wait for the stream in progress:\n" + self.ccm.output())
        self.assertTrue(self.ccm.running)
        refused = Agent(reactor).request(b"GET", (self.ccm.url + "/v1/models").encode("ascii"))
        yield self.assertFailure(refused, ConnectionRefusedError)
        handle.event(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 77}},
        )
        handle.event("message_stop", {"type": "message_stop"})
        handle.finish()
        data = yield collector.done
        self.assertIn(b"event: message_stop", data)
        self.assertNotIn(b"event: error", data)
        yield stopped
        # Idempotent: checks the exit and the log, and reads the file.
        document = yield self.stop()
        [combination] = document["combinations"]
        alice = combination["by_user"]["alice"]
        self.assertEqual((alice["input_tokens"], alice["output_tokens"]), (55, 77))
        self.assertNotIn("ending them", self.ccm.output())
