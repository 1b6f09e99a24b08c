# -*- test-case-name: tests.accounting.test_book -*-
"""
Usage accounting: who used how many tokens of which model, and what that
cost.  L{ccm.accounting.usagefile} keeps it on disk across restarts.

The file has the reference's format key for key (sing-box C{ccm},
C{usages_path}), so a file written by sing-box loads here and keeps
counting, and one written here loads there.  Usage is kept per
I{combination} of model, context window and weekly cycle, in total and per
user; costs are never stored but recomputed from the token counts whenever
the file is written, so price corrections apply to old figures too.

"""

from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from ccm.accounting.pricing import cost_usd, prices_for, round_cents
from ccm.accounting.tokens import TokenCounts, TokenUsage

WEEK_SECONDS = 604800
SAVE_INTERVAL_SECONDS = 60.0
WEEKLY_RESET_HEADER = b"anthropic-ratelimit-unified-7d-reset"

_HOUR_SECONDS = 3600
_DAY_SECONDS = 86400
# The range of Unix times every time zone can format (years 1 to 9999 with
# two days to spare for offsets); anything outside is treated as absent.
_EARLIEST_TIMESTAMP = -62_135_596_800 + 2 * _DAY_SECONDS
_LATEST_TIMESTAMP = 253_402_300_800 - 2 * _DAY_SECONDS
_MAX_HEADER_DIGITS = 20
# The reference's counters are 64-bit; a larger count is not real usage.
_MAX_COUNT = 2**63 - 1
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

# What Go's time.Time zero value looks like in RFC 3339.
ZERO_TIME = "0001-01-01T00:00:00Z"
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_DIGITS = re.compile(r"[0-9]+")
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

log = Logger(namespace="ccm.accounting.book")


def week_start_from_headers(headers: Headers) -> int:
    """
    The start of the weekly cycle a response belongs to: the
    C{anthropic-ratelimit-unified-7d-reset} time (Unix seconds) less a week,
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
    start = int(text) - WEEK_SECONDS
    start = (start + _HOUR_SECONDS // 2) // _HOUR_SECONDS * _HOUR_SECONDS
    if start <= 0 or start > _LATEST_TIMESTAMP:
        return 0
    return start


@dataclass
class UsageCounts:
    """
    One statistics object of the usages file: the requests and tokens of a
    combination, in total or for one user.
    """

    request_count: int = 0
    messages_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0

    def add(self, usage: TokenUsage, cache_creation_input_tokens: int, messages: int) -> None:
        """
        Count one response.

        :param usage: the tokens it used.
        :param cache_creation_input_tokens: its cache writes, normalised by
            the caller.
        :param messages: the number of messages in its request.
        """
        self.request_count += 1
        self.messages_count += messages
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cache_read_input_tokens += usage.cache_read_input_tokens
        self.cache_creation_input_tokens += cache_creation_input_tokens
        self.cache_creation_5m_input_tokens += usage.cache_creation_5m_input_tokens
        self.cache_creation_1h_input_tokens += usage.cache_creation_1h_input_tokens

    def cost(self, model: str, context_window: int) -> float:
        """
        What these tokens cost in USD, rounded half-up to cents.
        """
        return round_cents(
            cost_usd(
                prices_for(model, context_window),
                TokenCounts(
                    self.input_tokens,
                    self.output_tokens,
                    self.cache_read_input_tokens,
                    self.cache_creation_input_tokens,
                    self.cache_creation_5m_input_tokens,
                    self.cache_creation_1h_input_tokens,
                ),
            )
        )

    def to_document(self, cost: float) -> dict[str, Any]:
        """
        The file's statistics object: the counts in the reference's key
        order, the cache-write split only when non-zero, then C{cost_usd}.
        """
        document: dict[str, Any] = {
            "request_count": self.request_count,
            "messages_count": self.messages_count,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
        }
        if self.cache_creation_5m_input_tokens:
            document["cache_creation_5m_input_tokens"] = self.cache_creation_5m_input_tokens
        if self.cache_creation_1h_input_tokens:
            document["cache_creation_1h_input_tokens"] = self.cache_creation_1h_input_tokens
        document["cost_usd"] = cost
        return document


_COUNT_NAMES = tuple(f.name for f in fields(UsageCounts))


@dataclass
class Combination:
    """
    The usage of one model at one context window in one weekly cycle
    (C{week_start_unix} 0: untagged), in total and per user.
    """

    model: str
    context_window: int
    week_start_unix: int
    total: UsageCounts = field(default_factory=UsageCounts)
    by_user: dict[str, UsageCounts] = field(default_factory=dict)


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


class UsageBook:
    """
    All usage recorded in one usage file, in memory.

    :ivar combinations: the combinations, in the order they were first seen.
    :ivar last_updated: Unix seconds of the last record, or C{None} when
        nothing was ever recorded (written as Go's zero time).
    :ivar changed: whether something was recorded since the last successful
        save; the saver clears it.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.combinations: list[Combination] = []
        self.last_updated: float | None = None
        self.changed = False
        # The exact nanoseconds of a loaded last_updated, which a float
        # cannot hold, so that a loaded file is written back unchanged.
        self._loaded_time: tuple[float, int] | None = None

    def record(
        self,
        *,
        model: str,
        context_window: int,
        week_start_unix: int,
        user: str,
        usage: TokenUsage,
        messages: int,
    ) -> None:
        """
        Count one response: one request, C{messages} messages and its tokens,
        in the combination's total and, for a named user, in theirs.

        :param model: the model that answered; an empty one is ignored.
        :param context_window: 200000 or 1000000; C{<= 0} is ignored.
        :param week_start_unix: the weekly cycle (0: untagged; a time that
            cannot be written down counts as untagged).
        :param user: the configured user name, C{""} when anonymous
            (counted in the total only).
        :param usage: the tokens of the response.  When its
            C{cache_creation_input_tokens} is 0, the sum of the 5-minute and
            1-hour writes is counted instead.
        :param messages: the number of messages in the request.
        """
        if not model or context_window <= 0:
            self.log.debug(
                "not recording usage with model {model!r} and context window {context_window}",
                model=model[:100],
                context_window=context_window,
            )
            return
        cache_creation = usage.cache_creation_input_tokens or (
            usage.cache_creation_5m_input_tokens + usage.cache_creation_1h_input_tokens
        )
        if not 0 < week_start_unix <= _LATEST_TIMESTAMP:
            week_start_unix = 0
        combination = self._combination(model, context_window, week_start_unix)
        combination.total.add(usage, cache_creation, messages)
        if user:
            counts = combination.by_user.get(user)
            if counts is None:
                counts = combination.by_user[user] = UsageCounts()
            counts.add(usage, cache_creation, messages)
        self.last_updated = self._clock.seconds()
        self.changed = True

    def _combination(self, model: str, context_window: int, week_start_unix: int) -> Combination:
        for combination in self.combinations:
            if (
                combination.model == model
                and combination.context_window == context_window
                and combination.week_start_unix == week_start_unix
            ):
                return combination
        combination = Combination(model, context_window, week_start_unix)
        self.combinations.append(combination)
        return combination

    def to_document(self, tz: datetime.tzinfo | None = None) -> dict[str, Any]:
        """
        The usages file's document, key for key and in the reference's key
        order, with the costs computed now: each statistics object's cost is
        rounded half-up to cents, and every aggregate is the sum of rounded
        parts, rounded again.

        :param tz: the time zone of C{last_updated} and of the week keys;
            the local one when C{None}.
        """
        total_usd = 0.0
        by_user: dict[str, float] = {}
        by_week: dict[str, float] = {}
        by_user_and_week: dict[str, dict[str, float]] = {}
        combinations = []
        for combination in self.combinations:
            model, window = combination.model, combination.context_window
            week = _week_key(combination.week_start_unix, tz) if combination.week_start_unix > 0 else None
            cost = combination.total.cost(model, window)
            total_usd += cost
            if week is not None:
                by_week[week] = by_week.get(week, 0.0) + cost
            users = {}
            for name in sorted(combination.by_user):
                counts = combination.by_user[name]
                user_cost = counts.cost(model, window)
                users[name] = counts.to_document(user_cost)
                by_user[name] = by_user.get(name, 0.0) + user_cost
                if week is not None:
                    weeks = by_user_and_week.setdefault(name, {})
                    weeks[week] = weeks.get(week, 0.0) + user_cost
            document: dict[str, Any] = {"model": model, "context_window": window}
            if combination.week_start_unix:
                document["week_start_unix"] = combination.week_start_unix
            document["total"] = combination.total.to_document(cost)
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
        last_updated: float | int | None = self.last_updated
        if self._loaded_time is not None and self._loaded_time[0] == last_updated:
            last_updated = self._loaded_time[1]
        return {
            "last_updated": _format_rfc3339(last_updated, tz),
            "costs": costs,
            "combinations": combinations,
        }

    def serialize(self, tz: datetime.tzinfo | None = None) -> bytes:
        """
        The usages file's bytes as Go writes them: UTF-8 JSON indented by two
        spaces, no trailing newline, integral floats without C{.0}.

        :param tz: as for L{to_document}.
        """
        text = json.dumps(_go_numbers(self.to_document(tz)), indent=2, ensure_ascii=False)
        text = _SURROGATE.sub("\ufffd", text)
        text = _GO_ESCAPE.sub(lambda match: _GO_ESCAPES[match.group()], text)
        return text.encode("utf-8")

    @classmethod
    def from_document(cls, document: object, clock: IReactorTime) -> UsageBook:
        """
        A book holding what a usages document recorded.  Only
        C{last_updated} and the combinations' model, context window, week,
        total and per-user counts are read; costs and unknown keys are
        ignored.

        C{combinations} must be present, as in every file ccm or sing-box
        writes (for an empty book too), so that another JSON object, such as
        a configuration, is never taken for an empty usages file.

        :param document: the decoded JSON.
        :param clock: the clock of the new book.
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
        book = cls(clock)
        nanoseconds = _parse_rfc3339(document.get("last_updated"))
        if nanoseconds is not None:
            book.last_updated = float(Fraction(nanoseconds, 1_000_000_000))
            book._loaded_time = (book.last_updated, nanoseconds)
        items = document.get("combinations")
        if items is None:
            return book
        if not isinstance(items, list):
            raise UsageFileError("combinations: not a list")
        for index, item in enumerate(items):
            book.combinations.append(_combination_from_document(item, f"combinations[{index}]"))
        return book


def _rounded(amounts: dict[str, float]) -> dict[str, float]:
    return {key: round_cents(amounts[key]) for key in sorted(amounts)}


def _go_numbers(value: Any) -> Any:
    """
    C{value} with every integral float made an C{int}, so that it is
    written C{12} like Go does, not C{12.0}.
    """
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _go_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_go_numbers(item) for item in value]
    return value


def _in_zone(seconds: int, tz: datetime.tzinfo | None) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).astimezone(tz)


def _offset_minutes(moment: datetime.datetime) -> int:
    offset = moment.utcoffset() or datetime.timedelta(0)
    return int(offset.total_seconds()) // 60


def _format_rfc3339(time: float | int | None, tz: datetime.tzinfo | None) -> str:
    """
    Go's C{time.RFC3339Nano}: the fraction trimmed of trailing zeros, C{Z}
    for a zero offset; Go's zero time for C{None}.

    :param time: Unix seconds as a float, or Unix nanoseconds as an int.
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
    if not _EARLIEST_TIMESTAMP <= whole <= _LATEST_TIMESTAMP:
        return ZERO_TIME
    moment = _in_zone(whole, tz)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if nanoseconds:
        text += "." + f"{nanoseconds:09d}".rstrip("0")
    minutes = _offset_minutes(moment)
    if minutes == 0:
        return text + "Z"
    sign = "+" if minutes > 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def _week_key(week_start_unix: int, tz: datetime.tzinfo | None) -> str:
    """
    The key of a weekly cycle in the file's costs: its start in C{tz}, as
    C{2026-03-09 08:00:00 UTC+8} (C{UTC+5:30} with minutes, C{UTC+0} for
    UTC).
    """
    moment = _in_zone(week_start_unix, tz)
    minutes = _offset_minutes(moment)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    zone = f"UTC{sign}{hours}" + (f":{minutes:02d}" if minutes else "")
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {zone}"
    )


def _parse_rfc3339(value: object) -> int | None:
    """
    Unix nanoseconds from an RFC 3339 timestamp with up to nine fractional
    digits; C{None} for Go's zero time and for anything that does not parse
    or lies outside the years ccm can write.
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
    if not _EARLIEST_TIMESTAMP <= whole <= _LATEST_TIMESTAMP:
        return None
    nanoseconds = int((match.group(7) or "").ljust(9, "0"))
    return whole * 1_000_000_000 + nanoseconds


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
    return UsageCounts(**{name: _integer(document.get(name), f"{path}.{name}") for name in _COUNT_NAMES})


def _combination_from_document(document: object, path: str) -> Combination:
    if not isinstance(document, dict):
        raise UsageFileError(f"{path}: not an object")
    model = document.get("model")
    if not isinstance(model, str):
        raise UsageFileError(f"{path}.model: not a string")
    context_window = _integer(document.get("context_window"), f"{path}.context_window")
    week_start_unix = _integer(document.get("week_start_unix"), f"{path}.week_start_unix")
    if week_start_unix > _LATEST_TIMESTAMP:
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
