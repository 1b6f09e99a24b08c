# -*- test-case-name: tests.web.test_auth -*-
"""
Who is calling: matching a client's token against the configured users.

A client authenticates with ``Authorization: Bearer <token>`` (what Claude
Code sends for ``ANTHROPIC_AUTH_TOKEN``) or with ``x-api-key: <token>`` when
that value is a user's token (what ``ANTHROPIC_API_KEY`` clients send).
Any other API key is refused: ccm never forwards one.  Two
``Authorization`` headers, or headers naming different users, are refused as
ambiguous.  Every refusal is a 401 with ``x-should-retry: false`` whose
message names the header used and sends the user to the ccm operator.
Tokens are compared in constant time and never appear in messages or logs.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Sequence

from twisted.web.http_headers import Headers

from ccm.config.model import UserConfig
from ccm.web.errors import APIError

#: Every 401 tells clients not to retry: a token does not become valid by
#: asking again, and Claude Code would otherwise retry for minutes before
#: showing anything.
_NO_RETRY = (("x-should-retry", "false"),)

#: What every 401 ends with: whom to ask, and that the client's own Claude
#: login is not the problem.
_ASK_OPERATOR = (
    "ask your ccm operator for a valid ccm token (/login does not help: this "
    "is ccm's own token, not a Claude login)"
)

#: Where each header comes from in Claude Code, for messages.
_SETTING_OF_HEADER = {
    "Authorization": ", from ANTHROPIC_AUTH_TOKEN",
    "x-api-key": ", from ANTHROPIC_API_KEY",
    "api-key": "",
}


def _refusal(message: str) -> APIError:
    return APIError(401, "authentication_error", f"{message}; {_ASK_OPERATOR}", _NO_RETRY)


_MISSING = _refusal(
    "missing ccm token: set ANTHROPIC_AUTH_TOKEN to the token your ccm operator gave you"
)
_BAD_SCHEME = _refusal(
    "unsupported Authorization scheme: use Authorization: Bearer <ccm token> "
    "(what ANTHROPIC_AUTH_TOKEN sends)"
)
_API_KEY_REFUSED = _refusal(
    "API keys are not accepted by ccm and are never forwarded: unset "
    "ANTHROPIC_API_KEY and use ANTHROPIC_AUTH_TOKEN with your ccm token"
)
_TWO_AUTHORIZATIONS = _refusal(
    "ambiguous ccm credentials: the request has more than one Authorization header"
)
_TWO_USERS = _refusal(
    "ambiguous ccm credentials: the Authorization and x-api-key (or api-key) "
    "headers hold the tokens of different ccm users; set ANTHROPIC_AUTH_TOKEN only"
)


def _not_recognised(header: str) -> APIError:
    """
    The 401 for a token, sent in ``header``, that is no user's: it names the
    header and the client setting behind it, never the token.
    """
    return _refusal(
        f"ccm token not recognised (sent in the {header} header"
        f"{_SETTING_OF_HEADER[header]}): check it for typos"
    )


@dataclass(frozen=True)
class Caller:
    """
    The authenticated caller: a configured user, or anonymous when no users
    are configured (``user`` is None).
    """

    user: UserConfig | None

    @property
    def name(self) -> str:
        """
        The user's name, or the empty string for anonymous callers.
        """
        return self.user.name if self.user is not None else ""

    @property
    def admin(self) -> bool:
        """
        Whether the caller may use the operator pages: a user configured
        with ``"admin": true`` (an anonymous caller never may).
        """
        return self.user is not None and self.user.admin


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
        Accept the tokens of ``users``, and only those, from now on (a
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
        The user whose token is ``token``; every user is compared, in
        constant time, so timing reveals nothing about near misses.
        """
        presented = _digest(token)
        found = None
        for digest, user in self._users:
            if hmac.compare_digest(digest, presented):
                found = user
        return found

    def current(self, user: UserConfig) -> UserConfig | None:
        """
        The configured user with ``user``'s name and token now, or None
        when a reload removed that user or changed its token (an admin's
        browser session then ends).
        """
        digest = _digest(user.token)
        for known_digest, known in self._users:
            if known.name == user.name and hmac.compare_digest(known_digest, digest):
                return known
        return None

    def authenticate(self, headers: Headers) -> Caller:
        """
        Identify the caller of a request with ``headers``.

        :raises APIError: 401 (with ``x-should-retry: false``) when the
            request must be refused.
        """
        authorization = headers.getRawHeaders(b"authorization", [])
        api_keys = [
            (name.decode("ascii"), value.decode("latin-1").strip())
            for name in (b"x-api-key", b"api-key")
            for value in headers.getRawHeaders(name, [])
        ]
        api_keys = [(name, key) for name, key in api_keys if key]
        if self.anonymous:
            # Without users anyone may call; the Authorization header is
            # never forwarded, whatever its scheme or number, but an API key
            # is refused so that nobody believes it is used.
            if api_keys:
                raise _API_KEY_REFUSED
            return ANONYMOUS
        if len(authorization) > 1:
            raise _TWO_AUTHORIZATIONS
        bearer = None
        if authorization:
            scheme, _, value = authorization[0].decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer":
                raise _BAD_SCHEME
            bearer = value.strip()
        matched = [self._match(key) for _, key in api_keys]
        key_users = [user for user in matched if user is not None]
        if len(key_users) < len(matched):
            if bearer is not None or len(api_keys) > 1:
                raise _API_KEY_REFUSED
            raise _not_recognised(api_keys[0][0])
        if bearer is not None:
            user = self._match(bearer)
            if user is None:
                raise _not_recognised("Authorization")
        elif key_users:
            user = key_users[0]
        else:
            raise _MISSING
        if any(other is not user for other in key_users):
            raise _TWO_USERS
        return Caller(user=user)
