"""
Tests for :obj:`ccm.accounting.book`: counting usage per combination and user in
memory, and the snapshots the saver writes.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting.book import UsageBook
from ccm.accounting.counters import Combination, UsageSnapshot
from ccm.accounting.tokens import TokenUsage
from tests.fixtures import (
    NOW,
    OPUS,
    PREMIUM,
    STANDARD,
    WEEK_1,
    WEEK_2,
    clock_at,
    counts,
    record,
    usage_record,
)


class RecordTests(SynchronousTestCase):
    """
    :obj:`UsageBook.record` adds one response to its combination, in total and
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
        self.assertEqual(self.book.snapshot().revision, 0)

    def test_totals_and_users(self) -> None:
        """
        Every response counts in the combination's total; a named user's
        also in theirs; anonymous traffic (user ``""``) only in the total.
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
            counts(
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
                "alice": counts(
                    request_count=2,
                    messages_count=7,
                    input_tokens=30,
                    output_tokens=300,
                    cache_read_input_tokens=1000,
                    cache_creation_input_tokens=50,
                    cache_creation_5m_input_tokens=20,
                    cache_creation_1h_input_tokens=30,
                ),
                "bob": counts(
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
        A response whose ``cache_creation_input_tokens`` is 0 counts the sum
        of its 5-minute and 1-hour writes there; a non-zero figure is kept
        as reported.  The caller's usage object is not changed.
        """
        reported = TokenUsage(input_tokens=1, cache_creation_5m_input_tokens=300, cache_creation_1h_input_tokens=40)
        self.book.record(usage_record(week=0, tokens=reported))
        self.assertEqual(reported.cache_creation_input_tokens, 0)
        [combination] = self.book.combinations
        self.assertEqual(combination.total.tokens.cache_creation_input_tokens, 340)
        self.assertEqual(combination.by_user["alice"].tokens.cache_creation_input_tokens, 340)
        record(self.book, week=0, input_tokens=1, cache_creation_input_tokens=500,
               cache_creation_5m_input_tokens=100)
        self.assertEqual(combination.total.tokens.cache_creation_input_tokens, 840)
        self.assertEqual(combination.total.tokens.cache_creation_5m_input_tokens, 400)
        self.assertEqual(combination.total.tokens.cache_creation_1h_input_tokens, 40)

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
        self.assertEqual(self.book.snapshot().revision, 0)

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
            [(c.model, c.context_window, c.week_start_unix, c.total.request_count, c.total.tokens.input_tokens)
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

    def test_last_updated_and_revision(self) -> None:
        """
        Each record sets ``last_updated`` to the clock's time and advances
        the book's revision, so the saver sees it changed.
        """
        record(self.book, input_tokens=1)
        self.assertEqual(self.book.last_updated, NOW)
        self.assertEqual(self.book.snapshot().revision, 1)
        self.clock.advance(42.5)
        record(self.book, output_tokens=1)
        self.assertEqual(self.book.last_updated, NOW + 42.5)
        self.assertEqual(self.book.snapshot().revision, 2)


class SnapshotTests(SynchronousTestCase):
    """
    :obj:`UsageBook.snapshot` is a copy of the book, and a book made from a
    snapshot counts on from a copy of it.
    """

    def test_copy(self) -> None:
        """
        A snapshot holds the combinations and time of the book when it was
        taken; records after it change neither it nor its combinations.
        """
        clock = clock_at()
        book = UsageBook(clock)
        record(book, user="alice", input_tokens=1)
        snapshot = book.snapshot()
        clock.advance(10)
        record(book, user="alice", input_tokens=2)
        record(book, model="claude-haiku-4-5", user="bob", input_tokens=3)
        self.assertEqual(
            snapshot.combinations,
            (Combination(OPUS, STANDARD, WEEK_1, counts(1, 1, 1), {"alice": counts(1, 1, 1)}),),
        )
        self.assertEqual((snapshot.last_updated, snapshot.last_updated_ns, snapshot.revision), (NOW, None, 1))
        self.assertEqual(len(book.combinations), 2)
        self.assertEqual(book.combinations[0].by_user["alice"], counts(2, 2, 3))

    def test_counts_on_from_loaded(self) -> None:
        """
        A book made from a snapshot starts at revision 0 (nothing to save)
        with the snapshot's exact time, which it keeps until its first
        record; the snapshot is not changed by what the book records.
        """
        loaded = UsageSnapshot(
            combinations=(Combination(OPUS, STANDARD, WEEK_1, counts(1, 1, 5)),),
            last_updated=NOW,
            last_updated_ns=1_773_494_113_250_000_001,
            revision=7,
        )
        book = UsageBook(clock_at(NOW + 1), loaded)
        self.assertEqual(
            book.snapshot(),
            UsageSnapshot(loaded.combinations, NOW, 1_773_494_113_250_000_001, 0),
        )
        record(book, user="", input_tokens=1)
        self.assertEqual(loaded.combinations[0].total, counts(1, 1, 5))
        self.assertEqual(
            book.snapshot(),
            UsageSnapshot((Combination(OPUS, STANDARD, WEEK_1, counts(2, 2, 6)),), NOW + 1, None, 1),
        )
