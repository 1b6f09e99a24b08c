# -*- test-case-name: tests.accounting.test_document -*-
"""
The usages file's document: a :obj:`UsageSnapshot` as the JSON the reference
writes (sing-box ``ccm``, ``usages_path``), and back.

The format is the reference's key for key, so a file written by sing-box
loads here and keeps counting, and one written here loads there.  Costs
are never read but recomputed from the token counts whenever the document
is made, so price corrections apply to old figures too.
"""

from __future__ import annotations

import datetime
import json
from fractions import Fraction
from typing import Any

from ccm.accounting.counters import Combination, UsageCounts, UsageSnapshot
from ccm.accounting.gojson import (
    LATEST_TIMESTAMP,
    encode,
    format_rfc3339,
    in_zone,
    offset_minutes,
    parse_rfc3339,
)
from ccm.accounting.pricing import round_cents
from ccm.accounting.tokens import TOKEN_FIELDS, TokenCounts

# The reference's counters are 64-bit; a larger count is not real usage.
_MAX_COUNT = 2**63 - 1
# The cache-write split, written only when non-zero.
_OPTIONAL_FIELDS = ("cache_creation_5m_input_tokens", "cache_creation_1h_input_tokens")

#: Top-level keys of a ccm configuration (sing-box document or bare
#: service), for a hint when one is given as a usages file.
_CONFIGURATION_KEYS = (
    "services",
    "outbounds",
    "users",
    "credentials",
    "credential_path",
    "usages_path",
    "listen",
    "listen_port",
    "endpoint",
)


class UsageFileError(Exception):
    """
    A usages document does not have the expected structure; the message
    names the JSON path of the first problem.
    """


def serialize(snapshot: UsageSnapshot, tz: datetime.tzinfo | None = None) -> bytes:
    """
    The usages file's bytes as Go writes them (:obj:`ccm.accounting.gojson`).

    :param tz: as for :obj:`to_document`.
    """
    return encode(to_document(snapshot, tz))


def to_document(snapshot: UsageSnapshot, tz: datetime.tzinfo | None = None) -> dict[str, Any]:
    """
    The usages file's document, key for key and in the reference's key
    order, with the costs computed now: each statistics object's cost is
    rounded half-up to cents, and every aggregate is the sum of rounded
    parts, rounded again.

    :param tz: the time zone of ``last_updated`` and of the week keys;
        the local one when ``None``.
    """
    total_usd = 0.0
    by_user: dict[str, float] = {}
    by_week: dict[str, float] = {}
    by_user_and_week: dict[str, dict[str, float]] = {}
    combinations = []
    for combination in snapshot.combinations:
        model, window = combination.model, combination.context_window
        week = week_key(combination.week_start_unix, tz) if combination.week_start_unix > 0 else None
        cost = combination.total.cost(model, window)
        total_usd += cost
        if week is not None:
            by_week[week] = by_week.get(week, 0.0) + cost
        users = {}
        for name in sorted(combination.by_user):
            counts = combination.by_user[name]
            user_cost = counts.cost(model, window)
            users[name] = _counts_document(counts, user_cost)
            by_user[name] = by_user.get(name, 0.0) + user_cost
            if week is not None:
                weeks = by_user_and_week.setdefault(name, {})
                weeks[week] = weeks.get(week, 0.0) + user_cost
        document: dict[str, Any] = {"model": model, "context_window": window}
        if combination.week_start_unix:
            document["week_start_unix"] = combination.week_start_unix
        document["total"] = _counts_document(combination.total, cost)
        document["by_user"] = users
        combinations.append(document)
    costs: dict[str, Any] = {
        "total_usd": round_cents(total_usd),
        "by_user": _rounded(by_user),
    }
    if by_week:
        costs["by_week"] = _rounded(by_week)
    if by_user_and_week:
        costs["by_user_and_week"] = {
            name: _rounded(by_user_and_week[name]) for name in sorted(by_user_and_week)
        }
    last_updated: float | int | None = snapshot.last_updated
    if snapshot.last_updated_ns is not None:
        last_updated = snapshot.last_updated_ns
    return {
        "last_updated": format_rfc3339(last_updated, tz),
        "costs": costs,
        "combinations": combinations,
    }


def _counts_document(counts: UsageCounts, cost: float) -> dict[str, Any]:
    """
    The file's statistics object: the counts in the reference's key order,
    the cache-write split only when non-zero, then ``cost_usd``.
    """
    document: dict[str, Any] = {
        "request_count": counts.request_count,
        "messages_count": counts.messages_count,
    }
    for name in TOKEN_FIELDS:
        value = getattr(counts.tokens, name)
        if value or name not in _OPTIONAL_FIELDS:
            document[name] = value
    document["cost_usd"] = cost
    return document


def _rounded(amounts: dict[str, float]) -> dict[str, float]:
    return {key: round_cents(amounts[key]) for key in sorted(amounts)}


def week_key(week_start_unix: int, tz: datetime.tzinfo | None) -> str:
    """
    The key of a weekly cycle in the file's costs: its start in ``tz``, as
    ``2026-03-09 08:00:00 UTC+8`` (``UTC+5:30`` with minutes, ``UTC+0`` for
    UTC).
    """
    moment = in_zone(week_start_unix, tz)
    minutes = offset_minutes(moment)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    zone = f"UTC{sign}{hours}" + (f":{minutes:02d}" if minutes else "")
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {zone}"
    )


def from_document(document: object) -> UsageSnapshot:
    """
    What a usages document recorded.  Only ``last_updated`` and the
    combinations' model, context window, week, total and per-user counts
    are read; costs and unknown keys are ignored.

    ``combinations`` must be present, as in every file ccm or sing-box
    writes (for an empty book too), so that another JSON object, such as
    a configuration, is never taken for an empty usages file.

    :param document: the decoded JSON.
    :raises UsageFileError: when the structure is wrong.
    """
    if not isinstance(document, dict):
        raise UsageFileError("the document is not a JSON object")
    if "combinations" not in document:
        looks_like = ""
        if any(key in document for key in _CONFIGURATION_KEYS):
            looks_like = "; it looks like a ccm configuration, whose usages_path names the usages file"
        raise UsageFileError(
            'no "combinations" key, which every usages file has, even an empty '
            "one" + looks_like
        )
    nanoseconds = parse_rfc3339(document.get("last_updated"))
    last_updated = None if nanoseconds is None else float(Fraction(nanoseconds, 1_000_000_000))
    items = document.get("combinations")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise UsageFileError("combinations: not a list")
    return UsageSnapshot(
        combinations=tuple(
            _combination_from_document(item, f"combinations[{index}]") for index, item in enumerate(items)
        ),
        last_updated=last_updated,
        last_updated_ns=nanoseconds,
    )


def _integer(value: object, path: str, default: int = 0) -> int:
    if value is None:
        return default
    if type(value) is not int or not 0 <= value <= _MAX_COUNT:
        raise UsageFileError(
            f"{path}: must be a non-negative 64-bit integer, got {json.dumps(value)[:40]}"
        )
    return value


def _counts_from_document(document: object, path: str) -> UsageCounts:
    if document is None:
        return UsageCounts()
    if not isinstance(document, dict):
        raise UsageFileError(f"{path}: not an object")

    def count(name: str) -> int:
        return _integer(document.get(name), f"{path}.{name}")

    return UsageCounts(
        request_count=count("request_count"),
        messages_count=count("messages_count"),
        tokens=TokenCounts(*(count(name) for name in TOKEN_FIELDS)),
    )


def _combination_from_document(document: object, path: str) -> Combination:
    if not isinstance(document, dict):
        raise UsageFileError(f"{path}: not an object")
    model = document.get("model")
    if not isinstance(model, str):
        raise UsageFileError(f"{path}.model: not a string")
    context_window = _integer(document.get("context_window"), f"{path}.context_window")
    week_start_unix = _integer(document.get("week_start_unix"), f"{path}.week_start_unix")
    if week_start_unix > LATEST_TIMESTAMP:
        raise UsageFileError(f"{path}.week_start_unix: {week_start_unix} is not a possible time")
    users = document.get("by_user")
    if users is None:
        users = {}
    if not isinstance(users, dict):
        raise UsageFileError(f"{path}.by_user: not an object")
    return Combination(
        model=model,
        context_window=context_window,
        week_start_unix=week_start_unix,
        total=_counts_from_document(document.get("total"), f"{path}.total"),
        by_user={
            name: _counts_from_document(counts, f"{path}.by_user[{json.dumps(name)[:60]}]")
            for name, counts in users.items()
        },
    )
