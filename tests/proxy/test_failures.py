"""
Tests for :obj:`ccm.proxy.failures`: what a client is told when its upstream
request failed before any response came, without a proxy around it.
"""

from __future__ import annotations

from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived

from ccm.proxy.failures import (
    ResponseHeadersTimedOut,
    closed_before_answering,
    headers_timed_out,
    upstream_error,
)
from ccm.upstream.tunnel import DetourError
from ccm.web.errors import APIError

UPSTREAM = "https://api.example.test"


def error_for(exception: BaseException) -> APIError:
    """
    The error for an upstream request that failed with ``exception``.
    """
    return upstream_error(Failure(exception), UPSTREAM)


class UpstreamErrorTests(SynchronousTestCase):
    """
    :obj:`upstream_error` maps each kind of failure to a status, an Anthropic
    error type and a message naming the upstream.
    """

    def test_response_headers_timed_out(self) -> None:
        """
        Headers that did not come in time give 504 ``timeout_error`` with
        the timeout, as a whole number of seconds when it is one.
        """
        self.assertEqual(
            error_for(ResponseHeadersTimedOut(30.0)),
            APIError(504, "timeout_error", f"upstream {UPSTREAM} did not answer within 30s"),
        )
        self.assertIn("within 2.5s", error_for(ResponseHeadersTimedOut(2.5)).message)

    def test_connect_timeouts(self) -> None:
        """
        A connection attempt that timed out, in either of Twisted's ways,
        gives 504 ``timeout_error``.
        """
        for exception in (net_error.TimeoutError(), net_error.TCPTimedOutError()):
            self.assertEqual(
                error_for(exception),
                APIError(504, "timeout_error", f"connecting to upstream {UPSTREAM} timed out"),
            )

    def test_detour(self) -> None:
        """
        A detour that failed gives 502 ``api_error`` naming the detour and
        its reason, not Twisted's generic connection message.
        """
        self.assertEqual(
            error_for(DetourError("socks-out", "the proxy refused the credentials")),
            APIError(
                502,
                "api_error",
                f"cannot reach upstream {UPSTREAM} through detour socks-out: "
                "the proxy refused the credentials",
            ),
        )

    def test_cannot_connect(self) -> None:
        """
        A refused connection or a name that does not resolve gives 502
        ``api_error`` with the failure's message, or its type without one.
        """
        refused = error_for(net_error.ConnectionRefusedError())
        self.assertEqual((refused.status, refused.error_type), (502, "api_error"))
        self.assertTrue(
            refused.message.startswith(f"cannot connect to upstream {UPSTREAM}: "), refused
        )
        self.assertIn("refused", refused.message)
        dns = error_for(net_error.DNSLookupError("api.example.test"))
        self.assertIn("api.example.test", dns.message)

    def test_cancelled(self) -> None:
        """
        A cancellation, bare or as treq reports it, gives 502 ``api_error``.
        """
        for exception in (
            CancelledError(),
            ResponseNeverReceived([Failure(CancelledError())]),
        ):
            self.assertEqual(
                error_for(exception),
                APIError(502, "api_error", "the upstream request was cancelled"),
            )

    def test_anything_else(self) -> None:
        """
        Any other failure (a connection lost before the response, a TLS
        error) says the upstream closed the connection before answering.
        """
        for exception in (
            ResponseNeverReceived([Failure(net_error.ConnectionLost())]),
            ValueError("unexpected"),
        ):
            self.assertEqual(error_for(exception), closed_before_answering(UPSTREAM))
        self.assertEqual(
            closed_before_answering(UPSTREAM),
            APIError(
                502, "api_error", f"upstream {UPSTREAM} closed the connection before answering"
            ),
        )


class HeadersTimedOutTests(SynchronousTestCase):
    """
    :obj:`headers_timed_out` turns :obj:`Deferred.addTimeout`'s cancellation into
    :obj:`ResponseHeadersTimedOut`.
    """

    def test_timeout(self) -> None:
        """
        A request timed out by ``addTimeout`` fails with
        :obj:`ResponseHeadersTimedOut` carrying the timeout, and leaves no
        timer.
        """
        clock = Clock()
        request: Deferred[None] = Deferred()
        request.addTimeout(12.0, clock, onTimeoutCancel=headers_timed_out)
        clock.advance(12.0)
        failure = self.failureResultOf(request, ResponseHeadersTimedOut)
        assert isinstance(failure.value, ResponseHeadersTimedOut)
        self.assertEqual(failure.value.timeout, 12.0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_answer_in_time(self) -> None:
        """
        An answer in time passes through and cancels the timer.
        """
        clock = Clock()
        request: Deferred[str] = Deferred()
        request.addTimeout(12.0, clock, onTimeoutCancel=headers_timed_out)
        request.callback("response")
        self.assertEqual(self.successResultOf(request), "response")
        self.assertEqual(clock.getDelayedCalls(), [])
