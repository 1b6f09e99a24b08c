"""
Tests for :obj:`ccm.shares.report`: the share files as ``ccm usage``'s
"Shares" table.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from ccm.pool.figures import Window
from ccm.shares.files import share_document
from ccm.shares.ledger import FIVE_HOUR, WEEKLY, ShareBook
from ccm.shares.report import NO_CAPACITY, format_shares, read_share_file
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


class FormatTests(SynchronousTestCase):
    """
    :obj:`format_shares`.
    """

    def test_table(self) -> None:
        """
        One row per user and window, in Pro-percent, with the window's
        reset; the rises nobody's request ran in are their own row; the
        missing capacity is said.
        """
        lines = format_shares(known_book(), ["a"], NOW, UTC)
        self.assertEqual(lines[:2], ["Shares", NO_CAPACITY])
        self.assertEqual(
            lines[2:],
            [
                "user           window  used (Pro-%)     window resets",
                "-------------  ------  ------------  ----------------",
                "alice          5-hour         10.00  2027-01-15 09:00",
                "alice          weekly          0.00                 -",
                "(outside ccm)  5-hour          5.00  2027-01-15 09:00",
            ],
        )

    def test_reset_windows_are_empty(self) -> None:
        """
        Once the 5-hour window has reset, its charges read as 0, as they
        do for the proxy.
        """
        lines = format_shares(known_book(), ["a"], RESET + 1, UTC)
        self.assertEqual(
            lines[4:],
            ["alice  5-hour          0.00              -", "alice  weekly          0.00              -"],
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
        self.write(share_document(known_book().snapshot()["a"]))
        book = ShareBook()
        read_share_file(book, "x", self.path, NOW)
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
        ):
            self.write(content)
            with self.assertRaises(ValueError) as raised:
                read_share_file(ShareBook(), "x", self.path, NOW)
            self.assertIn(reason, str(raised.exception))
