# -*- test-case-name: tests.limits.test_gate -*-
"""
The 429s of the per-user limits, worded for the person at the keyboard:
which limit, its numbers, and when to try again.

Claude Code prints a refused request's message after ``API Error: Request
rejected (429) ·``, so the message names ccm and the key to ask the
operator about.
"""

from __future__ import annotations

from ccm.limits.window import whole_seconds
from ccm.web.errors import APIError

#: The names of the limits, as in the configuration and in the metrics.
MAX_CONCURRENT = "max_concurrent"
REQUESTS_PER_MINUTE = "requests_per_minute"

#: The ``retry-after`` of a concurrency refusal: requests in flight end at
#: any time, so a client should come back soon.
CONCURRENCY_RETRY_AFTER_SECONDS = 5


def rate_refusal(user: str, limit: int, wait: float) -> APIError:
    """
    The answer to a request over ``requests_per_minute``.

    Not to be retried automatically (``x-should-retry: false``): the
    message says how long to wait, and a client retrying on its own would
    spend its retries while the user sees nothing.

    :param wait: seconds until a request may start again.
    """
    seconds = whole_seconds(wait)
    return APIError(
        429,
        "rate_limit_error",
        f"ccm: user {user} reached the requests_per_minute limit of {limit} "
        f"(requests started in the last 60 s); retry in {seconds} s",
        headers=(("retry-after", str(seconds)), ("x-should-retry", "false")),
    )


def _concurrency_refusal(user: str, text: str) -> APIError:
    seconds = CONCURRENCY_RETRY_AFTER_SECONDS
    return APIError(
        429,
        "rate_limit_error",
        f"ccm: user {user} reached the max_concurrent limit: {text}; retry in {seconds} s",
        # A slot frees as soon as one of the user's requests ends: the
        # client's own retries (with their back-off) are the right answer.
        headers=(("retry-after", str(seconds)), ("x-should-retry", "true")),
    )


def queue_full_refusal(user: str, limit: int, waiting: int) -> APIError:
    """
    The answer to a request that found all ``limit`` slots taken and the
    queue full (``waiting`` requests in it).
    """
    return _concurrency_refusal(
        user, f"{limit} requests in flight and {waiting} more waiting, the most the queue holds"
    )


def queue_timeout_refusal(user: str, limit: int, waited: float) -> APIError:
    """
    The answer to a request that waited ``waited`` seconds in the queue
    while the user's ``limit`` requests stayed in flight.
    """
    return _concurrency_refusal(
        user, f"{limit} requests in flight, none ended within {whole_seconds(waited)} s of waiting"
    )
