# -*- test-case-name: tests.config.test_connections -*-
"""
Parse a service's connection bounds (``request_head_timeout``,
``max_connections``, ...) into one :obj:`ConnectionLimits`.
"""

from __future__ import annotations

from ccm.config.model import (
    DEFAULT_KEEP_ALIVE_TIMEOUT_SECONDS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_MAX_REQUEST_HEAD_BYTES,
    DEFAULT_REQUEST_BODY_GRACE_SECONDS,
    DEFAULT_REQUEST_BODY_MIN_RATE_BYTES,
    DEFAULT_REQUEST_HEAD_TIMEOUT_SECONDS,
    ConnectionLimits,
)
from ccm.config.reader import ObjectReader, describe_type
from ccm.units import parse_size

#: The service keys read here, in the order the documentation lists them.
CONNECTION_KEYS = (
    "request_head_timeout",
    "request_body_min_rate",
    "request_body_grace",
    "keep_alive_timeout",
    "max_connections",
    "max_connections_per_address",
    "max_request_head",
)

#: The smallest ``max_request_head``: below it even a bare request with a
#: token and Claude Code's usual headers would not fit.
MIN_REQUEST_HEAD_BYTES = 1024

# Large enough never to matter; the bound only keeps the check finite.
_MAX_COUNT = 2**31 - 1


def parse_connection_limits(reader: ObjectReader) -> ConnectionLimits:
    """
    Read the connection bounds of the service object behind ``reader``,
    reporting each problem with its JSON path.
    """
    max_connections = _count(reader, "max_connections", DEFAULT_MAX_CONNECTIONS)
    # Unset, the per-address cap never exceeds the total: lowering only
    # max_connections must not be an error about a key nobody wrote.
    per_address_default = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    if max_connections:
        per_address_default = min(per_address_default, max_connections)
    per_address = _count(reader, "max_connections_per_address", per_address_default)
    if max_connections and per_address > max_connections:
        reader.problems.add(
            reader.where("max_connections_per_address"),
            f"must not exceed max_connections ({max_connections}), got {per_address}",
        )
    return ConnectionLimits(
        request_head_timeout=reader.duration(
            "request_head_timeout", DEFAULT_REQUEST_HEAD_TIMEOUT_SECONDS, allow_zero=True
        ),
        request_body_min_rate=_size(
            reader,
            "request_body_min_rate",
            DEFAULT_REQUEST_BODY_MIN_RATE_BYTES,
            minimum=0,
            what="bytes per second",
            example="1KiB",
        ),
        request_body_grace=reader.duration(
            "request_body_grace", DEFAULT_REQUEST_BODY_GRACE_SECONDS, allow_zero=True
        ),
        keep_alive_timeout=reader.duration(
            "keep_alive_timeout", DEFAULT_KEEP_ALIVE_TIMEOUT_SECONDS
        ),
        max_connections=max_connections,
        max_connections_per_address=per_address,
        max_request_head=_size(
            reader,
            "max_request_head",
            DEFAULT_MAX_REQUEST_HEAD_BYTES,
            minimum=MIN_REQUEST_HEAD_BYTES,
            what="bytes",
            example="32KiB",
        ),
    )


def _count(reader: ObjectReader, key: str, default: int) -> int:
    return reader.integer(key, default, 0, _MAX_COUNT, bounds="0 (no limit) or more")


def _size(
    reader: ObjectReader, key: str, default: int, *, minimum: int, what: str, example: str
) -> int:
    """
    A byte count given as a whole number or a size string, not below
    ``minimum``.
    """
    value = reader.obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        got = repr(value) if isinstance(value, float) else describe_type(value)
        reader.problems.add(
            reader.where(key),
            f"must be a whole number of {what} or a size such as \"{example}\", got {got}",
        )
        return default
    try:
        size = parse_size(value)
    except ValueError as error:
        reader.problems.add(reader.where(key), str(error))
        return default
    if size < minimum:
        reader.problems.add(
            reader.where(key), f"must be at least {minimum} bytes, got {size}"
        )
        return default
    return size
