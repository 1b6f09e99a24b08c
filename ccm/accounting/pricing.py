# -*- test-case-name: tests.accounting.test_pricing -*-
"""
What tokens cost: Anthropic's list prices per model family, as data, and
the cost formula of the usage file.

Prices are USD per million tokens.  A dated model id (``claude-opus-4-5-
20251101``) resolves to its family; the long-context premium applies only to
the models that still have one (Sonnet 4 and 4.5 with the 1M-context beta
and more than 200k input tokens); an unknown model, including a newer
version of a known family, is priced by its family word, or as Sonnet, and
logged once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from twisted.logger import Logger

from ccm.accounting.tokens import TokenCounts

STANDARD_CONTEXT_WINDOW = 200_000
PREMIUM_CONTEXT_WINDOW = 1_000_000
LONG_CONTEXT_BETA_PREFIX = "context-1m"

log = Logger(namespace="ccm.accounting.pricing")


@dataclass(frozen=True)
class Prices:
    """
    USD per million tokens of each kind.
    """

    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float


def _standard(input_price: float, output_price: float, cache_read: float | None = None) -> Prices:
    """
    Prices with the usual cache multipliers: writes at 1.25x (5 minutes) and
    2x (1 hour) the input price, reads at 0.1x unless given.
    """
    return Prices(
        input=input_price,
        output=output_price,
        cache_read=round(input_price * 0.1, 6) if cache_read is None else cache_read,
        cache_write_5m=round(input_price * 1.25, 6),
        cache_write_1h=round(input_price * 2, 6),
    )


_OPUS_LEGACY = _standard(15, 75)
_OPUS_CURRENT = _standard(5, 25)
_SONNET = _standard(3, 15)
_SONNET_LONG_CONTEXT = _standard(6, 22.5)
_SONNET_5 = _standard(2, 10, cache_read=0.20)
_HAIKU_4 = _standard(1, 5)
_FABLE = _standard(10, 50, cache_read=1.00)


@dataclass(frozen=True)
class Family:
    """
    A model family: the model ids it covers and its prices.
    """

    name: str
    pattern: re.Pattern[str]
    standard: Prices
    long_context: Prices | None = None


def _family(name: str, prefixes: tuple[str, ...], standard: Prices, long_context: Prices | None = None) -> Family:
    """
    A family covering exactly its ids, their dated forms
    (``-20250929``, ``@20250929``) and ``-latest``: a newer version such as
    ``claude-opus-4-9`` is not mistaken for ``claude-opus-4``.
    """
    alternatives = "|".join(re.escape(p) for p in prefixes)
    suffix = r"(?:-\d{8}|@\d{8}|-latest)?"
    return Family(name, re.compile(rf"^(?:{alternatives}){suffix}$"), standard, long_context)


# Most specific first: the first family whose pattern matches wins.
FAMILIES: tuple[Family, ...] = (
    _family("Fable/Mythos 5.1", ("claude-fable-5-1", "claude-mythos-5-1"), _standard(10, 50, cache_read=0.25)),
    _family("Fable/Mythos 5", ("claude-fable-5", "claude-mythos-5"), _FABLE),
    _family("Opus 5.5", ("claude-opus-5-5",), _standard(4, 20, cache_read=0.20)),
    _family(
        "Opus 5 and 4.5-4.8",
        ("claude-opus-5", "claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6", "claude-opus-4-5"),
        _OPUS_CURRENT,
    ),
    _family(
        "Opus 3-4.1",
        ("claude-opus-4-1", "claude-opus-4-0", "claude-opus-4", "claude-4-opus", "claude-opus-3", "claude-3-opus"),
        _OPUS_LEGACY,
    ),
    _family("Sonnet 5.5", ("claude-sonnet-5-5",), _standard(2, 10, cache_read=0.10)),
    _family("Sonnet 5", ("claude-sonnet-5",), _SONNET_5),
    _family("Sonnet 4.6", ("claude-sonnet-4-6", "claude-4-6-sonnet"), _SONNET),
    _family(
        "Sonnet 4 and 4.5",
        ("claude-sonnet-4-5", "claude-4-5-sonnet", "claude-sonnet-4-0", "claude-sonnet-4", "claude-4-sonnet"),
        _SONNET,
        _SONNET_LONG_CONTEXT,
    ),
    _family("Sonnet 3.5-3.7", ("claude-3-7-sonnet", "claude-3-5-sonnet"), _SONNET),
    _family("Haiku 5.5", ("claude-haiku-5-5",), _standard(0.10, 0.50, cache_read=0.01)),
    _family("Haiku 4.5", ("claude-haiku-4-5", "claude-4-5-haiku", "claude-haiku-4"), _HAIKU_4),
    _family("Haiku 3.5", ("claude-3-5-haiku",), _standard(0.80, 4, cache_read=0.08)),
    _family("Haiku 3", ("claude-3-haiku",), Prices(0.25, 1.25, 0.03, 0.30, 0.50)),
)

# For models not in the table, by the word in their name.
_BY_WORD = (
    ("opus", _OPUS_CURRENT),
    ("sonnet", _SONNET),
    ("haiku", _HAIKU_4),
    ("fable", _FABLE),
    ("mythos", _FABLE),
)

_reported_unknown: set[str] = set()


def family_of(model: str) -> Family | None:
    """
    The family a model id belongs to, or None when it is not in the table.
    """
    for family in FAMILIES:
        if family.pattern.match(model):
            return family
    return None


def prices_for(model: str, context_window: int) -> Prices:
    """
    The prices for ``model`` at ``context_window``; the long-context prices
    apply only where the family still has them.
    """
    family = family_of(model)
    if family is not None:
        if context_window >= PREMIUM_CONTEXT_WINDOW and family.long_context is not None:
            return family.long_context
        return family.standard
    lowered = model.lower()
    chosen = next((p for word, p in _BY_WORD if word in lowered), _SONNET)
    if model not in _reported_unknown:
        _reported_unknown.add(model)
        log.warn(
            "model {model!r} is not in ccm's price table; pricing it at "
            "{input:g}/{output:g} USD per million input/output tokens",
            model=model[:100],
            input=chosen.input,
            output=chosen.output,
        )
    return chosen


def context_window_for(total_input_tokens: int, client_betas: list[str]) -> int:
    """
    The context window a request used: 1M when the client asked for the
    1M-context beta and the prompt exceeded 200k tokens, else 200k.
    """
    if total_input_tokens > STANDARD_CONTEXT_WINDOW and any(
        item.strip().startswith(LONG_CONTEXT_BETA_PREFIX)
        for value in client_betas
        for item in value.split(",")
    ):
        return PREMIUM_CONTEXT_WINDOW
    return STANDARD_CONTEXT_WINDOW


def cost_usd(prices: Prices, tokens: TokenCounts) -> float:
    """
    The unrounded cost in USD of ``tokens``.  Cache writes are priced by
    their lifetime when the split is known; figures recorded without it
    (older files) are priced as 5-minute writes.
    """
    if tokens.cache_creation_5m_input_tokens > 0 or tokens.cache_creation_1h_input_tokens > 0:
        cache_writes = (
            tokens.cache_creation_5m_input_tokens * prices.cache_write_5m
            + tokens.cache_creation_1h_input_tokens * prices.cache_write_1h
        )
    else:
        cache_writes = tokens.cache_creation_input_tokens * prices.cache_write_5m
    return (
        tokens.input_tokens * prices.input
        + tokens.output_tokens * prices.output
        + tokens.cache_read_input_tokens * prices.cache_read
        + cache_writes
    ) / 1_000_000


def round_cents(amount: float) -> float:
    """
    Round to cents with halves away from zero, exactly as the reference
    does (Go's ``math.Round(x*100)/100``); Python's ``round`` would round
    halves to even.
    """
    scaled = amount * 100
    whole = math.trunc(scaled)
    if abs(scaled - whole) >= 0.5:
        whole += int(math.copysign(1, scaled))
    return whole / 100
