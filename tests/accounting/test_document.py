"""
Tests for :obj:`ccm.accounting.document`: the costs of the usages file's
document, and reading a document back.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting.book import UsageBook
from ccm.accounting.counters import Combination
from ccm.accounting.document import UsageFileError, from_document, serialize, to_document
from tests.accounting.samples import load_book, small_book
from tests.fixtures import (
    NOW,
    OPUS,
    PREMIUM,
    STANDARD,
    UTC,
    UTC_PLUS_8,
    WEEK_1,
    WEEK_1_KEY,
    WEEK_2,
    WEEK_2_KEY,
    clock_at,
    counts,
    record,
)


def single_cost(model: str, context_window: int, **counts: int) -> Any:
    """
    The cost written for a book holding one response with ``counts``.
    """
    book = UsageBook(clock_at())
    record(book, model=model, context_window=context_window, week=0, **counts)
    document = to_document(book.snapshot(), UTC)
    return document["combinations"][0]["total"]["cost_usd"]


class CostTests(SynchronousTestCase):
    """
    :obj:`to_document` prices each combination with the price table
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
        book = load_book(
            {"combinations": [{"model": OPUS, "context_window": STANDARD, "total": {
                "request_count": 1, "input_tokens": 1000, "output_tokens": 2000,
                "cache_creation_input_tokens": 100000}}]},
            clock_at(),
        )
        # 1000*5 + 2000*25 + 100000*6.25 = 5000 + 50000 + 625000 = 680000 -> 0.68
        # (at the 1-hour rate it would be 1.055.)
        self.assertEqual(to_document(book.snapshot(), UTC)["combinations"][0]["total"]["cost_usd"], 0.68)

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
        costs = to_document(book.snapshot(), UTC_PLUS_8)["costs"]
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
        document = to_document(book.snapshot(), UTC_PLUS_8)
        self.assertEqual(document["costs"]["total_usd"], 0)
        self.assertEqual(document["costs"]["by_user"], {"alice": 0})
        self.assertEqual(document["costs"]["by_week"], {WEEK_1_KEY: 0, WEEK_2_KEY: 0})

        book = UsageBook(clock_at())
        record(book, user="alice", input_tokens=800)
        record(book, user="bob", input_tokens=800)
        document = to_document(book.snapshot(), UTC_PLUS_8)
        # total: 1600*5 / 1e6 = 0.008 -> 0.01
        self.assertEqual(document["combinations"][0]["total"]["cost_usd"], 0.01)
        self.assertEqual(document["costs"]["total_usd"], 0.01)
        self.assertEqual(document["costs"]["by_user"], {"alice": 0, "bob": 0})

    def test_no_week(self) -> None:
        """
        Without any tagged combination, ``by_week`` and ``by_user_and_week``
        are omitted, while ``by_user`` is present (empty when anonymous).
        """
        book = UsageBook(clock_at())
        record(book, week=0, user="", output_tokens=4000)
        self.assertEqual(to_document(book.snapshot(), UTC)["costs"], {"total_usd": 0.1, "by_user": {}})
        self.assertEqual(to_document(UsageBook(clock_at()).snapshot(), UTC)["costs"], {"total_usd": 0, "by_user": {}})


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
            data = serialize(book.snapshot(), UTC_PLUS_8)
            loaded = load_book(json.loads(data), clock_at())
            self.assertEqual(serialize(loaded.snapshot(), UTC_PLUS_8), data)
            self.assertEqual(loaded.last_updated, book.last_updated)
            self.assertEqual(loaded.combinations, book.combinations)
            self.assertEqual(loaded.snapshot().revision, 0)

    def test_keeps_counting(self) -> None:
        """
        Usage recorded after loading adds to the loaded combinations;
        only a new key appends one.
        """
        data = serialize(small_book(clock_at()).snapshot(), UTC_PLUS_8)
        clock = clock_at(NOW + 100)
        loaded = load_book(json.loads(data), clock)
        record(loaded, user="alice", messages=3, input_tokens=100, output_tokens=1)
        record(loaded, user="bob", input_tokens=7)
        record(loaded, model="claude-haiku-4-5", week=WEEK_2, user="bob", input_tokens=1)
        self.assertEqual(len(loaded.combinations), 3)
        first = loaded.combinations[0]
        self.assertEqual(
            (first.total.request_count, first.total.messages_count, first.total.tokens.input_tokens,
             first.total.tokens.output_tokens),
            (3, 6, 307, 40001),
        )
        self.assertEqual(first.by_user["alice"].tokens.input_tokens, 300)
        self.assertEqual(first.by_user["bob"].tokens.input_tokens, 7)
        self.assertEqual(loaded.combinations[2].week_start_unix, WEEK_2)
        self.assertEqual(loaded.last_updated, NOW + 100)
        self.assertEqual(loaded.snapshot().revision, 3)


class FromDocumentTests(SynchronousTestCase):
    """
    :obj:`from_document` reads what it needs and rejects a wrong
    structure with a message naming the JSON path.
    """

    def test_minimal_documents(self) -> None:
        """
        Empty or null combinations (Go writes a nil slice as null) give an
        empty snapshot; missing counts are 0; unknown keys are ignored.
        """
        for document in ({"combinations": None}, {"combinations": [], "extra": 1}):
            snapshot = from_document(document)
            self.assertEqual((snapshot.combinations, snapshot.last_updated), ((), None))
        snapshot = from_document(
            {"combinations": [{"model": OPUS, "context_window": STANDARD, "note": "x",
                               "total": {"input_tokens": 3, "future_field": 9}}]}
        )
        self.assertEqual(snapshot.combinations, (Combination(OPUS, STANDARD, 0, counts(input_tokens=3), {}),))

    def test_last_updated(self) -> None:
        """
        ``last_updated`` is read as RFC 3339 in any offset; Go's zero time,
        a missing value and anything unparseable give ``None``.
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
            snapshot = from_document({"last_updated": text, "combinations": []})
            self.assertEqual(snapshot.last_updated, expected, text)

    def test_not_a_usages_file(self) -> None:
        """
        A JSON object without ``combinations``, which every usages file has,
        is not taken for an empty usages file; a configuration is named as
        such.
        """
        document: dict[str, Any]
        for document in ({}, {"last_updated": "2026-03-14T13:15:13Z"}, {"costs": {}}):
            error = self.assertRaises(UsageFileError, from_document, document)
            self.assertEqual(
                str(error),
                'no "combinations" key, which every usages file has, even an empty one',
            )
        for document in (
            {"services": [{"type": "ccm"}]},
            {"listen_port": 8080, "users": [{"name": "a", "token": "ccm-secret-token"}]},
        ):
            error = self.assertRaises(UsageFileError, from_document, document)
            self.assertTrue(
                str(error).endswith(
                    "; it looks like a ccm configuration, whose usages_path names the usages file"
                ),
                str(error),
            )
            self.assertNotIn("ccm-secret-token", str(error))

    def test_wrong_structure(self) -> None:
        """
        Each structural error raises :obj:`UsageFileError` naming where it is.
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
            error = self.assertRaises(UsageFileError, from_document, document)
            self.assertIn(where, str(error))
