"""
End-to-end tests of signals with a real ``twistd -n ccm`` process: SIGHUP
reloads the configuration file while requests keep flowing, and a second
SIGTERM during the shutdown drain stops at once, ending the stream still
running properly and saving its usage.

Requests come from this test process (:obj:`twisted.web.client.Agent`, a new
connection each); the upstream is the fake of :obj:`tests.fake_anthropic`.
Every test checks that ccm's output holds no secret and no traceback.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import Agent, ResponseDone, readBody
from twisted.web.http_headers import Headers

from ccm.upstream.client import BytesProducer
from tests import e2e
from tests.fake_anthropic import ReplyHandle, manual_reply, text_reply
from tests.fixtures import expiry_ms, write_credentials

ALICE = "ak-ccm-signals-alice-1"
ALICE_NEW = "ak-ccm-signals-alice-2"
CAROL = "ak-ccm-signals-carol"
MODEL = "claude-sonnet-4-5-20250929"
# How long to wait for a line in ccm's log, or for ccm to exit.
WAIT_SECONDS = 10.0


class _Collect(Protocol):
    """
    Collect a response body; ``done`` fires with the body and whether it
    ended cleanly (:obj:`ResponseDone`, not a cut connection).
    """

    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred[tuple[bytes, bool]] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        self.done.callback((self.data, reason.check(ResponseDone) is not None))


def sse_events(body: bytes) -> list[tuple[str, Any]]:
    """
    The (name, data) of each event of an event-stream body.
    """
    events = []
    for block in body.split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        if b"event" in fields:
            events.append((fields[b"event"].decode(), json.loads(fields[b"data"])))
    return events


class _SignalTestCase(unittest.TestCase):
    """
    ccm with a usage file in front of the fake upstream, and helpers to
    talk to it and read its log.
    """

    timeout = 120

    def setUp(self) -> None:
        self.fake, self.fake_url = e2e.serve_fake_anthropic(self)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.credential_path = os.path.join(directory, ".credentials.json")
        write_credentials(
            self.credential_path, self.fake.access_token, self.fake.refresh_token, expiry_ms(30 * 86400)
        )
        self.usages_path = os.path.join(directory, "usages.json")
        self.ccm: e2e.CcmProcess | None = None
        self.addCleanup(self.check_output)

    def config(self, users: list[dict[str, str]], **keys: Any) -> dict[str, Any]:
        """
        A configuration for ccm with ``users`` and more ``keys``.
        """
        config = e2e.ccm_config(self.fake_url, self.credential_path, users)
        config["usages_path"] = self.usages_path
        config.update(keys)
        return config

    @inlineCallbacks
    def start(self, config: dict[str, Any]) -> Any:
        self.ccm = yield e2e.start_ccm(self, config)
        return self.ccm

    def rewrite(self, config: dict[str, Any] | str) -> None:
        """
        Replace ccm's configuration file (a mapping as JSON, or raw text).
        """
        assert self.ccm is not None and self.ccm.config_path is not None
        with open(self.ccm.config_path, "w") as handle:
            handle.write(config if isinstance(config, str) else json.dumps(config, indent=2))

    def check_output(self) -> None:
        """
        Nothing ccm printed holds a token or a traceback.
        """
        if self.ccm is None:
            return
        output = self.ccm.output()
        for secret in (ALICE, ALICE_NEW, CAROL, self.fake.access_token, self.fake.refresh_token):
            self.assertNotIn(secret, output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("ReactorNotRunning", output)

    @inlineCallbacks
    def wait_for(self, *texts: str, count: int = 1) -> Any:
        """
        Wait until ccm's output holds ``texts``, together, ``count`` times.
        """
        assert self.ccm is not None
        deadline = time.monotonic() + WAIT_SECONDS
        while sum(self.ccm.output().count(text) for text in texts) < count:
            if time.monotonic() > deadline:
                self.fail(f"ccm did not log {texts!r} within {WAIT_SECONDS}s:\n{self.ccm.output()}")
            yield deferLater(reactor, 0.05, lambda: None)

    @inlineCallbacks
    def hangup(self) -> Any:
        """
        Send SIGHUP and wait until ccm has reloaded, or refused to.
        """
        assert self.ccm is not None
        outcomes = ("configuration reloaded from", "configuration not reloaded")
        done = sum(self.ccm.output().count(text) for text in outcomes) + 1
        self.ccm.signal("HUP")
        yield self.wait_for(*outcomes, count=done)

    def request(self, token: str, stream: bool = False, url: str | None = None) -> Deferred[Any]:
        """
        Send ``POST /v1/messages`` with ``token`` on a new connection.
        """
        assert self.ccm is not None
        body = json.dumps(
            {
                "model": MODEL,
                "max_tokens": 64,
                "stream": stream,
                "messages": [{"role": "user", "content": "hi"}],
            }
        ).encode()
        headers = Headers(
            {
                b"authorization": [b"Bearer " + token.encode()],
                b"content-type": [b"application/json"],
            }
        )
        target = (url or self.ccm.url) + "/v1/messages"
        return Agent(reactor).request(b"POST", target.encode(), headers, BytesProducer(body))

    @inlineCallbacks
    def post(self, token: str, url: str | None = None) -> Any:
        """
        A non-streaming request; fires with the status and the JSON body.
        """
        response = yield self.request(token, url=url)
        body = yield readBody(response)
        return response.code, json.loads(body)

    @inlineCallbacks
    def open_stream(self, usage: dict[str, int]) -> Any:
        """
        A streaming request by alice whose ``message_start`` (reporting
        ``usage``) reached ccm; fires with the reply's handle and a
        collector of the body.
        """
        reply = manual_reply()
        self.fake.enqueue(reply)
        requested = self.request(ALICE, stream=True)
        while reply.handle is None:
            yield deferLater(reactor, 0.05, lambda: None)
        handle: ReplyHandle = reply.handle
        handle.start(content_type="text/event-stream")
        handle.event(
            "message_start",
            {
                "type": "message_start",
                "message": {"id": "msg_signal", "type": "message", "role": "assistant",
                            "model": MODEL, "content": [], "usage": usage},
            },
        )
        response = yield requested
        self.assertEqual(response.code, 200)
        collector = _Collect()
        response.deliverBody(collector)
        return handle, collector

    def usage_by_user(self) -> dict[str, Any]:
        """
        The usage file's figures by user.
        """
        with open(self.usages_path) as handle:
            document = json.load(handle)
        [combination] = document["combinations"]
        by_user: dict[str, Any] = combination["by_user"]
        return by_user


class ReloadTests(_SignalTestCase):
    """
    SIGHUP re-reads the configuration file.
    """

    @inlineCallbacks
    def test_new_token_and_user(self) -> Any:
        """
        After alice's token is changed and carol added in the file, SIGHUP
        makes the new tokens work and the old one get 401, while a stream
        in flight during the reload finishes intact; the usage of all of
        them is saved at shutdown.
        """
        yield self.start(self.config([{"name": "alice", "token": ALICE}]))
        handle, collector = yield self.open_stream({"input_tokens": 40, "output_tokens": 1})
        self.rewrite(
            self.config([{"name": "alice", "token": ALICE_NEW}, {"name": "carol", "token": CAROL}])
        )
        yield self.hangup()
        assert self.ccm is not None
        self.assertIn(
            "configuration reloaded from config.json: users (added carol; changed alice)",
            self.ccm.output(),
        )
        code, body = yield self.post(ALICE)
        self.assertEqual((code, body["error"]["type"]), (401, "authentication_error"))
        self.fake.enqueue(text_reply("for alice", model=MODEL), text_reply("for carol", model=MODEL))
        code, body = yield self.post(ALICE_NEW)
        self.assertEqual((code, body["content"][0]["text"]), (200, "for alice"))
        code, body = yield self.post(CAROL)
        self.assertEqual((code, body["content"][0]["text"]), (200, "for carol"))

        handle.event(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        )
        handle.event("message_stop", {"type": "message_stop"})
        handle.finish()
        data, clean = yield collector.done
        self.assertTrue(clean)
        self.assertEqual(
            [name for name, _ in sse_events(data)], ["message_start", "message_delta", "message_stop"]
        )
        yield self.ccm.stop()
        self.assertFalse(self.ccm.was_killed)
        by_user = self.usage_by_user()
        self.assertEqual(by_user["alice"]["request_count"], 2)
        self.assertEqual(by_user["alice"]["input_tokens"] - 40, by_user["carol"]["input_tokens"])
        self.assertEqual(by_user["carol"]["request_count"], 1)

    @inlineCallbacks
    def test_broken_file_refused(self) -> Any:
        """
        A file with mistakes is refused with the same one-line errors as
        at start-up, and the running configuration keeps serving; a fixed
        file is then taken.
        """
        good = self.config([{"name": "alice", "token": ALICE}])
        yield self.start(good)
        broken = self.config([{"name": "alice", "tokn": ALICE_NEW}], max_request_body="a lot")
        self.rewrite(broken)
        yield self.hangup()
        assert self.ccm is not None
        output = self.ccm.output()
        problems = [line for line in output.splitlines() if "#error] config.json: " in line]
        self.assertEqual(
            sorted(line.split("#error] ")[1].split(": ")[1] for line in problems),
            ["max_request_body", "users[0].token", "users[0].tokn"],
            output,
        )
        self.assertIn("configuration not reloaded: the running one stays in use", output)
        code, body = yield self.post(ALICE)
        self.assertEqual(code, 200, body)
        self.rewrite("{\n  oops")
        yield self.hangup()
        self.assertIn("config.json: invalid JSON at line 2", self.ccm.output())
        code, body = yield self.post(ALICE)
        self.assertEqual(code, 200, body)
        self.rewrite(self.config([{"name": "alice", "token": ALICE_NEW}]))
        yield self.hangup()
        code, body = yield self.post(ALICE_NEW)
        self.assertEqual(code, 200, body)

    @inlineCallbacks
    def test_listener_change_needs_restart(self) -> Any:
        """
        A new endpoint is logged as needing a restart: the old listener
        keeps serving and nothing listens on the new one; a header change
        in the same file still applies.
        """
        yield self.start(self.config([{"name": "alice", "token": ALICE}]))
        assert self.ccm is not None
        new_port = e2e.free_port()
        self.rewrite(
            self.config(
                [{"name": "alice", "token": ALICE}],
                endpoint=f"tcp:{new_port}:interface=127.0.0.1",
                headers={"x-ccm-reloaded": "yes"},
            )
        )
        yield self.hangup()
        self.assertIn(
            "config.json: endpoint: needs a restart; keeping the running value", self.ccm.output()
        )
        code, body = yield self.post(ALICE)
        self.assertEqual(code, 200, body)
        self.assertEqual(self.fake.requests[-1].header("x-ccm-reloaded"), "yes")
        refused = self.post(ALICE, url=f"http://127.0.0.1:{new_port}")
        yield self.assertFailure(refused, ConnectionRefusedError)


class SecondSignalTests(_SignalTestCase):
    """
    A second SIGTERM during the shutdown drain stops at once.
    """

    @inlineCallbacks
    def test_second_sigterm_stops_at_once(self) -> Any:
        """
        With a stream running and a long grace, SIGTERM starts the drain
        and a second SIGTERM ends it: ccm exits promptly with one log line
        about it and no traceback, the client receives an SSE
        ``overloaded_error`` event and a clean end of body, and the stream's
        usage is saved.
        """
        yield self.start(self.config([{"name": "alice", "token": ALICE}], shutdown_grace="5m"))
        assert self.ccm is not None
        handle, collector = yield self.open_stream({"input_tokens": 77, "output_tokens": 1})
        self.ccm.signal("TERM")
        yield self.wait_for("waiting up to 5m0s for 1 request(s) in progress to finish")
        self.assertTrue(self.ccm.running)
        started = time.monotonic()
        exited = self.ccm.exited
        self.ccm.signal("TERM")
        code = yield exited
        self.assertLess(time.monotonic() - started, WAIT_SECONDS)
        self.assertEqual(code, e2e.TERMINATED_BY_SIGTERM)
        output = self.ccm.output()
        self.assertEqual(
            [line for line in output.splitlines() if "received again" in line][0].split("] ", 1)[1],
            "SIGTERM received again: stopping now; 1 request(s) in progress ended",
        )
        self.assertEqual(output.count("received again"), 1)
        self.assertNotIn("Unhandled", output)
        data, clean = yield collector.done
        self.assertTrue(clean)
        events = sse_events(data)
        self.assertEqual([name for name, _ in events], ["message_start", "error"])
        self.assertEqual(events[-1][1]["error"]["type"], "overloaded_error")
        self.assertIn("ccm is restarting", events[-1][1]["error"]["message"])
        self.assertTrue(handle.disconnected)
        self.assertEqual(self.usage_by_user()["alice"]["input_tokens"], 77)
