"""
A fast fake Anthropic upstream for the benchmark harness (not for tests:
tests use ``tests.fake_anthropic``).

Run as ``python bench/fake_upstream.py PORT ACCESS_TOKEN``; it prints
``listening on PORT`` once it accepts connections. Every request must carry
``Authorization: Bearer ACCESS_TOKEN``, else the answer is 401.

``POST /v1/messages`` reads the whole body, then answers according to the
query string:

  - no ``stream``: a small non-streaming JSON message with usage.
  - ``stream=N&interval=S``: an SSE stream of ``message_start``, N
    ``content_block_delta`` events one every S seconds (0: as fast as the
    client takes them, with backpressure) and ``message_delta`` /
    ``message_stop``. Each delta's data carries ``"t": time.time()`` at the
    moment it is written, so a client can compute the event delay.
  - ``pad=B``: each delta's text is padded to B bytes (for big streams).

``GET /api/oauth/usage`` and ``GET /api/oauth/profile`` answer minimal JSON so
ccm's background polling has something to read.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Optional

from twisted.internet import reactor, task
from twisted.web import resource, server

_MODEL = "claude-sonnet-4-5-20250929"


def _event(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _start_event() -> bytes:
    return _event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_bench",
                "type": "message",
                "role": "assistant",
                "model": _MODEL,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 1000, "output_tokens": 1},
            },
        },
    ) + _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})


def _end_events() -> bytes:
    return (
        _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + _event(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 100}},
        )
        + _event("message_stop", {"type": "message_stop"})
    )


class _Stream:
    """
    Writes the events of one SSE stream, paced by a timer or by the
    transport's backpressure (it is a push producer).
    """

    def __init__(self, request: server.Request, count: int, interval: float, pad: int) -> None:
        self.request = request
        self.left = count
        self.pad = "x" * pad
        self.paused = False
        self.done = False
        self.loop: Optional[task.LoopingCall] = None
        request.notifyFinish().addBoth(self._gone)
        request.write(_start_event())
        if interval > 0:
            self.loop = task.LoopingCall(self._one)
            self.loop.start(interval, now=True)
        else:
            request.registerProducer(self, True)
            self._pump()

    def _gone(self, _: object) -> None:
        self.done = True
        if self.loop is not None and self.loop.running:
            self.loop.stop()

    def _delta(self) -> bytes:
        return _event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": self.pad}, "t": time.time()},
        )

    def _one(self) -> None:
        if self.done:
            return
        if self.left <= 0:
            self._finish()
            return
        self.left -= 1
        self.request.write(self._delta())

    def _finish(self) -> None:
        self.done = True
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        if self.loop is None:
            self.request.unregisterProducer()
        self.request.write(_end_events())
        self.request.finish()

    def _pump(self) -> None:
        burst = 64
        while not self.paused and not self.done and burst > 0:
            if self.left <= 0:
                self._finish()
                return
            self._one()
            burst -= 1
        if not self.paused and not self.done:
            reactor.callLater(0, self._pump)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if self.paused and not self.done:
            self.paused = False
            self._pump()

    def stopProducing(self) -> None:
        self.done = True


class Upstream(resource.Resource):
    isLeaf = True

    def __init__(self, access_token: str) -> None:
        super().__init__()
        self.authorization = b"Bearer " + access_token.encode()
        self._answers = 0
        self._started = time.time()

    def _unified(self, request: server.Request) -> None:
        """
        The subscription's rate-limit headers, as the real API sends them:
        the 5-hour window's use rises by a whole percent every 1,000
        answers (the real headers carry two decimals), so a proxy that
        follows the windows has news to share now and then. After 80,000
        answers (at 89 %) a new window starts at 10 %, so that however
        many paths and runs share this upstream, none reaches the
        proxy's pause threshold.
        """
        self._answers += 1
        window, answers = divmod(self._answers, 80_000)
        reset = str(int(self._started) + 5 * 3600 * (window + 1)).encode()
        used = "{:.2f}".format(0.10 + answers // 1000 / 100).encode()
        for name, value in (
            (b"anthropic-ratelimit-unified-status", b"allowed"),
            (b"anthropic-ratelimit-unified-5h-status", b"allowed"),
            (b"anthropic-ratelimit-unified-5h-utilization", used),
            (b"anthropic-ratelimit-unified-5h-reset", reset),
            (b"anthropic-ratelimit-unified-7d-status", b"allowed"),
            (b"anthropic-ratelimit-unified-7d-utilization", b"0.05"),
            (b"anthropic-ratelimit-unified-7d-reset", str(int(self._started) + 7 * 86400).encode()),
            (b"anthropic-ratelimit-unified-representative-claim", b"five_hour"),
        ):
            request.setHeader(name, value)

    def render(self, request: server.Request) -> bytes | int:
        request.setHeader(b"request-id", b"req_bench")
        self._unified(request)
        if request.path.startswith(b"/api/oauth/"):
            request.setHeader(b"content-type", b"application/json")
            return b"{}"
        if request.getHeader(b"authorization") != self.authorization:
            request.setResponseCode(401)
            request.setHeader(b"content-type", b"application/json")
            return b'{"type":"error","error":{"type":"authentication_error","message":"bad token"}}'
        request.content.seek(0, 2)
        size = request.content.tell()
        args = request.args
        if b"stream" not in args:
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(
                {
                    "id": "msg_bench",
                    "type": "message",
                    "role": "assistant",
                    "model": _MODEL,
                    "content": [{"type": "text", "text": "ok"}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": max(1, size // 4), "output_tokens": 1},
                }
            ).encode()
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        _Stream(
            request,
            int(args[b"stream"][0]),
            float(args.get(b"interval", [b"0"])[0]),
            int(args.get(b"pad", [b"1"])[0]),
        )
        return server.NOT_DONE_YET


def main(argv: list[str]) -> None:
    port, token = int(argv[1]), argv[2]
    site = server.Site(Upstream(token))
    site.displayTracebacks = False
    site.log = lambda request: None  # no access log on the hot path
    reactor.listenTCP(port, site, backlog=2048, interface="127.0.0.1")
    print("listening on", port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
