# -*- test-case-name: tests.accounting.test_week -*-
"""
The weekly cycle a response is counted in, from the subscription's weekly
rate-limit window as the response's headers give it.

This reads a rate-limit header, but for accounting: it tags usage as the
reference does (the reset time less a week, rounded), whatever the pool
makes of the same header (:obj:`ccm.pool.windows`), and a tag must be a time
the usages file can hold.
"""

from __future__ import annotations

import re

from twisted.web.http_headers import Headers

from ccm.accounting.gojson import LATEST_TIMESTAMP

WEEK_SECONDS = 604800
WEEKLY_RESET_HEADER = b"anthropic-ratelimit-unified-7d-reset"

_HOUR_SECONDS = 3600
_MAX_HEADER_DIGITS = 20
_DIGITS = re.compile(r"[0-9]+")


def week_start_from_headers(headers: Headers) -> int:
    """
    The start of the weekly cycle a response belongs to: the
    ``anthropic-ratelimit-unified-7d-reset`` time (Unix seconds) less a week,
    rounded to the nearest hour, because the reset time jitters from one
    response to the next and each distinct value would start a combination
    of its own.

    :param headers: the upstream response headers.
    :return: the cycle start in Unix seconds, or 0 (untagged) when the
        header is absent, not a positive decimal integer, or gives a time
        that cannot be written down.  Never raises.
    """
    values = headers.getRawHeaders(WEEKLY_RESET_HEADER)
    if not values:
        return 0
    try:
        text = values[0].decode("ascii").strip()
    except UnicodeDecodeError:
        return 0
    if len(text) > _MAX_HEADER_DIGITS or not _DIGITS.fullmatch(text):
        return 0
    return week_start_of(int(text))


def week_start_of(weekly_reset: int) -> int:
    """
    The start of the weekly cycle that ends at ``weekly_reset`` (Unix
    seconds), as :obj:`week_start_from_headers` tags usage: a week before,
    rounded to the hour; 0 when that is not a time the file can hold.
    """
    start = weekly_reset - WEEK_SECONDS
    start = (start + _HOUR_SECONDS // 2) // _HOUR_SECONDS * _HOUR_SECONDS
    if start <= 0 or start > LATEST_TIMESTAMP:
        return 0
    return start
