# -*- test-case-name: tests.shares.test_report -*-
"""
The share files beside usages files (:obj:`ccm.shares.files`) as a table
for ``ccm usage``: each user's share of each window, what they used of it,
what remains and when their use next falls, read only.

The figures are the ledger's own (:obj:`ccm.shares.ledger.ShareBook`,
restored from the files as the service restores them), and the standing
is computed as the proxy computes it (:obj:`ccm.shares.standing.figures_over`),
against the shares and pool capacity each file recorded when it was saved.
So a window whose reset time has passed reads as empty here as it does for
the proxy.  Use is also given in Pro-percent (1 is 1 % of one Pro plan's
window), which needs no capacity: a file saved before shares were recorded
shows only that, and ``-`` for the rest.
"""

from __future__ import annotations

import datetime
from typing import Mapping, Sequence

from ccm.files import JSONFileError
from ccm.shares.files import read_share_document, users_of
from ccm.shares.ledger import WINDOWS, ShareBook
from ccm.shares.standing import Entitlement, figures_over, uses_of

#: The user of the rises no request of ccm's ran in.
OUTSIDE = "(outside ccm)"
NOTE = (
    "Share, used, remaining: percent of the user's pool's window, against the shares and "
    "capacity last saved. used (Pro-%): 1 = 1% of one Pro plan's window. -: not known."
)


def read_share_file(book: ShareBook, tag: str, path: str, now: float) -> dict[str, Entitlement]:
    """
    Restore the share file at ``path`` into ``book`` as credential ``tag``.

    :return: the users it records (none for an older file).
    :raises ValueError: when the file cannot be read or is not a share
        file, with a reason that follows the file's name.
    """
    try:
        document = read_share_document(path)
        book.restore(tag, document["windows"], now)
        return users_of(document)
    except JSONFileError as error:
        raise ValueError(error.reason) from None
    except ValueError as error:
        raise ValueError(f"is not a share file: {error}") from None


def _when(at: float, tz: datetime.tzinfo | None) -> str:
    if at <= 0:
        return "-"
    return datetime.datetime.fromtimestamp(at, tz).strftime("%Y-%m-%d %H:%M")


def _entitlements(
    tags: Sequence[str], users: Mapping[str, Mapping[str, Entitlement]]
) -> dict[str, Entitlement]:
    """Each user's entitlement, from the first file (in ``tags`` order) recording one."""
    found: dict[str, Entitlement] = {}
    for tag in tags:
        for name, entitlement in users.get(tag, {}).items():
            found.setdefault(name, entitlement)
    return found


def format_shares(
    book: ShareBook,
    tags: Sequence[str],
    now: float,
    tz: datetime.tzinfo | None,
    users: Mapping[str, Mapping[str, Entitlement]] | None = None,
) -> list[str]:
    """
    The "Shares" table of credentials ``tags`` of ``book``, whose files
    recorded ``users`` (by tag, then name): for each user charged or with
    a share, and each window, their share, their use summed over the
    credentials, what remains and when their use next falls; then the
    rises no request of ccm's ran in.  Users by name, windows in order.
    """
    snapshot = book.snapshot()
    entitled = _entitlements(tags, users or {})
    charged = {u for tag in tags for w in snapshot.get(tag, {}).values() for u in w["charges"]}
    shared = {name for name, e in entitled.items() if e.shares}
    rows: list[tuple[str, ...]] = []
    for user in [*sorted(charged | shared), OUTSIDE]:
        for name in WINDOWS:
            if user == OUTSIDE:
                uses = {tag: book.unattributed(tag, name, now) for tag in tags}
            else:
                uses = uses_of(book, user, tags, name, now)
            units = sum(uses.values())
            if user == OUTSIDE and units <= 0:
                continue
            resets = [book.resets_at(tag, name, now) for tag, used in uses.items() if used > 0]
            reset = min(resets, default=0.0)
            share = used = remaining = "-"
            entitlement = entitled.get(user)
            if entitlement is not None and entitlement.capacity > 0:
                figures = figures_over(
                    book, uses, entitlement.shares.of(name), entitlement.capacity, name, now
                )
                used = f"{figures.used:.1f}%"
                if figures.share > 0:
                    share, remaining = f"{figures.share:g}%", f"{figures.remaining:.1f}%"
                    reset = figures.resets_at
            rows.append((user, name.value, share, used, remaining, f"{units:.2f}", _when(reset, tz)))
    headers = ("user", "window", "share", "used", "remaining", "used (Pro-%)", "next reset")
    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            value.ljust(width) if i < 2 else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return ["Shares", NOTE, line(headers), rule, *(line(row) for row in rows)]
