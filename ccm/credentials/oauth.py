# -*- test-case-name: tests.credentials.test_oauth -*-
"""
The OAuth refresh request, as the real Claude Code client makes it.

A JSON body with ``grant_type``, ``refresh_token``, ``client_id`` and
``scope`` goes to the token endpoint; a 200 carries the new access token, a
possibly rotated refresh token and the lifetime in seconds, and a 429 asks
(maybe with a ``Retry-After``) for no refreshes for a while.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.web.client import ResponseNeverReceived
from twisted.web.iweb import IResponse
from twisted.internet.interfaces import IReactorTime
from treq.client import HTTPClient

from ccm.pool.bounds import parse_delay
from ccm.upstream.anthropic_api import token_request_headers
from ccm.upstream.identity import ClientIdentity

CLAUDE_CODE_CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
REFRESH_SCOPE = (
    "user:profile user:inference user:sessions:claude_code "
    "user:mcp_servers user:file_upload"
)
REFRESH_TIMEOUT_SECONDS = 30.0
# A response without a usable lifetime is treated as valid this long, so a
# server omission cannot make ccm refresh on every request.
FALLBACK_LIFETIME_SECONDS = 3600

# Errors after which retrying with the same refresh token is pointless.
_PERMANENT_OAUTH_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope"}
)


@dataclass(frozen=True)
class TokenGrant:
    """
    What the token endpoint granted.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in_seconds: int


class RefreshError(Exception):
    """
    The refresh failed.  ``permanent`` is true when the refresh token itself
    was rejected, so only a new login helps; ``rate_limited`` when the token
    endpoint answered 429, with ``retry_after`` the seconds its
    ``Retry-After`` asked for (``None`` when it sent none ccm can read).
    """

    def __init__(
        self,
        message: str,
        permanent: bool = False,
        *,
        rate_limited: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.rate_limited = rate_limited
        self.retry_after = retry_after


def is_cancellation(error: BaseException) -> bool:
    """
    Whether ``error`` means the request was cancelled: treq reports a
    cancelled request as ``ResponseNeverReceived`` wrapping
    ``CancelledError``.
    """
    if isinstance(error, CancelledError):
        return True
    if isinstance(error, ResponseNeverReceived):
        return any(r.check(CancelledError) for r in error.reasons)
    return False


def _describe_failure(status: int, body: bytes) -> tuple[str, bool]:
    code = ""
    try:
        document: Any = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        code = document["error"]
    elif isinstance(document, dict) and isinstance(document.get("error"), dict):
        inner = document["error"].get("type")
        code = inner if isinstance(inner, str) else ""
    # Only the OAuth server's own verdict is final: a bare 403 may come from
    # a CDN in front of it and pass.
    permanent = code in _PERMANENT_OAUTH_ERRORS
    label = f"HTTP {status}" + (f" {code}" if code else "")
    return label, permanent


def _rate_limited(response: IResponse, body: bytes, now: float) -> RefreshError:
    """
    The error of a 429 answer, with the delay its ``Retry-After`` asks for
    (seconds, or an HTTP date).
    """
    values = response.headers.getRawHeaders(b"retry-after") or [b""]
    delay = parse_delay(values[0].decode("latin-1").strip(), now)
    label, _ = _describe_failure(response.code, body)
    return RefreshError(
        f"token endpoint answered {label}",
        rate_limited=True,
        retry_after=None if delay is None else max(0.0, delay),
    )


async def _refresh(
    http: HTTPClient,
    clock: IReactorTime,
    token_url: str,
    refresh_token: str,
    identity: ClientIdentity,
) -> TokenGrant:
    # Compact, as JavaScript's JSON.stringify writes it.
    body = json.dumps(
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLAUDE_CODE_CLIENT_ID,
            "scope": REFRESH_SCOPE,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    try:
        # treq types reactor= as the reactor its Agent needs, but only asks
        # it for time (and would otherwise import the global reactor).
        response = await http.post(
            token_url,
            data=body,
            headers=token_request_headers(identity),
            reactor=clock,  # type: ignore[arg-type]
            allow_redirects=False,
        )
        content = await response.content()
    except Exception as error:
        if is_cancellation(error):
            raise CancelledError() from None
        raise RefreshError(f"token endpoint unreachable: {type(error).__name__}") from None
    if response.code == 429:
        raise _rate_limited(response, content, clock.seconds())
    if response.code != 200:
        label, permanent = _describe_failure(response.code, content)
        raise RefreshError(f"token endpoint answered {label}", permanent=permanent)
    try:
        document = json.loads(content)
        access = document["access_token"]
    except (ValueError, KeyError, TypeError):
        raise RefreshError("token endpoint answered 200 without an access_token") from None
    if not isinstance(access, str) or not access:
        raise RefreshError("token endpoint answered 200 without an access_token")
    rotated = document.get("refresh_token")
    lifetime = document.get("expires_in")
    if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or lifetime <= 0:
        lifetime = FALLBACK_LIFETIME_SECONDS
    return TokenGrant(
        access_token=access,
        refresh_token=rotated if isinstance(rotated, str) else "",
        expires_in_seconds=int(lifetime),
    )


class TokenEndpoint:
    """
    Refreshes tokens at one OAuth token URL through one HTTP client.

    :param identity: the Claude Code the requests identify as.
    """

    def __init__(
        self,
        http: HTTPClient,
        clock: IReactorTime,
        token_url: str,
        timeout_seconds: float = REFRESH_TIMEOUT_SECONDS,
        identity: ClientIdentity | None = None,
    ) -> None:
        self._http = http
        self._clock = clock
        self._token_url = token_url
        self._timeout = timeout_seconds
        self._identity = identity if identity is not None else ClientIdentity()

    def refresh(self, refresh_token: str) -> Deferred[TokenGrant]:
        """
        Exchange ``refresh_token`` for new tokens.

        :return: a Deferred firing with a :obj:`TokenGrant`, or failing with
            :obj:`RefreshError` (also after ``timeout_seconds`` without an
            answer).
        """
        attempt = Deferred.fromCoroutine(
            _refresh(self._http, self._clock, self._token_url, refresh_token, self._identity)
        )

        def timed_out(result: object, timeout: float) -> TokenGrant:
            raise RefreshError(f"token endpoint did not answer within {timeout:g}s")

        attempt.addTimeout(self._timeout, self._clock, onTimeoutCancel=timed_out)
        return attempt
