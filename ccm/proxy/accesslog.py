# -*- test-case-name: tests.proxy.test_resource -*-
"""
The one log line ccm writes per proxied request (its fields are described
in docs/running.md).  Every figure is a field of its own, so that a JSON
log observer gets numbers: the token counts appear only for a response
whose usage was counted, the outcome only when there is one, and
``status`` is always a number (0 when the client got no status), shown as
``-`` in the text.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.web.server import Request

from ccm.accounting.tokens import TokenCounts
from ccm.proxy.observer import ExchangeEnd

#: The format of the line's event: the line is made here, once, since
#: Twisted's formatting of a template with a dozen fields cost about a tenth
#: of a request's CPU; the figures stay fields of their own for machines.
ACCESS_LOG_FORMAT = "{request_line}"


def log_request(
    log: Logger,
    request: Request,
    *,
    user: str,
    model: str,
    credential: str,
    status: int,
    duration: float,
    bytes_sent: int,
    usage: TokenCounts | None,
    outcome: str,
) -> None:
    """
    Log the line of a proxied request that is over.

    :param user: the caller's name, empty for an anonymous one.
    :param model: the model asked for, or empty.
    :param credential: the tag of the credential that served, or empty.
    :param status: the status sent to the client; 0 when none was.
    :param duration: seconds from arrival to the end.
    :param bytes_sent: the body bytes relayed to the client.
    :param usage: the tokens the response used, when they were counted.
    :param outcome: why the request ended as it did, or empty.
    """
    counts: dict[str, int] = {}
    if usage is not None:
        counts = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        }
    method = request.method.decode("ascii", "replace")
    path = request.path.decode("ascii", "replace")
    line = (
        f"{method} {path} user={user or '-'} model={model or '-'} "
        f"credential={credential or '-'} -> {status or '-'} in {duration:.3f}s, {bytes_sent} bytes"
    )
    if usage is not None:
        line += (
            f", tokens in={usage.input_tokens} out={usage.output_tokens} "
            f"cache read={usage.cache_read_input_tokens} write={usage.cache_creation_input_tokens}"
        )
    if outcome:
        line += f" ({outcome})"
    log.info(
        ACCESS_LOG_FORMAT,
        request_line=line,
        method=method,
        path=path,
        user=user or "-",
        model=model or "-",
        credential=credential or "-",
        # A number for machines (0: no status was sent); "-" for people.
        status=status,
        status_shown=status or "-",
        duration=duration,
        bytes=bytes_sent,
        outcome=outcome,
        **counts,
    )


def log_end(
    log: Logger,
    request: Request,
    end: ExchangeEnd,
    bytes_sent: int,
    outcome: str,
    counted: bool,
) -> None:
    """
    :obj:`log_request` for the request ``end`` describes.

    :param bytes_sent: the body bytes relayed to the client.
    :param outcome: why the request ended as it did, or empty.
    :param counted: whether its usage went to a usage file: the line
        shows the tokens only then.
    """
    log_request(
        log,
        request,
        user=end.user,
        model=end.model,
        credential=end.credential,
        status=end.status,
        duration=end.duration,
        bytes_sent=bytes_sent,
        usage=end.usage.tokens if end.usage is not None and counted else None,
        outcome=outcome,
    )
