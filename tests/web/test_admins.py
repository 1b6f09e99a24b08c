"""
Tests for :obj:`ccm.web.admins`: admins by bearer token or browser session,
the sessions' bounds, the cookie and the CSRF check.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest

from ccm.config.model import UserConfig
from ccm.web.admins import (
    Admin,
    AdminSessions,
    Refused,
    SESSION_COOKIE,
    csrf_matches,
)
from ccm.web.auth import Authenticator

ADMIN = UserConfig("root", "admin-token-123", admin=True)
USER = UserConfig("bob", "user-token-456")


class _Request(DummyRequest):
    """
    A request that has cookies, as twisted.web's do.
    """

    def __init__(self) -> None:
        super().__init__([b""])
        self.cookies: dict[bytes, bytes] = {}
        self.secure = False

    def getCookie(self, key: bytes) -> bytes | None:
        return self.cookies.get(key)

    def isSecure(self) -> bool:
        return self.secure


def request(
    headers: dict[bytes, bytes] | None = None, cookie: str | None = None, secure: bool = False
) -> Request:
    """
    A request with ``headers`` and the session cookie ``cookie``, on a TLS
    connection when ``secure``.
    """
    made = _Request()
    for name, value in (headers or {}).items():
        made.requestHeaders.setRawHeaders(name, [value])
    if cookie is not None:
        made.cookies[SESSION_COOKIE] = cookie.encode()
    made.secure = secure
    # The dummy stands in for the Request the sessions read.
    return cast(Request, made)


class AdminSessionsTests(SynchronousTestCase):
    """
    :obj:`AdminSessions` over two users, one an admin.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.authenticator = Authenticator([ADMIN, USER])
        self.sessions = AdminSessions(self.authenticator, self.clock, lifetime=100, max_sessions=2)

    def test_bearer(self) -> None:
        """
        An admin's bearer token is an admin without a session; a user's is
        refused; no token is nobody.
        """
        admin = self.sessions.admin_of(request({b"authorization": b"Bearer admin-token-123"}))
        self.assertEqual(admin, Admin("root"))
        with self.assertRaises(Refused) as refused:
            self.sessions.admin_of(request({b"authorization": b"Bearer user-token-456"}))
        self.assertEqual(refused.exception.status, 403)
        self.assertIsNone(self.sessions.admin_of(request()))

    def test_session(self) -> None:
        """
        A session's cookie is its admin until its lifetime is over.
        """
        session = self.sessions.log_in("admin-token-123")
        self.assertNotIn("admin-token-123", session.id + session.csrf)
        admin = self.sessions.admin_of(request(cookie=session.id))
        self.assertEqual(admin, Admin("root", session))
        self.assertIsNone(self.sessions.admin_of(request(cookie="made-up")))
        self.clock.advance(100)
        self.assertIsNone(self.sessions.admin_of(request(cookie=session.id)))

    def test_bounded(self) -> None:
        """
        Past ``max_sessions`` the oldest session goes.
        """
        first = self.sessions.log_in("admin-token-123")
        self.sessions.log_in("admin-token-123")
        self.sessions.log_in("admin-token-123")
        self.assertEqual(len(self.sessions), 2)
        self.assertIsNone(self.sessions.admin_of(request(cookie=first.id)))

    def test_reload_ends_sessions(self) -> None:
        """
        A reload that takes the admin flag away, or changes the token,
        ends the admin's sessions.
        """
        session = self.sessions.log_in("admin-token-123")
        self.authenticator.set_users([UserConfig("root", "admin-token-123"), USER])
        self.assertIsNone(self.sessions.admin_of(request(cookie=session.id)))
        self.authenticator.set_users([ADMIN])
        session = self.sessions.log_in("admin-token-123")
        self.authenticator.set_users([UserConfig("root", "new-token", admin=True)])
        self.assertIsNone(self.sessions.admin_of(request(cookie=session.id)))

    def test_log_in_refused(self) -> None:
        """
        Only an admin's token logs in.
        """
        for token in ("user-token-456", "nobody", " "):
            self.assertRaises(Refused, self.sessions.log_in, token)
        self.assertEqual(len(self.sessions), 0)

    def test_cookie(self) -> None:
        """
        The cookie is HttpOnly, SameSite=Strict, for ``/ccm/``, and Secure
        on a TLS connection only.
        """
        session = self.sessions.log_in("admin-token-123")
        plain = request()
        cookie = self.sessions.cookie(plain, session)
        self.assertEqual(
            cookie,
            f"ccm_admin={session.id}; Max-Age=100; Path=/ccm/; HttpOnly; SameSite=Strict".encode(),
        )
        secure = request(secure=True)
        self.assertTrue(self.sessions.cookie(secure, session).endswith(b"; Secure"))
        self.assertIn(b"Max-Age=0", self.sessions.cookie(plain, None))

    def test_anonymous_service(self) -> None:
        """
        Without users there are no admins: nobody logs in.
        """
        sessions = AdminSessions(Authenticator([]), self.clock)
        self.assertIsNone(sessions.admin_of(request()))
        self.assertRaises(Refused, sessions.log_in, "anything")


class CsrfTests(SynchronousTestCase):
    """
    :obj:`csrf_matches`.
    """

    def test_csrf(self) -> None:
        """
        A bearer admin needs no CSRF token; a session's admin needs its own.
        """
        sessions = AdminSessions(Authenticator([ADMIN]), Clock())
        session = sessions.log_in("admin-token-123")
        self.assertTrue(csrf_matches(Admin("root"), None))
        browser = Admin("root", session)
        self.assertTrue(csrf_matches(browser, session.csrf.encode()))
        self.assertFalse(csrf_matches(browser, None))
        self.assertFalse(csrf_matches(browser, b"other"))
