# -*- test-case-name: tests.pool.test_bounds -*-
"""
What the API's rate-limit numbers can mean: reading a number out of header
text, and the bounds a utilization, a reset time or a delay must be within
to be used.  Each check says why a value cannot be used, in words for the
warning that ignores it (see :obj:`ccm.pool.figures.FigureReader`), or None
when it can.
"""

from __future__ import annotations

import math

from twisted.web.http import stringToDatetime

# What the API's numbers can mean.  A value outside these bounds is ignored
# with a warning, never stored: one absurd header must not break requests.
# Utilization, in percent (the headers send a fraction, the usage poll a
# percentage): real values pass 100 only a little (a fraction of 1.01), and
# count as 100.
MAX_UTILIZATION_PERCENT = 1000.0
# Reset times: a weekly window is seven days long, and three more days
# cover a skewed clock; a day in the past covers a stale answer.
RESET_AHEAD_SECONDS = 10 * 86400.0
RESET_BEHIND_SECONDS = 86400.0
# The reset of extra usage (overage) is its spend period's, monthly: a
# month of 31 days, and a day more for a skewed clock.
OVERAGE_RESET_AHEAD_SECONDS = 32 * 86400.0
# A retry-after says when a window resets, so it cannot be longer either.
MAX_RETRY_AFTER_SECONDS = RESET_AHEAD_SECONDS
# Number text longer than this is not a number the API sends.
_MAX_NUMBER_CHARS = 32


def parse_number(text: str) -> float | None:
    """
    A finite decimal number, or None for anything else (not a number, NaN,
    infinite, or implausibly long text).
    """
    if len(text) > _MAX_NUMBER_CHARS:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def utilization_problem(percent: float) -> str | None:
    """
    Why a utilization (in percent) cannot be used, or None when it can.
    """
    if math.isfinite(percent) and 0 <= percent <= MAX_UTILIZATION_PERCENT:
        return None
    return f"not a utilization between 0 and {MAX_UTILIZATION_PERCENT:g}%"


def reset_problem(
    moment: float, now: float, ahead: float = RESET_AHEAD_SECONDS
) -> str | None:
    """
    Why a reset time (Unix seconds) cannot be used at ``now``, or None when
    it can: at most a day in the past, and at most ``ahead`` seconds ahead.
    """
    if not math.isfinite(moment):
        return "not a time"
    if moment < now - RESET_BEHIND_SECONDS:
        return f"more than {RESET_BEHIND_SECONDS / 86400:g} day(s) in the past"
    if moment > now + ahead:
        return f"more than {ahead / 86400:g} days ahead"
    return None


def delay_problem(seconds: float) -> str | None:
    """
    Why a delay asked for by a ``retry-after`` cannot be used, or None when
    it can.
    """
    if math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER_SECONDS:
        return None
    return f"not a delay between 0 and {MAX_RETRY_AFTER_SECONDS / 86400:g} days"


def parse_delay(text: str, now: float) -> float | None:
    """
    The seconds a ``retry-after`` asks to wait: a number of seconds, or the
    time from ``now`` to an HTTP date; None when it is neither.
    """
    seconds = parse_number(text)
    if seconds is not None or not text:
        return seconds
    try:
        moment: float = stringToDatetime(text.encode("latin-1"))
    except (ValueError, IndexError, OverflowError):
        return None
    return moment - now
