# -*- test-case-name: tests.web.test_admins -*-
"""
Who may use the dashboard: admins, users configured with ``"admin": true``.

A script sends its ccm token as it does to the API (``Authorization:
Bearer``); a browser logs in once with a form that sends the token
(``POST /ccm/login``) and gets a cookie naming a server-side
:obj:`AdminSession`: a random id, bounded in lifetime
(:obj:`SESSION_SECONDS`) and number (:obj:`MAX_SESSIONS`, the oldest goes
first), kept in memory, so a restart logs everybody out.  The cookie is
``HttpOnly; SameSite=Strict; Path=/ccm/``, and ``Secure`` on a TLS listener.
Each session has its own CSRF token, which every form of the dashboard
carries as a hidden field and every POST from a browser must return
(compared in constant time).  A request with a bearer token needs none: a
browser never adds that header by itself.

Sessions remember the user, never the token in a form a page could show;
each request checks that the user is still configured, with the same
token, as an admin, so a reload that takes the flag away ends its sessions.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from ccm.config.model import UserConfig
from ccm.web.auth import Authenticator, Caller
from ccm.web.errors import APIError

SESSION_COOKIE = b"ccm_admin"
#: How long a browser stays logged in.
SESSION_SECONDS = 12 * 3600.0
#: How many browser sessions are kept; a new one beyond makes the oldest go.
MAX_SESSIONS = 100


class Refused(Exception):
    """
    The request may not see the dashboard: ``status`` is 403 for a caller
    who is no admin or a token that is nobody's, and ``message`` says so.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


NOT_AN_ADMIN = Refused(403, "this ccm token is not an admin's: the dashboard is for admins only")
UNKNOWN_TOKEN = Refused(403, "this is not a ccm token: check it for typos")


@dataclass(frozen=True)
class AdminSession:
    """
    One browser's login: its cookie value ``id``, the ``csrf`` token its
    forms carry, the admin ``user`` and when it ``expires`` (Unix seconds).
    """

    id: str
    csrf: str
    user: UserConfig
    expires: float


@dataclass(frozen=True)
class Admin:
    """
    An admin making a request: who, and the browser session it came with
    (None for a bearer token).
    """

    name: str
    session: AdminSession | None = None


class AdminSessions:
    """
    Authenticate admins, by bearer token or by session cookie, and keep the
    browser sessions.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        clock: IReactorTime,
        lifetime: float = SESSION_SECONDS,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._authenticator = authenticator
        self._clock = clock
        self._lifetime = lifetime
        self._max_sessions = max_sessions
        self._sessions: OrderedDict[str, AdminSession] = OrderedDict()

    def __len__(self) -> int:
        """
        How many browser sessions are open.
        """
        return len(self._sessions)

    def _admin_user(self, headers: Headers) -> UserConfig | None:
        """
        The admin whose token ``headers`` carry; None when they carry none.

        :raises Refused: for a token that is nobody's or no admin's.
        """
        if self._authenticator.anonymous:
            # Without users there are no admins, and no token to send.
            if headers.hasHeader(b"authorization"):
                raise NOT_AN_ADMIN
            return None
        if not (headers.hasHeader(b"authorization") or headers.hasHeader(b"x-api-key")):
            return None
        try:
            caller: Caller = self._authenticator.authenticate(headers)
        except APIError:
            raise UNKNOWN_TOKEN
        if caller.user is None or not caller.admin:
            raise NOT_AN_ADMIN
        return caller.user

    def admin_of(self, request: Request) -> Admin | None:
        """
        The admin making ``request``: by its bearer token, else by its
        session cookie; None when it carries neither (or a cookie of a
        session that is over).

        :raises Refused: for a token that is nobody's or no admin's.
        """
        user = self._admin_user(request.requestHeaders)
        if user is not None:
            return Admin(user.name)
        cookie = request.getCookie(SESSION_COOKIE)
        if cookie is None:
            return None
        session = self._session(cookie.decode("latin-1"))
        return Admin(session.user.name, session) if session is not None else None

    def _session(self, session_id: str) -> AdminSession | None:
        """
        The open session ``session_id``, while it lasts and its user is
        still a configured admin with the same token.
        """
        self._expire()
        session = self._sessions.get(session_id)
        if session is None:
            return None
        user = self._authenticator.current(session.user)
        if user is None or not user.admin:
            del self._sessions[session_id]
            return None
        return session

    def _expire(self) -> None:
        now = self._clock.seconds()
        for session_id, session in list(self._sessions.items()):
            if session.expires <= now:
                del self._sessions[session_id]

    def log_in(self, token: str) -> AdminSession:
        """
        A new browser session for the admin whose token is ``token``.

        :raises Refused: for a token that is nobody's or no admin's.
        """
        headers = Headers({b"authorization": [b"Bearer " + token.strip().encode("utf-8")]})
        if not token.strip():
            raise UNKNOWN_TOKEN
        user = self._admin_user(headers)
        if user is None:
            raise NOT_AN_ADMIN
        self._expire()
        while len(self._sessions) >= self._max_sessions:
            self._sessions.popitem(last=False)
        session = AdminSession(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            user=user,
            expires=self._clock.seconds() + self._lifetime,
        )
        self._sessions[session.id] = session
        return session

    def log_out(self, session: AdminSession) -> None:
        """
        End ``session``.
        """
        self._sessions.pop(session.id, None)

    def cookie(self, request: Request, session: AdminSession | None) -> bytes:
        """
        The ``Set-Cookie`` value that starts ``session`` in the browser of
        ``request``, or, for None, ends the one it has.
        """
        value, age = (session.id, int(self._lifetime)) if session is not None else ("", 0)
        secure = "; Secure" if request.isSecure() else ""
        return (
            f"{SESSION_COOKIE.decode()}={value}; Max-Age={age}; Path=/ccm/; HttpOnly; "
            f"SameSite=Strict{secure}"
        ).encode("ascii")


def csrf_matches(admin: Admin, presented: bytes | None) -> bool:
    """
    Whether a POST of ``admin`` may act: a bearer token always may; a
    browser session must send its CSRF token (compared in constant time).
    """
    if admin.session is None:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(admin.session.csrf.encode("ascii"), presented)
