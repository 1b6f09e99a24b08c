"""
Messages API requests the proxy tests send through a :obj:`ProxyHarness`, a
usage object for the fake's replies to report, and reading a streamed
answer.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred

from tests.fake_anthropic import ReplyHandle, manual_reply
from tests.proxyharness import ProxyHarness

MESSAGE_BODY = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hi"}],
}
STREAM_BODY = dict(MESSAGE_BODY, stream=True)
# A reply's usage, with cache writes of both lifetimes.
USAGE = {
    "input_tokens": 21,
    "cache_read_input_tokens": 300,
    "cache_creation_input_tokens": 50,
    "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30},
    "output_tokens": 9,
}


def send_message(
    harness: ProxyHarness, document: dict[str, Any] = MESSAGE_BODY
) -> Deferred[Any]:
    """
    Start a ``POST /v1/messages`` with a JSON body.
    """
    return harness.send(
        "POST",
        "/v1/messages",
        json.dumps(document).encode("utf-8"),
        {"content-type": "application/json"},
    )


def start_stream(harness: ProxyHarness) -> tuple[ReplyHandle, Any]:
    """
    Send a streaming request answered by a manual reply, start the reply
    with one event, and return the reply's handle and the client's
    response.
    """
    reply = manual_reply()
    harness.fake.enqueue(reply)
    d = harness.send(
        "POST",
        "/v1/messages?beta=true",
        json.dumps(STREAM_BODY).encode("utf-8"),
        {"content-type": "application/json"},
    )
    assert reply.handle is not None
    reply.handle.start(content_type="text/event-stream; charset=utf-8")
    reply.handle.event("message_start", {"type": "message_start", "message": {}})
    harness.flush()
    response = harness.testcase.successResultOf(d)
    return reply.handle, response


def parse_sse(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """
    Split an event-stream body into (name, data) pairs.
    """
    events = []
    for block in body.split(b"\n\n"):
        if not block:
            continue
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n"))
        events.append((fields[b"event"].decode("utf-8"), json.loads(fields[b"data"])))
    return events
