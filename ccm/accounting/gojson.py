# -*- test-case-name: tests.accounting.test_gojson -*-
"""
JSON and times written as Go writes them, so that a usages file written
here is byte for byte the one sing-box would write: Go's ``encoding/json``
with two-space indentation, and ``time.Time`` in RFC 3339 with nanoseconds.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any

_DAY_SECONDS = 86400
#: The range of Unix times every time zone can format (years 1 to 9999
#: with two days to spare for offsets); anything outside is treated as
#: absent.
EARLIEST_TIMESTAMP = -62_135_596_800 + 2 * _DAY_SECONDS
LATEST_TIMESTAMP = 253_402_300_800 - 2 * _DAY_SECONDS
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

#: What Go's time.Time zero value looks like in RFC 3339.
ZERO_TIME = "0001-01-01T00:00:00Z"
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Go's encoder escapes these inside strings; so do we, for identical files.
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_ESCAPE = re.compile("[<>&\u2028\u2029]")


def encode(document: Any) -> bytes:
    """
    ``document`` as Go's ``json.MarshalIndent(document, "", "  ")`` writes it:
    UTF-8, indented by two spaces, no trailing newline, integral floats
    without ``.0``, ``<>&`` and the line separators escaped, and lone
    surrogates (which Go cannot hold) replaced by U+FFFD.
    """
    text = json.dumps(_go_numbers(document), indent=2, ensure_ascii=False)
    text = _SURROGATE.sub("\ufffd", text)
    text = _GO_ESCAPE.sub(lambda match: _GO_ESCAPES[match.group()], text)
    return text.encode("utf-8")


def _go_numbers(value: Any) -> Any:
    """
    ``value`` with every integral float made an ``int``, so that it is
    written ``12`` like Go does, not ``12.0``.
    """
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _go_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_go_numbers(item) for item in value]
    return value


def in_zone(seconds: int, tz: datetime.tzinfo | None) -> datetime.datetime:
    """
    The moment ``seconds`` after the epoch in ``tz``, the local time zone when
    ``None``.
    """
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).astimezone(tz)


def offset_minutes(moment: datetime.datetime) -> int:
    """
    The offset of ``moment``'s time zone from UTC in minutes.
    """
    offset = moment.utcoffset() or datetime.timedelta(0)
    return int(offset.total_seconds()) // 60


def format_rfc3339(time: float | int | None, tz: datetime.tzinfo | None) -> str:
    """
    Go's ``time.RFC3339Nano``: the fraction trimmed of trailing zeros, ``Z``
    for a zero offset; Go's zero time for ``None`` and for a time outside
    the years Go writes.

    :param time: Unix seconds as a float, or Unix nanoseconds as an int.
    :param tz: the time zone to write it in; the local one when ``None``.
    """
    if isinstance(time, int):
        whole, nanoseconds = divmod(time, 1_000_000_000)
    elif time is None or not math.isfinite(time):
        return ZERO_TIME
    else:
        whole = math.floor(time)
        nanoseconds = round((time - whole) * 1_000_000_000)
        if nanoseconds >= 1_000_000_000:
            whole += 1
            nanoseconds -= 1_000_000_000
    if not EARLIEST_TIMESTAMP <= whole <= LATEST_TIMESTAMP:
        return ZERO_TIME
    moment = in_zone(whole, tz)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if nanoseconds:
        text += "." + f"{nanoseconds:09d}".rstrip("0")
    minutes = offset_minutes(moment)
    if minutes == 0:
        return text + "Z"
    sign = "+" if minutes > 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def parse_rfc3339(value: object) -> int | None:
    """
    Unix nanoseconds from an RFC 3339 timestamp with up to nine fractional
    digits; ``None`` for Go's zero time and for anything that does not parse
    or lies outside the years Go writes.
    """
    if not isinstance(value, str):
        return None
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    try:
        date = datetime.date(year, month, day)
    except ValueError:
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    offset = 0
    if match.group(9) is not None:
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = (offset_hours * 60 + offset_minutes) * 60
        if match.group(9) == "-":
            offset = -offset
    whole = (date.toordinal() - _EPOCH_ORDINAL) * _DAY_SECONDS + hour * 3600 + minute * 60 + second - offset
    if not EARLIEST_TIMESTAMP <= whole <= LATEST_TIMESTAMP:
        return None
    nanoseconds = int((match.group(7) or "").ljust(9, "0"))
    return whole * 1_000_000_000 + nanoseconds
