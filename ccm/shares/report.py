# -*- test-case-name: tests.shares.test_report -*-
"""
The share files beside usages files (:obj:`ccm.shares.files`) as a table
for ``ccm usage``: what each user was charged in each window, read only.

The figures are the ledger's own (:obj:`ccm.shares.ledger.ShareBook`,
restored from the files as the service restores them), so a window whose
reset time has passed reads as empty here as it does for the proxy.  The
charges are in Pro-percent (1 is 1 % of one Pro plan's window).  A share
file holds no plan weights, so the pool's capacity, and the charges as a
percentage of it, cannot be told from it; the table says so rather than
guess.
"""

from __future__ import annotations

import datetime
from typing import Sequence

from ccm.files import JSONFileError
from ccm.shares.files import read_share_windows
from ccm.shares.ledger import WINDOWS, ShareBook

#: The user of the rises no request of ccm's ran in.
OUTSIDE = "(outside ccm)"
NO_CAPACITY = (
    "Used in Pro-percent (1 = 1% of one Pro plan's window). The share files do not record "
    "the plans' weights, so the pool's capacity and each user's percentage of it are not "
    "known here: ccm's dashboard and /ccm/v1/status show those."
)


def read_share_file(book: ShareBook, tag: str, path: str, now: float) -> None:
    """
    Restore the share file at ``path`` into ``book`` as credential ``tag``.

    :raises ValueError: when the file cannot be read or is not a share
        file, with a reason that follows the file's name.
    """
    try:
        book.restore(tag, read_share_windows(path), now)
    except JSONFileError as error:
        raise ValueError(error.reason) from None
    except ValueError as error:
        raise ValueError(f"is not a share file: {error}") from None


def _when(at: float, tz: datetime.tzinfo | None) -> str:
    if at <= 0:
        return "-"
    return datetime.datetime.fromtimestamp(at, tz).strftime("%Y-%m-%d %H:%M")


def format_shares(book: ShareBook, tags: Sequence[str], now: float, tz: datetime.tzinfo | None) -> list[str]:
    """
    The "Shares" table of credentials ``tags`` of ``book``: each user's
    charges in each window, summed over the credentials, with when the
    earliest of those windows resets; then the rises no request of ccm's
    ran in.  Users by name, windows in order.
    """
    snapshot = book.snapshot()
    users = sorted({u for tag in tags for w in snapshot.get(tag, {}).values() for u in w["charges"]})
    rows: list[tuple[str, ...]] = []
    for user in [*users, OUTSIDE]:
        for name in WINDOWS:
            if user == OUTSIDE:
                uses = {tag: book.unattributed(tag, name, now) for tag in tags}
            else:
                uses = {tag: book.charged(user, tag, name, now) for tag in tags}
            used = sum(uses.values())
            if user == OUTSIDE and used <= 0:
                continue
            resets = [book.resets_at(tag, name, now) for tag, units in uses.items() if units > 0]
            rows.append((user, name.value, f"{used:.2f}", _when(min(resets, default=0.0), tz)))
    headers = ("user", "window", "used (Pro-%)", "window resets")
    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            value.ljust(width) if i < 2 else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return ["Shares", NO_CAPACITY, line(headers), rule, *(line(row) for row in rows)]
