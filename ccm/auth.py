# -*- test-case-name: tests.test_auth -*-
"""
Who is calling: matching a client's token against the configured users.

A client authenticates with C{Authorization: Bearer <token>} (what Claude
Code sends for C{ANTHROPIC_AUTH_TOKEN}) or with C{x-api-key: <token>} when
that value is a user's token (what C{ANTHROPIC_API_KEY} clients send).
Any other API key is refused: ccm never forwards one.  Tokens are compared
in constant time and never appear in messages or logs.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Sequence

from twisted.web.http_headers import Headers

from ccm.config import UserConfig
from ccm.errors import APIError

_MISSING = APIError(
    401,
    "authentication_error",
    "missing ccm token: set ANTHROPIC_AUTH_TOKEN to the token your ccm "
    "operator gave you",
)
_INVALID = APIError(401, "authentication_error", "invalid ccm token")
_BAD_SCHEME = APIError(
    401,
    "authentication_error",
    "unsupported Authorization scheme: use Authorization: Bearer <ccm token>",
)
_API_KEY_REFUSED = APIError(
    401,
    "authentication_error",
    "API keys are not accepted by ccm and are never forwarded; unset "
    "ANTHROPIC_API_KEY and use ANTHROPIC_AUTH_TOKEN with your ccm token",
)


@dataclass(frozen=True)
class Caller:
    """
    The authenticated caller: a configured user, or anonymous when no users
    are configured (C{user} is None).
    """

    user: UserConfig | None

    @property
    def name(self) -> str:
        """
        The user's name, or the empty string for anonymous callers.
        """
        return self.user.name if self.user is not None else ""


ANONYMOUS = Caller(user=None)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Authenticator:
    """
    Decide who a request comes from.
    """

    def __init__(self, users: Sequence[UserConfig]) -> None:
        self.set_users(users)

    def set_users(self, users: Sequence[UserConfig]) -> None:
        """
        Accept the tokens of C{users}, and only those, from now on (a
        reloaded configuration).
        """
        self._users = [(_digest(u.token), u) for u in users]

    @property
    def anonymous(self) -> bool:
        """
        Whether no users are configured, so anyone may call.
        """
        return not self._users

    def _match(self, token: str) -> UserConfig | None:
        """
        The user whose token is C{token}; every user is compared, in
        constant time, so timing reveals nothing about near misses.
        """
        presented = _digest(token)
        found = None
        for digest, user in self._users:
            if hmac.compare_digest(digest, presented):
                found = user
        return found

    def authenticate(self, headers: Headers) -> Caller:
        """
        Identify the caller of a request with C{headers}.

        :raises APIError: 401 when the request must be refused.
        """
        bearer = None
        bad_scheme = False
        authorization = headers.getRawHeaders(b"authorization")
        if authorization:
            scheme, _, value = authorization[0].decode("latin-1").strip().partition(" ")
            bad_scheme = scheme.lower() != "bearer"
            bearer = value.strip()
        api_keys = [
            value.decode("latin-1").strip()
            for name in (b"x-api-key", b"api-key")
            for value in headers.getRawHeaders(name, [])
        ]
        api_keys = [k for k in api_keys if k]
        if self.anonymous:
            # Without users anyone may call; the Authorization header is
            # never forwarded, whatever its scheme, but an API key is
            # refused so that nobody believes it is used.
            if api_keys:
                raise _API_KEY_REFUSED
            return ANONYMOUS
        if bad_scheme:
            raise _BAD_SCHEME
        key_users = [self._match(k) for k in api_keys]
        if any(u is None for u in key_users):
            raise _API_KEY_REFUSED if bearer is not None or len(key_users) > 1 else _INVALID
        if bearer is not None:
            user = self._match(bearer)
            if user is None or any(u is not user for u in key_users):
                raise _INVALID
            return Caller(user=user)
        if key_users:
            if any(u is not key_users[0] for u in key_users):
                raise _INVALID
            return Caller(user=key_users[0])
        raise _MISSING
