# -*- test-case-name: tests.accounting.test_report -*-
"""
A usages file as tables for people: requests, tokens and costs by user, by
model and by week.

The figures are those of the file as ccm would write it now: the counts
are the snapshot's, and every cost is taken from the document
:obj:`ccm.accounting.document.to_document` makes of it, so the report and the
file always agree and the price formula lives in one place.  Traffic
without a user (the combination totals less the users' parts) is shown as
``(anonymous)``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ccm.accounting.counters import Combination, UsageCounts, UsageSnapshot
from ccm.accounting.document import to_document
from ccm.accounting.gojson import ZERO_TIME
from ccm.accounting.pricing import round_cents
from ccm.accounting.tokens import TOKEN_FIELDS, TokenCounts

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
    counts: UsageCounts = field(default_factory=UsageCounts)
    cost_usd: float = 0.0

    def add(self, counts: UsageCounts, cost_usd: float) -> None:
        """
        Add the counts of a statistics object and its cost.
        """
        self.counts += counts
        self.cost_usd += cost_usd

    def is_empty(self) -> bool:
        """
        Whether the row shows no request and no token.
        """
        return not any(_shown(self.counts))


def _shown(counts: UsageCounts) -> tuple[int, ...]:
    """
    The figures of the table's columns: requests, input, output, cache
    reads and cache writes (both lifetimes together).
    """
    tokens = counts.tokens
    return (
        counts.request_count,
        tokens.input_tokens,
        tokens.output_tokens,
        tokens.cache_read_input_tokens,
        tokens.cache_creation_input_tokens,
    )


def context_window_label(context_window: int) -> str:
    """
    A context window for people: ``200k``, ``1M``.
    """
    if context_window > 0 and context_window % 1_000_000 == 0:
        return f"{context_window // 1_000_000}M"
    if context_window > 0 and context_window % 1_000 == 0:
        return f"{context_window // 1_000}k"
    return f"{context_window:,}"


def week_label(week_start_unix: int, tz: datetime.tzinfo | None) -> str:
    """
    The date a weekly cycle starts on in ``tz`` (the local time zone when
    ``None``), such as ``2026-03-09``; ``(no week)`` for untagged usage.
    """
    if week_start_unix <= 0:
        return NO_WEEK
    moment = datetime.datetime.fromtimestamp(week_start_unix, datetime.timezone.utc).astimezone(tz)
    return moment.date().isoformat()


#: A combination with its entry in the document made of it, where its
#: costs are.
Priced = tuple[Combination, Mapping[str, Any]]


def priced(usage: UsageSnapshot, document: Mapping[str, Any]) -> list[Priced]:
    """
    Each combination of ``usage`` with its entry in ``document``, the
    document :obj:`to_document` made of ``usage``, which lists the combinations
    in the same order.
    """
    return list(zip(usage.combinations, document["combinations"]))


def rows_by_user(combinations: Iterable[Priced]) -> list[Row]:
    """
    One row per user, plus ``(anonymous)`` when the totals hold usage no
    user accounts for.
    """
    rows: dict[str, Row] = {}
    anonymous_counts = Row((ANONYMOUS,))
    anonymous_cost = 0.0
    for combination, entry in combinations:
        remainder = combination.total
        remainder_cost = entry["total"]["cost_usd"]
        for name, stats in entry["by_user"].items():
            row = rows.get(name)
            if row is None:
                row = rows[name] = Row((name,))
            counts = combination.by_user[name]
            row.add(counts, stats["cost_usd"])
            remainder = remainder - counts
            remainder_cost -= stats["cost_usd"]
        # Where the users account for every token, a cost left over is only
        # the rounding of the parts, not anonymous traffic.  A file whose
        # users add up to more than the total is inconsistent: nothing is
        # shown as anonymous for it rather than negative figures.
        if any(value > 0 for value in _shown(remainder)):
            anonymous_counts.add(_at_least_zero(remainder), 0.0)
            anonymous_cost += remainder_cost
    anonymous_counts.cost_usd = max(0.0, anonymous_cost)
    result = list(rows.values())
    if not anonymous_counts.is_empty():
        result.append(anonymous_counts)
    return result


def rows_by_model(combinations: Iterable[Priced]) -> list[Row]:
    """
    One row per model and context window, all weeks together.
    """
    return _group(
        combinations,
        lambda combination: (combination.model, context_window_label(combination.context_window)),
    )


def rows_by_week(combinations: Iterable[Priced], tz: datetime.tzinfo | None) -> list[Row]:
    """
    One row per week start date in ``tz``, all models together.
    """
    return _group(combinations, lambda combination: (week_label(combination.week_start_unix, tz),))


def format_table(
    title: str,
    label_headers: tuple[str, ...],
    rows: Iterable[Row],
    total_usd: float,
) -> list[str]:
    """
    A fixed-width table: the title, a header, the rows by cost (highest
    first, then by label), and a total row whose cost is ``total_usd``.
    """
    ordered = sorted(rows, key=lambda row: (-round_cents(row.cost_usd), row.labels))
    total = Row(("total",) + ("",) * (len(label_headers) - 1))
    for row in ordered:
        total.add(row.counts, 0.0)
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
    usage: UsageSnapshot,
    path: str,
    by: str = "all",
    tz: datetime.tzinfo | None = None,
) -> str:
    """
    The report of a usages file.

    :param usage: what the file holds.
    :param path: the file's path, for the header.
    :param by: ``"user"``, ``"model"`` or ``"week"`` for that table alone,
        ``"all"`` for the three.
    :param tz: the time zone of the dates shown; the local one when
        ``None``.
    :return: the text, ending with a newline.
    """
    if by != "all" and by not in SECTIONS:
        raise ValueError(f"unknown section {by!r}")
    document = to_document(usage, tz)
    last_updated = document["last_updated"]
    if last_updated == ZERO_TIME:
        last_updated = "never"
    lines = [f"Usage recorded in {_printable(path, None)}, last updated {last_updated}"]
    if not document["combinations"]:
        lines.append(NOTHING_RECORDED)
        return "\n".join(lines) + "\n"
    total_usd = document["costs"]["total_usd"]
    wanted = SECTIONS if by == "all" else (by,)
    lines += section_lines(wanted, priced(usage, document), total_usd, tz)
    return "\n".join(lines) + "\n"


def section_lines(
    wanted: Sequence[str],
    combinations: Sequence[Priced],
    total_usd: float,
    tz: datetime.tzinfo | None,
) -> list[str]:
    """
    The tables by user, model and week of ``combinations`` that ``wanted``
    names, each after an empty line, with ``total_usd`` as their total.
    """
    lines: list[str] = []
    if "user" in wanted:
        lines += ["", *format_table("By user", ("user",), rows_by_user(combinations), total_usd)]
    if "model" in wanted:
        lines += ["", *format_table("By model", ("model", "context"), rows_by_model(combinations), total_usd)]
    if "week" in wanted:
        lines += ["", *format_table("By week", ("week of",), rows_by_week(combinations, tz), total_usd)]
    return lines


def _at_least_zero(counts: UsageCounts) -> UsageCounts:
    """
    ``counts`` with every negative figure made 0.
    """
    return UsageCounts(
        max(0, counts.request_count),
        max(0, counts.messages_count),
        TokenCounts(*(max(0, getattr(counts.tokens, name)) for name in TOKEN_FIELDS)),
    )


def _group(combinations: Iterable[Priced], key: Callable[[Combination], tuple[str, ...]]) -> list[Row]:
    rows: dict[tuple[str, ...], Row] = {}
    for combination, entry in combinations:
        labels = key(combination)
        row = rows.get(labels)
        if row is None:
            row = rows[labels] = Row(labels)
        row.add(combination.total, entry["total"]["cost_usd"])
    return list(rows.values())


def _cells(row: Row) -> tuple[str, ...]:
    return tuple(_printable(label, MAX_LABEL_CHARACTERS) for label in row.labels) + tuple(
        f"{value:,}" for value in _shown(row.counts)
    ) + (f"{round_cents(row.cost_usd):,.2f}",)


def _printable(text: str, limit: int | None) -> str:
    """
    ``text`` safe to print on a terminal: characters that are not printable
    (control characters, line breaks) escaped, and at most ``limit``
    characters of it, with ``…`` when shortened.
    """
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
