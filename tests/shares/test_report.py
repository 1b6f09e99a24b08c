"""
Tests for :obj:`ccm.shares.report`: the share files as ``ccm usage``'s
"Shares" table.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from ccm.pool.figures import Window
from ccm.shares.files import share_document
from ccm.shares.ledger import FIVE_HOUR, WEEKLY, ShareBook
from ccm.shares.standing import Entitlement, Shares
from ccm.shares.report import NOTE, format_shares, read_share_file
from tests.fixtures import UTC

NOW = 1_800_000_000.0
#: 2027-01-15 09:00 UTC.
RESET = 1_800_000_000.0 + 3600


def known_book() -> ShareBook:
    """
    Credential ``a`` of plan weight 5: alice's request ran while the
    5-hour window rose from 10 % to 12 % (10 units), then a 1 % rise ran
    nobody's request (5 units outside ccm); the weekly window stood still.
    """
    book = ShareBook()
    book.observe("a", {FIVE_HOUR: Window(10, RESET), WEEKLY: Window(3, RESET + 86400)}, 5.0, NOW - 300)
    key = book.begin("a", "alice", NOW - 300)
    book.finish(key, 1.0, NOW - 200)
    book.observe("a", {FIVE_HOUR: Window(12, RESET), WEEKLY: Window(3, RESET + 86400)}, 5.0, NOW - 100)
    book.observe("a", {FIVE_HOUR: Window(13, RESET), WEEKLY: Window(3, RESET + 86400)}, 5.0, NOW - 50)
    return book


#: What the file of :obj:`known_book` records of its users: a pool of
#: credential ``a`` alone (500 units); alice has shares of 4 % (20 units)
#: and 1 %, bob of 10 % of the 5-hour window, carol none.
USERS = {
    "a": {
        "alice": Entitlement(500.0, Shares(4, 1)),
        "bob": Entitlement(500.0, Shares(five_hour=10)),
        "carol": Entitlement(500.0),
    }
}
HEADER = [
    "user           window  share  used  remaining  used (Pro-%)        next reset",
    "-------------  ------  -----  ----  ---------  ------------  ----------------",
]


class FormatTests(SynchronousTestCase):
    """
    :obj:`format_shares`.
    """

    def test_table(self) -> None:
        """
        One row per user with a charge or a share, and window: alice's 10
        units are 2.0 % of the pool's 500, leaving 2.0 % of her 4 %, until
        the window resets; her weekly 1 % is untouched, with no reset to
        wait for; bob's 10 % is all left; carol, without a share or a
        charge, has no row.  The rises nobody's request ran in are their
        own row, in Pro-percent only.
        """
        lines = format_shares(known_book(), ["a"], NOW, UTC, USERS)
        self.assertEqual(lines[:2], ["Shares", NOTE])
        self.assertEqual(
            lines[2:],
            [
                *HEADER,
                "alice          5-hour     4%  2.0%       2.0%         10.00  2027-01-15 09:00",
                "alice          weekly     1%  0.0%       1.0%          0.00                 -",
                "bob            5-hour    10%  0.0%      10.0%          0.00                 -",
                "bob            weekly      -  0.0%          -          0.00                 -",
                "(outside ccm)  5-hour      -     -          -          5.00  2027-01-15 09:00",
            ],
        )

    def test_over_share(self) -> None:
        """
        Over a 1.5 % share (7.5 units), what remains is 0, and the next
        reset is when it frees up.
        """
        users = {"a": {"alice": Entitlement(500.0, Shares(1.5))}}
        lines = format_shares(known_book(), ["a"], NOW, UTC, users)
        self.assertIn("alice          5-hour   1.5%  2.0%       0.0%         10.00  2027-01-15 09:00", lines)

    def test_older_file(self) -> None:
        """
        A file that records no users (saved before ccm did) gives the
        charges in Pro-percent, and ``-`` for share, used and remaining.
        """
        lines = format_shares(known_book(), ["a"], NOW, UTC)
        self.assertEqual(
            lines[4:],
            [
                "alice          5-hour      -     -          -         10.00  2027-01-15 09:00",
                "alice          weekly      -     -          -          0.00                 -",
                "(outside ccm)  5-hour      -     -          -          5.00  2027-01-15 09:00",
            ],
        )

    def test_several_files(self) -> None:
        """
        alice's use is summed over the files of her pool's two credentials
        (10 units on each, 20 of the 1000 the pool holds: 2.0 %), against
        the entitlement the first file records.
        """
        book = known_book()
        book.restore("b", book.snapshot()["a"], NOW)
        users = {tag: {"alice": Entitlement(1000.0, Shares(five_hour=3))} for tag in ("a", "b")}
        lines = format_shares(book, ["a", "b"], NOW, UTC, users)
        self.assertIn("alice          5-hour     3%  2.0%       1.0%         20.00  2027-01-15 09:00", lines)

    def test_reset_windows_are_empty(self) -> None:
        """
        Once the 5-hour window has reset, its charges read as 0, as they
        do for the proxy.
        """
        users = {"a": {"alice": Entitlement(500.0, Shares(4, 1))}}
        lines = format_shares(known_book(), ["a"], RESET + 1, UTC, users)
        self.assertEqual(
            lines[4:],
            [
                "alice  5-hour     4%  0.0%       4.0%          0.00           -",
                "alice  weekly     1%  0.0%       1.0%          0.00           -",
            ],
        )


class ReadTests(SynchronousTestCase):
    """
    :obj:`read_share_file`: a file the service saved, or a clear reason.
    """

    def setUp(self) -> None:
        self.path = os.path.join(os.path.abspath(self.mktemp()))

    def write(self, content: bytes) -> None:
        with open(self.path, "wb") as handle:
            handle.write(content)

    def test_round_trip(self) -> None:
        """
        The file written from a book's snapshot gives back its charges.
        """
        self.write(share_document(known_book().snapshot()["a"], USERS["a"]))
        book = ShareBook()
        self.assertEqual(read_share_file(book, "x", self.path, NOW), USERS["a"])
        self.assertEqual(book.charged("alice", "x", FIVE_HOUR, NOW), 10.0)

    def test_broken(self) -> None:
        """
        Invalid JSON, another version or another structure is one
        ``ValueError`` whose text says what is wrong.
        """
        for content, reason in (
            (b"{", "is not valid JSON at line 1 column 2"),
            (b'{"version": 2, "windows": {}}', "is not a share file: not a version 1 share file"),
            (b'{"version": 1, "windows": {"5-hour": 3}}', "is not a share file: not a share ledger"),
            (
                json.dumps({"version": 1, "windows": known_book().snapshot()["a"], "users": []}).encode(),
                "is not a share file: not a share file's users",
            ),
        ):
            self.write(content)
            with self.assertRaises(ValueError) as raised:
                read_share_file(ShareBook(), "x", self.path, NOW)
            self.assertIn(reason, str(raised.exception))
