# -*- test-case-name: tests.accounting.test_report -*-
"""
A usages file as tables for people: requests, tokens and costs by user, by
model and by week.

The figures are those of the file as ccm would write it now: every cost is
taken from L{UsageBook.to_document}, so the report and the file always agree
and the price formula lives in one place.  Traffic without a user (the
combination totals less the users' parts) is shown as C{(anonymous)}.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ccm.accounting.pricing import round_cents
from ccm.accounting.book import ZERO_TIME, UsageBook

SECTIONS = ("user", "model", "week")
ANONYMOUS = "(anonymous)"
NO_WEEK = "(no week)"
NOTHING_RECORDED = "No usage has been recorded yet."
MAX_LABEL_CHARACTERS = 60

_COUNT_HEADERS = ("requests", "input", "output", "cache read", "cache write (5m+1h)", "cost USD")


@dataclass
class Row:
    """
    One line of a table: its labels, the counts it adds up and its cost in
    USD (a sum of per-combination costs already rounded to cents).
    """

    labels: tuple[str, ...]
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, stats: Mapping[str, Any], cost_usd: float) -> None:
        """
        Add a statistics object of the usages document and its cost.
        """
        self.requests += stats.get("request_count", 0)
        self.input_tokens += stats.get("input_tokens", 0)
        self.output_tokens += stats.get("output_tokens", 0)
        self.cache_read_tokens += stats.get("cache_read_input_tokens", 0)
        self.cache_write_tokens += stats.get("cache_creation_input_tokens", 0)
        self.cost_usd += cost_usd

    def is_empty(self) -> bool:
        """
        Whether the row counts no request and no token.
        """
        return not (
            self.requests
            or self.input_tokens
            or self.output_tokens
            or self.cache_read_tokens
            or self.cache_write_tokens
        )


def context_window_label(context_window: int) -> str:
    """
    A context window for people: C{200k}, C{1M}.
    """
    if context_window > 0 and context_window % 1_000_000 == 0:
        return f"{context_window // 1_000_000}M"
    if context_window > 0 and context_window % 1_000 == 0:
        return f"{context_window // 1_000}k"
    return f"{context_window:,}"


def week_label(week_start_unix: int, tz: datetime.tzinfo | None) -> str:
    """
    The date a weekly cycle starts on in C{tz} (the local time zone when
    C{None}), such as C{2026-03-09}; C{(no week)} for untagged usage.
    """
    if week_start_unix <= 0:
        return NO_WEEK
    moment = datetime.datetime.fromtimestamp(week_start_unix, datetime.timezone.utc).astimezone(tz)
    return moment.date().isoformat()


def rows_by_user(document: Mapping[str, Any]) -> list[Row]:
    """
    One row per user, plus C{(anonymous)} when the totals hold usage no
    user accounts for, from a usages document.
    """
    rows: dict[str, Row] = {}
    anonymous_counts = Row((ANONYMOUS,))
    anonymous_cost = 0.0
    for combination in document["combinations"]:
        total = combination["total"]
        remainder = {name: total.get(name, 0) for name in _COUNT_NAMES}
        remainder_cost = total["cost_usd"]
        for name, stats in combination["by_user"].items():
            row = rows.get(name)
            if row is None:
                row = rows[name] = Row((name,))
            row.add(stats, stats["cost_usd"])
            for key in _COUNT_NAMES:
                remainder[key] -= stats.get(key, 0)
            remainder_cost -= stats["cost_usd"]
        # Where the users account for every token, a cost left over is only
        # the rounding of the parts, not anonymous traffic.  A file whose
        # users add up to more than the total is inconsistent: nothing is
        # shown as anonymous for it rather than negative figures.
        if any(value > 0 for value in remainder.values()):
            anonymous_counts.add({key: max(0, value) for key, value in remainder.items()}, 0.0)
            anonymous_cost += remainder_cost
    anonymous_counts.cost_usd = max(0.0, anonymous_cost)
    result = list(rows.values())
    if not anonymous_counts.is_empty():
        result.append(anonymous_counts)
    return result


def rows_by_model(document: Mapping[str, Any]) -> list[Row]:
    """
    One row per model and context window, all weeks together, from a
    usages document.
    """
    return _group(
        document,
        lambda combination: (combination["model"], context_window_label(combination["context_window"])),
    )


def rows_by_week(document: Mapping[str, Any], tz: datetime.tzinfo | None) -> list[Row]:
    """
    One row per week start date in C{tz}, all models together, from a
    usages document.
    """
    return _group(document, lambda combination: (week_label(combination.get("week_start_unix", 0), tz),))


def format_table(
    title: str,
    label_headers: tuple[str, ...],
    rows: Iterable[Row],
    total_usd: float,
) -> list[str]:
    """
    A fixed-width table: the title, a header, the rows by cost (highest
    first, then by label), and a total row whose cost is C{total_usd}.
    """
    ordered = sorted(rows, key=lambda row: (-round_cents(row.cost_usd), row.labels))
    total = Row(("total",) + ("",) * (len(label_headers) - 1))
    for row in ordered:
        total.add(
            {
                "request_count": row.requests,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "cache_read_input_tokens": row.cache_read_tokens,
                "cache_creation_input_tokens": row.cache_write_tokens,
            },
            0.0,
        )
    total.cost_usd = total_usd
    cells = [_cells(row) for row in ordered]
    total_cells = _cells(total)
    headers = label_headers + _COUNT_HEADERS
    widths = [max(len(line[i]) for line in [headers, total_cells, *cells]) for i in range(len(headers))]
    labels = len(label_headers)

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            value.ljust(width) if i < labels else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [title, line(headers), rule, *(line(row) for row in cells), rule, line(total_cells)]


def format_report(
    book: UsageBook,
    path: str,
    by: str = "all",
    tz: datetime.tzinfo | None = None,
) -> str:
    """
    The report of a usages file.

    :param book: what the file holds.
    :param path: the file's path, for the header.
    :param by: C{"user"}, C{"model"} or C{"week"} for that table alone,
        C{"all"} for the three.
    :param tz: the time zone of the dates shown; the local one when
        C{None}.
    :return: the text, ending with a newline.
    """
    if by != "all" and by not in SECTIONS:
        raise ValueError(f"unknown section {by!r}")
    document = book.to_document(tz)
    last_updated = document["last_updated"]
    if last_updated == ZERO_TIME:
        last_updated = "never"
    lines = [f"Usage recorded in {_printable(path, None)}, last updated {last_updated}"]
    if not document["combinations"]:
        lines.append(NOTHING_RECORDED)
        return "\n".join(lines) + "\n"
    total_usd = document["costs"]["total_usd"]
    wanted = SECTIONS if by == "all" else (by,)
    if "user" in wanted:
        lines += ["", *format_table("By user", ("user",), rows_by_user(document), total_usd)]
    if "model" in wanted:
        lines += ["", *format_table("By model", ("model", "context"), rows_by_model(document), total_usd)]
    if "week" in wanted:
        lines += ["", *format_table("By week", ("week of",), rows_by_week(document, tz), total_usd)]
    return "\n".join(lines) + "\n"


_COUNT_NAMES = (
    "request_count",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def _group(document: Mapping[str, Any], key: Callable[[Mapping[str, Any]], tuple[str, ...]]) -> list[Row]:
    rows: dict[tuple[str, ...], Row] = {}
    for combination in document["combinations"]:
        labels = key(combination)
        row = rows.get(labels)
        if row is None:
            row = rows[labels] = Row(labels)
        row.add(combination["total"], combination["total"]["cost_usd"])
    return list(rows.values())


def _cells(row: Row) -> tuple[str, ...]:
    return tuple(_printable(label, MAX_LABEL_CHARACTERS) for label in row.labels) + (
        f"{row.requests:,}",
        f"{row.input_tokens:,}",
        f"{row.output_tokens:,}",
        f"{row.cache_read_tokens:,}",
        f"{row.cache_write_tokens:,}",
        f"{round_cents(row.cost_usd):,.2f}",
    )


def _printable(text: str, limit: int | None) -> str:
    """
    C{text} safe to print on a terminal: characters that are not printable
    (control characters, line breaks) escaped, and at most C{limit}
    characters of it, with C{…} when shortened.
    """
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
