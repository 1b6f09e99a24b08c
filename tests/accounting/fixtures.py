"""
Shared fixtures of the accounting tests: times, usage records, counts and
the small book whose file is written out in full.
"""

from __future__ import annotations

import datetime
from typing import Any

from twisted.internet.task import Clock

from ccm.accounting.book import UsageBook
from ccm.accounting.counters import UsageCounts, UsageRecord, UsageRecorder
from ccm.accounting.document import from_document
from ccm.accounting.tokens import TokenCounts, TokenUsage
from ccm.accounting.week import WEEK_SECONDS

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


def usage_record(
    *,
    model: str = OPUS,
    context_window: int = STANDARD,
    week: int = WEEK_1,
    user: str = "alice",
    messages: int = 1,
    **tokens: int,
) -> UsageRecord:
    """
    A record of one response with the given token counts (a L{TokenUsage}
    without model, as the proxy gives the model separately).
    """
    return UsageRecord(
        model=model,
        context_window=context_window,
        week_start_unix=week,
        user=user,
        tokens=TokenUsage(**tokens),
        messages=messages,
    )


def record(recorder: UsageRecorder, **fields: Any) -> None:
    """
    Record one response in C{recorder}; C{fields} as for L{usage_record}.
    """
    recorder.record(usage_record(**fields))


def counts(request_count: int = 0, messages_count: int = 0, *tokens: int, **named: int) -> UsageCounts:
    """
    Usage counts with the token counts given in the file's order or by
    name.
    """
    return UsageCounts(request_count, messages_count, TokenCounts(*tokens, **named))


def load_book(document: object, clock: Clock | None = None) -> UsageBook:
    """
    A book counting on from what a usages document holds.
    """
    return UsageBook(clock_at() if clock is None else clock, from_document(document))


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
