# -*- test-case-name: tests.accounting.test_team -*-
"""
Several usages files as one team's report: the tables of
:obj:`ccm.accounting.report` by user, model and week over every file
together, and one more by credential, where each file is a credential (each
default credential has a ``usages_path`` of its own).

Each file is priced as :obj:`ccm.accounting.report.format_report` prices it
(its own document, costs per combination rounded to cents), so a file's row
here equals its total there, and the total is the sum of the files'.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from ccm.accounting.counters import UsageCounts, UsageSnapshot
from ccm.accounting.document import to_document
from ccm.accounting.gojson import ZERO_TIME
from ccm.accounting.pricing import round_cents
from ccm.accounting.report import (
    NOTHING_RECORDED,
    SECTIONS,
    Priced,
    Row,
    format_table,
    priced,
    section_lines,
)

#: The tables of a team report: the single report's, and by credential.
TEAM_SECTIONS = (*SECTIONS, "credential")


def format_team_report(
    files: Sequence[tuple[str, UsageSnapshot]],
    by: str = "all",
    tz: datetime.tzinfo | None = None,
) -> str:
    """
    The report of several usages files together.

    :param files: each file's label (its path as given) and what it holds.
    :param by: one of :obj:`TEAM_SECTIONS` for that table alone, ``"all"``
        for the four.
    :param tz: the time zone of the dates shown; the local one when
        ``None``.
    :return: the text, ending with a newline.
    """
    if by != "all" and by not in TEAM_SECTIONS:
        raise ValueError(f"unknown section {by!r}")
    combinations: list[Priced] = []
    by_credential: list[Row] = []
    total_usd = 0.0
    newest: tuple[float, str] | None = None
    for label, usage in files:
        document = to_document(usage, tz)
        combinations += priced(usage, document)
        row = Row((label,))
        row.add(sum((c.total for c in usage.combinations), UsageCounts()), document["costs"]["total_usd"])
        by_credential.append(row)
        total_usd += document["costs"]["total_usd"]
        if usage.last_updated is not None and (newest is None or usage.last_updated > newest[0]):
            newest = (usage.last_updated, document["last_updated"])
    last_updated = "never" if newest is None or newest[1] == ZERO_TIME else newest[1]
    lines = [f"Usage recorded in {len(files)} files, last updated {last_updated}"]
    if not combinations:
        lines.append(NOTHING_RECORDED)
        return "\n".join(lines) + "\n"
    total_usd = round_cents(total_usd)
    wanted = TEAM_SECTIONS if by == "all" else (by,)
    lines += section_lines(wanted, combinations, total_usd, tz)
    if "credential" in wanted:
        lines += ["", *format_table("By credential (usage file)", ("file",), by_credential, total_usd)]
    return "\n".join(lines) + "\n"
