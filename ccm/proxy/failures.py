# -*- test-case-name: tests.proxy.test_failures -*-
"""
What a client is told when its upstream request failed before any response
came: :obj:`upstream_error`, a pure mapping from the failure to ccm's own
error, and :obj:`ResponseHeadersTimedOut`, the failure of a request whose
response headers did not come in time.
"""

from __future__ import annotations

from typing import NoReturn

from twisted.internet import error as net_error
from twisted.python.failure import Failure

from ccm.credentials.oauth import is_cancellation
from ccm.upstream.tunnel import DetourError
from ccm.web.errors import APIError

FAST_MODE_THROUGH_POOL = APIError(
    400,
    "invalid_request_error",
    "fast mode requests would consume paid extra usage; use a credential directly, "
    "not a pool",
)
# A request still waiting for the upstream's answer when the shutdown grace
# ends.
ENDED_BY_SHUTDOWN = APIError(
    503,
    "api_error",
    "ccm is restarting and could not finish this request in time; retry",
    headers=(("x-should-retry", "true"),),
)


class ResponseHeadersTimedOut(Exception):
    """
    The upstream sent no response headers within ``timeout`` seconds.
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self.timeout = timeout


def headers_timed_out(result: object, timeout: float) -> NoReturn:
    """
    The ``onTimeoutCancel`` of :obj:`twisted.internet.defer.Deferred.addTimeout`
    for the response headers: whatever the cancelled request gave, it
    failed with :obj:`ResponseHeadersTimedOut`.
    """
    raise ResponseHeadersTimedOut(timeout)


def closed_before_answering(upstream_url: str) -> APIError:
    """
    The error for an upstream that went away before any response, for a
    reason ccm cannot tell a client more about (its log says more).
    """
    return APIError(
        502, "api_error", f"upstream {upstream_url} closed the connection before answering"
    )


def upstream_error(failure: Failure, upstream_url: str) -> APIError:
    """
    What a client is told when its upstream request failed before any
    response came.

    :param failure: the failure of the upstream request.
    :param upstream_url: the upstream, named in the messages.
    """
    error = failure.value
    if isinstance(error, ResponseHeadersTimedOut):
        return APIError(
            504,
            "timeout_error",
            f"upstream {upstream_url} did not answer within {error.timeout:g}s",
        )
    if isinstance(error, (net_error.TimeoutError, net_error.TCPTimedOutError)):
        return APIError(504, "timeout_error", f"connecting to upstream {upstream_url} timed out")
    if isinstance(error, DetourError):
        return APIError(
            502,
            "api_error",
            f"cannot reach upstream {upstream_url} through detour {error.detour}: {error.reason}",
        )
    if isinstance(error, (net_error.ConnectError, net_error.DNSLookupError)):
        reason = failure.getErrorMessage() or type(error).__name__
        return APIError(502, "api_error", f"cannot connect to upstream {upstream_url}: {reason}")
    if error is not None and is_cancellation(error):
        return APIError(502, "api_error", "the upstream request was cancelled")
    return closed_before_answering(upstream_url)
