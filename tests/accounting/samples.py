"""
Samples the accounting tests share: the small book and the usages file it
is written as, the empty book's file, and a non-streaming Messages API
response with its usage.  The records, times and models they are made of
come from L{tests.fixtures}.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from ccm.accounting.book import UsageBook
from ccm.accounting.document import from_document
from ccm.accounting.tokens import TokenUsage
from tests.fixtures import SONNET, clock_at, record


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


# The non-streaming response of anthropic-wire.md section 1.2, with cache
# writes of both lifetimes.
MESSAGE_BODY = (
    b'{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant",'
    b'"model":"claude-sonnet-4-5-20250929",'
    b'"content":[{"type":"text","text":"Hi! \xe2\x98\x83"}],'
    b'"stop_reason":"end_turn","stop_sequence":null,'
    b'"usage":{"input_tokens":12,"cache_creation_input_tokens":4000,'
    b'"cache_read_input_tokens":25000,'
    b'"cache_creation":{"ephemeral_5m_input_tokens":1000,'
    b'"ephemeral_1h_input_tokens":3000},'
    b'"output_tokens":5,"service_tier":"standard"}}'
)
MESSAGE_USAGE = TokenUsage(
    model=SONNET,
    input_tokens=12,
    output_tokens=5,
    cache_read_input_tokens=25000,
    cache_creation_input_tokens=4000,
    cache_creation_5m_input_tokens=1000,
    cache_creation_1h_input_tokens=3000,
)
