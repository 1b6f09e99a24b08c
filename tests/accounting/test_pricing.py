"""
Tests for :obj:`ccm.accounting.pricing`: which prices each model id resolves to, what one
request costs, when the long-context premium applies, how models missing
from the table are priced and reported, and cent rounding.

Expected figures come from the official price table (reference
``anthropic-wire.md`` sections 5.1 and 5.3; Fable 5.2 from
``field-2026-12.md`` section 5) and are worked out by hand in the comments; no expected value is computed by the code under test.
"""

from __future__ import annotations


from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting import pricing
from ccm.accounting.pricing import (
    MODELS_REMEMBERED,
    PREMIUM_CONTEXT_WINDOW,
    STANDARD_CONTEXT_WINDOW,
    Prices,
    context_window_for,
    cost_usd,
    family_of,
    prices_for,
    round_cents,
)
from ccm.accounting.tokens import TokenCounts
from tests.fixtures import logged_events


# USD per million tokens: input, output, cache read, 5-minute write, 1-hour
# write, as in the official table (anthropic-wire.md section 5.1).
# Fable 5.2: Claude Code's /model menu gives $8/$40 (field-2026-12.md
# section 5); the cache prices are the usual multipliers, 8 x 0.1 = 0.8,
# 8 x 1.25 = 10, 8 x 2 = 16, as no source gives them.
FABLE_5_2 = Prices(8, 40, 0.8, 10, 16)
FABLE_5_1 = Prices(10, 50, 0.25, 12.5, 20)
FABLE_5 = Prices(10, 50, 1.0, 12.5, 20)
OPUS_5_5 = Prices(4, 20, 0.2, 5, 8)
OPUS_CURRENT = Prices(5, 25, 0.5, 6.25, 10)
OPUS_LEGACY = Prices(15, 75, 1.5, 18.75, 30)
SONNET_5_5 = Prices(2, 10, 0.1, 2.5, 4)
SONNET_5 = Prices(2, 10, 0.2, 2.5, 4)
SONNET = Prices(3, 15, 0.3, 3.75, 6)
# Section 5.3: input 2x, output 1.5x, cache multipliers on the new input
# price (5m 1.25 * 6 = 7.5, 1h 2 * 6 = 12, read 0.1 * 6 = 0.6).
SONNET_LONG_CONTEXT = Prices(6, 22.5, 0.6, 7.5, 12)
HAIKU_5_5 = Prices(0.1, 0.5, 0.01, 0.125, 0.2)
# Prompts over 100k tokens (official table, second Haiku 5.5 row).
HAIKU_5_5_LONG_PROMPT = Prices(0.5, 2.5, 0.05, 0.625, 1)
HAIKU_4_5 = Prices(1, 5, 0.1, 1.25, 2)
HAIKU_3_5 = Prices(0.8, 4, 0.08, 1, 1.6)
HAIKU_3 = Prices(0.25, 1.25, 0.03, 0.3, 0.5)

# Every family of the table, by the ids it is known under: the plain id, the
# dated id (the real date where one exists, else an invented one of the
# same shape) and a Vertex-style "@" id.
KNOWN_MODELS: tuple[tuple[str, Prices], ...] = (
    ("claude-fable-5-2", FABLE_5_2),
    ("claude-fable-5-2-20261115", FABLE_5_2),
    ("claude-fable-5-1", FABLE_5_1),
    ("claude-fable-5-1-20261001", FABLE_5_1),
    ("claude-mythos-5-1", FABLE_5_1),
    ("claude-mythos-5-1-20261001", FABLE_5_1),
    ("claude-fable-5", FABLE_5),
    ("claude-fable-5-20260801", FABLE_5),
    ("claude-mythos-5", FABLE_5),
    ("claude-mythos-5-20260801", FABLE_5),
    ("claude-opus-5-5", OPUS_5_5),
    ("claude-opus-5-5-20260901", OPUS_5_5),
    ("claude-opus-5", OPUS_CURRENT),
    ("claude-opus-5-20260701", OPUS_CURRENT),
    ("claude-opus-4-8", OPUS_CURRENT),
    ("claude-opus-4-8-20260501", OPUS_CURRENT),
    ("claude-opus-4-7", OPUS_CURRENT),
    ("claude-opus-4-6", OPUS_CURRENT),
    ("claude-opus-4-5", OPUS_CURRENT),
    ("claude-opus-4-5-20251101", OPUS_CURRENT),
    ("claude-opus-4-5@20251101", OPUS_CURRENT),
    ("claude-opus-4-1", OPUS_LEGACY),
    ("claude-opus-4-1-20250805", OPUS_LEGACY),
    ("claude-opus-4", OPUS_LEGACY),
    ("claude-opus-4-20250514", OPUS_LEGACY),
    ("claude-4-opus-20250514", OPUS_LEGACY),
    ("claude-3-opus-20240229", OPUS_LEGACY),
    ("claude-sonnet-5-5", SONNET_5_5),
    ("claude-sonnet-5-5-20261007", SONNET_5_5),
    ("claude-sonnet-5", SONNET_5),
    ("claude-sonnet-5-20260601", SONNET_5),
    ("claude-sonnet-4-6", SONNET),
    ("claude-sonnet-4-6-20260201", SONNET),
    ("claude-sonnet-4-5", SONNET),
    ("claude-sonnet-4-5-20250929", SONNET),
    ("claude-sonnet-4", SONNET),
    ("claude-sonnet-4-20250514", SONNET),
    ("claude-3-7-sonnet-20250219", SONNET),
    ("claude-3-5-sonnet-20241022", SONNET),
    ("claude-haiku-5-5", HAIKU_5_5),
    ("claude-haiku-5-5-20261101", HAIKU_5_5),
    ("claude-haiku-4-5", HAIKU_4_5),
    ("claude-haiku-4-5-20251001", HAIKU_4_5),
    ("claude-3-5-haiku-20241022", HAIKU_3_5),
    ("claude-3-haiku-20240307", HAIKU_3),
)


SONNET_4_5 = "claude-sonnet-4-5-20250929"


def request_cost(
    model: str,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read: int = 0,
    write_5m: int = 0,
    write_1h: int = 0,
    cache_creation: int | None = None,
    context_window: int = STANDARD_CONTEXT_WINDOW,
) -> float:
    """
    The unrounded cost of one response of ``model``, with
    ``cache_creation_input_tokens`` defaulting to the sum of the split.
    """
    return cost_usd(
        prices_for(model, context_window),
        TokenCounts(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_input_tokens=cache_read,
            cache_creation_input_tokens=write_5m + write_1h if cache_creation is None else cache_creation,
            cache_creation_5m_input_tokens=write_5m,
            cache_creation_1h_input_tokens=write_1h,
        ),
    )


class PricesForTests(SynchronousTestCase):
    """
    Tests for :obj:`prices_for` and :obj:`family_of` on the models of the table.
    """

    def setUp(self) -> None:
        self.patch(pricing, "_reported_unknown", set())
        self.events = logged_events(self)

    def test_every_family_plain_and_dated(self) -> None:
        """
        Every family of the official table resolves, from its plain id and
        from dated ids, to its five prices, and none of them is reported as
        unknown.
        """
        wrong = [
            (model, prices_for(model, STANDARD_CONTEXT_WINDOW), expected)
            for model, expected in KNOWN_MODELS
            if prices_for(model, STANDARD_CONTEXT_WINDOW) != expected
        ]
        self.assertEqual(wrong, [])
        unknown = [model for model, _ in KNOWN_MODELS if family_of(model) is None]
        self.assertEqual(unknown, [])
        self.assertEqual(len(self.events), 0)

    def test_more_specific_family_wins(self) -> None:
        """
        A model whose id starts with an older family's id gets its own
        prices: Opus 4.5 is not priced as Opus 4, Sonnet 5.5 not as Sonnet
        5, Opus 5.5 not as Opus 5, Fable 5.1 not as Fable 5, Haiku 3.5 not
        as Haiku 3.
        """
        self.assertEqual(prices_for("claude-opus-4-5-20251101", STANDARD_CONTEXT_WINDOW), OPUS_CURRENT)
        self.assertNotEqual(prices_for("claude-opus-4-5", STANDARD_CONTEXT_WINDOW), OPUS_LEGACY)
        self.assertEqual(prices_for("claude-sonnet-5-5", STANDARD_CONTEXT_WINDOW).cache_read, 0.1)
        self.assertEqual(prices_for("claude-sonnet-5", STANDARD_CONTEXT_WINDOW).cache_read, 0.2)
        self.assertEqual(prices_for("claude-opus-5-5", STANDARD_CONTEXT_WINDOW).input, 4)
        self.assertEqual(prices_for("claude-opus-5", STANDARD_CONTEXT_WINDOW).input, 5)
        self.assertEqual(prices_for("claude-fable-5-1", STANDARD_CONTEXT_WINDOW).cache_read, 0.25)
        self.assertEqual(prices_for("claude-fable-5", STANDARD_CONTEXT_WINDOW).cache_read, 1.0)
        self.assertEqual(prices_for("claude-3-5-haiku-20241022", STANDARD_CONTEXT_WINDOW).input, 0.8)
        self.assertEqual(prices_for("claude-3-haiku-20240307", STANDARD_CONTEXT_WINDOW).input, 0.25)

    def test_family_matches_whole_version(self) -> None:
        """
        A family covers its own ids, dated or ``-latest``, and nothing else:
        a newer version (``claude-opus-4-9``) or a longer version number
        (``claude-opus-4-50``, ``claude-sonnet-5-50``) is not priced as the
        older family it starts with, but as an unknown model of its word,
        at that word's current prices, and logged.
        """
        self.assertEqual(prices_for("claude-opus-4-1-20250805", STANDARD_CONTEXT_WINDOW), OPUS_LEGACY)
        self.assertEqual(prices_for("claude-3-5-sonnet-latest", STANDARD_CONTEXT_WINDOW), SONNET)
        self.assertEqual(len(self.events), 0)
        self.assertEqual(prices_for("claude-opus-4-9", STANDARD_CONTEXT_WINDOW), OPUS_CURRENT)
        self.assertEqual(prices_for("claude-opus-4-50", STANDARD_CONTEXT_WINDOW), OPUS_CURRENT)
        self.assertEqual(prices_for("claude-sonnet-5-50", STANDARD_CONTEXT_WINDOW), SONNET)
        self.assertEqual(len(self.events), 3)

    def test_cache_multipliers(self) -> None:
        """
        Where the table gives no exception, 5-minute writes cost 1.25x the
        input price, 1-hour writes 2x and reads 0.1x, checked for two
        families with different input prices.
        """
        # Opus 4.8: 5 * 1.25 = 6.25, 5 * 2 = 10, 5 * 0.1 = 0.5.
        opus = prices_for("claude-opus-4-8", STANDARD_CONTEXT_WINDOW)
        self.assertEqual(
            (opus.cache_write_5m, opus.cache_write_1h, opus.cache_read),
            (6.25, 10, 0.5),
        )
        # Haiku 3.5: 0.8 * 1.25 = 1, 0.8 * 2 = 1.6, 0.8 * 0.1 = 0.08.
        haiku = prices_for("claude-3-5-haiku-20241022", STANDARD_CONTEXT_WINDOW)
        self.assertEqual(
            (haiku.cache_write_5m, haiku.cache_write_1h, haiku.cache_read),
            (1, 1.6, 0.08),
        )


class CostTests(SynchronousTestCase):
    """
    Tests for :obj:`cost_usd`: one realistic request per family, input, output,
    cache reads and both kinds of cache writes.
    """

    def test_opus_4_8(self) -> None:
        """
        An Opus 4.8 request costs 5/25/0.5/6.25/10 per million tokens.
        """
        # 1,234 x 5 = 6,170; 5,678 x 25 = 141,950; 98,765 x 0.5 = 49,382.5;
        # 4,321 x 6.25 = 27,006.25; 12,345 x 10 = 123,450.
        # Sum 347,958.75 / 1e6 = 0.34795875.
        cost = request_cost(
            "claude-opus-4-8",
            input_tokens=1_234,
            output_tokens=5_678,
            cache_read=98_765,
            write_5m=4_321,
            write_1h=12_345,
        )
        self.assertAlmostEqual(cost, 0.34795875, places=12)

    def test_opus_4_1(self) -> None:
        """
        An Opus 4.1 request costs 15/75/1.5/18.75/30 per million tokens.
        """
        # 3 x 15 = 45; 812 x 75 = 60,900; 45,000 x 1.5 = 67,500;
        # 2,000 x 18.75 = 37,500; 10,000 x 30 = 300,000.
        # Sum 465,945 / 1e6 = 0.465945.
        cost = request_cost(
            "claude-opus-4-1-20250805",
            input_tokens=3,
            output_tokens=812,
            cache_read=45_000,
            write_5m=2_000,
            write_1h=10_000,
        )
        self.assertAlmostEqual(cost, 0.465945, places=12)

    def test_sonnet_4_5(self) -> None:
        """
        A Sonnet 4.5 request within 200k costs 3/15/0.3/3.75/6 per million
        tokens.
        """
        # 2,500 x 3 = 7,500; 1,200 x 15 = 18,000; 150,000 x 0.3 = 45,000;
        # 8,000 x 3.75 = 30,000; 4,000 x 6 = 24,000.
        # Sum 124,500 / 1e6 = 0.1245.
        cost = request_cost(
            "claude-sonnet-4-5-20250929",
            input_tokens=2_500,
            output_tokens=1_200,
            cache_read=150_000,
            write_5m=8_000,
            write_1h=4_000,
        )
        self.assertAlmostEqual(cost, 0.1245, places=12)

    def test_sonnet_5(self) -> None:
        """
        A Sonnet 5 request costs 2/10/0.2/2.5/4 per million tokens.
        """
        # 10,000 x 2 = 20,000; 3,000 x 10 = 30,000; 50,000 x 0.2 = 10,000;
        # 1,000 x 2.5 = 2,500; 2,000 x 4 = 8,000.
        # Sum 70,500 / 1e6 = 0.0705.
        cost = request_cost(
            "claude-sonnet-5",
            input_tokens=10_000,
            output_tokens=3_000,
            cache_read=50_000,
            write_5m=1_000,
            write_1h=2_000,
        )
        self.assertAlmostEqual(cost, 0.0705, places=12)

    def test_haiku_4_5(self) -> None:
        """
        A Haiku 4.5 request costs 1/5/0.1/1.25/2 per million tokens.
        """
        # 40,000 x 1 = 40,000; 600 x 5 = 3,000; 20,000 x 0.1 = 2,000;
        # 4,000 x 1.25 = 5,000; 1,500 x 2 = 3,000.
        # Sum 53,000 / 1e6 = 0.053.
        cost = request_cost(
            "claude-haiku-4-5-20251001",
            input_tokens=40_000,
            output_tokens=600,
            cache_read=20_000,
            write_5m=4_000,
            write_1h=1_500,
        )
        self.assertAlmostEqual(cost, 0.053, places=12)

    def test_haiku_3(self) -> None:
        """
        A Haiku 3 request costs 0.25/1.25/0.03/0.30/0.50 per million tokens
        (its cache prices are not the usual multiples).
        """
        # 100,000 x 0.25 = 25,000; 8,000 x 1.25 = 10,000;
        # 200,000 x 0.03 = 6,000; 10,000 x 0.3 = 3,000; 10,000 x 0.5 = 5,000.
        # Sum 49,000 / 1e6 = 0.049.
        cost = request_cost(
            "claude-3-haiku-20240307",
            input_tokens=100_000,
            output_tokens=8_000,
            cache_read=200_000,
            write_5m=10_000,
            write_1h=10_000,
        )
        self.assertAlmostEqual(cost, 0.049, places=12)

    def test_fable_5_1(self) -> None:
        """
        A Fable 5.1 request costs 10/50/0.25/12.5/20 per million tokens
        (reads at 0.025x the input price).
        """
        # 500 x 10 = 5,000; 4,000 x 50 = 200,000; 400,000 x 0.25 = 100,000;
        # 2,000 x 12.5 = 25,000; 3,000 x 20 = 60,000.
        # Sum 390,000 / 1e6 = 0.39.
        cost = request_cost(
            "claude-fable-5-1",
            input_tokens=500,
            output_tokens=4_000,
            cache_read=400_000,
            write_5m=2_000,
            write_1h=3_000,
        )
        self.assertAlmostEqual(cost, 0.39, places=12)

    def test_fable_5_2(self) -> None:
        """
        A Fable 5.2 request costs 8/40 per million input/output tokens, with
        the cache at the usual multipliers (0.8/10/16).
        """
        # 1,000 x 8 = 8,000; 2,000 x 40 = 80,000; 100,000 x 0.8 = 80,000;
        # 3,000 x 10 = 30,000; 500 x 16 = 8,000.
        # Sum 206,000 / 1e6 = 0.206.
        cost = request_cost(
            "claude-fable-5-2",
            input_tokens=1_000,
            output_tokens=2_000,
            cache_read=100_000,
            write_5m=3_000,
            write_1h=500,
        )
        self.assertAlmostEqual(cost, 0.206, places=12)

    def test_fable_5(self) -> None:
        """
        A Fable 5 (or Mythos 5) request costs 10/50/1/12.5/20 per million
        tokens.
        """
        # 100 x 10 = 1,000; 1,000 x 50 = 50,000; 20,000 x 1 = 20,000;
        # 800 x 12.5 = 10,000; 250 x 20 = 5,000.
        # Sum 86,000 / 1e6 = 0.086.
        for model in ("claude-fable-5", "claude-mythos-5-20260801"):
            cost = request_cost(
                model, input_tokens=100, output_tokens=1_000, cache_read=20_000, write_5m=800, write_1h=250
            )
            self.assertAlmostEqual(cost, 0.086, places=12)

    def test_opus_5_5(self) -> None:
        """
        An Opus 5.5 request costs 4/20/0.2/5/8 per million tokens, in the
        1M window too (no premium).
        """
        # 2,000 x 4 = 8,000; 10,000 x 20 = 200,000; 300,000 x 0.2 = 60,000;
        # 4,000 x 5 = 20,000; 1,000 x 8 = 8,000.
        # Sum 296,000 / 1e6 = 0.296.
        for window in (STANDARD_CONTEXT_WINDOW, PREMIUM_CONTEXT_WINDOW):
            cost = request_cost(
                "claude-opus-5-5",
                input_tokens=2_000,
                output_tokens=10_000,
                cache_read=300_000,
                write_5m=4_000,
                write_1h=1_000,
                context_window=window,
            )
            self.assertAlmostEqual(cost, 0.296, places=12)

    def test_sonnet_5_5(self) -> None:
        """
        A Sonnet 5.5 request costs 2/10/0.1/2.5/4 per million tokens.
        """
        # 5,000 x 2 = 10,000; 1,000 x 10 = 10,000; 80,000 x 0.1 = 8,000;
        # 2,000 x 2.5 = 5,000; 1,500 x 4 = 6,000.
        # Sum 39,000 / 1e6 = 0.039.
        cost = request_cost(
            "claude-sonnet-5-5",
            input_tokens=5_000,
            output_tokens=1_000,
            cache_read=80_000,
            write_5m=2_000,
            write_1h=1_500,
        )
        self.assertAlmostEqual(cost, 0.039, places=12)

    def test_sonnet_4_6(self) -> None:
        """
        A Sonnet 4.6 request costs 3/15/0.3/3.75/6 per million tokens, in
        the 1M window too (its premium ended on 2026-03-13).
        """
        # 1,000 x 3 = 3,000; 1,000 x 15 = 15,000; 10,000 x 0.3 = 3,000;
        # 1,000 x 3.75 = 3,750; 1,000 x 6 = 6,000.
        # Sum 30,750 / 1e6 = 0.03075.
        for window in (STANDARD_CONTEXT_WINDOW, PREMIUM_CONTEXT_WINDOW):
            cost = request_cost(
                "claude-sonnet-4-6",
                input_tokens=1_000,
                output_tokens=1_000,
                cache_read=10_000,
                write_5m=1_000,
                write_1h=1_000,
                context_window=window,
            )
            self.assertAlmostEqual(cost, 0.03075, places=12)

    def test_sonnet_3_7(self) -> None:
        """
        A Sonnet 3.7 request costs 3/15 per million input/output tokens.
        """
        # 10,000 x 3 = 30,000; 2,000 x 15 = 30,000. Sum 60,000 / 1e6 = 0.06.
        cost = request_cost("claude-3-7-sonnet-20250219", input_tokens=10_000, output_tokens=2_000)
        self.assertAlmostEqual(cost, 0.06, places=12)

    def test_haiku_5_5_up_to_100k(self) -> None:
        """
        A Haiku 5.5 request whose prompt is exactly 100,000 tokens is in the
        standard tier and costs 0.10/0.50/0.01/0.125/0.20 per million tokens.
        """
        # Prompt 20,000 + 70,000 + 8,000 + 2,000 = 100,000: not over 100k.
        self.assertEqual(context_window_for("claude-haiku-5-5", 100_000, []), STANDARD_CONTEXT_WINDOW)
        # 20,000 x 0.1 = 2,000; 4,000 x 0.5 = 2,000; 70,000 x 0.01 = 700;
        # 8,000 x 0.125 = 1,000; 2,000 x 0.2 = 400.
        # Sum 6,100 / 1e6 = 0.0061.
        cost = request_cost(
            "claude-haiku-5-5",
            input_tokens=20_000,
            output_tokens=4_000,
            cache_read=70_000,
            write_5m=8_000,
            write_1h=2_000,
            context_window=STANDARD_CONTEXT_WINDOW,
        )
        self.assertAlmostEqual(cost, 0.0061, places=12)

    def test_haiku_5_5_over_100k(self) -> None:
        """
        A Haiku 5.5 request whose prompt is over 100,000 tokens is filed
        under the 1M window, without any beta, and all its tokens cost
        0.50/2.50/0.05/0.625/1 per million.
        """
        # Prompt 20,001 + 70,000 + 8,000 + 2,000 = 100,001.
        self.assertEqual(context_window_for("claude-haiku-5-5", 100_001, []), PREMIUM_CONTEXT_WINDOW)
        self.assertEqual(prices_for("claude-haiku-5-5-20261101", PREMIUM_CONTEXT_WINDOW), HAIKU_5_5_LONG_PROMPT)
        # 20,001 x 0.5 = 10,000.5; 4,000 x 2.5 = 10,000; 70,000 x 0.05 = 3,500;
        # 8,000 x 0.625 = 5,000; 2,000 x 1 = 2,000.
        # Sum 30,500.5 / 1e6 = 0.0305005.
        cost = request_cost(
            "claude-haiku-5-5",
            input_tokens=20_001,
            output_tokens=4_000,
            cache_read=70_000,
            write_5m=8_000,
            write_1h=2_000,
            context_window=PREMIUM_CONTEXT_WINDOW,
        )
        self.assertAlmostEqual(cost, 0.0305005, places=12)

    def test_haiku_3_5(self) -> None:
        """
        A Haiku 3.5 request costs 0.80/4/0.08/1/1.60 per million tokens.
        """
        # 10,000 x 0.8 = 8,000; 2,000 x 4 = 8,000; 50,000 x 0.08 = 4,000;
        # 3,000 x 1 = 3,000; 5,000 x 1.6 = 8,000.
        # Sum 31,000 / 1e6 = 0.031.
        cost = request_cost(
            "claude-3-5-haiku-20241022",
            input_tokens=10_000,
            output_tokens=2_000,
            cache_read=50_000,
            write_5m=3_000,
            write_1h=5_000,
        )
        self.assertAlmostEqual(cost, 0.031, places=12)

    def test_one_hour_writes_cost_twice_input(self) -> None:
        """
        A million 1-hour cache writes cost 2x the input price, a million
        5-minute writes 1.25x: the two are not priced alike.
        """
        # Sonnet 4.5: 1,000,000 x 6 / 1e6 = 6; 1,000,000 x 3.75 / 1e6 = 3.75.
        self.assertAlmostEqual(
            request_cost("claude-sonnet-4-5", write_1h=1_000_000), 6.0, places=12
        )
        self.assertAlmostEqual(
            request_cost("claude-sonnet-4-5", write_5m=1_000_000), 3.75, places=12
        )

    def test_legacy_figures_priced_as_five_minute_writes(self) -> None:
        """
        Figures recorded without the lifetime split (older files) price all
        cache creation at the 5-minute rate.
        """
        # Opus 4.8: 10,000 x 6.25 = 62,500 / 1e6 = 0.0625.
        cost = request_cost("claude-opus-4-8", cache_creation=10_000)
        self.assertAlmostEqual(cost, 0.0625, places=12)

    def test_split_ignores_cache_creation_total(self) -> None:
        """
        When the split is known, ``cache_creation_input_tokens`` is ignored,
        even when it disagrees with the split; a split with only 1-hour
        writes is priced at the 1-hour rate.
        """
        # Opus 4.8: 1,000 x 6.25 + 2,000 x 10 = 26,250 / 1e6 = 0.02625.
        cost = request_cost("claude-opus-4-8", write_5m=1_000, write_1h=2_000, cache_creation=999_999)
        self.assertAlmostEqual(cost, 0.02625, places=12)
        # 3,000 x 10 = 30,000 / 1e6 = 0.03 (not 3,000 x 6.25 = 0.01875).
        only_1h = request_cost("claude-opus-4-8", write_1h=3_000, cache_creation=3_000)
        self.assertAlmostEqual(only_1h, 0.03, places=12)

    def test_nothing_costs_nothing(self) -> None:
        """
        A response with no tokens costs exactly 0.
        """
        self.assertEqual(request_cost("claude-opus-4-8"), 0.0)


class LongContextTests(SynchronousTestCase):
    """
    Tests for :obj:`context_window_for` and the long-context premium.
    """

    def test_beta_and_more_than_200k(self) -> None:
        """
        The 1M window is used when an item of the beta header starts with
        ``context-1m`` and the prompt is over 200,000 tokens.
        """
        self.assertEqual(
            context_window_for(SONNET_4_5, 200_001, ["context-1m-2025-08-07"]), PREMIUM_CONTEXT_WINDOW
        )

    def test_exactly_200k_is_standard(self) -> None:
        """
        A prompt of exactly 200,000 tokens is within the standard window,
        even with the beta.
        """
        self.assertEqual(
            context_window_for(SONNET_4_5, 200_000, ["context-1m-2025-08-07"]), STANDARD_CONTEXT_WINDOW
        )

    def test_no_beta_is_standard(self) -> None:
        """
        Without the beta, even a huge prompt is counted in the standard
        window, whether the header is absent or names other betas.
        """
        self.assertEqual(context_window_for(SONNET_4_5, 900_000, []), STANDARD_CONTEXT_WINDOW)
        self.assertEqual(
            context_window_for(SONNET_4_5, 900_000, ["oauth-2025-04-20,fine-grained-tool-streaming-2025-05-14"]),
            STANDARD_CONTEXT_WINDOW,
        )

    def test_beta_in_comma_list_with_spaces(self) -> None:
        """
        The beta is found inside a comma-separated list with spaces around
        the items.
        """
        betas = ["claude-code-20250219 ,  context-1m-2025-08-07 , interleaved-thinking-2025-05-14"]
        self.assertEqual(context_window_for(SONNET_4_5, 250_000, betas), PREMIUM_CONTEXT_WINDOW)

    def test_beta_in_any_header_value(self) -> None:
        """
        The beta counts in any of several ``anthropic-beta`` values, not only
        the first.
        """
        betas = ["claude-code-20250219", "oauth-2025-04-20", "context-1m-2025-08-07"]
        self.assertEqual(context_window_for(SONNET_4_5, 250_000, betas), PREMIUM_CONTEXT_WINDOW)

    def test_item_must_start_with_prefix(self) -> None:
        """
        An item that merely contains ``context-1m`` further in does not
        count.
        """
        self.assertEqual(
            context_window_for(SONNET_4_5, 250_000, ["x-context-1m-2025-08-07"]), STANDARD_CONTEXT_WINDOW
        )

    def test_native_1m_without_beta(self) -> None:
        """
        Opus 5.5 has a native 1M window: a prompt over 200,000 tokens is
        filed under 1M without the beta, one of exactly 200,000 under 200k.
        """
        self.assertEqual(context_window_for("claude-opus-5-5", 200_001, []), PREMIUM_CONTEXT_WINDOW)
        self.assertEqual(
            context_window_for("claude-opus-5-5-20260901", 900_000, ["claude-code-20250219"]), PREMIUM_CONTEXT_WINDOW
        )
        self.assertEqual(context_window_for("claude-opus-5-5", 200_000, []), STANDARD_CONTEXT_WINDOW)

    def test_beta_needed_by_other_models(self) -> None:
        """
        Models not known to have a native 1M window (Opus 4.8, Sonnet 5,
        Fable 5.2) and models missing from the table need the beta for
        the 1M window, above 200,000 tokens.
        """
        for model in ("claude-opus-4-8", "claude-sonnet-5", "claude-fable-5-2", "claude-opus-9"):
            self.assertEqual(context_window_for(model, 250_000, []), STANDARD_CONTEXT_WINDOW)
            self.assertEqual(
                context_window_for(model, 250_000, ["context-1m-2025-08-07"]), PREMIUM_CONTEXT_WINDOW
            )
            self.assertEqual(
                context_window_for(model, 200_000, ["context-1m-2025-08-07"]), STANDARD_CONTEXT_WINDOW
            )

    def test_threshold_is_200k_with_beta(self) -> None:
        """
        With the beta, Sonnet 4.5 stays in the standard tier up to 200,000
        tokens; Haiku 5.5's tier starts above 100,000, beta or not.
        """
        betas = ["context-1m-2025-08-07"]
        self.assertEqual(context_window_for(SONNET_4_5, 150_000, betas), STANDARD_CONTEXT_WINDOW)
        self.assertEqual(context_window_for("claude-haiku-5-5", 150_000, betas), PREMIUM_CONTEXT_WINDOW)
        self.assertEqual(context_window_for("claude-haiku-5-5", 150_000, []), PREMIUM_CONTEXT_WINDOW)

    def test_premium_prices_for_sonnet_4_and_4_5(self) -> None:
        """
        Sonnet 4 and Sonnet 4.5 in the 1M window cost 6/22.5 with the cache
        multipliers on top (7.5/12/0.6).
        """
        for model in ("claude-sonnet-4-5-20250929", "claude-sonnet-4-20250514", "claude-sonnet-4-5"):
            self.assertEqual(prices_for(model, PREMIUM_CONTEXT_WINDOW), SONNET_LONG_CONTEXT)

    def test_premium_request_cost(self) -> None:
        """
        A long-context Sonnet 4.5 request is billed entirely at the premium
        prices.
        """
        # 150,000 x 6 = 900,000; 8,000 x 22.5 = 180,000;
        # 60,000 x 0.6 = 36,000; 5,000 x 7.5 = 37,500; 2,000 x 12 = 24,000.
        # Sum 1,177,500 / 1e6 = 1.1775.
        cost = request_cost(
            "claude-sonnet-4-5-20250929",
            input_tokens=150_000,
            output_tokens=8_000,
            cache_read=60_000,
            write_5m=5_000,
            write_1h=2_000,
            context_window=PREMIUM_CONTEXT_WINDOW,
        )
        self.assertAlmostEqual(cost, 1.1775, places=12)

    def test_no_premium_for_newer_models(self) -> None:
        """
        Sonnet 4.6, Opus 4.6, Opus 4.8, Sonnet 5 and Fable 5 include the 1M
        window at their standard prices.
        """
        self.assertEqual(prices_for("claude-sonnet-4-6", PREMIUM_CONTEXT_WINDOW), SONNET)
        self.assertEqual(prices_for("claude-opus-4-6", PREMIUM_CONTEXT_WINDOW), OPUS_CURRENT)
        self.assertEqual(prices_for("claude-opus-4-8", PREMIUM_CONTEXT_WINDOW), OPUS_CURRENT)
        self.assertEqual(prices_for("claude-sonnet-5", PREMIUM_CONTEXT_WINDOW), SONNET_5)
        self.assertEqual(prices_for("claude-fable-5", PREMIUM_CONTEXT_WINDOW), FABLE_5)

    def test_standard_window_no_premium(self) -> None:
        """
        Sonnet 4.5 in the standard window has the standard prices.
        """
        self.assertEqual(prices_for("claude-sonnet-4-5-20250929", STANDARD_CONTEXT_WINDOW), SONNET)


class UnknownModelTests(SynchronousTestCase):
    """
    Tests for models missing from the price table.
    """

    def setUp(self) -> None:
        self.patch(pricing, "_reported_unknown", set())
        self.events = logged_events(self)

    def test_priced_by_family_word(self) -> None:
        """
        A model not in the table is priced by the family word in its name,
        in any case: opus, sonnet, haiku, fable or mythos.
        """
        self.assertEqual(prices_for("claude-opus-9", STANDARD_CONTEXT_WINDOW), OPUS_CURRENT)
        self.assertEqual(prices_for("Claude-Sonnet-Next", STANDARD_CONTEXT_WINDOW), SONNET)
        self.assertEqual(prices_for("CLAUDE-HAIKU-7", STANDARD_CONTEXT_WINDOW), HAIKU_4_5)
        self.assertEqual(prices_for("claude-fable-6", STANDARD_CONTEXT_WINDOW), FABLE_5)
        self.assertEqual(prices_for("claude-MYTHOS-6", STANDARD_CONTEXT_WINDOW), FABLE_5)

    def test_no_family_word_priced_as_sonnet(self) -> None:
        """
        A model without a family word is priced as Sonnet, with no premium
        even in the 1M window.
        """
        self.assertEqual(prices_for("some-other-model", STANDARD_CONTEXT_WINDOW), SONNET)
        self.assertEqual(prices_for("some-other-model", PREMIUM_CONTEXT_WINDOW), SONNET)
        self.assertIsNone(family_of("some-other-model"))

    def test_family_remembered_within_bound(self) -> None:
        """
        :obj:`family_of` gives the same family whether it remembers the id
        or not, and remembers at most :obj:`MODELS_REMEMBERED` ids, however
        many distinct ids clients send.
        """
        first = family_of("claude-sonnet-4-5")
        self.assertIsNotNone(first)
        for number in range(MODELS_REMEMBERED * 3):
            family_of(f"claude-unknown-{number}")
        self.assertLessEqual(family_of.cache_info().currsize, MODELS_REMEMBERED)
        self.assertIs(family_of("claude-sonnet-4-5"), first)

    def test_logged_once_per_model(self) -> None:
        """
        Each unknown model is logged once, as a warning naming it and the
        prices chosen; known models are not logged.
        """
        for _ in range(3):
            prices_for("claude-opus-9", STANDARD_CONTEXT_WINDOW)
        prices_for("claude-opus-4-8", STANDARD_CONTEXT_WINDOW)
        prices_for("mystery-model", STANDARD_CONTEXT_WINDOW)
        prices_for("mystery-model", PREMIUM_CONTEXT_WINDOW)
        self.assertEqual(len(self.events), 2)
        self.assertEqual([event["log_level"] for event in self.events], [LogLevel.warn] * 2)
        first, second = (formatEvent(event) for event in self.events)
        self.assertIn("'claude-opus-9'", first)
        self.assertIn("5/25", first)
        self.assertIn("'mystery-model'", second)
        self.assertIn("3/15", second)

    def test_reports_bounded(self) -> None:
        """
        At most :obj:`pricing.MAX_REPORTED_UNKNOWN_MODELS` unknown ids are
        warned about, each once; the next new id gets one last warning
        saying further ones go unreported, and later ones get none.
        """
        self.patch(pricing, "MAX_REPORTED_UNKNOWN_MODELS", 3)
        for _ in range(2):
            for index in range(6):
                self.assertEqual(prices_for(f"claude-opus-{index}-x", STANDARD_CONTEXT_WINDOW), OPUS_CURRENT)
        self.assertEqual(len(self.events), 4)
        texts = [formatEvent(event) for event in self.events]
        self.assertIn("'claude-opus-0-x'", texts[0])
        self.assertIn("'claude-opus-2-x'", texts[2])
        self.assertIn("3 models missing", texts[3])
        self.assertLessEqual(len(pricing._reported_unknown), 4)

    def test_log_quotes_at_most_100_characters(self) -> None:
        """
        The warning quotes at most the first 100 characters of a long model
        name.
        """
        model = "claude-" + "z" * 93 + "TAIL" + "y" * 400
        prices_for(model, STANDARD_CONTEXT_WINDOW)
        self.assertEqual(len(self.events), 1)
        text = formatEvent(self.events[0])
        self.assertIn("'claude-" + "z" * 93 + "'", text)
        self.assertNotIn("TAIL", text)
        self.assertNotIn("y", text.split("'")[1])


class RoundCentsTests(SynchronousTestCase):
    """
    Tests for :obj:`round_cents`.
    """

    def test_halves_away_from_zero(self) -> None:
        """
        Halves round away from zero, unlike Python's ``round``: 0.125 ->
        0.13 (``round`` gives 0.12), 0.005 -> 0.01, -0.125 -> -0.13.
        """
        self.assertEqual(round_cents(0.125), 0.13)
        self.assertEqual(round_cents(0.005), 0.01)
        self.assertEqual(round_cents(0.015), 0.02)
        self.assertEqual(round_cents(-0.125), -0.13)
        self.assertEqual(round_cents(2.5), 2.5)

    def test_binary_float_below_half(self) -> None:
        """
        Values whose binary float lies just below a half round down, as
        Go's ``math.Round(x*100)/100`` does: 1.005 * 100 is
        100.49999999999999 in binary, so 1.005 -> 1.0.
        """
        self.assertEqual(round_cents(1.005), 1.0)
        # 0.285 * 100 = 28.499999999999996 in binary.
        self.assertEqual(round_cents(0.285), 0.28)

    def test_ordinary_values(self) -> None:
        """
        Values not at a half round to the nearest cent.
        """
        self.assertEqual(round_cents(0.34795875), 0.35)
        self.assertEqual(round_cents(0.0705), 0.07)
        self.assertEqual(round_cents(0.004999), 0.0)
        self.assertEqual(round_cents(12.344), 12.34)

    def test_zero(self) -> None:
        """
        0 stays 0.
        """
        self.assertEqual(round_cents(0.0), 0.0)
        self.assertEqual(round_cents(0), 0.0)

    def test_large_values(self) -> None:
        """
        Large amounts keep their cents: 123456789.125 -> 123456789.13
        (12345678912.5 cents exactly in binary), and a whole number of
        dollars is unchanged.
        """
        self.assertEqual(round_cents(123_456_789.125), 123_456_789.13)
        self.assertEqual(round_cents(1e13), 1e13)
        self.assertEqual(round_cents(98_765_432.1), 98_765_432.1)
