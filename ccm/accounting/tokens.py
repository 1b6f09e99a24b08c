# -*- test-case-name: tests.accounting.test_tokens -*-
"""
Token counts: the one set of figures that the meters read out of a
response, the book adds up per combination and user, the usages file keeps
and the report shows, and how the Messages API reports them in a ``usage``
object.

Usage semantics follow the API and the official SDK: ``message_start``
carries the input-side figures, including the split of cache writes by
lifetime (``cache_creation.ephemeral_5m_input_tokens`` and
``ephemeral_1h_input_tokens``); ``message_delta`` figures are cumulative, so a
field it carries replaces the earlier value and a field it omits leaves it.
Only non-negative integers count; anything else is ignored, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

#: The names of the counts, in the usages file's key order; each is a
#: field of :obj:`TokenCounts` and a key of the file's statistics objects.
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_5m_input_tokens",
    "cache_creation_1h_input_tokens",
)
# The counts a usage object carries at its top level.
_USAGE_OBJECT_FIELDS = TOKEN_FIELDS[:4]


@dataclass
class TokenCounts:
    """
    How many tokens of each kind.

    :ivar input_tokens: Uncached input tokens.
    :ivar output_tokens: Output tokens, thinking included.
    :ivar cache_read_input_tokens: Input tokens read from the cache.
    :ivar cache_creation_input_tokens: Input tokens written to the cache.
    :ivar cache_creation_5m_input_tokens: The part of the cache writes with
        a 5-minute lifetime, when the response gave the split.
    :ivar cache_creation_1h_input_tokens: The part of the cache writes with
        a 1-hour lifetime, when the response gave the split.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0

    def __add__(self, other: TokenCounts) -> TokenCounts:
        """
        The counts of both, field by field.
        """
        return TokenCounts(*(getattr(self, name) + getattr(other, name) for name in TOKEN_FIELDS))

    def __sub__(self, other: TokenCounts) -> TokenCounts:
        """
        These counts less ``other``'s, field by field (possibly negative).
        """
        return TokenCounts(*(getattr(self, name) - getattr(other, name) for name in TOKEN_FIELDS))

    def counts(self) -> TokenCounts:
        """
        The counts alone, as a new :obj:`TokenCounts` (without the model of a
        :obj:`TokenUsage`).
        """
        return TokenCounts(*(getattr(self, name) for name in TOKEN_FIELDS))

    @property
    def total_input_tokens(self) -> int:
        """
        The size of the prompt: uncached input plus cache writes plus cache
        reads, the measure that selects the long-context tier.
        """
        return (
            self.input_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    @property
    def has_tokens(self) -> bool:
        """
        Whether there is anything to record: some uncached input or some
        output.
        """
        return self.input_tokens > 0 or self.output_tokens > 0


@dataclass
class TokenUsage(TokenCounts):
    """
    The token counts of one response, and the model that answered it.

    :ivar model: The model that answered, or ``""`` when unknown.
    """

    model: str = ""


def _is_count(value: object) -> TypeGuard[int]:
    """
    Whether ``value`` is a token count: a non-negative ``int`` that is not a
    ``bool``.
    """
    return type(value) is int and value >= 0


def apply_usage(target: TokenCounts, usage: object) -> None:
    """
    Copy the valid counts of an API ``usage`` object onto ``target``, leaving
    the fields that are absent or invalid as they were.

    :param target: The counts to update.
    :param usage: The decoded ``usage`` member; anything but a ``dict`` is
        ignored.
    """
    if not isinstance(usage, dict):
        return
    for name in _USAGE_OBJECT_FIELDS:
        value = usage.get(name)
        if _is_count(value):
            setattr(target, name, value)
    split = usage.get("cache_creation")
    if isinstance(split, dict):
        five_minutes = split.get("ephemeral_5m_input_tokens")
        if _is_count(five_minutes):
            target.cache_creation_5m_input_tokens = five_minutes
        one_hour = split.get("ephemeral_1h_input_tokens")
        if _is_count(one_hour):
            target.cache_creation_1h_input_tokens = one_hour


def usage_from_message(document: object) -> TokenUsage:
    """
    Read the model and the usage of a non-streaming Messages API response.

    Cache writes reported without their lifetime split leave both parts at
    zero, so that they are priced as 5-minute writes.  Nothing malformed
    raises: missing or invalid parts give ``""`` and zeros.

    :param document: The decoded JSON body.
    :return: The usage found.
    """
    result = TokenUsage()
    if isinstance(document, dict):
        model = document.get("model")
        if isinstance(model, str):
            result.model = model
        apply_usage(result, document.get("usage"))
    return result
