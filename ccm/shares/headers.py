# -*- test-case-name: tests.shares.test_headers -*-
"""
The unified rate-limit headers a user with a share sees on a success: the
5-hour and weekly figures of their share instead of the account's.

Claude Code 2.1.332 warns "approaching limit" from each window's
utilization and reset with its own curve (:obj:`warning_threshold`, read
from its binary), so the status ccm sends agrees with what the client would
compute from the same figures.  Pure: the time is handed in.
"""

from __future__ import annotations

from typing import Sequence

from twisted.web.http_headers import Headers

from ccm.pool.figures import WINDOW_SECONDS, WindowName
from ccm.shares.ledger import FIVE_HOUR, WEEKLY
from ccm.shares.standing import ShareFigures

#: Claude Code's warning curve: per window, (utilization, elapsed) pairs;
#: a window warns when its utilization is at least the first and at most
#: the second part of the window has gone (a fast burn).
WARNING_CURVE: dict[WindowName, tuple[tuple[float, float], ...]] = {
    FIVE_HOUR: ((0.9, 0.72),),
    WEEKLY: ((0.75, 0.6), (0.5, 0.35), (0.25, 0.15)),
}

_PREFIX = b"anthropic-ratelimit-unified-"
_KEYS = {FIVE_HOUR: b"5h", WEEKLY: b"7d"}
_CLAIMS = {FIVE_HOUR: b"five_hour", WEEKLY: b"seven_day"}
_RANK = {b"allowed": 0, b"allowed_warning": 1, b"rejected": 2}
#: The per-window headers a share replaces (the rest of a window's stay).
_WINDOW_FIELDS = (b"utilization", b"reset", b"status", b"surpassed-threshold")
#: The overall headers a share replaces unless the upstream rejected.
_OVERALL_FIELDS = (b"status", b"reset", b"representative-claim")


def elapsed_fraction(resets_at: float, window: WindowName, now: float) -> float:
    """
    The part of a ``window`` that ends at ``resets_at`` gone by ``now``,
    0..1, computed as Claude Code does.
    """
    length = WINDOW_SECONDS[window]
    return max(0.0, min(1.0, (now - (resets_at - length)) / length))


def warning_threshold(window: WindowName, utilization: float, elapsed: float) -> float | None:
    """
    The utilization threshold of Claude Code's curve that ``utilization``
    (0..1) crossed with ``elapsed`` (0..1) of ``window`` gone, or None when
    it does not warn.
    """
    for threshold, time_part in WARNING_CURVE[window]:
        if utilization >= threshold and elapsed <= time_part:
            return threshold
    return None


def window_status(figures: ShareFigures, now: float) -> tuple[bytes, float | None, int]:
    """
    A share window's status (``allowed``, ``allowed_warning`` or
    ``rejected``), the threshold it surpassed (None) and its reset (Unix
    seconds; a window with nothing to reset ends one length from ``now``).
    """
    reset = int(figures.resets_at or now + WINDOW_SECONDS[figures.window])
    if figures.exhausted:
        return b"rejected", None, reset
    threshold = warning_threshold(
        figures.window, figures.fraction, elapsed_fraction(reset, figures.window, now)
    )
    return (b"allowed" if threshold is None else b"allowed_warning"), threshold, reset


def share_headers(headers: Headers, figures: Sequence[ShareFigures], now: float) -> Headers:
    """
    A copy of ``headers`` whose unified headers of each window in
    ``figures`` describe the share: ``-utilization`` (the used part of
    the share, 0..1 with 2 decimals), ``-reset``, ``-status`` and
    ``-surpassed-threshold`` (present only when the share warns).  The
    overall ``-status``, ``-reset`` and ``-representative-claim`` name the
    share's most binding window, unless the upstream's status is
    ``rejected`` (an account refusing, or serving from extra usage), which
    stays.  Every other header is kept as it came; no figures, no change.
    """
    result = headers.copy()
    if not figures:
        return result
    worst: tuple[int, float, bytes, int] | None = None
    for f in figures:
        status, threshold, reset = window_status(f, now)
        key = _PREFIX + _KEYS[f.window] + b"-"
        for name in _WINDOW_FIELDS:
            result.removeHeader(key + name)
        result.setRawHeaders(key + b"utilization", [b"%.2f" % f.fraction])
        result.setRawHeaders(key + b"reset", [b"%d" % reset])
        result.setRawHeaders(key + b"status", [status])
        if threshold is not None:
            result.setRawHeaders(key + b"surpassed-threshold", [b"%g" % threshold])
        candidate = (_RANK[status], f.fraction, _CLAIMS[f.window], reset)
        if worst is None or candidate[:2] > worst[:2]:
            worst = candidate
    assert worst is not None
    upstream = headers.getRawHeaders(_PREFIX + b"status", [b""])[-1].strip()
    if upstream != b"rejected":
        rank, _, claim, reset = worst
        status = next(name for name, value in _RANK.items() if value == rank)
        for name in _OVERALL_FIELDS:
            result.removeHeader(_PREFIX + name)
        result.setRawHeaders(_PREFIX + b"status", [status])
        result.setRawHeaders(_PREFIX + b"reset", [b"%d" % reset])
        result.setRawHeaders(_PREFIX + b"representative-claim", [claim])
    return result
