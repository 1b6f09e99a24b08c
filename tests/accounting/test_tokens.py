"""
Tests for :obj:`ccm.accounting.tokens`: the token counts and how they are read
out of a Messages API response's ``usage`` object.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting.tokens import TOKEN_FIELDS, TokenCounts, TokenUsage, usage_from_message
from tests.accounting.samples import MESSAGE_BODY, MESSAGE_USAGE
from tests.fixtures import HAIKU, OPUS, SONNET


class UsageFromMessageTests(SynchronousTestCase):
    """
    :obj:`usage_from_message` reads a decoded non-streaming response.
    """

    def test_real_body(self) -> None:
        """
        Model, counts and the cache-write split are read.
        """
        self.assertEqual(usage_from_message(json.loads(MESSAGE_BODY)), MESSAGE_USAGE)

    def test_without_split(self) -> None:
        """
        Cache writes reported without the lifetime split leave both parts at
        zero.
        """
        document = {
            "model": OPUS,
            "usage": {
                "input_tokens": 3,
                "cache_creation_input_tokens": 2000,
                "cache_read_input_tokens": 0,
                "output_tokens": 8,
            },
        }
        self.assertEqual(
            usage_from_message(document),
            TokenUsage(
                model=OPUS,
                input_tokens=3,
                output_tokens=8,
                cache_creation_input_tokens=2000,
            ),
        )

    def test_malformed_documents(self) -> None:
        """
        Documents that are not messages, and usage members of the wrong
        type, give an empty usage without raising.
        """
        documents: list[object] = [
            None,
            [],
            [MESSAGE_BODY],
            "message",
            42,
            1.5,
            True,
            {},
            {"type": "error", "error": {"type": "api_error", "message": "boom"}},
            {"model": 5, "usage": "lots"},
            {"model": None, "usage": None},
            {"usage": []},
            {
                "usage": {
                    "input_tokens": "12",
                    "output_tokens": -3,
                    "cache_read_input_tokens": True,
                    "cache_creation_input_tokens": 1.0,
                    "cache_creation": [1, 2],
                }
            },
            {
                "usage": {
                    "input_tokens": False,
                    "output_tokens": 5.5,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": False,
                        "ephemeral_1h_input_tokens": "1",
                    },
                }
            },
        ]
        for document in documents:
            self.assertEqual(usage_from_message(document), TokenUsage(), repr(document))

    def test_partly_valid(self) -> None:
        """
        Valid fields count even when others next to them are invalid.
        """
        document = {
            "model": HAIKU,
            "usage": {
                "input_tokens": 3,
                "output_tokens": "5",
                "cache_creation": {
                    "ephemeral_5m_input_tokens": -1,
                    "ephemeral_1h_input_tokens": 700,
                },
            },
        }
        self.assertEqual(
            usage_from_message(document),
            TokenUsage(model=HAIKU, input_tokens=3, cache_creation_1h_input_tokens=700),
        )


class TokenUsageTests(SynchronousTestCase):
    """
    The derived figures of :obj:`TokenUsage`.
    """

    def test_total_input_tokens(self) -> None:
        """
        The prompt size is uncached input plus cache writes plus cache reads,
        output excluded.
        """
        usage = TokenUsage(
            input_tokens=3,
            output_tokens=1000,
            cache_read_input_tokens=250000,
            cache_creation_input_tokens=1200,
            cache_creation_5m_input_tokens=200,
            cache_creation_1h_input_tokens=1000,
        )
        self.assertEqual(usage.total_input_tokens, 251203)

    def test_has_tokens(self) -> None:
        """
        There is something to record when input or output is positive;
        cache figures alone do not count.
        """
        self.assertFalse(TokenUsage(model=SONNET).has_tokens)
        self.assertTrue(TokenUsage(input_tokens=1).has_tokens)
        self.assertTrue(TokenUsage(output_tokens=1).has_tokens)
        cache_only = TokenUsage(
            cache_read_input_tokens=5, cache_creation_input_tokens=5
        )
        self.assertFalse(cache_only.has_tokens)


class TokenCountsTests(SynchronousTestCase):
    """
    :obj:`TokenCounts` adds up and subtracts field by field.
    """

    def test_fields(self) -> None:
        """
        The fields are the counts of the usages file, in its key order.
        """
        self.assertEqual(
            TOKEN_FIELDS,
            (
                "input_tokens",
                "output_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
                "cache_creation_5m_input_tokens",
                "cache_creation_1h_input_tokens",
            ),
        )

    def test_arithmetic(self) -> None:
        """
        Sums and differences are taken field by field and are plain counts,
        also of a :obj:`TokenUsage`, whose model they drop; neither operand
        changes.
        """
        usage = TokenUsage(1, 2, 3, 4, 5, 6, model=SONNET)
        other = TokenCounts(10, 20, 30, 40, 50, 60)
        self.assertEqual(usage + other, TokenCounts(11, 22, 33, 44, 55, 66))
        self.assertEqual(other - usage, TokenCounts(9, 18, 27, 36, 45, 54))
        self.assertEqual(usage - other, TokenCounts(-9, -18, -27, -36, -45, -54))
        self.assertEqual(usage.counts(), TokenCounts(1, 2, 3, 4, 5, 6))
        self.assertEqual(usage, TokenUsage(1, 2, 3, 4, 5, 6, model=SONNET))
