# -*- test-case-name: tests.accounting.test_meter -*-
"""
Token usage read from Anthropic Messages API responses while they are
relayed.

A streaming response (``text/event-stream``) is scanned incrementally by
:obj:`EventStreamUsage`: it is given a copy of every chunk sent to the client and
keeps only an incomplete line and the data of the current event, both
bounded.  A non-streaming response is collected, up to a limit, by
:obj:`JSONBodyUsage` and read once at the end.  Both give a :obj:`TokenUsage`: the
model and the figures of :obj:`ccm.accounting.tokens`, which also says how the
API's ``usage`` objects are read.
"""

from __future__ import annotations

from dataclasses import replace

from ccm.accounting.tokens import TokenUsage, apply_usage, usage_from_message
from ccm.wirejson import loads_wire

MAX_LINE_BYTES = 1024 * 1024
MAX_EVENT_DATA_BYTES = 1024 * 1024
DEFAULT_BODY_LIMIT_BYTES = 16 * 1024 * 1024

_BYTE_ORDER_MARK = b"\xef\xbb\xbf"
_LF = 0x0A
_CR = 0x0D
_MESSAGE_START_MARKER = b'"message_start"'
_MESSAGE_DELTA_MARKER = b'"message_delta"'


class EventStreamUsage:
    """
    Incremental scanner of a server-sent event stream for usage; it is fed a
    copy of each relayed chunk.

    Lines end with ``LF``, ``CRLF`` or ``CR``, and chunks may end anywhere,
    including inside a line ending or a UTF-8 sequence: an incomplete line
    is kept as bytes until its end arrives.  A blank line ends an event; its
    ``data`` lines are joined with ``LF``; other fields and comments are
    ignored, the event's kind being the ``type`` of its JSON data.  Only the
    data of events that look like ``message_start`` or ``message_delta`` is
    decoded.

    Memory is bounded: a line longer than :obj:`MAX_LINE_BYTES` is dropped
    (the bytes up to its end are skipped) and so is the event that contains
    it; an event whose data exceeds :obj:`MAX_EVENT_DATA_BYTES` is dropped too.
    The outcome never depends on how the stream was cut into chunks.
    """

    def __init__(self) -> None:
        self._usage = TokenUsage()
        self._tail: list[bytes] = []
        self._tail_size = 0
        self._skipping_line = False
        self._skip_leading_lf = False
        self._at_stream_start = True
        self._data: list[bytes] = []
        self._data_size = 0
        self._event_dropped = False
        self._finished = False

    @property
    def usage(self) -> TokenUsage:
        """
        The figures seen so far, as a copy.
        """
        return replace(self._usage)

    @property
    def buffered_bytes(self) -> int:
        """
        How many bytes are held for an incomplete line and the data of the
        current event; never more than :obj:`MAX_LINE_BYTES` plus
        :obj:`MAX_EVENT_DATA_BYTES`.
        """
        return self._tail_size + self._data_size

    def feed(self, data: bytes) -> None:
        """
        Scan the next chunk of the stream.

        :param data: The bytes relayed, exactly as received.  Ignored after
            :obj:`finish`.
        """
        if self._finished or not data:
            return
        if self._skip_leading_lf:
            # The previous chunk ended with CR; a LF now completes a CRLF.
            self._skip_leading_lf = False
            if data[0] == _LF:
                data = data[1:]
                if not data:
                    return
        lines = data.splitlines()
        last_byte = data[-1]
        if last_byte == _LF or last_byte == _CR:
            self._skip_leading_lf = last_byte == _CR
            rest = b""
        else:
            rest = lines.pop()
        if lines:
            if self._skipping_line:
                # The end of an over-long line: drop it.
                self._skipping_line = False
                self._at_stream_start = False
                del lines[0]
            else:
                if self._tail:
                    self._tail.append(lines[0])
                    lines[0] = b"".join(self._tail)
                    self._tail = []
                    self._tail_size = 0
                if self._at_stream_start:
                    self._at_stream_start = False
                    if lines[0].startswith(_BYTE_ORDER_MARK):
                        lines[0] = lines[0][len(_BYTE_ORDER_MARK) :]
            for line in lines:
                self._line(line)
        if rest and not self._skipping_line:
            size = self._tail_size + len(rest)
            if size > MAX_LINE_BYTES:
                self._tail = []
                self._tail_size = 0
                self._skipping_line = True
                self._drop_event()
            else:
                self._tail.append(rest)
                self._tail_size = size

    def finish(self) -> TokenUsage:
        """
        End the scan, whatever ended the stream: a last line without its
        line ending and a last event without its blank line are still
        read (a cut one does not parse and is ignored).  Later calls return
        the same figures.

        :return: The figures seen.
        """
        if not self._finished:
            self._finished = True
            if self._tail and not self._skipping_line:
                line = b"".join(self._tail)
                if self._at_stream_start and line.startswith(_BYTE_ORDER_MARK):
                    line = line[len(_BYTE_ORDER_MARK) :]
                self._line(line)
            self._tail = []
            self._tail_size = 0
            self._dispatch()
        return self.usage

    def _line(self, line: bytes) -> None:
        """
        Handle one complete line, without its line ending.
        """
        if not line:
            self._dispatch()
        elif len(line) > MAX_LINE_BYTES:
            self._drop_event()
        elif line.startswith(b"data"):
            if line.startswith(b"data:"):
                value = line[5:]
                if value.startswith(b" "):
                    value = value[1:]
            elif line == b"data":
                value = b""
            else:
                return
            if self._event_dropped:
                return
            size = self._data_size + len(value) + (1 if self._data else 0)
            if size > MAX_EVENT_DATA_BYTES:
                self._drop_event()
            else:
                self._data.append(value)
                self._data_size = size

    def _drop_event(self) -> None:
        """
        Forget the data of the current event and ignore the rest of it.
        """
        self._data = []
        self._data_size = 0
        self._event_dropped = True

    def _dispatch(self) -> None:
        """
        End the current event and read its usage if it has any.
        """
        parts = self._data
        self._data = []
        self._data_size = 0
        self._event_dropped = False
        if not parts:
            return
        data = parts[0] if len(parts) == 1 else b"\n".join(parts)
        if _MESSAGE_DELTA_MARKER not in data and _MESSAGE_START_MARKER not in data:
            return
        try:
            event = loads_wire(data)
        except (ValueError, RecursionError):
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                model = message.get("model")
                if isinstance(model, str) and model:
                    self._usage.model = model
                apply_usage(self._usage, message.get("usage"))
        elif kind == "message_delta":
            apply_usage(self._usage, event.get("usage"))


class JSONBodyUsage:
    """
    Collects a non-streaming response body, up to a limit, to read its usage
    at the end.

    :ivar overflowed: Whether the body grew past the limit; its bytes were
        then dropped and no usage is read.
    """

    def __init__(self, limit_bytes: int = DEFAULT_BODY_LIMIT_BYTES) -> None:
        """
        :param limit_bytes: The largest body kept.
        """
        self._limit_bytes = limit_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._result: TokenUsage | None = None
        self.overflowed = False

    @property
    def buffered_bytes(self) -> int:
        """
        How many bytes of the body are held.
        """
        return self._size

    def feed(self, data: bytes) -> None:
        """
        Keep the next chunk of the body, unless the limit is passed.

        :param data: The bytes relayed.
        """
        if self.overflowed or self._result is not None or not data:
            return
        size = self._size + len(data)
        if size > self._limit_bytes:
            self.overflowed = True
            self._parts = []
            self._size = 0
        else:
            self._parts.append(data)
            self._size = size

    def finish(self) -> TokenUsage:
        """
        Read the usage of the body collected.  A body that was cut, is not
        JSON or overflowed gives an empty usage.  Later calls return the
        same figures.

        :return: The usage found.
        """
        if self._result is None:
            body = b"".join(self._parts)
            self._parts = []
            self._size = 0
            document: object = None
            if body and not self.overflowed:
                try:
                    document = loads_wire(body)
                except (ValueError, RecursionError):
                    document = None
            self._result = usage_from_message(document)
        return replace(self._result)
