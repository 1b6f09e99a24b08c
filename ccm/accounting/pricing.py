# -*- test-case-name: tests.accounting.test_pricing -*-
"""
What tokens cost: Anthropic's list prices per model family, as data, and
the cost formula of the usage file.

Prices are USD per million tokens.  A dated model id (``claude-opus-4-5-
20251101``) resolves to its family.  A request's prompt (input plus cache
reads and writes) above its family's threshold is in the long-context tier,
filed under the 1M context window: with the ``context-1m`` beta (200k, for
every model), or without it for the models whose tier needs no beta (the
native-1M Opus 5.5 at 200k, Haiku 5.5 at 100k).  The tier has prices of its
own only for Sonnet 4 and 4.5 and Haiku 5.5.  An unknown model, including a
newer version of a known family, is priced by its family word, or as
Sonnet, and logged once per process.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from twisted.logger import Logger

from ccm.accounting.tokens import TokenCounts

STANDARD_CONTEXT_WINDOW = 200_000
PREMIUM_CONTEXT_WINDOW = 1_000_000
LONG_CONTEXT_BETA_PREFIX = "context-1m"
# Unknown model ids warned about, at most; then one last warning says so.
MAX_REPORTED_UNKNOWN_MODELS = 100
#: How many model ids :obj:`family_of` remembers the family of.
MODELS_REMEMBERED = 256

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
# Claude Code's /model menu gives only input and output ($8/$40); the cache
# prices are the usual multipliers, as no source gives Fable 5.2's own.
_FABLE_5_2 = _standard(8, 40)
_HAIKU_5_5 = _standard(0.10, 0.50, cache_read=0.01)
# Prompts over 100k tokens, all tokens of the request (official table).
_HAIKU_5_5_LONG_PROMPT = _standard(0.50, 2.50, cache_read=0.05)


@dataclass(frozen=True)
class Family:
    """
    A model family: the model ids it covers, its prices and its
    long-context tier.

    :ivar long_context: the prices of the long-context tier, or ``None``
        when the tier costs the standard prices.
    :ivar long_context_above_tokens: a prompt of more tokens than this is
        in the long-context tier.
    :ivar native_long_context: the tier needs no ``context-1m`` beta: the
        model has a native 1M window, or a long-prompt price of its own.
    """

    name: str
    pattern: re.Pattern[str]
    standard: Prices
    long_context: Prices | None = None
    long_context_above_tokens: int = STANDARD_CONTEXT_WINDOW
    native_long_context: bool = False


def _family(
    name: str,
    prefixes: tuple[str, ...],
    standard: Prices,
    long_context: Prices | None = None,
    *,
    long_context_above_tokens: int = STANDARD_CONTEXT_WINDOW,
    native_long_context: bool = False,
) -> Family:
    """
    A family covering exactly its ids, their dated forms
    (``-20250929``, ``@20250929``) and ``-latest``: a newer version such as
    ``claude-opus-4-9`` is not mistaken for ``claude-opus-4``.
    """
    alternatives = "|".join(re.escape(p) for p in prefixes)
    suffix = r"(?:-\d{8}|@\d{8}|-latest)?"
    return Family(
        name,
        re.compile(rf"^(?:{alternatives}){suffix}$"),
        standard,
        long_context,
        long_context_above_tokens,
        native_long_context,
    )


# Most specific first: the first family whose pattern matches wins.
# Native 1M windows: only Opus 5.5 is known to have one (Claude Code 2.1.332
# reports ``contextWindow: 1000000`` for it without the beta); the sources
# say nothing of the other models' windows without the beta.
FAMILIES: tuple[Family, ...] = (
    _family("Fable 5.2", ("claude-fable-5-2",), _FABLE_5_2),
    _family("Fable/Mythos 5.1", ("claude-fable-5-1", "claude-mythos-5-1"), _standard(10, 50, cache_read=0.25)),
    _family("Fable/Mythos 5", ("claude-fable-5", "claude-mythos-5"), _FABLE),
    _family("Opus 5.5", ("claude-opus-5-5",), _standard(4, 20, cache_read=0.20), native_long_context=True),
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
    _family(
        "Haiku 5.5",
        ("claude-haiku-5-5",),
        _HAIKU_5_5,
        _HAIKU_5_5_LONG_PROMPT,
        long_context_above_tokens=100_000,
        native_long_context=True,
    ),
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


@functools.lru_cache(maxsize=MODELS_REMEMBERED)
def family_of(model: str) -> Family | None:
    """
    The family a model id belongs to, or None when it is not in the table.
    Remembered for the last :obj:`MODELS_REMEMBERED` ids: each answer asks
    four times, and the table is a score of patterns.
    """
    for family in FAMILIES:
        if family.pattern.match(model):
            return family
    return None


def prices_for(model: str, context_window: int) -> Prices:
    """
    The prices for ``model`` in ``context_window``: the family's
    long-context prices in the 1M window where it has them, else its
    standard prices.
    """
    family = family_of(model)
    if family is not None:
        if context_window >= PREMIUM_CONTEXT_WINDOW and family.long_context is not None:
            return family.long_context
        return family.standard
    lowered = model.lower()
    chosen = next((p for word, p in _BY_WORD if word in lowered), _SONNET)
    _report_unknown(model, chosen)
    return chosen


def _report_unknown(model: str, chosen: Prices) -> None:
    """
    Warn once per process about each unknown model id (by its first 100
    characters), for at most :obj:`MAX_REPORTED_UNKNOWN_MODELS` ids; past
    that, one last warning says that further ids go unreported.
    """
    quoted = model[:100]
    if quoted in _reported_unknown or len(_reported_unknown) > MAX_REPORTED_UNKNOWN_MODELS:
        return
    if len(_reported_unknown) == MAX_REPORTED_UNKNOWN_MODELS:
        # No model is named "" (the book refuses it): a marker that fills
        # the set past the bound, so this warning is given once.
        _reported_unknown.add("")
        log.warn(
            "{count} models missing from ccm's price table were reported; "
            "further ones are priced by their family word without a warning",
            count=MAX_REPORTED_UNKNOWN_MODELS,
        )
        return
    _reported_unknown.add(quoted)
    log.warn(
        "model {model!r} is not in ccm's price table; pricing it at "
        "{input:g}/{output:g} USD per million input/output tokens",
        model=quoted,
        input=chosen.input,
        output=chosen.output,
    )


def context_window_for(model: str, total_input_tokens: int, client_betas: list[str]) -> int:
    """
    The context window a request is filed under: 1M when its prompt is in
    the model's long-context tier, else 200k.

    The tier starts above the family's threshold (200k; 100k for Haiku
    5.5).  It needs the ``context-1m`` beta, except for the families whose
    tier is native (Opus 5.5, Haiku 5.5); a model not in the table gets the
    beta rule at 200k.

    :param total_input_tokens: input plus cache reads and writes.
    :param client_betas: the request's ``anthropic-beta`` values.
    """
    family = family_of(model)
    threshold = STANDARD_CONTEXT_WINDOW if family is None else family.long_context_above_tokens
    if total_input_tokens <= threshold:
        return STANDARD_CONTEXT_WINDOW
    if family is not None and family.native_long_context:
        return PREMIUM_CONTEXT_WINDOW
    if any(
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
