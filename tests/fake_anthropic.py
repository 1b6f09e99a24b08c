# -*- test-case-name: tests.test_fake_anthropic -*-
"""
A fake Anthropic API for ccm's tests.

:obj:`FakeAnthropic` serves the parts of the Anthropic API that ccm and Claude
Code talk to (``/v1/messages``, ``/v1/messages/count_tokens``,
``/v1/messages/cache_touch``, ``/v1/models``, the OAuth token endpoint,
``/api/oauth/usage`` and ``/api/oauth/profile``) as one
:obj:`twisted.web.resource.Resource`.  The same resource works in synchronous
unit tests::

    fake = FakeAnthropic(clock)
    upstream = StubTreq(fake.resource())

and on the real reactor for end-to-end tests::

    port = reactor.listenTCP(0, Site(fake.resource()), interface="127.0.0.1")

Answers to ``POST /v1/messages`` are scripted with :obj:`FakeAnthropic.enqueue`
and the reply constructors of this module (:obj:`text_reply`, :obj:`error_reply`,
:obj:`manual_reply`, ...), the answers that judge a subscription among them
(:obj:`revoked_reply`, :obj:`organization_disabled_reply`,
:obj:`oauth_not_allowed_reply`; :obj:`FakeAnthropic.revoke` makes a token
stop working everywhere).  Every request is recorded as a :obj:`RecordedRequest`.
All timing goes through the clock given to :obj:`FakeAnthropic`; this module
never imports the global reactor.

The wire shapes follow the real API (SSE events, usage fields, unified
rate-limit headers, error bodies, OAuth bodies).
"""

from __future__ import annotations

import base64
import copy
import json
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

OAUTH_BETA = "oauth-2025-04-20"
DEFAULT_MODEL = "claude-sonnet-4-5-20250929"
DEFAULT_SCOPE = (
    "user:profile user:inference user:sessions:claude_code "
    "user:mcp_servers user:file_upload"
)
DEFAULT_INPUT_TOKENS = 12
FIVE_HOUR_SECONDS = 18000
SEVEN_DAY_SECONDS = 604800
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
UNIFIED_PREFIX = "anthropic-ratelimit-unified-"

_MODELS = [
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
]

Event = tuple[str, dict[str, Any]]


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def format_event(name: str, data: dict[str, Any]) -> bytes:
    """
    Serialise one server-sent event the way the API does.

    :param name: the event name (equal to ``data["type"]`` on the real API).
    :param data: the JSON payload.
    :return: ``event: <name>\\ndata: <json>\\n\\n`` as bytes.
    """
    return b"event: " + name.encode("utf-8") + b"\ndata: " + _compact(data) + b"\n\n"


def allowed_unified_headers(
    now: float,
    *,
    status: str = "allowed",
    five_hour_utilization: float = 0.1,
    seven_day_utilization: float = 0.2,
) -> dict[str, str]:
    """
    Build a realistic set of unified (subscription) rate-limit headers.

    :param now: the current time in epoch seconds; resets are a full 5 h
        and 7 d window after it.
    :param status: the overall and 5 h verdict (``allowed`` or
        ``allowed_warning``).
    :param five_hour_utilization: used fraction (0..1) of the 5 h window.
    :param seven_day_utilization: used fraction (0..1) of the 7 d window.
    """
    five_hour_reset = str(int(now) + FIVE_HOUR_SECONDS)
    seven_day_reset = str(int(now) + SEVEN_DAY_SECONDS)
    values = {
        "status": status,
        "5h-status": status,
        "5h-reset": five_hour_reset,
        "5h-utilization": str(round(five_hour_utilization, 2)),
        "7d-status": "allowed",
        "7d-reset": seven_day_reset,
        "7d-utilization": str(round(seven_day_utilization, 2)),
        "representative-claim": "five_hour",
        "reset": five_hour_reset,
        "fallback-percentage": "0.5",
        "overage-status": "rejected",
        "overage-disabled-reason": "org_level_disabled",
    }
    return {UNIFIED_PREFIX + key: value for key, value in values.items()}


def rejected_unified_headers(now: float, *, claim: str = "five_hour") -> dict[str, str]:
    """
    Build the unified headers of a subscription that hit its limit.

    :param now: the current time in epoch seconds.
    :param claim: the binding window, ``five_hour`` or ``seven_day``.
    """
    window = {"five_hour": "5h", "seven_day": "7d"}[claim]
    headers = allowed_unified_headers(now)
    headers[UNIFIED_PREFIX + "status"] = "rejected"
    headers[UNIFIED_PREFIX + window + "-status"] = "rejected"
    headers[UNIFIED_PREFIX + window + "-utilization"] = "1.0"
    headers[UNIFIED_PREFIX + "representative-claim"] = claim
    headers[UNIFIED_PREFIX + "reset"] = headers[UNIFIED_PREFIX + window + "-reset"]
    return headers


def overage_unified_headers(
    now: float, *, in_use: bool = True, overage_status: str = "allowed"
) -> dict[str, str]:
    """
    Build the unified headers of a subscription whose 5-hour window is used
    up and which goes on serving from paid extra usage (overage): the plan
    rejected, extra usage allowed, in use.

    :param now: the current time in epoch seconds.
    :param in_use: whether ``overage-in-use: true`` is sent (without it,
        only the rejected plan with extra usage allowed says so).
    :param overage_status: ``allowed`` or ``allowed_warning``.
    """
    headers = rejected_unified_headers(now)
    del headers[UNIFIED_PREFIX + "overage-disabled-reason"]
    values = {
        "overage-status": overage_status,
        "overage-reset": str(int(now) + 20 * 86400),
        "overage-utilization": "0.12",
    }
    if in_use:
        values["overage-in-use"] = "true"
    headers.update({UNIFIED_PREFIX + key: value for key, value in values.items()})
    return headers


def client_rate_limit_headers(now: float) -> dict[str, str]:
    """
    Every ``overage-*``, ``slow-*`` and ``grace-*`` unified header that
    Claude Code 2.1.332 reads, with values of the shapes it parses: what a
    proxy must pass to the client untouched.
    """
    reset = str(int(now) + FIVE_HOUR_SECONDS)
    values = {
        "overage-status": "allowed_warning",
        "overage-disabled-reason": "org_level_disabled_until",
        "overage-in-use": "true",
        "overage-reset": str(int(now) + 20 * 86400),
        "overage-utilization": "0.815",
        "overage-surpassed-threshold": "0.75",
        "overage-scope": "group_pool",
        "overage-group": "7f3c2a10-0000-4000-8000-00000000beef",
        "overage-period": "monthly",
        "overage-period-monthly-utilization": "0.42",
        "overage-period-channel-utilization": "0.07",
        "overage-daily-cap-paused": "true",
        "slow-status": "active",
        "slow-offer": "treatment",
        "slow-retry-after": "12",
        "slow-max-wait": "300",
        "slow-budget-utilization": "0.5",
        "slow-budget-reset": reset,
        "grace-status": "eligible",
        "grace-5h-utilization": "0.0",
        "grace-7d-utilization": "0.25",
    }
    return {UNIFIED_PREFIX + key: value for key, value in values.items()}


def _error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).isoformat()


def _split(text: str, parts: int = 3) -> list[str]:
    """
    Cut ``text`` into at most ``parts`` consecutive, non-empty pieces (one
    empty piece for an empty text).
    """
    if not text:
        return [""]
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass
class RecordedRequest:
    """
    One request as the fake received it.

    :ivar method: the HTTP method, e.g. ``"POST"``.
    :ivar path: the request target including the query string, e.g.
        ``"/v1/messages?beta=true"``.
    :ivar headers: lower-cased header names mapped to all their values, in
        order.
    :ivar body: the raw request body.
    :ivar disconnected: ``True`` once the connection closed before the reply
        finished (the client went away, or the reply itself cut it).
    :ivar request_id: the ``request-id`` header sent back
        (``req_fake_<n>``, ``n`` counting requests from 1).
    """

    method: str
    path: str
    headers: dict[str, list[str]]
    body: bytes
    disconnected: bool = False
    request_id: str = ""

    def header(self, name: str) -> str | None:
        """
        :return: the first value of header ``name`` (any case), or ``None``.
        """
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        """
        :return: the body parsed as JSON.
        :raise ValueError: if the body is not JSON.
        """
        return json.loads(self.body)


class ReplyHandle:
    """
    The server side of one request to the fake.  Every write goes through
    here, and nothing is written once the reply finished, was aborted, or
    the connection went away.

    :ivar request: the server-side :obj:`twisted.web.server.Request`.
    :ivar recorded: the :obj:`RecordedRequest` of this request.
    :ivar number: the request's arrival number, counting from 1.
    :ivar default_headers: headers sent with the response unless
        :obj:`start` is given other values (``request-id``, and the unified
        rate-limit headers on ``/v1/messages``).
    :ivar started: whether the status line and headers were sent.
    :ivar finished: whether the response was completed normally.
    :ivar aborted: whether :obj:`abort` cut the connection.
    :ivar disconnected: whether the connection closed before the response
        was finished.
    """

    def __init__(self, request: Request, recorded: RecordedRequest, number: int) -> None:
        self.request = request
        self.recorded = recorded
        self.number = number
        self.default_headers: dict[str, str] = {"request-id": recorded.request_id}
        self.started = False
        self.finished = False
        self.aborted = False
        self.disconnected = False
        self._ended = False
        self._end_hooks: list[Callable[[], None]] = []
        request.notifyFinish().addErrback(self._connection_lost)

    @property
    def done(self) -> bool:
        """
        Whether the reply is over (finished, aborted or disconnected).
        """
        return self.finished or self.aborted or self.disconnected

    def on_end(self, hook: Callable[[], None]) -> None:
        """
        Call ``hook`` once when the reply is over (right away if it is).
        """
        if self._ended:
            hook()
        else:
            self._end_hooks.append(hook)

    def start(
        self,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = "text/event-stream",
    ) -> None:
        """
        Send the status line and headers now (once; later calls do nothing).

        :param status: the HTTP status code.
        :param headers: headers added on top of :obj:`default_headers`.
        :param content_type: the ``content-type``; event streams also get
            ``cache-control: no-cache``.
        """
        if self.started or self.done:
            return
        self.started = True
        merged = {"content-type": content_type}
        if content_type.startswith("text/event-stream"):
            merged["cache-control"] = "no-cache"
        merged.update(self.default_headers)
        merged.update(headers or {})
        self.request.setResponseCode(status)
        for name, value in merged.items():
            self.request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        self.request.write(b"")

    def event(self, name: str, data: dict[str, Any]) -> bool:
        """
        Write one SSE event with its own ``request.write``.

        :return: ``True`` if it was written, ``False`` if the reply is over.
        """
        return self.write(format_event(name, data))

    def write(self, raw: bytes) -> bool:
        """
        Write raw body bytes (starting a default event stream if needed).

        :return: ``True`` if they were written, ``False`` if the reply is over.
        """
        if self.done:
            return False
        self.start()
        self.request.write(raw)
        return True

    def finish(self) -> None:
        """
        Complete the response normally (does nothing if it is over).
        """
        if self.done:
            return
        self.start()
        self.finished = True
        self.request.finish()
        self._end()

    def abort(self, *, immediately: bool = False) -> None:
        """
        Close the connection without completing the response, so the client
        sees an incomplete body.

        :param immediately: ``False`` (the default) flushes what was already
            written and then closes (``loseConnection``), so the client does
            receive it; ``True`` uses ``abortConnection``, which on a real TCP
            connection also discards writes not yet sent.
        """
        if self.done:
            return
        self.aborted = True
        self._end()
        channel = self.request.channel
        transport = getattr(channel, "transport", None)
        if transport is None:
            return
        if immediately and hasattr(transport, "abortConnection"):
            transport.abortConnection()
        else:
            transport.loseConnection()

    def respond_json(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        """
        Send a complete JSON response with a ``content-length``.
        """
        data = _compact(body)
        merged = {"content-length": str(len(data))}
        merged.update(headers or {})
        self.start(status, merged, content_type=JSON_CONTENT_TYPE)
        self.write(data)
        self.finish()

    def _connection_lost(self, reason: Failure) -> None:
        self.disconnected = True
        self.recorded.disconnected = True
        self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        hooks, self._end_hooks = self._end_hooks, []
        for hook in hooks:
            hook()


@dataclass
class _Block:
    """
    One content block: its final form, its ``content_block_start`` form and
    its deltas.
    """

    content: dict[str, Any]
    start: dict[str, Any]
    deltas: list[dict[str, Any]]
    size: int


def _text_block(text: str, pieces: list[str] | None = None) -> _Block:
    return _Block(
        content={"type": "text", "text": text},
        start={"type": "text", "text": ""},
        deltas=[{"type": "text_delta", "text": p} for p in pieces or _split(text)],
        size=len(text),
    )


def _thinking_block(thinking: str, signature: str) -> _Block:
    deltas = [{"type": "thinking_delta", "thinking": p} for p in _split(thinking)]
    deltas.append({"type": "signature_delta", "signature": signature})
    return _Block(
        content={"type": "thinking", "thinking": thinking, "signature": signature},
        start={"type": "thinking", "thinking": "", "signature": ""},
        deltas=deltas,
        size=len(thinking),
    )


def _tool_use_block(tool_id: str, name: str, tool_input: dict[str, Any]) -> _Block:
    encoded = _compact(tool_input).decode("utf-8")
    return _Block(
        content={"type": "tool_use", "id": tool_id, "name": name, "input": tool_input},
        start={"type": "tool_use", "id": tool_id, "name": name, "input": {}},
        deltas=[
            {"type": "input_json_delta", "partial_json": p}
            for p in ["", *_split(encoded)]
        ],
        size=len(encoded),
    )


class _Message:
    """
    An assistant message, rendered either as one JSON body or as events.
    """

    def __init__(
        self,
        handle: ReplyHandle,
        body: dict[str, Any],
        blocks: list[_Block],
        *,
        stop_reason: str = "end_turn",
        model: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        requested = body.get("model")
        self.id = f"msg_fake_{handle.number}"
        self.model = model or (requested if isinstance(requested, str) else DEFAULT_MODEL)
        self.blocks = blocks
        self.stop_reason = stop_reason
        self.usage = self._usage(usage)

    def _usage(self, overrides: dict[str, Any] | None) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "input_tokens": DEFAULT_INPUT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": max(1, sum(b.size for b in self.blocks) // 4),
            "service_tier": "standard",
        }
        given = dict(overrides or {})
        split = given.pop("cache_creation", None)
        usage.update(given)
        if split is not None:
            usage["cache_creation"] = {**usage["cache_creation"], **split}
        elif "cache_creation_input_tokens" in given:
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": given["cache_creation_input_tokens"],
                "ephemeral_1h_input_tokens": 0,
            }
        return usage

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [block.content for block in self.blocks],
            "stop_reason": self.stop_reason,
            "stop_sequence": None,
            "usage": self.usage,
        }

    def events(self) -> list[Event]:
        start = dict(self.as_json(), content=[], stop_reason=None)
        start["usage"] = dict(self.usage, output_tokens=1)
        events: list[Event] = [("message_start", {"type": "message_start", "message": start})]
        for index, block in enumerate(self.blocks):
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block.start},
                )
            )
            if index == 0:
                events.append(("ping", {"type": "ping"}))
            for delta in block.deltas:
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        final_usage = {
            key: self.usage[key]
            for key in (
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "output_tokens",
            )
        }
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": final_usage,
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events


def _wants_stream(body: dict[str, Any]) -> bool:
    return body.get("stream") is True


def _send_message(handle: ReplyHandle, body: dict[str, Any], message: _Message) -> None:
    if _wants_stream(body):
        handle.start(content_type=SSE_CONTENT_TYPE)
        for name, data in message.events():
            handle.event(name, data)
        handle.finish()
    else:
        handle.respond_json(200, message.as_json())


def _cancel_all(calls: list[IDelayedCall]) -> None:
    for call in calls:
        if call.active():
            call.cancel()
    del calls[:]


class Reply:
    """
    One scripted answer to a ``POST /v1/messages`` request; build them with
    the module's reply constructors and pass them to
    :obj:`FakeAnthropic.enqueue`.

    :ivar handle: the :obj:`ReplyHandle` of the request this reply answered
        (``None`` until a request arrived).
    """

    def __init__(self) -> None:
        self.handle: ReplyHandle | None = None

    def _respond(self, fake: FakeAnthropic, handle: ReplyHandle, body: dict[str, Any]) -> None:
        raise NotImplementedError()


class _MessageReply(Reply):
    def __init__(
        self,
        make_blocks: Callable[[ReplyHandle], list[_Block]],
        *,
        stop_reason: str = "end_turn",
        model: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._make_blocks = make_blocks
        self._stop_reason = stop_reason
        self._model = model
        self._usage = usage

    def message(self, handle: ReplyHandle, body: dict[str, Any]) -> _Message:
        return _Message(
            handle,
            body,
            self._make_blocks(handle),
            stop_reason=self._stop_reason,
            model=self._model,
            usage=self._usage,
        )

    def _respond(self, fake: FakeAnthropic, handle: ReplyHandle, body: dict[str, Any]) -> None:
        _send_message(handle, body, self.message(handle, body))


def text_reply(
    text: str = "Hello from the fake.",
    *,
    model: str | None = None,
    usage: dict[str, Any] | None = None,
) -> Reply:
    """
    A plain text answer, streamed (in a few ``text_delta`` events) or not, as the
    request asks.

    :param model: the model to report; defaults to the request's model.
    :param usage: overrides for the usage fields.  The input-side fields
        appear in ``message_start`` and ``message_delta``; ``output_tokens`` is
        the final count (``message_delta`` and the non-streaming message),
        while ``message_start`` reports a provisional ``output_tokens`` of 1.
        Defaults: 12 input tokens, no cache, about one output token per four
        characters.
    """
    return _MessageReply(lambda handle: [_text_block(text)], model=model, usage=usage)


def thinking_reply(
    thinking: str = "The user greets me; I should greet back.",
    text: str = "Hello from the fake.",
    *,
    model: str | None = None,
    usage: dict[str, Any] | None = None,
) -> Reply:
    """
    A thinking block (``thinking_delta`` events and one ``signature_delta``),
    then a text block.
    """

    def blocks(handle: ReplyHandle) -> list[_Block]:
        signature = base64.b64encode(f"fake-signature-{handle.number}".encode()).decode()
        return [_thinking_block(thinking, signature), _text_block(text)]

    return _MessageReply(blocks, model=model, usage=usage)


def tool_use_reply(
    name: str,
    input: dict[str, Any],
    *,
    tool_id: str | None = None,
    model: str | None = None,
    usage: dict[str, Any] | None = None,
) -> Reply:
    """
    A ``tool_use`` block with ``stop_reason`` ``tool_use``; streamed as
    ``input_json_delta`` chunks, the first one empty.

    :param tool_id: defaults to ``toolu_fake_<n>``.
    """

    def blocks(handle: ReplyHandle) -> list[_Block]:
        return [_tool_use_block(tool_id or f"toolu_fake_{handle.number}", name, input)]

    return _MessageReply(blocks, stop_reason="tool_use", model=model, usage=usage)


class _ErrorReply(Reply):
    def __init__(
        self, status: int, error_type: str, message: str, headers: dict[str, str] | None
    ) -> None:
        super().__init__()
        self._status = status
        self._error_type = error_type
        self._message = message
        self._headers = headers

    def _respond(self, fake: FakeAnthropic, handle: ReplyHandle, body: dict[str, Any]) -> None:
        request_id = handle.recorded.request_id
        if self._headers is not None:
            handle.default_headers = {"request-id": request_id, **self._headers}
        elif self._status == 429:
            now = fake.clock.seconds()
            rejected = rejected_unified_headers(now)
            retry_after = int(rejected[UNIFIED_PREFIX + "reset"]) - int(now)
            handle.default_headers = {
                "request-id": request_id,
                **rejected,
                "retry-after": str(retry_after),
            }
        handle.respond_json(self._status, _error_body(self._error_type, self._message, request_id))


def error_reply(
    status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None
) -> Reply:
    """
    An error response in the API's error shape, whatever the request asked.

    :param headers: when given, exactly these headers (plus ``request-id``)
        are sent, replacing the fake's unified headers; pass ``{}`` for a 429
        without unified headers (a transient throttle).  When ``None``, a 429
        carries the unified "rejected" headers (5 h window) and a matching
        ``retry-after``; other statuses carry the fake's unified headers.
    """
    return _ErrorReply(status, error_type, message, headers)


class _DocumentReply(Reply):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__()
        self._status = status
        self._document_error = error

    def _respond(self, fake: FakeAnthropic, handle: ReplyHandle, body: dict[str, Any]) -> None:
        request_id = handle.recorded.request_id
        document = {"type": "error", "error": self._document_error, "request_id": request_id}
        handle.respond_json(self._status, document)


#: The real API's words for the answers that judge a subscription, and for
#: two client mistakes that must not read as such.
REVOKED_401_MESSAGE = "Invalid bearer token"
REVOKED_403_MESSAGE = "OAuth token has been revoked. Please obtain a new token."
ORGANIZATION_DISABLED_MESSAGE = "This organization has been disabled."
OAUTH_NOT_ALLOWED_MESSAGE = "OAuth authentication is currently not allowed for this organization."
THIRD_PARTY_MESSAGE = (
    "Third-party apps now draw from your extra usage, not your plan limits. "
    "Add more at claude.ai/settings/usage and keep going."
)
PROMPT_TOO_LONG_MESSAGE = "prompt is too long: 215000 tokens > 200000 maximum"


def revoked_reply(status: int = 403) -> Reply:
    """
    The answer to a token that no longer works: 403 ``permission_error``
    "OAuth token has been revoked...", or with ``status`` 401 an
    ``authentication_error`` (see also :obj:`FakeAnthropic.revoke`).
    """
    if status == 401:
        return error_reply(401, "authentication_error", REVOKED_401_MESSAGE)
    return error_reply(status, "permission_error", REVOKED_403_MESSAGE)


def organization_disabled_reply() -> Reply:
    """
    A ban: 400 ``invalid_request_error`` "This organization has been
    disabled."
    """
    return error_reply(400, "invalid_request_error", ORGANIZATION_DISABLED_MESSAGE)


def oauth_not_allowed_reply() -> Reply:
    """
    A ban: 403 ``permission_error`` "OAuth authentication is currently not
    allowed for this organization.", with ``error.details.error_code``
    ``oauth_org_not_allowed``.
    """
    return _DocumentReply(
        403,
        {
            "type": "permission_error",
            "message": OAUTH_NOT_ALLOWED_MESSAGE,
            "details": {"error_code": "oauth_org_not_allowed"},
        },
    )


def third_party_reply() -> Reply:
    """
    The 400 of a request classified as a third-party app's, drawing from
    extra usage.
    """
    return error_reply(400, "invalid_request_error", THIRD_PARTY_MESSAGE)


def prompt_too_long_reply() -> Reply:
    """
    The client's own mistake: 400 ``invalid_request_error`` "prompt is too
    long: ...".
    """
    return error_reply(400, "invalid_request_error", PROMPT_TOO_LONG_MESSAGE)


class _MidstreamErrorReply(Reply):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__()
        self._error_type = error_type
        self._message = message
        self._fallback = _MessageReply(lambda handle: [_text_block("Hello from the fake.")])

    def _respond(self, fake: FakeAnthropic, handle: ReplyHandle, body: dict[str, Any]) -> None:
        if not _wants_stream(body):
            self._fallback._respond(fake, handle, body)
            return
        events = self._fallback.message(handle, body).events()
        handle.start(content_type=SSE_CONTENT_TYPE)
        handle.event(*events[0])
        handle.event(
            "error",
            _error_body(self._error_type, self._message, handle.recorded.request_id),
        )
        handle.finish()


def midstream_error_reply(
    error_type: str = "overloaded_error", message: str = "Overloaded"
) -> Reply:
    """
    Streaming: a 200 with ``message_start``, then an ``error`` event, then
    the end of the body.  Non-streaming: the same as :obj:`text_reply`.
    """
    return _MidstreamErrorReply(error_type, message)


class _CutStreamReply(Reply):
    def __init__(self, after_events: int) -> None:
        super().__init__()
        self._after_events = after_events
        self._source = _MessageReply(lambda handle: [_text_block("Hello from the fake.")])

    def _respond(self, fake: FakeAnthropic, handle: ReplyHandle, body: dict[str, Any]) -> None:
        message = self._source.message(handle, body)
        if _wants_stream(body):
            handle.start(content_type=SSE_CONTENT_TYPE)
            for name, data in message.events()[: self._after_events]:
                handle.event(name, data)
        else:
            encoded = _compact(message.as_json())
            handle.start(
                200, {"content-length": str(len(encoded))}, content_type=JSON_CONTENT_TYPE
            )
            handle.write(encoded[: len(encoded) // 2])
        handle.abort()


def cut_stream_reply(after_events: int = 2) -> Reply:
    """
    Streaming: write ``after_events`` events of a text reply, then close the
    connection without finishing the chunked body.  Non-streaming: declare
    the full ``content-length``, write half of the JSON, then close.  The
    close flushes what was written first (see :obj:`ReplyHandle.abort`).
    """
    return _CutStreamReply(after_events)


class _SilentReply(Reply):
    def _respond(self, fake: FakeAnthropic, handle: ReplyHandle, body: dict[str, Any]) -> None:
        pass


def hang_reply() -> Reply:
    """
    Never write anything; the handle stays in :obj:`FakeAnthropic.open_streams`
    until the client goes away (or :obj:`FakeAnthropic.abort_all`).
    """
    return _SilentReply()


def manual_reply() -> Reply:
    """
    Let the test drive the response through ``reply.handle`` (a
    :obj:`ReplyHandle`, set when the request arrives): ``start``, ``event``,
    ``write``, ``finish``, ``abort``.  Nothing is sent until the test does so.
    """
    return _SilentReply()


class _SlowStreamReply(Reply):
    def __init__(self, interval_seconds: float, events: int) -> None:
        super().__init__()
        self._interval = interval_seconds
        pieces = [f"tick {i} " for i in range(1, events + 1)]
        self._count = events
        self._source = _MessageReply(lambda handle: [_text_block("".join(pieces), pieces)])

    def _respond(self, fake: FakeAnthropic, handle: ReplyHandle, body: dict[str, Any]) -> None:
        message = self._source.message(handle, body)
        pending: list[IDelayedCall] = []
        handle.on_end(lambda: _cancel_all(pending))
        if not _wants_stream(body):
            pending.append(
                fake.clock.callLater(
                    self._interval * self._count, handle.respond_json, 200, message.as_json()
                )
            )
            return
        events = message.events()

        def send_next() -> None:
            del pending[:]
            handle.event(*events.pop(0))
            if events:
                pending.append(fake.clock.callLater(self._interval, send_next))
            else:
                handle.finish()

        handle.start(content_type=SSE_CONTENT_TYPE)
        send_next()


def slow_stream_reply(interval_seconds: float, events: int = 10) -> Reply:
    """
    A text reply of ``events`` text deltas (``"tick 1 "``, ...), paced on the
    fake's clock: ``message_start`` goes out at once, every later event
    ``interval_seconds`` after the previous one.  A non-streaming request
    gets the whole message after ``interval_seconds * events``.  Pending
    calls are cancelled when the reply ends early.
    """
    return _SlowStreamReply(interval_seconds, events)


class _FakeRoot(Resource):
    """
    The root of the fake API; it handles every path itself.
    """

    isLeaf = True

    def __init__(self, fake: FakeAnthropic) -> None:
        super().__init__()
        self._fake = fake

    def render(self, request: Request) -> int:
        return self._fake._render(request)


def _discard(items: list[Any], item: Any) -> None:
    if item in items:
        items.remove(item)


class FakeAnthropic:
    """
    A scriptable fake of the Anthropic API (see the module docstring).

    :ivar clock: the clock for resets and paced replies.
    :ivar requests: every request, to any path, in arrival order.
    :ivar token_requests: only the ``POST /v1/oauth/token`` requests.
    :ivar access_token: the OAuth bearer accepted on ``/v1/*`` and
        ``/api/oauth/*``.
    :ivar refresh_token: the refresh token the token endpoint accepts.
    :ivar token_mode: ``"ok"``, ``"invalid_grant"``, ``"server_error"``,
        ``"rate_limited"`` (429, with a ``retry-after`` of
        :obj:`token_retry_after` when that is not ``None``) or ``"hang"``.
    :ivar token_expires_in: the ``expires_in`` of minted access tokens.
    :ivar unified_headers: headers added to every authenticated
        ``/v1/messages`` response.
    :ivar open_streams: handles of ``/v1/messages`` replies not over yet.
    :ivar default_reply: the reply used when nothing is enqueued.
    :ivar extra_access_tokens: further bearers accepted like
        ``access_token``, so one fake can stand for several subscriptions.
    :ivar usage_mode: how ``GET /api/oauth/usage`` answers an authorized
        request: ``"ok"`` (200 with :obj:`usage_body`, else a body derived from
        :obj:`unified_headers`), ``"rate_limited"`` (429, with a
        ``retry-after`` of :obj:`usage_retry_after` when that is not ``None``),
        ``"server_error"`` (500), ``"organization_disabled"`` (the 400 of a
        ban), ``"oauth_not_allowed"`` (the 403 of a ban), ``"malformed"``
        (200 with a body that is not JSON), ``"hang"`` (never answers) or
        ``"hang_body"`` (sends the 200 headers and part of the body, then
        nothing).
    :ivar usage_retry_after: the ``retry-after`` value of a
        ``"rate_limited"`` usage answer, sent as given; ``None`` sends none.
    :ivar usage_body: when not ``None``, the exact JSON body of a 200 usage
        answer (for nulls and figures the headers cannot express).
    :ivar profile_mode: how ``GET /api/oauth/profile`` answers an
        authorized request: ``"ok"`` (200 with :obj:`profile`),
        ``"server_error"`` (500) or ``"hang"`` (never answers).
    :ivar profile: the JSON body of a 200 profile answer (a Max 20x
        account unless changed).
    :ivar unified_headers_by_token: per bearer token, headers that replace
        :obj:`unified_headers` on that subscription's ``/v1/messages``
        responses, so two subscriptions can report different usage.
    :ivar message_bearers: the request id of every ``/v1/messages`` answer
        that finished with a 2xx, mapped to the bearer token it was asked
        with: the subscription holding its prompt cache, which
        ``POST /v1/messages/cache_touch`` keeps warm.
    :ivar revoked_tokens: bearers that stopped working (see :obj:`revoke`),
        each with the status (401 or 403) of its answer on every
        authenticated path.
    :ivar hold_count_tokens: when ``True``, ``count_tokens`` answers wait in
        :obj:`held_count_tokens` until :obj:`release_count_tokens`, so a test
        can see how many were in flight at once.
    :ivar held_count_tokens: the handles of the ``count_tokens`` requests
        waiting for their answer.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        access_token: str = "sk-ant-oat01-fake-access",
        refresh_token: str = "sk-ant-ort01-fake-refresh",
    ) -> None:
        self.clock = clock
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.requests: list[RecordedRequest] = []
        self.token_requests: list[RecordedRequest] = []
        self.token_mode = "ok"
        self.token_expires_in = 28800
        self.token_retry_after: str | None = None
        self.unified_headers: dict[str, str] = allowed_unified_headers(clock.seconds())
        self.open_streams: list[ReplyHandle] = []
        self.default_reply: Reply = text_reply()
        self.extra_access_tokens: set[str] = set()
        self.usage_mode = "ok"
        self.usage_retry_after: str | None = None
        self.usage_body: Any = None
        self.profile_mode = "ok"
        self.profile: dict[str, Any] = copy.deepcopy(_PROFILE)
        self.unified_headers_by_token: dict[str, dict[str, str]] = {}
        self.message_bearers: dict[str, str] = {}
        self.revoked_tokens: dict[str, int] = {}
        self.hold_count_tokens = False
        self.held_count_tokens: list[ReplyHandle] = []
        self._replies: deque[Reply] = deque()
        self._live: list[ReplyHandle] = []
        self._rotations = 0

    def resource(self) -> IResource:
        """
        :return: the root resource to serve or to wrap in ``StubTreq``.
        """
        return _FakeRoot(self)

    def enqueue(self, *replies: Reply) -> None:
        """
        Queue replies for the next ``/v1/messages`` requests, first in first
        out.  Requests rejected before a reply is chosen (authentication,
        unparsable body) do not use one up.
        """
        self._replies.extend(replies)

    def revoke(self, token: str | None = None, status: int = 403) -> None:
        """
        Make ``token`` (the current :obj:`access_token` by default) stop
        working: every authenticated request with it gets the answer of
        :obj:`revoked_reply` with ``status``, before any queued reply is
        used.  A refresh still works and brings a token that does.
        """
        self.revoked_tokens[self.access_token if token is None else token] = status

    def abort_all(self) -> None:
        """
        Abort every reply, on any path, that is not over yet (for cleaning up
        end-to-end tests on the real reactor).
        """
        for handle in list(self._live):
            handle.abort()

    def _render(self, request: Request) -> int:
        assert request.content is not None
        request.content.seek(0)
        headers: dict[str, list[str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            key = name.decode("latin-1").lower()
            headers.setdefault(key, []).extend(v.decode("latin-1") for v in values)
        number = len(self.requests) + 1
        recorded = RecordedRequest(
            method=request.method.decode("latin-1"),
            path=request.uri.decode("latin-1"),
            headers=headers,
            body=request.content.read(),
            request_id=f"req_fake_{number}",
        )
        self.requests.append(recorded)
        handle = ReplyHandle(request, recorded, number)
        self._live.append(handle)
        handle.on_end(lambda: _discard(self._live, handle))

        path = request.path.decode("latin-1")
        method = recorded.method
        if method == "POST" and path == "/v1/messages":
            self._messages(handle)
        elif method == "POST" and path == "/v1/messages/count_tokens":
            self._count_tokens(handle)
        elif method == "POST" and path == "/v1/messages/cache_touch":
            self._cache_touch(handle)
        elif method == "GET" and path == "/v1/models":
            self._models(handle)
        elif method == "GET" and path.startswith("/v1/models/"):
            self._model(handle, path[len("/v1/models/") :])
        elif method == "POST" and path == "/v1/oauth/token":
            self.token_requests.append(recorded)
            self._token(handle)
        elif method == "GET" and path == "/api/oauth/usage":
            if self._authorized(handle, require_beta=True):
                self._usage(handle)
        elif method == "GET" and path == "/api/oauth/profile":
            if self._authorized(handle, require_beta=False):
                self._profile(handle)
        else:
            self._error(handle, 404, "not_found_error", "Not found")
        return NOT_DONE_YET

    def _error(self, handle: ReplyHandle, status: int, error_type: str, message: str) -> None:
        handle.respond_json(status, _error_body(error_type, message, handle.recorded.request_id))

    def _authorized(self, handle: ReplyHandle, *, require_beta: bool) -> bool:
        """
        Check OAuth credentials like the real API; answer 401 if they fail.
        """
        recorded = handle.recorded
        betas = {
            item.strip()
            for value in recorded.headers.get("anthropic-beta", [])
            for item in value.split(",")
        }
        scheme, _, token = (recorded.header("authorization") or "").partition(" ")
        revoked = self.revoked_tokens.get(token.strip())
        if revoked is not None and scheme.lower() == "bearer":
            if revoked == 401:
                self._error(handle, 401, "authentication_error", REVOKED_401_MESSAGE)
            else:
                self._error(handle, revoked, "permission_error", REVOKED_403_MESSAGE)
            return False
        if "x-api-key" in recorded.headers or scheme.lower() != "bearer":
            problem = "invalid x-api-key"
        elif require_beta and OAUTH_BETA not in betas:
            problem = "OAuth authentication is currently not supported."
        elif token.strip() != self.access_token and token.strip() not in self.extra_access_tokens:
            problem = "invalid x-api-key"
        else:
            return True
        self._error(handle, 401, "authentication_error", problem)
        return False

    def _json_object(self, handle: ReplyHandle) -> dict[str, Any] | None:
        """
        Parse the body as a JSON object, or answer 400 and return ``None``.
        """
        try:
            body = handle.recorded.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._error(
                handle, 400, "invalid_request_error", "Request body must be a JSON object"
            )
            return None
        return body

    def _bearer(self, handle: ReplyHandle) -> str:
        return (handle.recorded.header("authorization") or "").removeprefix("Bearer ").strip()

    def _messages(self, handle: ReplyHandle) -> None:
        if not self._authorized(handle, require_beta=True):
            return
        token = self._bearer(handle)
        handle.default_headers.update(
            self.unified_headers_by_token.get(token, self.unified_headers)
        )
        body = self._json_object(handle)
        if body is None:
            return
        self.open_streams.append(handle)
        handle.on_end(lambda: _discard(self.open_streams, handle))
        handle.on_end(lambda: self._note_answer(handle, token))
        reply = self._replies.popleft() if self._replies else self.default_reply
        reply.handle = handle
        reply._respond(self, handle, body)

    def _count_tokens(self, handle: ReplyHandle) -> None:
        if self._authorized(handle, require_beta=True):
            if self._json_object(handle) is not None:
                if self.hold_count_tokens:
                    self.held_count_tokens.append(handle)
                    handle.on_end(lambda: _discard(self.held_count_tokens, handle))
                else:
                    _answer_count_tokens(handle)

    def release_count_tokens(self) -> None:
        """
        Stop holding ``count_tokens`` answers, and send those held, in the
        order their requests came.
        """
        self.hold_count_tokens = False
        for handle in list(self.held_count_tokens):
            _answer_count_tokens(handle)

    def _note_answer(self, handle: ReplyHandle, token: str) -> None:
        if handle.finished and 200 <= handle.request.code < 300:
            self.message_bearers[handle.recorded.request_id] = token

    def _cache_touch(self, handle: ReplyHandle) -> None:
        """
        Keep the prompt cache of an earlier answer warm: 200 with an empty
        object (the real body is not documented; Claude Code reads only the
        status) when the request id names a finished ``/v1/messages``
        answer of the same subscription, else 404 as for an unknown id.
        """
        if not self._authorized(handle, require_beta=True):
            return
        body = self._json_object(handle)
        if body is None:
            return
        request_id = body.get("request_id")
        if not isinstance(request_id, str):
            self._error(handle, 400, "invalid_request_error", "request_id: Field required")
        elif self.message_bearers.get(request_id) != self._bearer(handle):
            self._error(handle, 404, "not_found_error", f"request_id: {request_id} not found")
        else:
            handle.respond_json(200, {})

    def _models(self, handle: ReplyHandle) -> None:
        if self._authorized(handle, require_beta=True):
            data = [_model_info(*model) for model in _MODELS]
            handle.respond_json(
                200,
                {
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"],
                    "last_id": data[-1]["id"],
                },
            )

    def _model(self, handle: ReplyHandle, model_id: str) -> None:
        if self._authorized(handle, require_beta=True):
            for model in _MODELS:
                if model[0] == model_id:
                    handle.respond_json(200, _model_info(*model))
                    return
            self._error(handle, 404, "not_found_error", f"model: {model_id}")

    def _token(self, handle: ReplyHandle) -> None:
        mode = self.token_mode
        if mode == "hang":
            return
        if mode == "server_error":
            handle.respond_json(
                500, {"error": "server_error", "error_description": "Internal server error"}
            )
            return
        if mode == "rate_limited":
            retry_after = self.token_retry_after
            handle.respond_json(
                429,
                {"error": {"type": "rate_limit_error", "message": "Rate limited"}},
                {} if retry_after is None else {"retry-after": retry_after},
            )
            return
        if mode not in ("ok", "invalid_grant"):
            raise ValueError(f"unknown token_mode {mode!r}")
        try:
            body = handle.recorded.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            handle.respond_json(400, {"error": "invalid_request"})
            return
        if body.get("grant_type") != "refresh_token":
            handle.respond_json(400, {"error": "unsupported_grant_type"})
        elif not body.get("client_id"):
            handle.respond_json(
                400, {"error": "invalid_request", "error_description": "client_id is required"}
            )
        elif mode == "invalid_grant" or body.get("refresh_token") != self.refresh_token:
            handle.respond_json(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": "Refresh token not found or invalid",
                },
            )
        else:
            self._rotations += 1
            self.access_token = f"sk-ant-oat01-fake-{self._rotations}"
            self.refresh_token = f"sk-ant-ort01-fake-{self._rotations}"
            scope = body.get("scope")
            handle.respond_json(
                200,
                {
                    "access_token": self.access_token,
                    "refresh_token": self.refresh_token,
                    "expires_in": self.token_expires_in,
                    "token_type": "Bearer",
                    "scope": scope if isinstance(scope, str) else DEFAULT_SCOPE,
                    "account": {
                        "uuid": _PROFILE["account"]["uuid"],
                        "email_address": _PROFILE["account"]["email"],
                    },
                    "organization": {"uuid": _PROFILE["organization"]["uuid"], "name": "Fake Org"},
                },
            )

    def _usage(self, handle: ReplyHandle) -> None:
        mode = self.usage_mode
        if mode == "ok":
            body = self._usage_body() if self.usage_body is None else self.usage_body
            handle.respond_json(200, body)
        elif mode == "rate_limited":
            retry_after = self.usage_retry_after
            retry = {} if retry_after is None else {"retry-after": retry_after}
            handle.respond_json(
                429,
                _error_body("rate_limit_error", "Rate limited.", handle.recorded.request_id),
                retry,
            )
        elif mode == "server_error":
            self._error(handle, 500, "api_error", "Internal server error")
        elif mode == "organization_disabled":
            self._error(handle, 400, "invalid_request_error", ORGANIZATION_DISABLED_MESSAGE)
        elif mode == "oauth_not_allowed":
            self._error(handle, 403, "permission_error", OAUTH_NOT_ALLOWED_MESSAGE)
        elif mode == "malformed":
            handle.start(200, {"content-length": "9"}, content_type=JSON_CONTENT_TYPE)
            handle.write(b"not json!")
            handle.finish()
        elif mode == "hang_body":
            handle.start(200, {"content-length": "1000"}, content_type=JSON_CONTENT_TYPE)
            handle.write(b'{"five_hour": ')
        elif mode != "hang":
            raise ValueError(f"unknown usage_mode {mode!r}")

    def _profile(self, handle: ReplyHandle) -> None:
        mode = self.profile_mode
        if mode == "ok":
            handle.respond_json(200, self.profile)
        elif mode == "server_error":
            self._error(handle, 500, "api_error", "Internal server error")
        elif mode != "hang":
            raise ValueError(f"unknown profile_mode {mode!r}")

    def _usage_body(self) -> dict[str, Any]:
        """
        The ``/api/oauth/usage`` body, consistent with :obj:`unified_headers`
        (percentages 0-100 and ISO 8601 resets).
        """

        def window(key: str) -> dict[str, Any] | None:
            utilization = self.unified_headers.get(f"{UNIFIED_PREFIX}{key}-utilization")
            reset = self.unified_headers.get(f"{UNIFIED_PREFIX}{key}-reset")
            if utilization is None or reset is None:
                return None
            return {
                "utilization": round(float(utilization) * 100, 1),
                "resets_at": _iso(float(reset)),
            }

        five_hour, seven_day = window("5h"), window("7d")
        limits = [
            {
                "kind": kind,
                "group": group,
                "percent": round(bucket["utilization"]),
                "severity": "normal",
                "resets_at": bucket["resets_at"],
                "scope": None,
                "is_active": kind == "session",
            }
            for kind, group, bucket in (
                ("session", "session", five_hour),
                ("weekly", "weekly", seven_day),
            )
            if bucket is not None
        ]
        return {
            "five_hour": five_hour,
            "seven_day": seven_day,
            "seven_day_oauth_apps": None,
            "seven_day_opus": None,
            "seven_day_sonnet": None,
            "extra_usage": {
                "is_enabled": False,
                "monthly_limit": None,
                "used_credits": None,
                "utilization": None,
                "currency": "USD",
                "decimal_places": 2,
                "disabled_reason": "org_level_disabled",
            },
            "limits": limits,
        }


def _answer_count_tokens(handle: ReplyHandle) -> None:
    """
    Answer a ``count_tokens`` request: about one token per four bytes of
    its body, so that each answer tells which request it belongs to.
    """
    handle.respond_json(200, {"input_tokens": max(1, len(handle.recorded.body) // 4)})


def _model_info(model_id: str, display_name: str, created_at: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": display_name,
        "created_at": created_at,
    }


_PROFILE: dict[str, Any] = {
    "account": {
        "uuid": "00000000-0000-4000-8000-00000000acc1",
        "email": "fake@example.com",
        "display_name": "Fake User",
        "created_at": "2025-01-01T00:00:00Z",
    },
    "organization": {
        "uuid": "00000000-0000-4000-8000-00000000a0a1",
        "organization_type": "claude_max",
        "rate_limit_tier": "default_claude_max_20x",
        "seat_tier": None,
        "has_extra_usage_enabled": False,
        "billing_type": "stripe_subscription",
        "subscription_created_at": "2025-01-01T00:00:00Z",
    },
}
