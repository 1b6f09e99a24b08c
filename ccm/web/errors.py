# -*- test-case-name: tests.web.test_errors -*-
"""
Errors that ccm itself answers with, in the Anthropic API's shape.

Clients (Claude Code, the SDKs) understand ``{"type": "error", "error":
{"type": ..., "message": ...}, "request_id": ...}``, so every response ccm
makes up uses it, with a ``request-id`` header carrying an id ccm generated.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from twisted.web.http import RESPONSES
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.server import Request

REQUEST_ID_HEADER = b"request-id"


def new_request_id() -> str:
    """
    A fresh id for a response ccm makes, distinguishable from Anthropic's
    ``req_...`` ids.
    """
    return "ccm_" + secrets.token_hex(12)


@dataclass(frozen=True)
class APIError(Exception):
    """
    An error to answer a client with: HTTP status, Anthropic error type and
    a message for people, plus extra response headers.
    """

    status: int
    error_type: str
    message: str
    headers: tuple[tuple[str, str], ...] = field(default=())

    def __str__(self) -> str:
        return f"{self.status} {self.error_type}: {self.message}"


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    """
    Serialise an error in the Anthropic shape, newline-terminated.
    """
    document = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }
    return json.dumps(document).encode("utf-8") + b"\n"


def render_error(request: IRequest, error: APIError) -> bytes:
    """
    Set the status and headers of ``request`` for ``error`` and return the
    body, for a ``render`` method to return.
    """
    request_id = new_request_id()
    request.setResponseCode(error.status)
    request.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
    request.responseHeaders.setRawHeaders(REQUEST_ID_HEADER, [request_id.encode("ascii")])
    for name, value in error.headers:
        request.responseHeaders.setRawHeaders(name.encode("ascii"), [value.encode("utf-8")])
    if request.method == b"HEAD":
        # Claude Code probes its base URL with HEAD; answer without a body.
        return b""
    return error_body(error.error_type, error.message, request_id)


def send_error(request: IRequest, error: APIError) -> None:
    """
    Answer an asynchronously handled request with ``error`` and finish it.
    """
    body = render_error(request, error)
    request.write(body)
    request.finish()


NOT_FOUND = APIError(404, "not_found_error", "Not found")


def method_not_allowed(*allowed: bytes) -> APIError:
    """
    The 405 for a method a resource does not serve, naming those it does
    in ``Allow``.
    """
    return APIError(
        405,
        "invalid_request_error",
        "method not allowed",
        headers=(("allow", ", ".join(method.decode("ascii") for method in allowed)),),
    )


INTERNAL_ERROR = APIError(500, "api_error", "internal error in ccm")


def answer_bug(request: Request) -> None:
    """
    End a request whose handling hit a bug in ccm, once the bug is logged:
    with a 500 ``api_error`` when nothing of the answer was sent yet (the
    headers set so far belonged to an answer that will not come, and are
    dropped), else by aborting the connection, so that a truncated answer
    cannot pass for a whole one.  The request must not be finished, nor
    its client gone.
    """
    if request.startedWriting:
        transport = getattr(request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()
        return
    request.responseHeaders = Headers()
    send_error(request, INTERNAL_ERROR)


# Reason phrases twisted.web's table lacks.
_REASONS = {431: b"Request Header Fields Too Large"}


def error_response(error: APIError) -> bytes:
    """
    A whole HTTP/1.1 response for ``error`` that closes the connection, for
    answers given below twisted.web's request handling: a refused
    connection, a request head that is too large or too slow.
    """
    request_id = new_request_id()
    body = error_body(error.error_type, error.message, request_id)
    reason = _REASONS.get(error.status) or RESPONSES.get(error.status, b"Error")
    lines = [
        b"HTTP/1.1 %d %s" % (error.status, reason),
        b"content-type: application/json",
        REQUEST_ID_HEADER + b": " + request_id.encode("ascii"),
        *(
            name.encode("ascii") + b": " + value.encode("utf-8")
            for name, value in error.headers
        ),
        b"content-length: %d" % (len(body),),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
