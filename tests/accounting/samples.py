"""
Samples the accounting tests share: the small book and the usages file it
is written as, the empty book's file, a non-streaming Messages API response
with its usage, and the sample book of the report and the command line with
its report.  The records, times and models they are made of come from
:obj:`tests.fixtures`.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from ccm.accounting.book import UsageBook
from ccm.accounting.document import from_document
from ccm.accounting.tokens import TokenUsage
from tests.fixtures import OPUS, SONNET, WEEK_1, WEEK_2, clock_at, record


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
    The book of :obj:`EXPECTED_SMALL_BOOK`.
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


# The sample book of the report's and the command line's tests, and its
# report, as if the usages file were at PATH.
PATH = "/var/lib/ccm/usages.json"

# The sample book, combination by combination:
#
# A: Opus 4.8, 200k, week 1
#   alice, 2 requests, each 1,000 in, 20,000 out, 200,000 read, 10,000 1h:
#     2 x (5,000 + 500,000 + 100,000 + 100,000) = 1,410,000 -> 1.41
#   bob, 1 request, 500 in, 4,000 out, 100,000 read, 8,000 5m:
#     2,500 + 100,000 + 50,000 + 50,000 = 202,500 -> 0.2025 -> 0.20
#   anonymous, 1 request, 100 in, 1,000 out
#   total 2,600 in, 45,000 out, 500,000 read, 8,000 5m, 20,000 1h:
#     13,000 + 1,125,000 + 250,000 + 50,000 + 200,000 = 1,638,000 -> 1.64
#   so anonymous 1.64 - 1.41 - 0.20 = 0.03
# B: Sonnet 4.5, 1M, week 2
#   alice, 1 request, 250,000 in, 4,000 out:
#     1,500,000 + 90,000 = 1,590,000 -> 1.59
# C: Opus 4.8, 200k, week 2
#   bob, 1 request, 3,000 in, 10,000 out, 50,000 read, 2,000 5m:
#     15,000 + 250,000 + 25,000 + 12,500 = 302,500 -> 0.3025 -> 0.30
#
# By user: alice 1.41 + 1.59 = 3.00; bob 0.20 + 0.30 = 0.50; anonymous 0.03.
# By model: Opus 200k 1.64 + 0.30 = 1.94; Sonnet 1M 1.59.
# By week: 2026-03-16 1.59 + 0.30 = 1.89; 2026-03-09 1.64.
# Total 1.64 + 1.59 + 0.30 = 3.53.

HEADER = "Usage recorded in /var/lib/ccm/usages.json, last updated 2026-03-14T21:15:13.25+08:00\n"

BY_USER = """\
By user
user         requests    input  output  cache read  cache write (5m+1h)  cost USD
-----------  --------  -------  ------  ----------  -------------------  --------
alice               3  252,000  44,000     400,000               20,000      3.00
bob                 2    3,500  14,000     150,000               10,000      0.50
(anonymous)         1      100   1,000           0                    0      0.03
-----------  --------  -------  ------  ----------  -------------------  --------
total               6  255,600  59,000     550,000               30,000      3.53
"""

BY_MODEL = """\
By model
model                       context  requests    input  output  cache read  cache write (5m+1h)  cost USD
--------------------------  -------  --------  -------  ------  ----------  -------------------  --------
claude-opus-4-8             200k            5    5,600  55,000     550,000               30,000      1.94
claude-sonnet-4-5-20250929  1M              1  250,000   4,000           0                    0      1.59
--------------------------  -------  --------  -------  ------  ----------  -------------------  --------
total                                       6  255,600  59,000     550,000               30,000      3.53
"""

BY_WEEK = """\
By week
week of     requests    input  output  cache read  cache write (5m+1h)  cost USD
----------  --------  -------  ------  ----------  -------------------  --------
2026-03-16         2  253,000  14,000      50,000                2,000      1.89
2026-03-09         4    2,600  45,000     500,000               28,000      1.64
----------  --------  -------  ------  ----------  -------------------  --------
total              6  255,600  59,000     550,000               30,000      3.53
"""

FULL_REPORT = HEADER + "\n" + BY_USER + "\n" + BY_MODEL + "\n" + BY_WEEK

# A file as sing-box writes it, with stale costs (cost_usd 99) that must be
# recomputed and no cache-write split (priced as 5-minute writes):
# Opus 4.6 1,234 x 5 + 5,678 x 25 + 900,000 x 0.5 + 20,000 x 6.25
# = 6,170 + 141,950 + 450,000 + 125,000 = 723,120 -> 0.72312 -> 0.72.
SING_BOX_FILE = b"""{
  "last_updated": "2026-03-14T21:15:13.123456789+08:00",
  "costs": {
    "total_usd": 99,
    "by_user": {
      "alice": 99
    }
  },
  "combinations": [
    {
      "model": "claude-opus-4-6",
      "context_window": 200000,
      "total": {
        "request_count": 10,
        "messages_count": 240,
        "input_tokens": 1234,
        "output_tokens": 5678,
        "cache_read_input_tokens": 900000,
        "cache_creation_input_tokens": 20000,
        "cost_usd": 99
      },
      "by_user": {
        "alice": {
          "request_count": 10,
          "messages_count": 240,
          "input_tokens": 1234,
          "output_tokens": 5678,
          "cache_read_input_tokens": 900000,
          "cache_creation_input_tokens": 20000,
          "cost_usd": 99
        }
      }
    }
  ]
}"""


def record_response(
    book: UsageBook,
    model: str,
    context_window: int,
    week: int,
    user: str,
    **counts: int,
) -> None:
    """
    Record one response of two messages in ``book``.
    """
    record(book, model=model, context_window=context_window, week=week, user=user, messages=2, **counts)


def sample_book() -> UsageBook:
    """
    The sample book: two users and anonymous traffic, two models (one in
    the 1M window), two weeks, as worked out above.
    """
    book = UsageBook(clock_at())
    for _ in range(2):
        record_response(
            book,
            OPUS,
            200_000,
            WEEK_1,
            "alice",
            input_tokens=1_000,
            output_tokens=20_000,
            cache_read_input_tokens=200_000,
            cache_creation_1h_input_tokens=10_000,
        )
    record_response(
        book,
        OPUS,
        200_000,
        WEEK_1,
        "bob",
        input_tokens=500,
        output_tokens=4_000,
        cache_read_input_tokens=100_000,
        cache_creation_5m_input_tokens=8_000,
    )
    record_response(book, OPUS, 200_000, WEEK_1, "", input_tokens=100, output_tokens=1_000)
    record_response(book, SONNET, 1_000_000, WEEK_2, "alice", input_tokens=250_000, output_tokens=4_000)
    record_response(
        book,
        OPUS,
        200_000,
        WEEK_2,
        "bob",
        input_tokens=3_000,
        output_tokens=10_000,
        cache_read_input_tokens=50_000,
        cache_creation_5m_input_tokens=2_000,
    )
    return book
