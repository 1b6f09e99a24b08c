# -*- test-case-name: tests.test_units -*-
"""
Durations and sizes as people write them in the configuration, and as ccm
writes them back in messages.

Durations follow Go's ``time.ParseDuration`` (``"500ms"``, ``"60s"``,
``"1h30m"``) because sing-box configurations are written that way; sizes
accept a plain byte count or a number with a unit (``"64MiB"``).
"""

from __future__ import annotations

import re

_DURATION_UNITS_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?[bB]?|[bB])?\s*$")
_SIZE_FACTORS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": 1024,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": 1024**3,
    "gib": 1024**3,
}


def parse_duration(text: str) -> float:
    """
    Parse a Go-style duration string into seconds.

    :raises ValueError: with a message fit for a configuration error.
    """
    body = text.strip()
    sign = 1.0
    if body[:1] in ("+", "-"):
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            raise ValueError(
                f"invalid duration {text!r}: expected a number and a unit "
                "(ns, us, ms, s, m, h), for example \"60s\" or \"1h30m\""
            )
        total += float(match.group(1)) * _DURATION_UNITS_SECONDS[match.group(2)]
        position = match.end()
    return sign * total


def parse_size(value: int | str) -> int:
    """
    Parse a byte count given as an integer or as a string such as ``"64MiB"``.

    :raises ValueError: with a message fit for a configuration error.
    """
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(
            f"invalid size {value!r}: expected bytes as a number or a number "
            "with a unit such as \"64MiB\" or \"10MB\""
        )
    number = float(match.group(1))
    unit = (match.group(2) or "").lower()
    return int(number * _SIZE_FACTORS[unit])


def format_duration(seconds: float) -> str:
    """
    Format a duration for people, coarsely: ``"950ms"``, ``"42s"``,
    ``"3m20s"``, ``"2h13m"``, ``"3d4h"``.
    """
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60}s"
    if whole < 86400:
        return f"{whole // 3600}h{(whole % 3600) // 60}m"
    return f"{whole // 86400}d{(whole % 86400) // 3600}h"


def whole_seconds_until(moment: float, now: float) -> int:
    """
    The seconds from ``now`` to ``moment`` for a ``retry-after`` header:
    rounded up, and at least 1.
    """
    return max(1, int(moment - now + 0.999))
