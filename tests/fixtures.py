"""
The one place the tests make Claude Code credentials and usage records.

Credentials: :obj:`credentials_document` is the content of a credentials file
or keychain item as Claude Code writes it (its ``claudeAiOauth`` object),
:obj:`credentials_json` the same as text, :obj:`write_credentials` a credentials
file holding given tokens, :obj:`write_document` any content written to a file
with a mode, and :obj:`expiry_ms` an ``expiresAt`` value.  A test about one of
the values passes it by keyword; unknown keys a test expects ccm to keep
are given with ``oauth`` or ``extra`` in that test::

    write_credentials(path, ACCESS, REFRESH, expiry_ms(3600, now=START_TIME))
    credentials_document(extra={"mcpOAuth": {"server": "kept"}})

Usage records, for the accounting tests and the proxy's: :obj:`usage_record`
and :obj:`record` with token counts by name, :obj:`counts`, the times and models
they default to, a clock showing those times, and :obj:`MemoryRecorder`, a
usage recorder keeping what it is given.

Logs: :obj:`logged_events`, what the global log publisher is given while a
test runs.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import time
from typing import Any, Mapping, Sequence, cast

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.internet.testing import EventLoggingObserver

from ccm.accounting.counters import UsageCounts, UsageRecord, UsageRecorder
from ccm.accounting.tokens import TokenCounts, TokenUsage
from ccm.accounting.week import WEEK_SECONDS

# Credentials.

#: The tokens of a document whose test does not give its own.  Every token
#: in the tests starts with ``sk-ant-``, so that logs can be searched for any.
ACCESS_TOKEN = "sk-ant-oat01-fixture-access-token"
REFRESH_TOKEN = "sk-ant-ort01-fixture-refresh-token"
#: What Claude Code's login grants, and its plan for a Max subscription.
SCOPES = ("user:inference", "user:profile")
SUBSCRIPTION_TYPE = "max"
RATE_LIMIT_TIER = "default_claude_max_20x"
#: The mode Claude Code gives its credentials file.
CREDENTIALS_MODE = 0o600


def expiry_ms(seconds_from_now: float, now: float | None = None) -> int:
    """
    A ``claudeAiOauth.expiresAt`` value: milliseconds since the epoch,
    ``seconds_from_now`` after ``now`` (negative for the past).

    :param now: seconds since the epoch, as a test's clock shows them; the
        wall clock's time by default, for a real ccm process.
    """
    if now is None:
        now = time.time()
    return int((now + seconds_from_now) * 1000)


def credentials_document(
    access_token: str = ACCESS_TOKEN,
    refresh_token: str = REFRESH_TOKEN,
    expires_at_ms: int = 0,
    *,
    scopes: Sequence[str] = SCOPES,
    subscription_type: str = SUBSCRIPTION_TYPE,
    rate_limit_tier: str = RATE_LIMIT_TIER,
    oauth: Mapping[str, object] | None = None,
    extra: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """
    A Claude Code credentials document for a Max subscription.

    :param expires_at_ms: when the access token expires (see :obj:`expiry_ms`);
        0, the default, is never.
    :param oauth: entries of ``claudeAiOauth``, spelled as in the file, to
        add or to put in place of the ones above (a value of the wrong
        type, for a test of what ccm refuses).
    :param extra: top-level entries besides ``claudeAiOauth``.
    :return: a new document, which the caller may change.
    """
    fields: dict[str, Any] = {
        "accessToken": access_token,
        "refreshToken": refresh_token,
        "expiresAt": expires_at_ms,
        "scopes": list(scopes),
        "subscriptionType": subscription_type,
        "rateLimitTier": rate_limit_tier,
    }
    fields.update(_copy(oauth or {}))
    return {"claudeAiOauth": fields, **_copy(extra or {})}


def credentials_json(
    access_token: str = ACCESS_TOKEN,
    refresh_token: str = REFRESH_TOKEN,
    expires_at_ms: int = 0,
    **fields: Any,
) -> str:
    """
    :obj:`credentials_document` as JSON text, as a keychain item holds it;
    ``fields`` as for :obj:`credentials_document`.
    """
    return json.dumps(credentials_document(access_token, refresh_token, expires_at_ms, **fields))


def write_document(
    path: str, document: Mapping[str, Any] | str | bytes, mode: int = CREDENTIALS_MODE
) -> str:
    """
    Write a file (a mapping as JSON, text or bytes as they are) and set its
    mode.

    :return: ``path``.
    """
    if isinstance(document, Mapping):
        document = json.dumps(document)
    data = document.encode("utf-8") if isinstance(document, str) else document
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


def write_credentials(
    path: str,
    access_token: str = ACCESS_TOKEN,
    refresh_token: str = REFRESH_TOKEN,
    expires_at_ms: int = 0,
    *,
    mode: int = CREDENTIALS_MODE,
    **fields: Any,
) -> str:
    """
    Write a credentials file holding the given tokens; ``fields`` as for
    :obj:`credentials_document`.

    :return: ``path``.
    """
    document = credentials_document(access_token, refresh_token, expires_at_ms, **fields)
    return write_document(path, document, mode)


def _copy(entries: Mapping[str, object]) -> dict[str, Any]:
    """
    A deep copy of ``entries``, so that no two documents share a value.
    """
    return copy.deepcopy(dict(entries))


# Usage records.

UTC = datetime.timezone.utc
UTC_PLUS_8 = datetime.timezone(datetime.timedelta(hours=8))
#: 2026-03-09 00:00:00 UTC, 08:00 in UTC+8: the week of the reference's
#: example, and the next one, with their keys in the usages file.
WEEK_1 = 1_773_014_400
WEEK_2 = WEEK_1 + WEEK_SECONDS
WEEK_1_KEY = "2026-03-09 08:00:00 UTC+8"
WEEK_2_KEY = "2026-03-16 08:00:00 UTC+8"
#: The accounting tests' present: 2026-03-14 13:15:13.25 UTC; 21:15:13.25
#: in UTC+8.
NOW = 1_773_494_113.25
#: Model ids, as the API names them in its answers.
OPUS = "claude-opus-4-8"
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
#: The two context windows, which are priced apart.
STANDARD = 200_000
PREMIUM = 1_000_000


def clock_at(seconds: float = NOW) -> Clock:
    """
    A fake clock showing ``seconds``.
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
    tokens: TokenUsage | None = None,
    **token_counts: int,
) -> UsageRecord:
    """
    A record of one response with the given token counts (a :obj:`TokenUsage`
    without model, as the proxy gives the model separately).

    :param tokens: the usage object itself, for a test about what becomes
        of it; otherwise one is made of ``token_counts``.
    """
    return UsageRecord(
        model=model,
        context_window=context_window,
        week_start_unix=week,
        user=user,
        tokens=TokenUsage(model="", **token_counts) if tokens is None else tokens,
        messages=messages,
    )


def record(recorder: UsageRecorder, **fields: Any) -> None:
    """
    Record one response in ``recorder``; ``fields`` as for :obj:`usage_record`.
    """
    recorder.record(usage_record(**fields))


def counts(request_count: int = 0, messages_count: int = 0, *tokens: int, **named: int) -> UsageCounts:
    """
    Usage counts with the token counts given in the file's order or by
    name.
    """
    return UsageCounts(request_count, messages_count, TokenCounts(*tokens, **named))


class MemoryRecorder:
    """
    A usage recorder that keeps what it is given.

    :ivar records: every record, in order.
    """

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def record(self, record: UsageRecord) -> None:
        """
        Keep ``record``.
        """
        self.records.append(record)


# Logs.


def logged_events(testcase: SynchronousTestCase) -> EventLoggingObserver:
    """
    An observer of the global log publisher that keeps every event until
    ``testcase`` ends.  (Trial types ``createWithCleanup`` for asynchronous
    cases only; of the case it calls ``addCleanup`` alone, which
    synchronous cases have too.)
    """
    return EventLoggingObserver.createWithCleanup(cast(TestCase, testcase), globalLogPublisher)
