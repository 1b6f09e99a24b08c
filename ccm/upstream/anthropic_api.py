# -*- test-case-name: tests.upstream.test_anthropic_api -*-
"""
The Anthropic API calls ccm makes on its own, besides proxying: the OAuth
token refresh, the usage poll (``/api/oauth/usage``) and the profile fetch
(``/api/oauth/profile``).

Here are their request headers, as the real Claude Code client sends
them (in the release :obj:`ccm.upstream.identity.ClientIdentity` claims), a
bounded reader of their answers, and the parsers of the usage and profile
answers.  The parsers check only the shape of an answer;
whether its numbers are plausible is for :obj:`ccm.pool.figures` to judge.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from treq import collect
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IPushProducer
from twisted.python.components import proxyForInterface
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from ccm.proxy.headers import OAUTH_BETA
from ccm.upstream.identity import AXIOS_ACCEPT, ClientIdentity

USAGE_PATH = "/api/oauth/usage"
PROFILE_PATH = "/api/oauth/profile"
# The usage and profile answers are a few kilobytes.
MAX_ANSWER_BYTES = 1024 * 1024

# One window of a usage answer: (percent used, reset in Unix seconds or 0
# when unknown).
WindowFigures = tuple[float, float]

_ORGANIZATION_TYPES = {
    "claude_max": "max",
    "claude_pro": "pro",
    "claude_team": "team",
    "claude_enterprise": "enterprise",
}

_ISO_8601 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)


def token_request_headers(identity: ClientIdentity) -> Headers:
    """
    The headers of a refresh at the OAuth token endpoint, as Claude Code's
    axios sends them: the JSON content type it sets, and axios's default
    ``Accept`` and ``User-Agent``.
    """
    return Headers(
        {
            b"content-type": [b"application/json"],
            b"accept": [AXIOS_ACCEPT.encode("ascii")],
            b"user-agent": [identity.refresh_user_agent.encode("ascii")],
        }
    )


def _bearer(access_token: str) -> bytes:
    return b"Bearer " + access_token.encode("latin-1", "replace")


def usage_request_headers(access_token: str, identity: ClientIdentity) -> Headers:
    """
    The headers of a usage poll of ``access_token``'s subscription, as
    Claude Code's API client sends them: the OAuth bearer and beta flag
    (which the usage endpoint requires), a JSON content type and its
    ``claude-cli`` user agent.
    """
    return Headers(
        {
            b"user-agent": [identity.usage_user_agent.encode("ascii")],
            b"authorization": [_bearer(access_token)],
            b"anthropic-beta": [OAUTH_BETA.encode("ascii")],
            b"content-type": [b"application/json"],
            b"accept": [AXIOS_ACCEPT.encode("ascii")],
        }
    )


def profile_request_headers(access_token: str, identity: ClientIdentity) -> Headers:
    """
    The headers of a profile fetch for ``access_token``, as Claude Code
    sends them: its ``claude-code`` user agent, the OAuth bearer, a JSON
    content type and no caching.
    """
    return Headers(
        {
            b"user-agent": [identity.profile_user_agent.encode("ascii")],
            b"authorization": [_bearer(access_token)],
            b"content-type": [b"application/json"],
            b"cache-control": [b"no-cache"],
            b"accept": [AXIOS_ACCEPT.encode("ascii")],
        }
    )


class AnswerTooLarge(Exception):
    """
    An answer was larger than ccm reads; the message says how large.
    """


class _StoppableResponse(proxyForInterface(IResponse)):  # type: ignore[misc]
    """
    A response that remembers the protocol its body goes to, so that
    reading the body can be given up: :obj:`treq.collect` has no canceller.
    """

    _protocol: IProtocol | None = None

    def deliverBody(self, protocol: IProtocol) -> None:
        self._protocol = protocol
        self.original.deliverBody(protocol)

    def stop(self) -> None:
        """
        Close the connection the body arrives on, if it is still arriving.
        """
        producer = IPushProducer(getattr(self._protocol, "transport", None), None)
        if producer is not None:
            producer.stopProducing()


def read_answer(response: IResponse, limit: int = MAX_ANSWER_BYTES) -> Deferred[bytes]:
    """
    The body of ``response``, at most ``limit`` bytes: a longer one fails
    with :obj:`AnswerTooLarge` and its connection is closed, as is the
    connection of a read that is cancelled.
    """
    chunks: list[bytes] = []
    received = 0

    def keep(data: bytes) -> None:
        nonlocal received
        received += len(data)
        if received > limit:
            raise AnswerTooLarge(f"answer larger than {limit} bytes")
        chunks.append(data)

    stoppable = _StoppableResponse(response)
    collecting = collect(stoppable, keep)

    def cancel(_: Deferred[bytes]) -> None:
        stoppable.stop()
        # Whatever the body does next is no longer anyone's business.
        collecting.cancel()

    answer: Deferred[bytes] = Deferred(cancel)
    collecting.addCallback(lambda _: b"".join(chunks)).chainDeferred(answer)
    return answer


def parse_iso_8601(value: str) -> float:
    """
    Unix seconds from an ISO 8601 timestamp such as
    ``2026-08-14T22:29:59.777251+00:00`` or ``2026-08-14T22:29:59Z``; one
    without an offset is taken as UTC.

    Not ``datetime.fromisoformat``: ccm supports Python 3.10, whose
    ``fromisoformat`` refuses ``Z``, offsets without a colon and fractions
    of other than 3 or 6 digits (3.11 accepts them all).

    :raise ValueError: when ``value`` is not such a timestamp.
    """
    match = _ISO_8601.fullmatch(value.strip())
    if match is None:
        raise ValueError("not an ISO 8601 timestamp")
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    if match.group(9) is not None:
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        moment -= offset if match.group(9) == "+" else -offset
    fraction = float("0." + match.group(7)) if match.group(7) else 0.0
    return moment.timestamp() + fraction


def _window(document: dict[str, Any], key: str) -> WindowFigures | None:
    """
    One window of a usage answer; ``None`` for a null window.

    :raise ValueError: when the window is malformed.
    """
    bucket = document.get(key)
    if bucket is None:
        return None
    if not isinstance(bucket, dict):
        raise ValueError(f"{key} is not an object")
    utilization = bucket.get("utilization")
    if utilization is None:
        utilization = 0.0
    if isinstance(utilization, bool) or not isinstance(utilization, (int, float)):
        raise ValueError(f"{key}.utilization is not a number")
    resets_at = bucket.get("resets_at")
    if resets_at is None:
        reset = 0.0
    elif isinstance(resets_at, str):
        try:
            reset = parse_iso_8601(resets_at)
        except (ValueError, OverflowError):
            raise ValueError(f"{key}.resets_at is not an ISO 8601 time") from None
    else:
        raise ValueError(f"{key}.resets_at is not a string")
    return float(utilization), reset


def _json_object(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        raise ValueError("not JSON") from None


def parse_usage(body: bytes) -> tuple[WindowFigures | None, WindowFigures | None]:
    """
    The 5-hour and weekly windows of a ``/api/oauth/usage`` answer, each as
    (percent used, reset in Unix seconds or 0) or ``None`` when null.

    :raise ValueError: when the answer is not the expected JSON.
    """
    document = _json_object(body)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return _window(document, "five_hour"), _window(document, "seven_day")


def plan_from_profile(document: object) -> tuple[str, str] | None:
    """
    The subscription type (``max``, ``pro``, ``team``, ``enterprise``, or the
    organization type without its ``claude_`` prefix) and rate-limit tier of
    a ``/api/oauth/profile`` answer; ``None`` when it names no organization.
    """
    if not isinstance(document, dict):
        return None
    organization = document.get("organization")
    if not isinstance(organization, dict):
        return None
    kind = organization.get("organization_type")
    kind = kind if isinstance(kind, str) else ""
    tier = organization.get("rate_limit_tier")
    subscription = _ORGANIZATION_TYPES.get(kind, kind.removeprefix("claude_"))
    return subscription, tier if isinstance(tier, str) else ""


def parse_profile(body: bytes) -> tuple[str, str] | None:
    """
    :obj:`plan_from_profile` of a ``/api/oauth/profile`` answer's body.

    :raise ValueError: when the answer is not JSON.
    """
    return plan_from_profile(_json_object(body))
