# -*- test-case-name: tests.proxy.test_facts -*-
"""
What ccm reads from a client's request before sending it on: the model
and the number of messages (for the log and the usage file), the session
and what else a pool places the request by (its :obj:`Call`), and the
``anthropic-beta`` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from twisted.web.server import Request

from ccm.pool.affinity import Call, call_of
from ccm.wirejson import loads_wire


@dataclass(frozen=True)
class RequestFacts:
    """
    What ccm learnt from a request.

    :ivar model: the body's ``model``, or empty.
    :ivar messages: how many ``messages`` the body holds.
    :ivar session_id: the session the request belongs to, or empty.
    :ivar betas: the ``anthropic-beta`` header values, as sent.
    :ivar call: what a pool places the request by: its session, sub-agent,
        and the answer a cache keepalive names.
    """

    model: str
    messages: int
    session_id: str
    betas: tuple[str, ...]
    call: Call = Call()

    @property
    def asks_fast_mode(self) -> bool:
        """
        Whether the request asks for fast mode, which uses paid extra usage.
        """
        return any(
            item.strip().startswith("fast-mode")
            for value in self.betas
            for item in value.split(",")
        )


def _parse_body(body: bytes, content_type: bytes | None) -> dict[str, Any] | None:
    """
    The request body as a JSON object, parsed leniently: a body that is not
    JSON is still forwarded, ccm just learns nothing from it.
    """
    if not body or (content_type is not None and b"json" not in content_type.lower()):
        return None
    try:
        document = loads_wire(body)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def request_facts(request: Request, body: bytes | IO[bytes]) -> RequestFacts:
    """
    Read the facts of ``request``.  A body too large to hold in memory (a
    file) is not parsed: its session comes from the header, its model from
    the response.
    """
    headers = request.requestHeaders
    document = (
        _parse_body(body, headers.getRawHeaders(b"content-type", [None])[0])
        if isinstance(body, bytes)
        else None
    )
    model = document.get("model") if document is not None else None
    messages = document.get("messages") if document is not None else None
    call = call_of(request.method, request.path, headers, document)
    return RequestFacts(
        model=model if isinstance(model, str) else "",
        messages=len(messages) if isinstance(messages, list) else 0,
        session_id=call.session_id,
        betas=tuple(v.decode("latin-1") for v in headers.getRawHeaders(b"anthropic-beta", [])),
        call=call,
    )
