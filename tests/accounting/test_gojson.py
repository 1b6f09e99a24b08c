"""
Tests for :obj:`ccm.accounting.gojson`: the usages file written byte for byte as
sing-box (Go) writes it.
"""

from __future__ import annotations

import datetime
import json
import os
import time

from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting.book import UsageBook
from ccm.accounting.document import serialize, to_document
from ccm.accounting.gojson import ZERO_TIME, encode, format_rfc3339, parse_rfc3339
from tests.accounting.samples import EXPECTED_EMPTY_BOOK, EXPECTED_SMALL_BOOK, small_book
from tests.fixtures import NOW, UTC, UTC_PLUS_8, clock_at, record


class SerializeTests(SynchronousTestCase):
    """
    :obj:`UsageBook.serialize` writes the file byte for byte as sing-box does.
    """

    def test_small_book(self) -> None:
        """
        Two-space indentation, the reference's key order, zero 5m/1h fields
        omitted, integral costs without ``.0``, the week omitted when 0,
        ``by_user`` always present, no trailing newline, and
        ``last_updated`` with a trimmed fraction and the zone's offset.
        """
        self.assertEqual(serialize(small_book(clock_at()).snapshot(), UTC_PLUS_8), EXPECTED_SMALL_BOOK.encode())

    def test_never_updated(self) -> None:
        """
        An empty book is written with Go's zero time and empty maps and
        list.
        """
        self.assertEqual(serialize(UsageBook(clock_at()).snapshot(), UTC_PLUS_8), EXPECTED_EMPTY_BOOK.encode())

    def test_time_zones(self) -> None:
        """
        ``last_updated`` is RFC 3339 with nanoseconds trimmed of trailing
        zeros (none at all for whole seconds) and ``Z`` for UTC; week keys
        give the offset as ``UTC+0``, ``UTC-5`` or ``UTC+5:30``.
        """
        cases = [
            (UTC, NOW, "2026-03-14T13:15:13.25Z", "2026-03-09 00:00:00 UTC+0"),
            (datetime.timezone(datetime.timedelta(hours=-5)), 1_773_494_113.0,
             "2026-03-14T08:15:13-05:00", "2026-03-08 19:00:00 UTC-5"),
            (datetime.timezone(datetime.timedelta(hours=5, minutes=30)), 1_773_494_113.5,
             "2026-03-14T18:45:13.5+05:30", "2026-03-09 05:30:00 UTC+5:30"),
            (datetime.timezone(-datetime.timedelta(hours=3, minutes=30)), 1_773_494_113.125,
             "2026-03-14T09:45:13.125-03:30", "2026-03-08 20:30:00 UTC-3:30"),
        ]
        for tz, now, last_updated, week_key in cases:
            book = UsageBook(clock_at(now))
            record(book, output_tokens=4000)
            document = to_document(book.snapshot(), tz)
            self.assertEqual(document["last_updated"], last_updated)
            self.assertEqual(list(document["costs"]["by_week"]), [week_key])

    def test_nanoseconds(self) -> None:
        """
        A clock time with a sub-microsecond fraction is written to the
        nanosecond nearest the float, trailing zeros trimmed.
        """
        book = UsageBook(clock_at(1_773_494_113.0))
        record(book, output_tokens=1)
        book.last_updated = 1_773_494_113 + 0.5 + 2**-22  # .500000238418579...
        self.assertEqual(to_document(book.snapshot(), UTC)["last_updated"], "2026-03-14T13:15:13.500000238Z")

    def test_local_time_zone_by_default(self) -> None:
        """
        Without a time zone, the host's local one is used, as the reference
        does.
        """
        previous = os.environ.get("TZ")

        def restore() -> None:
            if previous is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = previous
            time.tzset()

        self.addCleanup(restore)
        os.environ["TZ"] = "XYZ-8"  # POSIX: 8 hours east of UTC
        time.tzset()
        book = small_book(clock_at())
        self.assertEqual(serialize(book.snapshot()), EXPECTED_SMALL_BOOK.encode())

    def test_strings_escaped_like_go(self) -> None:
        """
        Non-ASCII names are written as UTF-8; ``<``, ``>`` and ``&`` are
        escaped as Go's encoder does; the result is valid JSON naming the
        same user.
        """
        book = UsageBook(clock_at())
        record(book, user="Zoë <ops&dev>", output_tokens=1)
        data = serialize(book.snapshot(), UTC)
        self.assertIn('"Zoë \\u003cops\\u0026dev\\u003e"'.encode(), data)
        self.assertEqual(list(json.loads(data)["costs"]["by_user"]), ["Zoë <ops&dev>"])

    def test_user_keys_sorted(self) -> None:
        """
        Users are written in sorted order whatever order they came in.
        """
        book = UsageBook(clock_at())
        for name in ("carol", "alice", "bob"):
            record(book, user=name, output_tokens=1)
        document = to_document(book.snapshot(), UTC)
        self.assertEqual(list(document["costs"]["by_user"]), ["alice", "bob", "carol"])
        self.assertEqual(list(document["combinations"][0]["by_user"]), ["alice", "bob", "carol"])


class EncodeTests(SynchronousTestCase):
    """
    :obj:`encode` writes any document as Go's ``MarshalIndent`` does.
    """

    def test_numbers(self) -> None:
        """
        Integral floats lose their ``.0``, at any depth; other numbers are
        written as Python writes them.
        """
        self.assertEqual(
            encode({"a": [12.0, 0.5, 3], "b": {"d": 1e20}}),
            b'{\n  "a": [\n    12,\n    0.5,\n    3\n  ],\n  "b": {\n    "d": 100000000000000000000\n  }\n}',
        )

    def test_strings(self) -> None:
        """
        ``<>&`` and the two line separators are escaped, other characters
        written as UTF-8, and a lone surrogate, which Go cannot hold, is
        replaced by U+FFFD.
        """
        self.assertEqual(
            encode(["<a&b>", "line\u2028para\u2029", "caf\u00e9", "x\ud800y"]),
            '[\n  "\\u003ca\\u0026b\\u003e",\n  "line\\u2028para\\u2029",\n  "caf\u00e9",\n  "x\ufffdy"\n]'.encode(
                "utf-8"
            ),
        )


class TimeTests(SynchronousTestCase):
    """
    :obj:`format_rfc3339` and :obj:`parse_rfc3339` write and read Go's
    ``time.RFC3339Nano``.
    """

    def test_round_trip(self) -> None:
        """
        Nanoseconds given as an int are written exactly and read back
        exactly, in any offset.
        """
        nanoseconds = 1_773_494_113_123_456_789
        text = format_rfc3339(nanoseconds, UTC_PLUS_8)
        self.assertEqual(text, "2026-03-14T21:15:13.123456789+08:00")
        self.assertEqual(parse_rfc3339(text), nanoseconds)

    def test_outside_go_years(self) -> None:
        """
        Times Go cannot write (before year 1, after 9999, not finite) and
        ``None`` are written as Go's zero time, which reads back as ``None``.
        """
        for time_value in (None, float("nan"), float("inf"), -1e12, 1e12, 10**30):
            self.assertEqual(format_rfc3339(time_value, UTC), ZERO_TIME, time_value)
        self.assertIsNone(parse_rfc3339(ZERO_TIME))
