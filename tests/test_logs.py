"""
Tests for :obj:`ccm.logs`: the JSON lines of ``twistd --logger
ccm.logs.json_observer``, with the per-request line's figures as fields of
their own (numbers as numbers), in process and from a real twistd.
"""

from __future__ import annotations

import io
import json
import os
from typing import TYPE_CHECKING, Any, cast

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest

from ccm.accounting.tokens import TokenUsage
from ccm.logs import event_line, json_observer
from ccm.proxy.accesslog import log_request
from tests import e2e
from tests.fake_anthropic import text_reply
from tests.fixtures import expiry_ms, write_credentials

if TYPE_CHECKING:
    from treq._types import _ITreqReactor

USER_TOKEN = "ak-ccm-json-log-user"


def request_line(out: io.StringIO, status: int, usage: TokenUsage | None) -> dict[str, Any]:
    """
    Log one request's line through a JSON observer writing to ``out``, and
    the one JSON object it wrote.
    """
    log = Logger(namespace="ccm.test", observer=json_observer(out))
    # A stand-in for the parts of a request the line is made of.
    request = cast(Request, DummyRequest([b"v1", b"messages"]))
    request.method = b"POST"
    request.path = b"/v1/messages"
    log_request(
        log,
        request,
        user="alice",
        model="claude-opus-4-8",
        credential="default",
        status=status,
        duration=1.25,
        bytes_sent=1234,
        usage=usage,
        outcome="",
    )
    [line] = out.getvalue().splitlines()
    return dict(json.loads(line))


class JSONObserverTests(SynchronousTestCase):
    """
    :obj:`json_observer` and :obj:`event_line`.
    """

    def test_access_line_fields(self) -> None:
        """
        The per-request event becomes one JSON object per line whose user,
        model, credential, status, duration, bytes and token counts are
        fields (numbers as numbers), with the text line as ``log_text`` and
        Twisted's level and namespace.
        """
        usage = TokenUsage(input_tokens=10, output_tokens=20, cache_read_input_tokens=30, cache_creation_input_tokens=40)
        out = io.StringIO()
        event = request_line(out, 200, usage)
        self.assertTrue(out.getvalue().endswith("}\n"))
        self.assertNotIn("\x1e", out.getvalue())
        expected = {
            "method": "POST",
            "path": "/v1/messages",
            "user": "alice",
            "model": "claude-opus-4-8",
            "credential": "default",
            "status": 200,
            "duration": 1.25,
            "bytes": 1234,
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_read_input_tokens": 30,
            "cache_creation_input_tokens": 40,
        }
        self.assertEqual({key: event[key] for key in expected}, expected)
        self.assertEqual(event["log_level"]["name"], "info")
        self.assertEqual(event["log_namespace"], "ccm.test")
        self.assertIsInstance(event["log_time"], float)
        self.assertTrue(event["log_text"].startswith("POST /v1/messages user=alice model=claude-opus-4-8"), event)

    def test_no_status(self) -> None:
        """
        A request that got no status has ``status`` 0 (still a number), shown
        as ``-`` in the text; without counted usage there are no token
        fields.
        """
        event = request_line(io.StringIO(), 0, None)
        self.assertEqual(event["status"], 0)
        self.assertIn("-> - in 1.250s", event["log_text"])
        self.assertNotIn("input_tokens", event)

    def test_event_not_changed(self) -> None:
        """
        Writing an event leaves it as other observers see it.
        """
        event = {"log_format": "x {a}", "a": 1, "log_time": 0.0}
        line = event_line(event)
        self.assertEqual(json.loads(line)["log_text"], "x 1")
        self.assertNotIn("log_text", event)


class TwistdLoggerTests(TestCase):
    """
    A real ``twistd -n --logger ccm.logs.json_observer ccm`` process.
    """

    timeout = 120

    @inlineCallbacks
    def test_json_lines(self) -> Any:
        """
        Every line twistd writes is JSON, and a proxied request's line holds
        the user, model, credential, status, duration, bytes and tokens as
        fields; no token appears in the log.
        """
        from twisted.internet import reactor

        fake, fake_url = e2e.serve_fake_anthropic(self)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        credential_path = os.path.join(directory, ".credentials.json")
        write_credentials(credential_path, fake.access_token, fake.refresh_token, expiry_ms(30 * 86400))
        config = e2e.ccm_config(fake_url, credential_path, [{"name": "alice", "token": USER_TOKEN}])
        config["usages_path"] = os.path.join(directory, "usages.json")
        config_path = os.path.join(directory, "config.json")
        with open(config_path, "w") as handle:
            json.dump(config, handle)
        ccm = yield e2e.start_twistd(self, ["--logger", "ccm.logs.json_observer", "ccm", "--config", config_path])
        fake.enqueue(text_reply("Logged as JSON."))
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {USER_TOKEN}",
            "anthropic-version": "2023-06-01",
        }
        response = yield treq.post(
            ccm.url + "/v1/messages",
            json={"model": "claude-opus-4-8", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
            headers=headers,
            # The installed reactor resolves names too.
            reactor=cast("_ITreqReactor", reactor),
            pool=HTTPConnectionPool(reactor, persistent=False),
        )
        yield treq.content(response)
        self.assertEqual(response.code, 200)
        yield ccm.stop()
        lines = [line for line in ccm.stdout().splitlines() if line]
        events = [json.loads(line) for line in lines]
        [access] = [event for event in events if event.get("path") == "/v1/messages"]
        self.assertEqual(
            (access["user"], access["model"], access["credential"], access["status"]),
            ("alice", "claude-opus-4-8", "default", 200),
        )
        self.assertIsInstance(access["duration"], float)
        self.assertIsInstance(access["bytes"], int)
        self.assertGreater(access["bytes"], 0)
        self.assertIsInstance(access["input_tokens"], int)
        self.assertIsInstance(access["output_tokens"], int)
        for secret in (USER_TOKEN, fake.access_token, fake.refresh_token):
            self.assertNotIn(secret, ccm.output())
