"""
Tests for :obj:`ccm.web.errors`: the errors ccm answers with, in the Anthropic
shape, whether a resource renders them, sends them later, answers a bug,
or writes a whole response below twisted.web.
"""

from __future__ import annotations

import json
from typing import Callable

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from ccm.web.errors import (
    INTERNAL_ERROR,
    REQUEST_ID_HEADER,
    APIError,
    answer_bug,
    error_body,
    error_response,
    method_not_allowed,
    new_request_id,
    render_error,
    send_error,
)
from tests.proxyharness import RawResponse, parse_raw_response

RATE_LIMITED = APIError(
    429, "rate_limit_error", "every credential is limited", headers=(("retry-after", "30"),)
)


class _Answering(Resource):
    """
    A leaf resource whose ``render`` is ``answer``; it keeps the request.
    """

    isLeaf = True

    def __init__(self, answer: Callable[[Request], bytes | int]) -> None:
        super().__init__()
        self._answer = answer
        self.request: Request | None = None

    def render(self, request: Request) -> bytes | int:
        self.request = request
        return self._answer(request)


def _exchange(
    answer: Callable[[Request], bytes | int], method: bytes = b"GET"
) -> tuple[StringTransport, _Answering]:
    """
    Send one request to a site on a memory transport whose resource
    answers with ``answer``; return the transport and the resource.
    """
    resource = _Answering(answer)
    site = Site(resource, reactor=Clock(), timeout=None)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    assert channel is not None
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(method + b" /v1/x HTTP/1.1\r\nHost: ccm.test\r\n\r\n")
    return transport, resource


def _response(transport: StringTransport) -> RawResponse:
    response = parse_raw_response(transport.value())
    assert response is not None, transport.value()
    return response


class MethodNotAllowedTests(SynchronousTestCase):
    """
    :obj:`method_not_allowed` is the one 405 every resource answers with.
    """

    def test_names_the_allowed_methods(self) -> None:
        """
        The error is a 405 ``invalid_request_error`` whose ``Allow`` header
        lists the served methods in order.
        """
        error = method_not_allowed(b"GET", b"HEAD")
        self.assertEqual(
            (error.status, error.error_type, error.message, error.headers),
            (405, "invalid_request_error", "method not allowed", (("allow", "GET, HEAD"),)),
        )


class ErrorBodyTests(SynchronousTestCase):
    """
    :obj:`error_body` and :obj:`new_request_id`.
    """

    def test_shape(self) -> None:
        """
        The body is the Anthropic error document, on one line ending with a
        newline.
        """
        body = error_body("not_found_error", "Not found", "ccm_1")
        self.assertTrue(body.endswith(b"\n"))
        self.assertNotIn(b"\n", body[:-1])
        self.assertEqual(
            json.loads(body),
            {
                "type": "error",
                "error": {"type": "not_found_error", "message": "Not found"},
                "request_id": "ccm_1",
            },
        )

    def test_request_ids(self) -> None:
        """
        ccm's request ids start with ``ccm_`` (Anthropic's with ``req_``),
        are hexadecimal after it, and are new each time.
        """
        ids = {new_request_id() for _ in range(100)}
        self.assertEqual(len(ids), 100)
        for request_id in ids:
            self.assertTrue(request_id.startswith("ccm_"))
            int(request_id[4:], 16)
            self.assertEqual(len(request_id), 4 + 24)

    def test_str(self) -> None:
        """
        An :obj:`APIError` reads as its status, type and message.
        """
        self.assertEqual(str(RATE_LIMITED), "429 rate_limit_error: every credential is limited")


class RenderErrorTests(SynchronousTestCase):
    """
    :obj:`render_error`: the answer of a ``render`` method.
    """

    def test_status_headers_and_body(self) -> None:
        """
        The status, a JSON content type, the error's own headers and a
        ``request-id`` header matching the body's ``request_id``.
        """
        transport, _ = _exchange(lambda request: render_error(request, RATE_LIMITED))
        response = _response(transport)
        self.assertTrue(response.complete)
        self.assertEqual(response.status, 429)
        self.assertEqual(response.headers["content-type"], ["application/json"])
        self.assertEqual(response.headers["retry-after"], ["30"])
        [request_id] = response.headers[REQUEST_ID_HEADER.decode("ascii")]
        self.assertTrue(request_id.startswith("ccm_"))
        self.assertEqual(
            response.json(),
            {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "every credential is limited"},
                "request_id": request_id,
            },
        )

    def test_head_has_no_body(self) -> None:
        """
        A ``HEAD`` request (Claude Code probes its base URL so) gets the
        status and headers without a body.
        """
        rendered: list[bytes] = []

        def answer(request: Request) -> bytes:
            rendered.append(render_error(request, RATE_LIMITED))
            return rendered[-1]

        transport, _ = _exchange(answer, method=b"HEAD")
        self.assertEqual(rendered, [b""])
        response = _response(transport)
        self.assertEqual(response.status, 429)
        self.assertEqual(response.headers["content-type"], ["application/json"])
        self.assertEqual(response.body, b"")


class SendErrorTests(SynchronousTestCase):
    """
    :obj:`send_error`: the answer to a request handled asynchronously.
    """

    def test_writes_and_finishes(self) -> None:
        """
        The error goes out whole and the request is finished.
        """
        transport, resource = _exchange(lambda request: NOT_DONE_YET)
        self.assertEqual(transport.value(), b"")
        assert resource.request is not None
        send_error(resource.request, RATE_LIMITED)
        self.assertTrue(resource.request.finished)
        response = _response(transport)
        self.assertTrue(response.complete)
        self.assertEqual(response.status, 429)
        self.assertEqual(response.json()["error"]["type"], "rate_limit_error")


class AnswerBugTests(SynchronousTestCase):
    """
    :obj:`answer_bug`: ending a request whose handling hit a bug.
    """

    def test_nothing_sent_yet(self) -> None:
        """
        Before anything was sent, the answer is a 500 ``api_error``, without
        the headers set for the answer that will not come.
        """

        def answer(request: Request) -> int:
            request.setResponseCode(200)
            request.responseHeaders.setRawHeaders(b"x-half-done", [b"yes"])
            return NOT_DONE_YET

        transport, resource = _exchange(answer)
        assert resource.request is not None
        answer_bug(resource.request)
        response = _response(transport)
        self.assertTrue(response.complete)
        self.assertEqual(response.status, INTERNAL_ERROR.status)
        self.assertNotIn("x-half-done", response.headers)
        self.assertEqual(
            response.json()["error"],
            {"type": "api_error", "message": "internal error in ccm"},
        )
        self.assertFalse(transport.disconnected)

    def test_part_sent(self) -> None:
        """
        Once part of the answer went out, the connection is aborted, so a
        truncated answer cannot pass for a whole one.
        """

        def answer(request: Request) -> int:
            request.write(b"partial")
            return NOT_DONE_YET

        transport, resource = _exchange(answer)
        assert resource.request is not None
        sent = transport.value()
        answer_bug(resource.request)
        self.assertTrue(transport.disconnected)
        self.assertEqual(transport.value(), sent)
        self.assertNotIn(b"internal error", transport.value())


class ErrorResponseTests(SynchronousTestCase):
    """
    :obj:`error_response`: a whole HTTP response for an error, in the Anthropic
    shape.
    """

    def test_shape(self) -> None:
        """
        The response has the status line, the JSON content type, a ccm
        request id matching the body, the error's own headers, a length and
        ``connection: close``.
        """
        data = error_response(
            APIError(431, "request_too_large", "too big", headers=(("x-should-retry", "false"),))
        )
        self.assertTrue(data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        response = parse_raw_response(data)
        assert response is not None
        self.assertTrue(response.complete)
        self.assertEqual(response.headers["x-should-retry"], ["false"])
        self.assertEqual(response.headers["connection"], ["close"])
        self.assertEqual(response.headers["content-length"], [str(len(response.body))])
        document = json.loads(response.body)
        self.assertEqual(
            document,
            {
                "type": "error",
                "error": {"type": "request_too_large", "message": "too big"},
                "request_id": response.headers["request-id"][0],
            },
        )

    def test_reason_from_twisted(self) -> None:
        """
        Statuses twisted.web knows get its reason phrase.
        """
        data = error_response(APIError(503, "overloaded_error", "busy"))
        self.assertTrue(data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"))
