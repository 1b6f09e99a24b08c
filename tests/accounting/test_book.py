"""
Tests for L{ccm.accounting.book}: counting usage per combination and user, the
costs and bytes of the usages file, loading files (sing-box's included,
corrupt ones moved aside), atomic saves, and the saver service.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
import time
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.accounting.meter import TokenUsage
from ccm.accounting.book import (
    WEEK_SECONDS,
    Combination,
    UsageBook,
    UsageCounts,
    UsageFileError,
    week_start_from_headers,
)
from ccm.accounting.usagefile import FIRST_SAVE_DELAY_SECONDS, UsageFile, UsageSaverService

UTC = datetime.timezone.utc
UTC_PLUS_8 = datetime.timezone(datetime.timedelta(hours=8))
# 2026-03-09 00:00:00 UTC, 08:00 in UTC+8: the week of the reference's example.
WEEK_1 = 1_773_014_400
WEEK_2 = WEEK_1 + WEEK_SECONDS
WEEK_1_KEY = "2026-03-09 08:00:00 UTC+8"
WEEK_2_KEY = "2026-03-16 08:00:00 UTC+8"
# 2026-03-14 13:15:13.25 UTC; 21:15:13.25 in UTC+8.
NOW = 1_773_494_113.25
OPUS = "claude-opus-4-8"
STANDARD = 200_000
PREMIUM = 1_000_000


def clock_at(seconds: float = NOW) -> Clock:
    """
    A fake clock showing C{seconds}.
    """
    clock = Clock()
    clock.advance(seconds)
    return clock


def usage(**counts: int) -> TokenUsage:
    """
    A L{TokenUsage} with the given counts and no model (the book is given
    the model separately).
    """
    return TokenUsage(**counts)


def record(
    book: UsageBook,
    *,
    model: str = OPUS,
    context_window: int = STANDARD,
    week: int = WEEK_1,
    user: str = "alice",
    messages: int = 1,
    **counts: int,
) -> None:
    """
    Record one response in C{book}.
    """
    book.record(
        model=model,
        context_window=context_window,
        week_start_unix=week,
        user=user,
        usage=usage(**counts),
        messages=messages,
    )


def reset_headers(*values: bytes) -> Headers:
    """
    Response headers with the given weekly reset values.
    """
    return Headers({b"anthropic-ratelimit-unified-7d-reset": list(values)})


def log_text(events: EventLoggingObserver) -> list[str]:
    """
    The formatted text of the captured log events.
    """
    return [formatEvent(event) for event in events]


class WeekStartFromHeadersTests(SynchronousTestCase):
    """
    L{week_start_from_headers} tags a response with its weekly cycle.
    """

    def test_valid(self) -> None:
        """
        The cycle starts a week before the weekly reset.
        """
        self.assertEqual(week_start_from_headers(reset_headers(str(WEEK_2).encode())), WEEK_1)

    def test_rounded_to_nearest_hour(self) -> None:
        """
        A reset that jitters by up to half an hour either way gives the same
        cycle; exactly half an hour late rounds up to the next hour.
        """
        for jitter in (-1800, -1, 1, 1799):
            value = str(WEEK_2 + jitter).encode()
            self.assertEqual(week_start_from_headers(reset_headers(value)), WEEK_1, jitter)
        value = str(WEEK_2 + 1800).encode()
        self.assertEqual(week_start_from_headers(reset_headers(value)), WEEK_1 + 3600)

    def test_surrounding_whitespace(self) -> None:
        """
        Whitespace around the number is tolerated.
        """
        value = b" " + str(WEEK_2).encode() + b"\t"
        self.assertEqual(week_start_from_headers(reset_headers(value)), WEEK_1)

    def test_absent(self) -> None:
        """
        Without the header the response is untagged (0).
        """
        self.assertEqual(week_start_from_headers(Headers()), 0)
        self.assertEqual(
            week_start_from_headers(Headers({b"anthropic-ratelimit-unified-5h-reset": [b"1773619200"]})),
            0,
        )

    def test_malformed(self) -> None:
        """
        Anything but a positive decimal integer of a writable time gives 0
        and never raises: words, signs, zero, exponents, fractions, digit
        separators, non-ASCII digits, a reset less than a week after the
        epoch, a time past year 9999 and an enormous number.
        """
        for value in (
            b"",
            b"abc",
            b"-5",
            b"0",
            b"+1773619200",
            b"1e9",
            b"1773619200.5",
            b"1_773_619_200",
            "\u0661\u0662".encode("utf-8"),
            b"\xff\xfe",
            b"100",
            b"99999999999999",
            b"9" * 5000,
        ):
            self.assertEqual(week_start_from_headers(reset_headers(value)), 0, value[:20])

    def test_first_value_counts(self) -> None:
        """
        When the header is repeated, the first value is used.
        """
        headers = reset_headers(str(WEEK_2).encode(), str(WEEK_2 + WEEK_SECONDS).encode())
        self.assertEqual(week_start_from_headers(headers), WEEK_1)


class RecordTests(SynchronousTestCase):
    """
    L{UsageBook.record} adds one response to its combination, in total and
    per user.
    """

    def setUp(self) -> None:
        self.clock = clock_at()
        self.book = UsageBook(self.clock)

    def test_empty_book(self) -> None:
        """
        A new book has no combinations, was never updated and has nothing
        to save.
        """
        self.assertEqual(self.book.combinations, [])
        self.assertIsNone(self.book.last_updated)
        self.assertFalse(self.book.changed)

    def test_totals_and_users(self) -> None:
        """
        Every response counts in the combination's total; a named user's
        also in theirs; anonymous traffic (user C{""}) only in the total.
        """
        record(self.book, user="alice", messages=3, input_tokens=10, output_tokens=100,
               cache_read_input_tokens=1000, cache_creation_input_tokens=50,
               cache_creation_5m_input_tokens=20, cache_creation_1h_input_tokens=30)
        record(self.book, user="bob", messages=5, input_tokens=1, output_tokens=2,
               cache_read_input_tokens=3, cache_creation_input_tokens=4,
               cache_creation_5m_input_tokens=4)
        record(self.book, user="alice", messages=4, input_tokens=20, output_tokens=200)
        record(self.book, user="", messages=7, input_tokens=1000, output_tokens=7)
        [combination] = self.book.combinations
        self.assertEqual(
            combination.total,
            UsageCounts(
                request_count=4,
                messages_count=19,
                input_tokens=1031,
                output_tokens=309,
                cache_read_input_tokens=1003,
                cache_creation_input_tokens=54,
                cache_creation_5m_input_tokens=24,
                cache_creation_1h_input_tokens=30,
            ),
        )
        self.assertEqual(
            combination.by_user,
            {
                "alice": UsageCounts(
                    request_count=2,
                    messages_count=7,
                    input_tokens=30,
                    output_tokens=300,
                    cache_read_input_tokens=1000,
                    cache_creation_input_tokens=50,
                    cache_creation_5m_input_tokens=20,
                    cache_creation_1h_input_tokens=30,
                ),
                "bob": UsageCounts(
                    request_count=1,
                    messages_count=5,
                    input_tokens=1,
                    output_tokens=2,
                    cache_read_input_tokens=3,
                    cache_creation_input_tokens=4,
                    cache_creation_5m_input_tokens=4,
                ),
            },
        )

    def test_cache_creation_normalised(self) -> None:
        """
        A response whose C{cache_creation_input_tokens} is 0 counts the sum
        of its 5-minute and 1-hour writes there; a non-zero figure is kept
        as reported.  The caller's usage object is not changed.
        """
        reported = usage(input_tokens=1, cache_creation_5m_input_tokens=300, cache_creation_1h_input_tokens=40)
        self.book.record(model=OPUS, context_window=STANDARD, week_start_unix=0, user="alice",
                         usage=reported, messages=1)
        self.assertEqual(reported.cache_creation_input_tokens, 0)
        [combination] = self.book.combinations
        self.assertEqual(combination.total.cache_creation_input_tokens, 340)
        self.assertEqual(combination.by_user["alice"].cache_creation_input_tokens, 340)
        record(self.book, week=0, input_tokens=1, cache_creation_input_tokens=500,
               cache_creation_5m_input_tokens=100)
        self.assertEqual(combination.total.cache_creation_input_tokens, 840)
        self.assertEqual(combination.total.cache_creation_5m_input_tokens, 400)
        self.assertEqual(combination.total.cache_creation_1h_input_tokens, 40)

    def test_ignored_without_model_or_window(self) -> None:
        """
        A response with an empty model, or a context window of 0 or less,
        is not recorded and changes nothing.
        """
        record(self.book, model="", input_tokens=5)
        record(self.book, context_window=0, input_tokens=5)
        record(self.book, context_window=-200000, input_tokens=5)
        self.assertEqual(self.book.combinations, [])
        self.assertIsNone(self.book.last_updated)
        self.assertFalse(self.book.changed)

    def test_combinations_keyed_and_appended_in_order(self) -> None:
        """
        Combinations are keyed by model, context window and week; a new key
        appends a combination, a known one adds to it.
        """
        record(self.book, model=OPUS, context_window=STANDARD, week=WEEK_1, input_tokens=1)
        record(self.book, model=OPUS, context_window=PREMIUM, week=WEEK_1, input_tokens=2)
        record(self.book, model=OPUS, context_window=STANDARD, week=WEEK_2, input_tokens=3)
        record(self.book, model="claude-haiku-4-5", context_window=STANDARD, week=WEEK_1, input_tokens=4)
        record(self.book, model=OPUS, context_window=STANDARD, week=0, input_tokens=5)
        record(self.book, model=OPUS, context_window=PREMIUM, week=WEEK_1, input_tokens=20)
        record(self.book, model=OPUS, context_window=STANDARD, week=WEEK_1, input_tokens=10)
        self.assertEqual(
            [(c.model, c.context_window, c.week_start_unix, c.total.request_count, c.total.input_tokens)
             for c in self.book.combinations],
            [
                (OPUS, STANDARD, WEEK_1, 2, 11),
                (OPUS, PREMIUM, WEEK_1, 2, 22),
                (OPUS, STANDARD, WEEK_2, 1, 3),
                ("claude-haiku-4-5", STANDARD, WEEK_1, 1, 4),
                (OPUS, STANDARD, 0, 1, 5),
            ],
        )

    def test_impossible_week_untagged(self) -> None:
        """
        A week that cannot be written down (negative, or past year 9999)
        is counted as untagged rather than breaking the file.
        """
        record(self.book, week=-3600, input_tokens=1)
        record(self.book, week=10**15, input_tokens=1)
        [combination] = self.book.combinations
        self.assertEqual((combination.week_start_unix, combination.total.request_count), (0, 2))

    def test_last_updated_and_changed(self) -> None:
        """
        Each record sets C{last_updated} to the clock's time and marks the
        book changed.
        """
        record(self.book, input_tokens=1)
        self.assertEqual(self.book.last_updated, NOW)
        self.assertTrue(self.book.changed)
        self.book.changed = False
        self.clock.advance(42.5)
        record(self.book, output_tokens=1)
        self.assertEqual(self.book.last_updated, NOW + 42.5)
        self.assertTrue(self.book.changed)


def single_cost(model: str, context_window: int, **counts: int) -> Any:
    """
    The cost written for a book holding one response with C{counts}.
    """
    book = UsageBook(clock_at())
    record(book, model=model, context_window=context_window, week=0, **counts)
    document = book.to_document(UTC)
    return document["combinations"][0]["total"]["cost_usd"]


class CostTests(SynchronousTestCase):
    """
    L{UsageBook.to_document} prices each combination with the price table
    and aggregates the rounded costs like the reference.
    """

    def test_opus_with_cache_lifetimes(self) -> None:
        """
        Opus 4.8 (5 / 25 / 0.5 / 6.25 / 10 USD per million): each kind of
        token at its price, 1-hour writes at the 1-hour price.
        """
        # 10000*5 + 20000*25 + 400000*0.5 + 8000*6.25 + 3000*10
        # = 50000 + 500000 + 200000 + 50000 + 30000 = 830000 -> 0.83
        # (1-hour writes priced as 5-minute ones would give 0.82.)
        self.assertEqual(
            single_cost(OPUS, STANDARD, input_tokens=10000, output_tokens=20000,
                        cache_read_input_tokens=400000, cache_creation_input_tokens=11000,
                        cache_creation_5m_input_tokens=8000, cache_creation_1h_input_tokens=3000),
            0.83,
        )

    def test_sonnet_4_5_long_context(self) -> None:
        """
        Sonnet 4.5 at the 1M context window is priced at the long-context
        rates (6 / 22.5 / 0.6 / 7.5 / 12).
        """
        # 300000*6 + 20000*22.5 + 200000*0.6 + 40000*7.5 + 10000*12
        # = 1800000 + 450000 + 120000 + 300000 + 120000 = 2790000 -> 2.79
        self.assertEqual(
            single_cost("claude-sonnet-4-5", PREMIUM, input_tokens=300000, output_tokens=20000,
                        cache_read_input_tokens=200000, cache_creation_input_tokens=50000,
                        cache_creation_5m_input_tokens=40000, cache_creation_1h_input_tokens=10000),
            2.79,
        )

    def test_sonnet_4_6_no_premium(self) -> None:
        """
        The same tokens on Sonnet 4.6 at 1M cost the standard rates
        (3 / 15 / 0.3 / 3.75 / 6): it has no long-context premium.
        """
        # 300000*3 + 20000*15 + 200000*0.3 + 40000*3.75 + 10000*6
        # = 900000 + 300000 + 60000 + 150000 + 60000 = 1470000 -> 1.47
        self.assertEqual(
            single_cost("claude-sonnet-4-6", PREMIUM, input_tokens=300000, output_tokens=20000,
                        cache_read_input_tokens=200000, cache_creation_input_tokens=50000,
                        cache_creation_5m_input_tokens=40000, cache_creation_1h_input_tokens=10000),
            1.47,
        )

    def test_legacy_without_split(self) -> None:
        """
        Figures recorded before the 5m/1h split (a loaded file without the
        split fields) price every cache write at the 5-minute rate.
        """
        book = UsageBook.from_document(
            {"combinations": [{"model": OPUS, "context_window": STANDARD, "total": {
                "request_count": 1, "input_tokens": 1000, "output_tokens": 2000,
                "cache_creation_input_tokens": 100000}}]},
            clock_at(),
        )
        # 1000*5 + 2000*25 + 100000*6.25 = 5000 + 50000 + 625000 = 680000 -> 0.68
        # (at the 1-hour rate it would be 1.055.)
        self.assertEqual(book.to_document(UTC)["combinations"][0]["total"]["cost_usd"], 0.68)

    def test_round_half_up(self) -> None:
        """
        A cost of exactly half a cent rounds up: 5000 Opus output tokens
        cost 5000*25 / 1e6 = 0.125 USD, exactly representable in binary,
        so 12.5 cents -> 0.13 (Python's round would give 0.12).
        """
        self.assertEqual(single_cost(OPUS, STANDARD, output_tokens=5000), 0.13)

    def test_aggregates(self) -> None:
        """
        Totals, per-user, per-week and per-user-and-week costs are sums of
        the rounded combination costs, rounded again (the float sums below
        carry binary noise that must not reach the file); untagged
        combinations count in the total and per user but in no week.
        """
        book = UsageBook(clock_at())
        haiku = "claude-haiku-4-5"
        # Opus output costs 25 USD per million: 4000 tokens = 0.10, 8000 = 0.20.
        # Haiku 4.5 output costs 5 per million: 20000 tokens = 0.10, 40000 = 0.20.
        # A: Opus, week 1: alice 0.20, bob 0.10; total 12000 tokens = 0.30
        record(book, week=WEEK_1, user="alice", output_tokens=8000)
        record(book, week=WEEK_1, user="bob", output_tokens=4000)
        # B: Opus, week 2: anonymous only, 0.10
        record(book, week=WEEK_2, user="", output_tokens=4000)
        # D: Haiku, week 1: bob 0.20, alice 0.10; total 60000 tokens = 0.30
        record(book, model=haiku, week=WEEK_1, user="bob", output_tokens=40000)
        record(book, model=haiku, week=WEEK_1, user="alice", output_tokens=20000)
        # E: Haiku, week 2: alice 0.20
        record(book, model=haiku, week=WEEK_2, user="alice", output_tokens=40000)
        # C: Opus, untagged: alice 0.10
        record(book, week=0, user="alice", output_tokens=4000)
        costs = book.to_document(UTC_PLUS_8)["costs"]
        self.assertEqual(
            costs,
            {
                # 0.3 + 0.1 + 0.3 + 0.2 + 0.1 = 0.9999999999999999 -> 1
                "total_usd": 1,
                # alice: 0.2 + 0.1 + 0.2 + 0.1 = 0.6;
                # bob: 0.1 + 0.2 = 0.30000000000000004 -> 0.3
                "by_user": {"alice": 0.6, "bob": 0.3},
                # week 1: A 0.3 + D 0.3 = 0.6;
                # week 2: B 0.1 + E 0.2 = 0.30000000000000004 -> 0.3
                "by_week": {WEEK_1_KEY: 0.6, WEEK_2_KEY: 0.3},
                "by_user_and_week": {
                    # 0.2 + 0.1 -> 0.3; 0.2
                    "alice": {WEEK_1_KEY: 0.3, WEEK_2_KEY: 0.2},
                    # 0.1 + 0.2 -> 0.3
                    "bob": {WEEK_1_KEY: 0.3},
                },
            },
        )
        self.assertEqual(list(costs), ["total_usd", "by_user", "by_week", "by_user_and_week"])

    def test_aggregates_sum_rounded_parts(self) -> None:
        """
        Each part is rounded before it is summed: two combinations of 0.004
        USD each total 0 (not 0.01), while one combination whose two users
        each used 0.004 costs 0.01 in total and 0 per user.
        """
        book = UsageBook(clock_at())
        # 800 Opus input tokens: 800*5 / 1e6 = 0.004 -> 0.00
        record(book, week=WEEK_1, user="alice", input_tokens=800)
        record(book, week=WEEK_2, user="alice", input_tokens=800)
        document = book.to_document(UTC_PLUS_8)
        self.assertEqual(document["costs"]["total_usd"], 0)
        self.assertEqual(document["costs"]["by_user"], {"alice": 0})
        self.assertEqual(document["costs"]["by_week"], {WEEK_1_KEY: 0, WEEK_2_KEY: 0})

        book = UsageBook(clock_at())
        record(book, user="alice", input_tokens=800)
        record(book, user="bob", input_tokens=800)
        document = book.to_document(UTC_PLUS_8)
        # total: 1600*5 / 1e6 = 0.008 -> 0.01
        self.assertEqual(document["combinations"][0]["total"]["cost_usd"], 0.01)
        self.assertEqual(document["costs"]["total_usd"], 0.01)
        self.assertEqual(document["costs"]["by_user"], {"alice": 0, "bob": 0})

    def test_no_week(self) -> None:
        """
        Without any tagged combination, C{by_week} and C{by_user_and_week}
        are omitted, while C{by_user} is present (empty when anonymous).
        """
        book = UsageBook(clock_at())
        record(book, week=0, user="", output_tokens=4000)
        self.assertEqual(book.to_document(UTC)["costs"], {"total_usd": 0.1, "by_user": {}})
        self.assertEqual(UsageBook(clock_at()).to_document(UTC)["costs"], {"total_usd": 0, "by_user": {}})


EXPECTED_SMALL_BOOK = """{
  "last_updated": "2026-03-14T21:15:13.25+08:00",
  "costs": {
    "total_usd": 1.01,
    "by_user": {
      "alice": 1
    },
    "by_week": {
      "2026-03-09 08:00:00 UTC+8": 1
    },
    "by_user_and_week": {
      "alice": {
        "2026-03-09 08:00:00 UTC+8": 1
      }
    }
  },
  "combinations": [
    {
      "model": "claude-opus-4-8",
      "context_window": 200000,
      "week_start_unix": 1773014400,
      "total": {
        "request_count": 1,
        "messages_count": 2,
        "input_tokens": 200,
        "output_tokens": 40000,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cost_usd": 1
      },
      "by_user": {
        "alice": {
          "request_count": 1,
          "messages_count": 2,
          "input_tokens": 200,
          "output_tokens": 40000,
          "cache_read_input_tokens": 0,
          "cache_creation_input_tokens": 0,
          "cost_usd": 1
        }
      }
    },
    {
      "model": "claude-haiku-4-5",
      "context_window": 200000,
      "total": {
        "request_count": 1,
        "messages_count": 1,
        "input_tokens": 10,
        "output_tokens": 2000,
        "cache_read_input_tokens": 30,
        "cache_creation_input_tokens": 40,
        "cache_creation_1h_input_tokens": 40,
        "cost_usd": 0.01
      },
      "by_user": {}
    }
  ]
}"""

EXPECTED_EMPTY_BOOK = """{
  "last_updated": "0001-01-01T00:00:00Z",
  "costs": {
    "total_usd": 0,
    "by_user": {}
  },
  "combinations": []
}"""


def small_book(clock: Clock) -> UsageBook:
    """
    The book of L{EXPECTED_SMALL_BOOK}.
    """
    book = UsageBook(clock)
    # 200*5 + 40000*25 = 1001000 -> 1.001 -> 1
    record(book, user="alice", messages=2, input_tokens=200, output_tokens=40000)
    # Haiku 4.5 (1 / 5 / 0.1 / 1.25 / 2): 10*1 + 2000*5 + 30*0.1 + 40*2
    # = 10 + 10000 + 3 + 80 = 10093 -> 0.010093 -> 0.01
    record(book, model="claude-haiku-4-5", week=0, user="", input_tokens=10, output_tokens=2000,
           cache_read_input_tokens=30, cache_creation_1h_input_tokens=40)
    return book


class SerializeTests(SynchronousTestCase):
    """
    L{UsageBook.serialize} writes the file byte for byte as sing-box does.
    """

    def test_small_book(self) -> None:
        """
        Two-space indentation, the reference's key order, zero 5m/1h fields
        omitted, integral costs without C{.0}, the week omitted when 0,
        C{by_user} always present, no trailing newline, and
        C{last_updated} with a trimmed fraction and the zone's offset.
        """
        self.assertEqual(small_book(clock_at()).serialize(UTC_PLUS_8), EXPECTED_SMALL_BOOK.encode())

    def test_never_updated(self) -> None:
        """
        An empty book is written with Go's zero time and empty maps and
        list.
        """
        self.assertEqual(UsageBook(clock_at()).serialize(UTC_PLUS_8), EXPECTED_EMPTY_BOOK.encode())

    def test_time_zones(self) -> None:
        """
        C{last_updated} is RFC 3339 with nanoseconds trimmed of trailing
        zeros (none at all for whole seconds) and C{Z} for UTC; week keys
        give the offset as C{UTC+0}, C{UTC-5} or C{UTC+5:30}.
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
            document = book.to_document(tz)
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
        self.assertEqual(book.to_document(UTC)["last_updated"], "2026-03-14T13:15:13.500000238Z")

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
        self.assertEqual(book.serialize(), EXPECTED_SMALL_BOOK.encode())

    def test_strings_escaped_like_go(self) -> None:
        """
        Non-ASCII names are written as UTF-8; C{<}, C{>} and C{&} are
        escaped as Go's encoder does; the result is valid JSON naming the
        same user.
        """
        book = UsageBook(clock_at())
        record(book, user="Zoë <ops&dev>", output_tokens=1)
        data = book.serialize(UTC)
        self.assertIn('"Zoë \\u003cops\\u0026dev\\u003e"'.encode(), data)
        self.assertEqual(list(json.loads(data)["costs"]["by_user"]), ["Zoë <ops&dev>"])

    def test_user_keys_sorted(self) -> None:
        """
        Users are written in sorted order whatever order they came in.
        """
        book = UsageBook(clock_at())
        for name in ("carol", "alice", "bob"):
            record(book, user=name, output_tokens=1)
        document = book.to_document(UTC)
        self.assertEqual(list(document["costs"]["by_user"]), ["alice", "bob", "carol"])
        self.assertEqual(list(document["combinations"][0]["by_user"]), ["alice", "bob", "carol"])


class RoundTripTests(SynchronousTestCase):
    """
    A book written and read back is the same book.
    """

    def test_same_bytes(self) -> None:
        """
        Serialising, loading and serialising again gives the same bytes,
        including a clock time with sub-microsecond digits.
        """
        for now in (NOW, 1_773_494_113.123456789):
            book = small_book(clock_at(now))
            data = book.serialize(UTC_PLUS_8)
            loaded = UsageBook.from_document(json.loads(data), clock_at())
            self.assertEqual(loaded.serialize(UTC_PLUS_8), data)
            self.assertEqual(loaded.last_updated, book.last_updated)
            self.assertEqual(loaded.combinations, book.combinations)
            self.assertFalse(loaded.changed)

    def test_keeps_counting(self) -> None:
        """
        Usage recorded after loading adds to the loaded combinations;
        only a new key appends one.
        """
        data = small_book(clock_at()).serialize(UTC_PLUS_8)
        clock = clock_at(NOW + 100)
        loaded = UsageBook.from_document(json.loads(data), clock)
        record(loaded, user="alice", messages=3, input_tokens=100, output_tokens=1)
        record(loaded, user="bob", input_tokens=7)
        record(loaded, model="claude-haiku-4-5", week=WEEK_2, user="bob", input_tokens=1)
        self.assertEqual(len(loaded.combinations), 3)
        first = loaded.combinations[0]
        self.assertEqual(
            (first.total.request_count, first.total.messages_count, first.total.input_tokens,
             first.total.output_tokens),
            (3, 6, 307, 40001),
        )
        self.assertEqual(first.by_user["alice"].input_tokens, 300)
        self.assertEqual(first.by_user["bob"].input_tokens, 7)
        self.assertEqual(loaded.combinations[2].week_start_unix, WEEK_2)
        self.assertEqual(loaded.last_updated, NOW + 100)
        self.assertTrue(loaded.changed)


# As sing-box writes it (Go's MarshalIndent), with costs it computed; the
# first total's cost_usd and all the aggregates are deliberately wrong, to
# show that costs are recomputed rather than read.  The second combination
# has no week and no by_user.
SINGBOX_SAMPLE = """{
  "last_updated": "2026-03-14T21:15:13.123456789+08:00",
  "costs": {
    "total_usd": 99.99,
    "by_user": {
      "alice": 12.34
    },
    "by_week": {
      "2026-03-09 08:00:00 UTC+8": 12.34
    },
    "by_user_and_week": {
      "alice": {
        "2026-03-09 08:00:00 UTC+8": 12.34
      }
    }
  },
  "combinations": [
    {
      "model": "claude-opus-4-8",
      "context_window": 200000,
      "week_start_unix": 1773014400,
      "total": {
        "request_count": 4,
        "messages_count": 96,
        "input_tokens": 10000,
        "output_tokens": 20000,
        "cache_read_input_tokens": 400000,
        "cache_creation_input_tokens": 11000,
        "cache_creation_5m_input_tokens": 8000,
        "cache_creation_1h_input_tokens": 3000,
        "cost_usd": 12.34
      },
      "by_user": {
        "alice": {
          "request_count": 4,
          "messages_count": 96,
          "input_tokens": 10000,
          "output_tokens": 20000,
          "cache_read_input_tokens": 400000,
          "cache_creation_input_tokens": 11000,
          "cache_creation_5m_input_tokens": 8000,
          "cache_creation_1h_input_tokens": 3000,
          "cost_usd": 0.83
        }
      }
    },
    {
      "model": "claude-sonnet-4-5-20250929",
      "context_window": 1000000,
      "total": {
        "request_count": 2,
        "messages_count": 10,
        "input_tokens": 300000,
        "output_tokens": 20000,
        "cache_read_input_tokens": 200000,
        "cache_creation_input_tokens": 40000,
        "cost_usd": 2.67
      }
    }
  ]
}"""


class SingBoxFileTests(SynchronousTestCase):
    """
    A usages file written by sing-box loads and keeps counting.
    """

    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = os.path.join(directory, "usages.json")
        with open(self.path, "w") as handle:
            handle.write(SINGBOX_SAMPLE)
        self.clock = clock_at(NOW + 3600)
        self.file = UsageFile(self.path, self.clock, UTC_PLUS_8)

    def test_loads(self) -> None:
        """
        The combinations and C{last_updated} are read; the missing week is
        0 and the missing C{by_user} empty.
        """
        book = self.file.load()
        self.assertEqual(
            book.combinations,
            [
                Combination(
                    OPUS, STANDARD, WEEK_1,
                    UsageCounts(4, 96, 10000, 20000, 400000, 11000, 8000, 3000),
                    {"alice": UsageCounts(4, 96, 10000, 20000, 400000, 11000, 8000, 3000)},
                ),
                Combination(
                    "claude-sonnet-4-5-20250929", PREMIUM, 0,
                    UsageCounts(2, 10, 300000, 20000, 200000, 40000, 0, 0),
                    {},
                ),
            ],
        )
        # 2026-03-14T13:15:13.123456789Z, to the precision of a float.
        assert book.last_updated is not None
        self.assertAlmostEqual(book.last_updated, 1_773_494_113.123456789, places=6)
        self.assertFalse(book.changed)
        self.assertEqual(os.listdir(os.path.dirname(self.path)), ["usages.json"])

    def test_costs_recomputed(self) -> None:
        """
        Saving the loaded file writes the costs computed from the tokens,
        not the ones in the file.
        """
        self.file.save(self.file.load())
        with open(self.path) as handle:
            document = json.load(handle)
        # Opus 4.8: 830000 / 1e6 = 0.83 (see CostTests.test_opus_with_cache_lifetimes).
        # Sonnet 4.5 at 1M, no split, writes at the 5-minute long-context rate:
        # 300000*6 + 20000*22.5 + 200000*0.6 + 40000*7.5
        # = 1800000 + 450000 + 120000 + 300000 = 2670000 -> 2.67
        self.assertEqual(document["combinations"][0]["total"]["cost_usd"], 0.83)
        self.assertEqual(document["combinations"][1]["total"]["cost_usd"], 2.67)
        self.assertEqual(document["combinations"][1]["by_user"], {})
        self.assertNotIn("week_start_unix", document["combinations"][1])
        self.assertEqual(
            document["costs"],
            {
                "total_usd": 3.5,
                "by_user": {"alice": 0.83},
                "by_week": {WEEK_1_KEY: 0.83},
                "by_user_and_week": {"alice": {WEEK_1_KEY: 0.83}},
            },
        )
        # Written back to the nanosecond, although a float cannot hold it.
        self.assertEqual(document["last_updated"], "2026-03-14T21:15:13.123456789+08:00")

    def test_keeps_counting(self) -> None:
        """
        Usage recorded after loading the sing-box file adds to its
        combinations and is saved with them.
        """
        book = self.file.load()
        record(book, user="bob", messages=2, input_tokens=5, output_tokens=6)
        record(book, model="claude-sonnet-4-5-20250929", context_window=PREMIUM, week=0, user="alice",
               input_tokens=1, output_tokens=1)
        self.file.save(book)
        with open(self.path) as handle:
            document = json.load(handle)
        [opus, sonnet] = document["combinations"]
        self.assertEqual(
            (opus["total"]["request_count"], opus["total"]["messages_count"], opus["total"]["input_tokens"]),
            (5, 98, 10005),
        )
        self.assertEqual(sorted(opus["by_user"]), ["alice", "bob"])
        self.assertEqual(opus["by_user"]["bob"]["input_tokens"], 5)
        self.assertEqual(sonnet["total"]["request_count"], 3)
        self.assertEqual(sonnet["by_user"]["alice"]["request_count"], 1)
        self.assertEqual(document["last_updated"], "2026-03-14T22:15:13.25+08:00")


class SingBoxExactTests(SynchronousTestCase):
    """
    A sing-box file whose costs are current is written back unchanged.
    """

    def test_same_bytes(self) -> None:
        """
        Loading and saving a file as sing-box writes it, with correct
        costs and C{by_user} present, reproduces it byte for byte,
        C{last_updated} nanoseconds included.
        """
        current = (
            SINGBOX_SAMPLE.replace("99.99", "3.5")
            .replace("12.34", "0.83")
            .replace('"cost_usd": 2.67\n      }\n', '"cost_usd": 2.67\n      },\n      "by_user": {}\n')
        )
        self.assertIn('"by_user": {}', current)
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "usages.json")
        with open(path, "w") as handle:
            handle.write(current)
        usage_file = UsageFile(path, clock_at(), UTC_PLUS_8)
        usage_file.save(usage_file.load())
        with open(path) as handle:
            self.assertEqual(handle.read(), current)


class FromDocumentTests(SynchronousTestCase):
    """
    L{UsageBook.from_document} reads what it needs and rejects a wrong
    structure with a message naming the JSON path.
    """

    def test_minimal_documents(self) -> None:
        """
        Empty or null combinations (Go writes a nil slice as null) give an
        empty book; missing counts are 0; unknown keys are ignored.
        """
        for document in ({"combinations": None}, {"combinations": [], "extra": 1}):
            book = UsageBook.from_document(document, clock_at())
            self.assertEqual((book.combinations, book.last_updated), ([], None))
        book = UsageBook.from_document(
            {"combinations": [{"model": OPUS, "context_window": STANDARD, "note": "x",
                               "total": {"input_tokens": 3, "future_field": 9}}]},
            clock_at(),
        )
        self.assertEqual(book.combinations, [Combination(OPUS, STANDARD, 0, UsageCounts(input_tokens=3), {})])

    def test_last_updated(self) -> None:
        """
        C{last_updated} is read as RFC 3339 in any offset; Go's zero time,
        a missing value and anything unparseable give C{None}.
        """
        for text, expected in (
            ("2026-03-14T13:15:13Z", 1_773_494_113.0),
            ("2026-03-14T21:15:13.25+08:00", NOW),
            ("2026-03-14T08:15:13.5-05:00", 1_773_494_113.5),
            ("0001-01-01T00:00:00Z", None),
            ("yesterday", None),
            ("2026-02-30T00:00:00Z", None),
            ("2026-03-14T25:00:00Z", None),
            ("2026-03-14T13:15:13", None),
            ("2026-03-14T13:15:13.1234567890Z", None),
            (1773494113, None),
            (None, None),
        ):
            book = UsageBook.from_document({"last_updated": text, "combinations": []}, clock_at())
            self.assertEqual(book.last_updated, expected, text)

    def test_not_a_usages_file(self) -> None:
        """
        A JSON object without C{combinations}, which every usages file has,
        is not taken for an empty usages file; a configuration is named as
        such.
        """
        for document in ({}, {"last_updated": "2026-03-14T13:15:13Z"}, {"costs": {}}):
            error = self.assertRaises(UsageFileError, UsageBook.from_document, document, clock_at())
            self.assertEqual(
                str(error),
                'no "combinations" key, which every usages file has, even an empty one',
            )
        for document in (
            {"services": [{"type": "ccm"}]},
            {"listen_port": 8080, "users": [{"name": "a", "token": "ccm-secret-token"}]},
        ):
            error = self.assertRaises(UsageFileError, UsageBook.from_document, document, clock_at())
            self.assertTrue(
                str(error).endswith(
                    "; it looks like a ccm configuration, whose usages_path names the usages file"
                ),
                str(error),
            )
            self.assertNotIn("ccm-secret-token", str(error))

    def test_wrong_structure(self) -> None:
        """
        Each structural error raises L{UsageFileError} naming where it is.
        """
        def combination(**changes: Any) -> dict[str, Any]:
            base: dict[str, Any] = {"model": OPUS, "context_window": STANDARD, "total": {}}
            base.update(changes)
            return {"combinations": [{"model": "ok", "context_window": 1}, base]}

        for document, where in (
            ([], "not a JSON object"),
            ({"combinations": {}}, "combinations"),
            ({"combinations": ["x"]}, "combinations[0]"),
            (combination(model=None), "combinations[1].model"),
            (combination(model=7), "combinations[1].model"),
            (combination(context_window="200000"), "combinations[1].context_window"),
            (combination(context_window=200000.0), "combinations[1].context_window"),
            (combination(week_start_unix=-1), "combinations[1].week_start_unix"),
            (combination(week_start_unix=10**15), "combinations[1].week_start_unix"),
            (combination(total=[]), "combinations[1].total"),
            (combination(total={"input_tokens": -1}), "combinations[1].total.input_tokens"),
            (combination(total={"output_tokens": True}), "combinations[1].total.output_tokens"),
            (combination(total={"input_tokens": 2**63}), "combinations[1].total.input_tokens"),
            (combination(by_user=[]), "combinations[1].by_user"),
            (combination(by_user={"alice": 3}), 'combinations[1].by_user["alice"]'),
            (combination(by_user={"bob": {"request_count": 1.5}}),
             'combinations[1].by_user["bob"].request_count'),
        ):
            error = self.assertRaises(UsageFileError, UsageBook.from_document, document, clock_at())
            self.assertIn(where, str(error))


class UsageFileTestCase(SynchronousTestCase):
    """
    A usage file in a fresh directory, with log capture.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "usages.json")
        self.clock = clock_at()
        self.file = UsageFile(self.path, self.clock, UTC_PLUS_8)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def write(self, data: bytes, path: str | None = None) -> None:
        """
        Put C{data} in the usage file (or at C{path}).
        """
        with open(path or self.path, "wb") as handle:
            handle.write(data)

    def read(self, path: str | None = None) -> bytes:
        """
        The bytes of the usage file (or of C{path}).
        """
        with open(path or self.path, "rb") as handle:
            return handle.read()


# The name a broken file is moved to at NOW (2026-03-14 13:15:13 UTC).
ASIDE_SUFFIX = ".corrupt-20260314T131513Z"


class LoadTests(UsageFileTestCase):
    """
    L{UsageFile.load} reads the book, and moves a broken file aside instead
    of ever overwriting it.
    """

    def assert_moved_aside(self, book: UsageBook, aside: str, reason: str) -> None:
        """
        The book is empty, the usage file is gone, a warning names both
        paths and the reason.
        """
        self.assertEqual((book.combinations, book.last_updated, book.changed), ([], None, False))
        self.assertFalse(os.path.lexists(self.path))
        self.assertTrue(os.path.lexists(aside))
        warnings = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        text = formatEvent(warnings[0])
        self.assertIn(self.path, text)
        self.assertIn(aside, text)
        self.assertIn(reason, text)

    def test_missing(self) -> None:
        """
        A missing file is an empty book, not an error, and nothing is
        created or logged.
        """
        book = self.file.load()
        self.assertEqual((book.combinations, book.last_updated, book.changed), ([], None, False))
        self.assertEqual(os.listdir(self.directory), [])
        self.assertEqual(len(self.events), 0)

    def test_loads_saved(self) -> None:
        """
        A file this module saved loads back as the same book.
        """
        book = small_book(self.clock)
        self.file.save(book)
        loaded = self.file.load()
        self.assertEqual(loaded.combinations, book.combinations)
        self.assertEqual(loaded.last_updated, NOW)

    def test_not_json(self) -> None:
        """
        A file that is not JSON is renamed aside with its bytes intact.
        """
        self.write(b'{"combinations": [')
        book = self.file.load()
        aside = self.path + ASIDE_SUFFIX
        self.assert_moved_aside(book, aside, "not valid JSON")
        self.assertEqual(self.read(aside), b'{"combinations": [')

    def test_not_utf8(self) -> None:
        """
        A file that is not UTF-8 text is moved aside too.
        """
        self.write(b"\xff\xfe\x00{")
        book = self.file.load()
        self.assert_moved_aside(book, self.path + ASIDE_SUFFIX, "usages.json")
        self.assertEqual(self.read(self.path + ASIDE_SUFFIX), b"\xff\xfe\x00{")

    def test_deeply_nested(self) -> None:
        """
        JSON nested too deeply for the parser is moved aside, not a crash.
        """
        self.write(b"[" * 200000)
        book = self.file.load()
        self.assert_moved_aside(book, self.path + ASIDE_SUFFIX, "not valid JSON")

    def test_wrong_structure(self) -> None:
        """
        Valid JSON that is not a usages document is moved aside; the
        warning says where the structure is wrong.
        """
        data = b'{"combinations": [{"model": "m", "total": {"input_tokens": "many"}}]}'
        self.write(data)
        book = self.file.load()
        self.assert_moved_aside(book, self.path + ASIDE_SUFFIX, "combinations[0].total.input_tokens")
        self.assertEqual(self.read(self.path + ASIDE_SUFFIX), data)

    def test_configuration_never_overwritten(self) -> None:
        """
        A C{usages_path} pointing at a JSON object that is no usages file,
        such as ccm's configuration, is moved aside intact rather than
        loaded as an empty book and overwritten by the next save.
        """
        data = b'{"listen_port": 8080, "users": []}'
        self.write(data)
        book = self.file.load()
        self.assert_moved_aside(book, self.path + ASIDE_SUFFIX, "it looks like a ccm configuration")
        self.assertEqual(self.read(self.path + ASIDE_SUFFIX), data)

    def test_unreadable(self) -> None:
        """
        Something at the path that cannot be read as a file (a directory)
        is moved aside with its contents.
        """
        os.makedirs(os.path.join(self.path, "inside"))
        book = self.file.load()
        aside = self.path + ASIDE_SUFFIX
        self.assert_moved_aside(book, aside, "cannot read it")
        self.assertEqual(os.listdir(aside), ["inside"])

    def test_name_taken(self) -> None:
        """
        When the aside name is taken, C{-1}, C{-2}… are added; nothing
        existing is overwritten.
        """
        base = self.path + ASIDE_SUFFIX
        self.write(b"first", base)
        self.write(b"second", base + "-1")
        self.write(b"broken")
        book = self.file.load()
        self.assert_moved_aside(book, base + "-2", "not valid JSON")
        self.assertEqual(
            (self.read(base), self.read(base + "-1"), self.read(base + "-2")),
            (b"first", b"second", b"broken"),
        )

    def test_then_saved_fresh(self) -> None:
        """
        After a broken file was moved aside, saving writes a new file and
        leaves the moved one alone.
        """
        self.write(b"broken")
        book = self.file.load()
        record(book, output_tokens=1)
        self.file.save(book)
        self.assertEqual(self.read(), book.serialize(UTC_PLUS_8))
        self.assertEqual(self.read(self.path + ASIDE_SUFFIX), b"broken")

    def test_cannot_move_aside(self) -> None:
        """
        When the broken file cannot even be renamed, an error is logged,
        the load gives an empty book, and saving refuses to replace it.
        """
        def failing_rename(source: str, destination: str) -> None:
            raise PermissionError(13, "Permission denied", source)

        self.patch(os, "rename", failing_rename)
        self.write(b"broken")
        book = self.file.load()
        self.assertEqual(book.combinations, [])
        errors = [formatEvent(e) for e in self.events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn(self.path, errors[0])
        self.assertIn("Permission denied", errors[0])
        record(book, output_tokens=1)
        error = self.assertRaises(OSError, self.file.save, book)
        self.assertIn("refusing to replace", str(error))
        self.assertTrue(book.changed)
        self.assertEqual(self.read(), b"broken")


class SaveTests(UsageFileTestCase):
    """
    L{UsageFile.save} replaces the file atomically.
    """

    def test_writes_serialized_book(self) -> None:
        """
        The file holds the book's serialisation in the file's time zone,
        nothing else is left in the directory, and C{changed} is cleared.
        """
        book = small_book(self.clock)
        self.file.save(book)
        self.assertEqual(self.read(), EXPECTED_SMALL_BOOK.encode())
        self.assertEqual(os.listdir(self.directory), ["usages.json"])
        self.assertFalse(book.changed)

    def test_new_file_mode(self) -> None:
        """
        A new file is readable by its owner only (0600), whatever the umask.
        """
        previous = os.umask(0)
        self.addCleanup(os.umask, previous)
        self.file.save(UsageBook(self.clock))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_existing_mode_kept(self) -> None:
        """
        Replacing a file keeps its mode.
        """
        self.write(b"{}")
        os.chmod(self.path, 0o640)
        self.file.save(small_book(self.clock))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual(self.read(), EXPECTED_SMALL_BOOK.encode())

    def test_through_symbolic_link(self) -> None:
        """
        A usage path that is a symbolic link stays one; the file it points
        to is replaced.
        """
        target = os.path.join(self.directory, "real.json")
        self.write(b"{}", target)
        os.symlink("real.json", self.path)
        self.file.save(small_book(self.clock))
        self.assertTrue(os.path.islink(self.path))
        self.assertEqual(self.read(target), EXPECTED_SMALL_BOOK.encode())

    def test_directory_gone(self) -> None:
        """
        When the directory has disappeared, saving raises L{OSError},
        creates nothing and leaves the book marked changed.
        """
        book = small_book(self.clock)
        os.rmdir(self.directory)
        self.assertRaises(OSError, self.file.save, book)
        self.assertFalse(os.path.exists(self.directory))
        self.assertTrue(book.changed)

    def test_rename_fails(self) -> None:
        """
        When the new file cannot be renamed into place (the path is a
        non-empty directory), saving raises, the temporary file is removed
        and the path is untouched.
        """
        os.makedirs(os.path.join(self.path, "inside"))
        book = small_book(self.clock)
        self.assertRaises(OSError, self.file.save, book)
        self.assertEqual(os.listdir(self.directory), ["usages.json"])
        self.assertEqual(os.listdir(self.path), ["inside"])
        self.assertTrue(book.changed)

    def test_relative_path(self) -> None:
        """
        The file's path is made absolute, so log messages name it fully.
        """
        self.assertEqual(UsageFile("usages.json", self.clock).path, os.path.abspath("usages.json"))


class UsageSaverServiceTests(UsageFileTestCase):
    """
    L{UsageSaverService} saves every minute when something changed and
    once more at shutdown.
    """

    def setUp(self) -> None:
        super().setUp()
        self.book = UsageBook(self.clock)
        self.service = UsageSaverService(self.file, self.book, self.clock)

    def test_saves_each_minute_when_changed(self) -> None:
        """
        Nothing is written before the first 60 s; a changed book is written
        at the tick; an unchanged one is not rewritten.
        """
        self.service.startService()
        record(self.book, output_tokens=1)
        self.clock.advance(59)
        self.assertFalse(os.path.exists(self.path))
        self.clock.advance(1)
        self.assertEqual(self.read(), self.book.serialize(UTC_PLUS_8))
        self.assertFalse(self.book.changed)
        os.unlink(self.path)
        self.clock.advance(60)
        self.assertFalse(os.path.exists(self.path))
        record(self.book, output_tokens=1)
        self.clock.advance(60)
        self.assertEqual(json.loads(self.read())["combinations"][0]["total"]["request_count"], 2)
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_record_after_stop_saved_at_once(self) -> None:
        """
        Usage recorded through the service while it runs is not written at
        once; usage recorded after it stopped (a stream cut at shutdown) is.
        """
        self.service.startService()
        self.service.record(
            model=OPUS, context_window=STANDARD, week_start_unix=WEEK_1, user="alice",
            usage=TokenUsage(model=OPUS, input_tokens=5), messages=1,
        )
        self.assertFalse(os.path.exists(self.path))
        self.service.stopService()
        self.assertEqual(json.loads(self.read())["combinations"][0]["total"]["input_tokens"], 5)
        self.service.record(
            model=OPUS, context_window=STANDARD, week_start_unix=WEEK_1, user="alice",
            usage=TokenUsage(model=OPUS, input_tokens=7), messages=1,
        )
        self.assertEqual(json.loads(self.read())["combinations"][0]["total"]["input_tokens"], 12)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def record_through_service(self, input_tokens: int) -> None:
        self.service.record(
            model=OPUS, context_window=STANDARD, week_start_unix=WEEK_1, user="alice",
            usage=TokenUsage(model=OPUS, input_tokens=input_tokens), messages=1,
        )

    def saved_input_tokens(self) -> int:
        document = json.loads(self.read())
        return int(document["combinations"][0]["total"]["input_tokens"])

    def test_first_record_saved_soon(self) -> None:
        """
        The first usage after start-up is saved FIRST_SAVE_DELAY_SECONDS
        later, not at the next minute, through the same atomic save (no
        temporary file is left); more usage within the minute waits for the
        tick; after a minute without a save, the next usage is saved soon
        again.
        """
        self.assertEqual(FIRST_SAVE_DELAY_SECONDS, 5)
        self.service.startService()
        self.clock.advance(100)  # Ticks at 0 and 60 found nothing to save.
        self.record_through_service(3)
        self.clock.advance(4.9)
        self.assertFalse(os.path.exists(self.path))
        self.clock.advance(0.1)
        self.assertEqual(self.saved_input_tokens(), 3)
        self.assertEqual(os.listdir(self.directory), [os.path.basename(self.path)])
        self.record_through_service(4)  # t=105: saved 0 s ago.
        self.clock.advance(10)
        self.assertEqual(self.saved_input_tokens(), 3)
        self.clock.advance(5)  # The tick at t=120.
        self.assertEqual(self.saved_input_tokens(), 7)
        self.clock.advance(200)  # t=320: ticks found nothing new since t=120.
        self.record_through_service(5)
        self.clock.advance(5)
        self.assertEqual(self.saved_input_tokens(), 12)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # Only the loop.
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_burst_saved_once(self) -> None:
        """
        Usage recorded while an early save is pending joins it: one save
        writes the whole burst.
        """
        saves: list[int] = []
        save = self.file.save
        self.patch(self.file, "save", lambda book: (saves.append(1), save(book)))
        self.service.startService()
        for tokens in (1, 2, 3):
            self.record_through_service(tokens)
            self.clock.advance(1)
        self.clock.advance(2)
        self.assertEqual((len(saves), self.saved_input_tokens()), (1, 6))
        self.service.stopService()

    def test_stop_cancels_early_save(self) -> None:
        """
        Stopping while an early save is pending saves at once and leaves no
        timer behind.
        """
        self.service.startService()
        self.record_through_service(9)
        self.assertIsNone(self.successResultOf(self.service.stopService()))
        self.assertEqual(self.saved_input_tokens(), 9)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_nothing_recorded(self) -> None:
        """
        Without usage, running ticks write nothing.
        """
        self.service.startService()
        self.clock.pump([60] * 5)
        self.assertFalse(os.path.exists(self.path))
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failure_logged_and_retried(self) -> None:
        """
        A failed save is logged with the path and reason, keeps the book
        changed, and does not stop the loop: the next tick saves once it
        can.
        """
        directory = os.path.join(self.directory, "later")
        path = os.path.join(directory, "usages.json")
        service = UsageSaverService(UsageFile(path, self.clock, UTC_PLUS_8), self.book, self.clock)
        service.startService()
        record(self.book, output_tokens=1)
        self.clock.advance(60)
        errors = [formatEvent(e) for e in self.events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn(path, errors[0])
        self.assertIn("No such file or directory", errors[0])
        self.assertTrue(self.book.changed)
        os.makedirs(directory)
        self.clock.advance(60)
        self.assertEqual(self.read(path), self.book.serialize(UTC_PLUS_8))
        self.assertFalse(self.book.changed)
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_saves_even_unchanged(self) -> None:
        """
        Stopping the service saves once more even when nothing changed, so
        a shutdown always leaves a current file.
        """
        self.service.startService()
        self.clock.advance(30)
        self.assertIsNone(self.successResultOf(self.service.stopService()))
        self.assertEqual(self.read(), EXPECTED_EMPTY_BOOK.encode())
        self.assertFalse(self.service.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_saves_latest(self) -> None:
        """
        Usage recorded since the last tick is in the file after stopping.
        """
        self.service.startService()
        record(self.book, output_tokens=1)
        self.clock.advance(60)
        record(self.book, output_tokens=2)
        self.clock.advance(10)
        self.service.stopService()
        self.assertEqual(json.loads(self.read())["combinations"][0]["total"]["output_tokens"], 3)
        self.assertFalse(self.book.changed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_failure_logged(self) -> None:
        """
        A failed save at shutdown is logged, not raised.
        """
        self.service.startService()
        os.rmdir(self.directory)
        self.assertIsNone(self.successResultOf(self.service.stopService()))
        errors = log_text(self.events)
        self.assertEqual(len(errors), 1)
        self.assertIn(self.path, errors[0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_custom_interval(self) -> None:
        """
        The interval is configurable.
        """
        service = UsageSaverService(self.file, self.book, self.clock, interval=5)
        service.startService()
        record(self.book, output_tokens=1)
        self.clock.advance(4)
        self.assertFalse(os.path.exists(self.path))
        self.clock.advance(1)
        self.assertTrue(os.path.exists(self.path))
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
