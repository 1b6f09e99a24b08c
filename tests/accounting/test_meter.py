"""
Tests for :obj:`ccm.accounting.meter`: token usage read from streamed and non-streamed
Messages API responses.

The streams are built from the event shapes the API really sends
(``anthropic-wire.md`` section 1.3).  Every expected figure is written out by
hand; the central property is that however a stream is cut into chunks
(at every byte, one byte at a time, at random places) the figures are those
of the whole stream.
"""

from __future__ import annotations

import json
import random
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting import meter as sse
from ccm.accounting.meter import (
    MAX_EVENT_DATA_BYTES,
    MAX_LINE_BYTES,
    EventStreamUsage,
    JSONBodyUsage,
    TokenUsage,
)
from tests.accounting.samples import MESSAGE_BODY, MESSAGE_USAGE
from tests.fixtures import HAIKU, OPUS, SONNET

MIB = 1024 * 1024


def encode(payload: object) -> bytes:
    """
    Compact JSON, UTF-8 left as is, the way the API writes event data.
    """
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def sse_stream(
    events: list[dict[str, Any]],
    *,
    newline: bytes = b"\n",
    data_prefix: bytes = b"data: ",
) -> bytes:
    """
    An event stream: for each payload an ``event:`` line named after its
    ``type``, a ``data:`` line and a blank line.
    """
    out = []
    for payload in events:
        out.append(b"event: " + payload["type"].encode("ascii") + newline)
        out.append(data_prefix + encode(payload) + newline + newline)
    return b"".join(out)


def message_start(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    """
    A ``message_start`` event.
    """
    return {
        "type": "message_start",
        "message": {
            "id": "msg_018GjQp3xXz7D2yXb1FvY2Zr",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        },
    }


def message_delta(
    usage: dict[str, Any], stop_reason: str = "end_turn"
) -> dict[str, Any]:
    """
    A ``message_delta`` event.
    """
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


def text_block(index: int, *texts: str) -> list[dict[str, Any]]:
    """
    A text content block streamed as ``text_delta`` events.
    """
    return (
        [
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            }
        ]
        + [
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": text},
            }
            for text in texts
        ]
        + [{"type": "content_block_stop", "index": index}]
    )


PING = {"type": "ping"}
MESSAGE_STOP = {"type": "message_stop"}

# A plain text answer (the capture in anthropic-wire.md section 1.3):
# message_delta repeats the input-side figures with the final output count.
TEXT_START_USAGE = {
    "input_tokens": 9,
    "cache_creation_input_tokens": 2122,
    "cache_read_input_tokens": 123663,
    "cache_creation": {
        "ephemeral_5m_input_tokens": 2122,
        "ephemeral_1h_input_tokens": 0,
    },
    "output_tokens": 1,
    "service_tier": "standard",
}
TEXT_BLOCK = text_block(0, "Hello", "! How can I help", " you today?")
TEXT_STREAM = sse_stream(
    [message_start(SONNET, TEXT_START_USAGE), TEXT_BLOCK[0], PING]
    + TEXT_BLOCK[1:]
    + [
        message_delta(
            {
                "input_tokens": 9,
                "cache_creation_input_tokens": 2122,
                "cache_read_input_tokens": 123663,
                "output_tokens": 566,
            }
        ),
        MESSAGE_STOP,
    ]
)
TEXT_START = TokenUsage(
    model=SONNET,
    input_tokens=9,
    output_tokens=1,
    cache_read_input_tokens=123663,
    cache_creation_input_tokens=2122,
    cache_creation_5m_input_tokens=2122,
    cache_creation_1h_input_tokens=0,
)
TEXT_FINAL = TokenUsage(
    model=SONNET,
    input_tokens=9,
    output_tokens=566,
    cache_read_input_tokens=123663,
    cache_creation_input_tokens=2122,
    cache_creation_5m_input_tokens=2122,
    cache_creation_1h_input_tokens=0,
)

# Thinking (thinking_delta, then one signature_delta), then text.
THINKING_STREAM = sse_stream(
    [
        message_start(
            OPUS,
            {
                "input_tokens": 4,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 0,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_tokens": 3,
                "service_tier": "standard",
            },
        ),
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "The user greets me;"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": " I should greet back."},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {
                "type": "signature_delta",
                "signature": "EqQBCkYIBxgCKkBvYXJ0aGluZ3NpZ25hdHVyZQ+/=",
            },
        },
        {"type": "content_block_stop", "index": 0},
    ]
    + text_block(1, "Hi there!")
    + [message_delta({"output_tokens": 812}), MESSAGE_STOP]
)
THINKING_FINAL = TokenUsage(model=OPUS, input_tokens=4, output_tokens=812)

# Text, then a tool_use block whose input arrives as input_json_delta; the
# message_delta carries only output_tokens, so the message_start cache
# figures stand.
TOOL_USE_STREAM = sse_stream(
    [
        message_start(
            HAIKU,
            {
                "input_tokens": 3,
                "cache_creation_input_tokens": 512,
                "cache_read_input_tokens": 14000,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 512,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_tokens": 2,
            },
        )
    ]
    + text_block(0, "I'll list the files.")
    + [
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "Bash",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"command": "ls'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {
                "type": "input_json_delta",
                "partial_json": ' -la", "description": "List files"}',
            },
        },
        {"type": "content_block_stop", "index": 1},
        message_delta({"output_tokens": 71}, stop_reason="tool_use"),
        MESSAGE_STOP,
    ]
)
TOOL_USE_FINAL = TokenUsage(
    model=HAIKU,
    input_tokens=3,
    output_tokens=71,
    cache_read_input_tokens=14000,
    cache_creation_input_tokens=512,
    cache_creation_5m_input_tokens=512,
    cache_creation_1h_input_tokens=0,
)

# A 1-hour cache write (what Claude Code asks for in OAuth mode).
ONE_HOUR_CACHE_STREAM = sse_stream(
    [
        message_start(
            OPUS,
            {
                "input_tokens": 6,
                "cache_creation_input_tokens": 18000,
                "cache_read_input_tokens": 0,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 0,
                    "ephemeral_1h_input_tokens": 18000,
                },
                "output_tokens": 1,
            },
        )
    ]
    + text_block(0, "Done.")
    + [
        message_delta(
            {
                "input_tokens": 6,
                "cache_creation_input_tokens": 18000,
                "cache_read_input_tokens": 0,
                "output_tokens": 40,
            }
        ),
        MESSAGE_STOP,
    ]
)
ONE_HOUR_CACHE_FINAL = TokenUsage(
    model=OPUS,
    input_tokens=6,
    output_tokens=40,
    cache_read_input_tokens=0,
    cache_creation_input_tokens=18000,
    cache_creation_5m_input_tokens=0,
    cache_creation_1h_input_tokens=18000,
)

# A 1M-context request: 250,000 tokens read from the cache.
LONG_CONTEXT_STREAM = sse_stream(
    [
        message_start(
            SONNET,
            {
                "input_tokens": 3,
                "cache_creation_input_tokens": 1200,
                "cache_read_input_tokens": 250000,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 1200,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_tokens": 1,
            },
        )
    ]
    + text_block(0, "The function is defined in ", "src/main.py.")
    + [message_delta({"output_tokens": 2000}), MESSAGE_STOP]
)
LONG_CONTEXT_FINAL = TokenUsage(
    model=SONNET,
    input_tokens=3,
    output_tokens=2000,
    cache_read_input_tokens=250000,
    cache_creation_input_tokens=1200,
    cache_creation_5m_input_tokens=1200,
    cache_creation_1h_input_tokens=0,
)

# message_delta carries input and cache figures that differ from
# message_start's: they replace them (12, not 10 + 12).
REPLACING_DELTA_STREAM = sse_stream(
    [
        message_start(
            SONNET,
            {
                "input_tokens": 10,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        )
    ]
    + text_block(0, "Searching.")
    + [
        message_delta(
            {
                "input_tokens": 12,
                "cache_creation_input_tokens": 500,
                "cache_read_input_tokens": 3000,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 0,
                    "ephemeral_1h_input_tokens": 500,
                },
                "output_tokens": 90,
            }
        ),
        MESSAGE_STOP,
    ]
)
REPLACING_DELTA_FINAL = TokenUsage(
    model=SONNET,
    input_tokens=12,
    output_tokens=90,
    cache_read_input_tokens=3000,
    cache_creation_input_tokens=500,
    cache_creation_5m_input_tokens=0,
    cache_creation_1h_input_tokens=500,
)

# Pings, comments, id/retry fields, unknown events (some with usage-like
# members or a "message_start" string inside) and a text delta quoting a
# message_delta: none of them counts.
INTERLEAVED_STREAM = (
    b": keep-alive comment\n\n"
    + sse_stream([PING])
    + b"id: 1\nretry: 3000\n"
    + sse_stream(
        [
            message_start(
                HAIKU,
                {
                    "input_tokens": 21,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            ),
            PING,
            {
                "type": "future_event",
                "usage": {"output_tokens": 9999, "input_tokens": 9999},
            },
            {
                "type": "annotation",
                "note": "message_start",
                "usage": {"input_tokens": 5555},
            },
        ]
        + text_block(
            0, '{"type":"message_delta","usage":{"output_tokens":77777}}'
        )
        + [PING, message_delta({"output_tokens": 48}), PING, MESSAGE_STOP]
    )
    + b"data: [DONE]\n\n"
)
INTERLEAVED_FINAL = TokenUsage(model=HAIKU, input_tokens=21, output_tokens=48)

# An error event after some output, and nothing after it: what
# message_start counted stands.
ERROR_STREAM = sse_stream(
    [
        message_start(
            HAIKU,
            {
                "input_tokens": 20,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 64000,
                "output_tokens": 1,
            },
        )
    ]
    + text_block(0, "Partial answer")[:2]
    + [
        PING,
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": "req_011CXyZ",
        },
    ]
)
ERROR_FINAL = TokenUsage(
    model=HAIKU, input_tokens=20, output_tokens=1, cache_read_input_tokens=64000
)

# The same small answer with CRLF line endings, with bare CR line endings,
# and with "data:" lines that have no space after the colon.  Non-ASCII
# text makes some cuts fall inside UTF-8 sequences.
SMALL_EVENTS = (
    [
        message_start(
            SONNET,
            {
                "input_tokens": 15,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        ),
        PING,
    ]
    + text_block(0, "naïve ☃ ", "日本")
    + [message_delta({"output_tokens": 27}), MESSAGE_STOP]
)
SMALL_FINAL = TokenUsage(model=SONNET, input_tokens=15, output_tokens=27)
CRLF_STREAM = sse_stream(SMALL_EVENTS, newline=b"\r\n")
CR_STREAM = sse_stream(SMALL_EVENTS, newline=b"\r")
NO_SPACE_STREAM = sse_stream(SMALL_EVENTS, data_prefix=b"data:")

# Events whose data spans several data: lines (joined with LF).
MULTILINE_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start",\n'
    b'data: "message":{"id":"msg_01","type":"message","role":"assistant",\n'
    b'data:"model":"claude-haiku-4-5-20251001","content":[],\n'
    b'data: "usage":{"input_tokens":25,"cache_creation_input_tokens":300,\n'
    b'data:   "cache_read_input_tokens":1000,\n'
    b'data: "cache_creation":{"ephemeral_5m_input_tokens":100,'
    b'"ephemeral_1h_input_tokens":200},\n'
    b'data: "output_tokens":1}}}\n'
    b"\n"
    + sse_stream(text_block(0, "Hi"))
    + b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},\n'
    b'data: "usage":{"output_tokens":64}}\n'
    b"\n"
    + sse_stream([MESSAGE_STOP])
)
MULTILINE_FINAL = TokenUsage(
    model=HAIKU,
    input_tokens=25,
    output_tokens=64,
    cache_read_input_tokens=1000,
    cache_creation_input_tokens=300,
    cache_creation_5m_input_tokens=100,
    cache_creation_1h_input_tokens=200,
)

# Mostly non-ASCII text, written as raw UTF-8 (2-, 3- and 4-byte sequences).
NON_ASCII_STREAM = sse_stream(
    [
        message_start(
            SONNET,
            {
                "input_tokens": 11,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        )
    ]
    + text_block(0, "naïve ☃ 日本", "語のテキスト 🎉", "ü€𝄞")
    + [message_delta({"output_tokens": 19}), MESSAGE_STOP]
)
NON_ASCII_FINAL = TokenUsage(model=SONNET, input_tokens=11, output_tokens=19)


def feed_chunks(chunks: list[bytes]) -> TokenUsage:
    """
    Feed ``chunks`` to a new :obj:`EventStreamUsage` and finish it.
    """
    scanner = EventStreamUsage()
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner.finish()


def random_chunks(data: bytes, rng: random.Random) -> list[bytes]:
    """
    Cut ``data`` at a random number of random places.
    """
    count = rng.randint(1, min(60, len(data) - 1))
    cuts = sorted(rng.sample(range(1, len(data)), count))
    bounds = [0] + cuts + [len(data)]
    return [data[start:end] for start, end in zip(bounds, bounds[1:])]


class StreamTestCase(SynchronousTestCase):
    """
    A test case with the assertion that a stream's figures do not depend on
    its chunking.
    """

    def assert_any_chunking_gives(self, stream: bytes, expected: TokenUsage) -> None:
        """
        Feeding ``stream`` whole, split in two at every byte position, one
        byte at a time, and in random chunks (fixed seed) gives ``expected``.
        """
        self.assertEqual(feed_chunks([stream]), expected)
        for position in range(len(stream) + 1):
            got = feed_chunks([stream[:position], stream[position:]])
            if got != expected:
                self.fail(f"split at {position}: {got!r} != {expected!r}")
        self.assertEqual(
            feed_chunks([stream[i : i + 1] for i in range(len(stream))]), expected
        )
        rng = random.Random(20251029)
        for _ in range(30):
            self.assertEqual(feed_chunks(random_chunks(stream, rng)), expected)


class RecordedStreamTests(StreamTestCase):
    """
    Each recorded-shape stream gives its hand-computed figures, whatever the
    chunking.
    """

    def test_text(self) -> None:
        """
        A plain text answer: model, input and cache figures (with the 5-minute
        split) from ``message_start``, output from ``message_delta``.
        """
        self.assert_any_chunking_gives(TEXT_STREAM, TEXT_FINAL)

    def test_thinking(self) -> None:
        """
        Thinking deltas and a signature delta do not count; output is the
        ``message_delta`` total, which includes thinking.
        """
        self.assert_any_chunking_gives(THINKING_STREAM, THINKING_FINAL)

    def test_tool_use(self) -> None:
        """
        A tool_use block streamed as ``input_json_delta`` events does not count, and
        a ``message_delta`` that carries only ``output_tokens`` leaves the
        ``message_start`` cache figures as they were.
        """
        self.assert_any_chunking_gives(TOOL_USE_STREAM, TOOL_USE_FINAL)

    def test_one_hour_cache_write(self) -> None:
        """
        A 1-hour cache write is reported as such: the split of
        ``message_start`` survives a ``message_delta`` that repeats the total
        without the split.
        """
        self.assert_any_chunking_gives(ONE_HOUR_CACHE_STREAM, ONE_HOUR_CACHE_FINAL)

    def test_long_context(self) -> None:
        """
        A 1M-context request: a quarter of a million cache-read tokens are
        counted, and the prompt size is over 200k.
        """
        self.assert_any_chunking_gives(LONG_CONTEXT_STREAM, LONG_CONTEXT_FINAL)
        self.assertEqual(feed_chunks([LONG_CONTEXT_STREAM]).total_input_tokens, 251203)

    def test_delta_replaces_input_and_cache(self) -> None:
        """
        Input and cache figures in ``message_delta`` replace those of
        ``message_start`` (they are cumulative, never added), including the
        lifetime split.
        """
        self.assert_any_chunking_gives(REPLACING_DELTA_STREAM, REPLACING_DELTA_FINAL)

    def test_ping_unknown_and_comment_lines(self) -> None:
        """
        Pings, comments, ``id:`` and ``retry:`` fields, ``[DONE]``, unknown
        event types carrying usage-like members and text that quotes a
        ``message_delta`` change nothing.
        """
        self.assert_any_chunking_gives(INTERLEAVED_STREAM, INTERLEAVED_FINAL)

    def test_error_event(self) -> None:
        """
        A mid-stream ``error`` event does not erase what ``message_start``
        counted.
        """
        self.assert_any_chunking_gives(ERROR_STREAM, ERROR_FINAL)

    def test_crlf(self) -> None:
        """
        CRLF line endings, cut anywhere including between CR and LF, read
        like LF ones.
        """
        self.assert_any_chunking_gives(CRLF_STREAM, SMALL_FINAL)

    def test_bare_cr(self) -> None:
        """
        Bare CR line endings read like LF ones.
        """
        self.assert_any_chunking_gives(CR_STREAM, SMALL_FINAL)

    def test_data_without_space(self) -> None:
        """
        ``data:`` lines without a space after the colon are read.
        """
        self.assert_any_chunking_gives(NO_SPACE_STREAM, SMALL_FINAL)

    def test_multiline_data(self) -> None:
        """
        An event whose JSON spans several ``data:`` lines is read whole.
        """
        self.assert_any_chunking_gives(MULTILINE_STREAM, MULTILINE_FINAL)

    def test_multiline_data_crlf_and_cr(self) -> None:
        """
        Multi-line data with CRLF or bare CR line endings is read whole: a
        CRLF cut between CR and LF is one line ending, not two (which would
        end the event early).
        """
        self.assert_any_chunking_gives(
            MULTILINE_STREAM.replace(b"\n", b"\r\n"), MULTILINE_FINAL
        )
        self.assert_any_chunking_gives(
            MULTILINE_STREAM.replace(b"\n", b"\r"), MULTILINE_FINAL
        )

    def test_non_ascii_text(self) -> None:
        """
        Non-ASCII text, cut inside its UTF-8 sequences, changes nothing.
        """
        self.assertIn("日本".encode(), NON_ASCII_STREAM)
        self.assert_any_chunking_gives(NON_ASCII_STREAM, NON_ASCII_FINAL)

    def test_byte_order_mark(self) -> None:
        """
        A byte order mark at the start of the stream is skipped, so a first
        line that is a ``data:`` line is still read.
        """
        stream = (
            b"\xef\xbb\xbfdata: "
            + encode(message_start(SONNET, {"input_tokens": 2, "output_tokens": 1}))
            + b"\n\n"
            + sse_stream([message_delta({"output_tokens": 5})])
        )
        self.assert_any_chunking_gives(
            stream, TokenUsage(model=SONNET, input_tokens=2, output_tokens=5)
        )


class EarlyEndTests(SynchronousTestCase):
    """
    A stream that ends early still gives what it used.
    """

    def test_cut_before_message_delta(self) -> None:
        """
        Cut before ``message_delta``: the ``message_start`` figures, with the
        provisional output count.
        """
        cut = TEXT_STREAM.index(b"event: message_delta")
        self.assertEqual(feed_chunks([TEXT_STREAM[:cut]]), TEXT_START)

    def test_cut_inside_message_delta(self) -> None:
        """
        Cut in the middle of the ``message_delta`` data: the cut event is
        ignored and the ``message_start`` figures stand.
        """
        cut = TEXT_STREAM.index(b'"output_tokens":566') + 10
        self.assertEqual(feed_chunks([TEXT_STREAM[:cut]]), TEXT_START)

    def test_cut_right_after_message_start(self) -> None:
        """
        Cut right after the ``message_start`` data line, before the blank
        line, or even before that line's newline: the event is still read.
        """
        start_json = encode(message_start(SONNET, TEXT_START_USAGE))
        end = TEXT_STREAM.index(start_json) + len(start_json)
        self.assertEqual(feed_chunks([TEXT_STREAM[:end]]), TEXT_START)
        self.assertEqual(feed_chunks([TEXT_STREAM[: end + 1]]), TEXT_START)
        self.assertEqual(feed_chunks([TEXT_STREAM[: end + 2]]), TEXT_START)

    def test_cut_inside_message_start(self) -> None:
        """
        Cut inside the ``message_start`` data: nothing is known yet.
        """
        cut = TEXT_STREAM.index(b'"cache_read_input_tokens"')
        self.assertEqual(feed_chunks([TEXT_STREAM[:cut]]), TokenUsage())
        self.assertFalse(feed_chunks([TEXT_STREAM[:cut]]).has_tokens)

    def test_every_cut(self) -> None:
        """
        For a cut at every position: nothing before the ``message_start``
        JSON is complete, its figures until the ``message_delta`` JSON is
        complete, the final figures afterwards; the same when the prefix
        arrives in two chunks.
        """
        start_json = encode(message_start(SONNET, TEXT_START_USAGE))
        start_end = TEXT_STREAM.index(start_json) + len(start_json)
        delta_json = b'"output_tokens":566}}'
        delta_end = TEXT_STREAM.index(delta_json) + len(delta_json)
        for cut in range(len(TEXT_STREAM) + 1):
            if cut < start_end:
                expected = TokenUsage()
            elif cut < delta_end:
                expected = TEXT_START
            else:
                expected = TEXT_FINAL
            prefix = TEXT_STREAM[:cut]
            self.assertEqual(feed_chunks([prefix]), expected, f"cut at {cut}")
            half = cut // 2
            self.assertEqual(
                feed_chunks([prefix[:half], prefix[half:]]), expected, f"cut at {cut}"
            )

    def test_usage_while_streaming(self) -> None:
        """
        ``usage`` gives the current figures before the stream ends.
        """
        scanner = EventStreamUsage()
        self.assertEqual(scanner.usage, TokenUsage())
        cut = TEXT_STREAM.index(b"event: content_block_start")
        scanner.feed(TEXT_STREAM[:cut])
        self.assertEqual(scanner.usage, TEXT_START)
        scanner.feed(TEXT_STREAM[cut:])
        self.assertEqual(scanner.usage, TEXT_FINAL)
        self.assertEqual(scanner.finish(), TEXT_FINAL)

    def test_finish_is_final(self) -> None:
        """
        A second ``finish`` returns the same figures, bytes fed after
        ``finish`` are ignored, and the figures returned are copies the
        caller may change.
        """
        scanner = EventStreamUsage()
        scanner.feed(TEXT_STREAM)
        first = scanner.finish()
        first.output_tokens = 0
        scanner.feed(sse_stream([message_delta({"output_tokens": 1000})]))
        self.assertEqual(scanner.finish(), TEXT_FINAL)
        self.assertEqual(scanner.usage, TEXT_FINAL)
        self.assertEqual(scanner.buffered_bytes, 0)


class MalformedStreamTests(StreamTestCase):
    """
    Malformed events are ignored without raising.
    """

    def test_invalid_values_ignored(self) -> None:
        """
        Strings, negatives, bools, floats and nulls in place of counts, an
        empty or non-string model, and usage that is not an object are
        ignored; valid fields next to them still count.
        """
        stream = sse_stream(
            [
                message_start(
                    "",
                    {
                        "input_tokens": 7,
                        "output_tokens": "3",
                        "cache_read_input_tokens": -5,
                        "cache_creation_input_tokens": True,
                        "cache_creation": {
                            "ephemeral_5m_input_tokens": 1.0,
                            "ephemeral_1h_input_tokens": None,
                        },
                    },
                ),
                {"type": "message_start", "message": {"model": 42, "usage": [1, 2]}},
                {"type": "message_start", "message": "claude"},
                {"type": "message_delta", "usage": "lots"},
                message_delta(
                    {
                        "input_tokens": None,
                        "output_tokens": 30,
                        "cache_creation": [500],
                    }
                ),
                message_delta({"output_tokens": False}),
            ]
        )
        self.assert_any_chunking_gives(
            stream, TokenUsage(model="", input_tokens=7, output_tokens=30)
        )

    def test_bad_json_ignored(self) -> None:
        """
        Data that is not JSON, JSON that is not an object, invalid UTF-8 and
        events without data are ignored.
        """
        stream = (
            b'data: {"type":"message_start","message":\n\n'
            b'data: ["message_start", {"type":"message_delta"}]\n\n'
            b'data: "message_delta"\n\n'
            b'data: {"type":"message_delta","usage":{"output_tokens":5},'
            b'"x":"\xff\xfe"}\n\n'
            b"event: message_delta\n\n"
            b"data\n\n"
            + sse_stream(
                [
                    message_start(HAIKU, {"input_tokens": 8, "output_tokens": 1}),
                    message_delta({"output_tokens": 9}),
                ]
            )
        )
        self.assert_any_chunking_gives(
            stream, TokenUsage(model=HAIKU, input_tokens=8, output_tokens=9)
        )

    def test_data_lines_joined_with_lf(self) -> None:
        """
        The ``data:`` lines of an event are joined with LF, not glued: a
        number cut across two lines does not parse, so the event is ignored.
        """
        stream = sse_stream(
            [message_start(SONNET, {"input_tokens": 4, "output_tokens": 1})]
        ) + (
            b'data: {"type":"message_delta","usage":{"output_tokens":4\n'
            b"data: 0}}\n\n"
        )
        self.assert_any_chunking_gives(
            stream, TokenUsage(model=SONNET, input_tokens=4, output_tokens=1)
        )

    def test_only_usage_events_decoded(self) -> None:
        """
        Only the data of ``message_start`` and ``message_delta`` events is
        JSON-decoded; text deltas, pings and stops are not.
        """
        decoded: list[bytes] = []

        def counting_loads(data: bytes) -> Any:
            """
            A stand-in for ``loads_wire`` that records what it decodes.
            """
            decoded.append(data)
            return json.loads(data)

        self.patch(sse, "loads_wire", counting_loads)
        self.assertEqual(feed_chunks([TEXT_STREAM]), TEXT_FINAL)
        self.assertEqual(len(decoded), 2)
        self.assertTrue(decoded[0].startswith(b'{"type":"message_start"'))
        self.assertTrue(decoded[1].startswith(b'{"type":"message_delta"'))


class BoundedMemoryTests(SynchronousTestCase):
    """
    The scanner holds a bounded number of bytes whatever it is fed.
    """

    def test_long_line_is_dropped(self) -> None:
        """
        3 MiB without a newline never make the scanner hold more than
        :obj:`MAX_LINE_BYTES`; the over-long line (a ``message_delta`` that would
        otherwise count) is skipped up to its newline and parsing resumes
        after it.
        """
        long_line = (
            b'data: {"type":"message_delta","usage":{"output_tokens":99999},"pad":"'
            + b"x" * (3 * MIB)
            + b'"}'
        )
        scanner = EventStreamUsage()
        for start in range(0, len(long_line), 65536):
            scanner.feed(long_line[start : start + 65536])
            self.assertLessEqual(scanner.buffered_bytes, MAX_LINE_BYTES)
        scanner.feed(b"\n\n")
        self.assertEqual(scanner.buffered_bytes, 0)
        scanner.feed(TEXT_STREAM)
        self.assertEqual(scanner.finish(), TEXT_FINAL)
        self.assertEqual(feed_chunks([long_line + b"\n\n" + TEXT_STREAM]), TEXT_FINAL)

    def test_long_line_without_end(self) -> None:
        """
        A stream that ends inside an over-long line gives the figures seen
        before it.
        """
        scanner = EventStreamUsage()
        scanner.feed(TEXT_STREAM)
        scanner.feed(b"data: " + b"y" * (2 * MIB))
        self.assertLessEqual(scanner.buffered_bytes, MAX_LINE_BYTES)
        self.assertEqual(scanner.finish(), TEXT_FINAL)

    def test_line_at_the_limit_is_kept(self) -> None:
        """
        A data line of exactly :obj:`MAX_LINE_BYTES` bytes is read, and one
        byte more is dropped, however it is cut.
        """
        prefix = b'data: {"type":"message_delta","usage":{"output_tokens":44},"pad":"'
        suffix = b'"}'
        fitting = prefix + b"z" * (MAX_LINE_BYTES - len(prefix) - len(suffix)) + suffix
        self.assertEqual(len(fitting), MAX_LINE_BYTES)
        too_long = fitting[:-2] + b'z"}'
        for line, expected in [(fitting, 44), (too_long, 0)]:
            stream = line + b"\n\n"
            for chunks in (
                [stream],
                [stream[i : i + 4096] for i in range(0, len(stream), 4096)],
            ):
                self.assertEqual(feed_chunks(chunks).output_tokens, expected)

    def test_long_line_discards_its_event(self) -> None:
        """
        An over-long line discards the event it is part of, data before and
        after it included, the same way whether it arrives whole, in pieces,
        or cut just before or just after its line ending; later events
        count.
        """
        start = encode(message_start(HAIKU, {"input_tokens": 50, "output_tokens": 1}))
        head = b"data: " + start + b"\n:" + b"c" * (MAX_LINE_BYTES + 1)
        stream = (
            head
            + b"\ndata: "
            + encode(message_delta({"output_tokens": 999}))
            + b"\n\n"
            + sse_stream([message_start(SONNET, {"input_tokens": 7})])
        )
        expected = TokenUsage(model=SONNET, input_tokens=7)
        for chunks in [
            [stream],
            [stream[i : i + 65536] for i in range(0, len(stream), 65536)],
            [stream[: len(head)], stream[len(head) :]],
            [stream[: len(head) + 1], stream[len(head) + 1 :]],
        ]:
            self.assertEqual(feed_chunks(chunks), expected)

    def test_event_data_is_bounded(self) -> None:
        """
        An event whose data lines add up to more than
        :obj:`MAX_EVENT_DATA_BYTES` is dropped without holding more than that;
        the next event is read.
        """
        scanner = EventStreamUsage()
        piece = b"data: " + b"w" * (MIB // 2) + b"\n"
        for _ in range(6):
            scanner.feed(piece)
            self.assertLessEqual(scanner.buffered_bytes, MAX_EVENT_DATA_BYTES)
        scanner.feed(b"\n")
        self.assertEqual(scanner.buffered_bytes, 0)
        scanner.feed(TEXT_STREAM)
        self.assertEqual(scanner.finish(), TEXT_FINAL)


class JSONBodyUsageTests(SynchronousTestCase):
    """
    :obj:`JSONBodyUsage` collects a non-streaming body, within a limit.
    """

    def test_random_chunks(self) -> None:
        """
        The body fed whole, one byte at a time, or in random chunks (cut
        inside UTF-8 sequences too) gives the same usage.
        """
        rng = random.Random(1729)
        chunkings = [
            [MESSAGE_BODY],
            [MESSAGE_BODY[i : i + 1] for i in range(len(MESSAGE_BODY))],
        ]
        chunkings += [random_chunks(MESSAGE_BODY, rng) for _ in range(50)]
        for chunks in chunkings:
            collector = JSONBodyUsage()
            for chunk in chunks:
                collector.feed(chunk)
            self.assertEqual(collector.finish(), MESSAGE_USAGE)
            self.assertFalse(collector.overflowed)

    def test_limit_exactly(self) -> None:
        """
        A body of exactly the limit is read.
        """
        collector = JSONBodyUsage(limit_bytes=len(MESSAGE_BODY))
        collector.feed(MESSAGE_BODY[:100])
        collector.feed(MESSAGE_BODY[100:])
        self.assertFalse(collector.overflowed)
        self.assertEqual(collector.finish(), MESSAGE_USAGE)

    def test_overflow(self) -> None:
        """
        Past the limit the bytes are dropped, more bytes are not kept,
        ``overflowed`` is set and the usage is empty.
        """
        collector = JSONBodyUsage(limit_bytes=len(MESSAGE_BODY) - 1)
        collector.feed(MESSAGE_BODY[:100])
        self.assertEqual(collector.buffered_bytes, 100)
        self.assertFalse(collector.overflowed)
        collector.feed(MESSAGE_BODY[100:])
        self.assertTrue(collector.overflowed)
        self.assertEqual(collector.buffered_bytes, 0)
        collector.feed(b" " * 10)
        self.assertEqual(collector.buffered_bytes, 0)
        self.assertEqual(collector.finish(), TokenUsage())
        self.assertTrue(collector.overflowed)

    def test_default_limit(self) -> None:
        """
        The default limit is 16 MiB.
        """
        collector = JSONBodyUsage()
        collector.feed(b" " * (16 * MIB))
        self.assertFalse(collector.overflowed)
        collector.feed(b" ")
        self.assertTrue(collector.overflowed)

    def test_cut_body(self) -> None:
        """
        A body cut anywhere before its end gives an empty usage.
        """
        for cut in range(len(MESSAGE_BODY)):
            collector = JSONBodyUsage()
            collector.feed(MESSAGE_BODY[:cut])
            self.assertEqual(collector.finish(), TokenUsage(), f"cut at {cut}")

    def test_not_json(self) -> None:
        """
        An HTML error page, invalid UTF-8 and JSON that is not an object
        give an empty usage.
        """
        for body in [
            b"<html><body>502 Bad Gateway</body></html>",
            b'{"model":"\xff","usage":{"input_tokens":1}}',
            b"[1, 2, 3]",
            b"",
        ]:
            collector = JSONBodyUsage()
            collector.feed(body)
            self.assertEqual(collector.finish(), TokenUsage(), repr(body))

    def test_only_json_reads(self) -> None:
        """
        A body orjson refuses and :obj:`json` reads (here a NaN in a field
        ccm does not read) still gives its usage; an input count beyond 64
        bits, which no usage file holds, is not taken.
        """
        collector = JSONBodyUsage()
        collector.feed(
            b'{"model": "claude-sonnet-4-5", "temperature": NaN,'
            b' "usage": {"input_tokens": 7, "output_tokens": 3}}'
        )
        self.assertEqual(
            collector.finish(),
            TokenUsage(model="claude-sonnet-4-5", input_tokens=7, output_tokens=3),
        )
        collector = JSONBodyUsage()
        collector.feed(
            b'{"model": "claude-sonnet-4-5",'
            b' "usage": {"input_tokens": 123456789012345678901234567890, "output_tokens": 3}}'
        )
        self.assertEqual(collector.finish(), TokenUsage(model="claude-sonnet-4-5", output_tokens=3))

    def test_finish_twice(self) -> None:
        """
        A second ``finish`` returns the same usage and frees the body.
        """
        collector = JSONBodyUsage()
        collector.feed(MESSAGE_BODY)
        self.assertEqual(collector.finish(), MESSAGE_USAGE)
        self.assertEqual(collector.buffered_bytes, 0)
        self.assertEqual(collector.finish(), MESSAGE_USAGE)
