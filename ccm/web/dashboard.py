# -*- test-case-name: tests.web.test_dashboard -*-
"""
The dashboard at ``/ccm/``, for admins (:obj:`ccm.web.admins`).

- ``GET /ccm/``: the dashboard (:obj:`ccm.web.overview`, rendered by
  :obj:`ccm.web.page`), or the login form for a request without a token
  or a session; a 403 page for a token that is no admin's.
- ``POST /ccm/login`` (field ``token``) starts a browser session;
  ``POST /ccm/logout`` ends it.
- ``POST /ccm/credentials/<tag>/clear-cooldown``, ``.../pause`` and
  ``.../resume``: the actions, each logged with the admin's name.
- ``GET /ccm/static/style.css`` and ``refresh.js``: the page's style and
  its few lines of script (no secret in them, so no login needed).

Every POST from a browser session carries that session's CSRF token, and
every answer is a 303 back to ``/ccm/`` (so a reload never posts again) or
an HTML page.  Pages are sent with ``Cache-Control: no-store`` and a
content security policy of ``default-src 'self'``, framing forbidden.
"""

from __future__ import annotations

from typing import Callable, Mapping
from urllib.parse import parse_qs

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.template import Tag, renderElement, tags

from ccm.pool.member import PoolMember
from ccm.web.admins import Admin, AdminSessions, Refused, csrf_matches
from ccm.web.overview import Sources, read_overview
from ccm.web.page import STATIC, Page, dashboard, login_form

SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)

_ACTIONS = ("clear-cooldown", "pause", "resume")


#: The largest form body read; the dashboard's forms are a few fields.
MAX_FORM_BYTES = 16 * 1024


def _first(request: Request, name: bytes) -> bytes | None:
    """
    Field ``name`` of the form a POST sent: ccm's site never parses bodies
    (:obj:`ccm.web.site.CcmSite`), so the dashboard reads its own, URL-encoded
    and small.
    """
    content = request.content
    kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content is None or kind != b"application/x-www-form-urlencoded":
        return None
    content.seek(0)
    body = content.read(MAX_FORM_BYTES + 1)
    if len(body) > MAX_FORM_BYTES:
        return None
    values = parse_qs(body, keep_blank_values=True).get(name)
    return values[0] if values else None


class DashboardResource(Resource):
    """
    Everything under ``/ccm/`` but the API (``/ccm/v1/``).

    :param sessions: who is an admin, and the browser sessions.
    :param sources: where the dashboard reads what it shows.
    :param members: the credentials the actions act on, by tag.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        sessions: AdminSessions,
        sources: Sources,
        members: Callable[[], Mapping[str, PoolMember]],
        clock: IReactorTime,
    ) -> None:
        super().__init__()
        self._sessions = sessions
        self._sources = sources
        self._members = members
        self._clock = clock

    def render(self, request: Request) -> bytes | int:
        """
        Route by the path below ``/ccm/``.
        """
        segments = [*(request.prepath or [])[1:], *(request.postpath or [])]
        path = [segment.decode("utf-8", "replace") for segment in segments]
        if path[:1] == ["static"] and len(path) == 2:
            return self._static(request, path[1].encode("utf-8"))
        for name, value in SECURITY_HEADERS:
            request.setHeader(name, value)
        try:
            admin = self._sessions.admin_of(request)
        except Refused as refusal:
            return self._page(request, refusal.status, "ccm: refused", [tags.h2(refusal.message)])
        method = request.method
        if path == [""] and method in (b"GET", b"HEAD"):
            if admin is None:
                return self._page(request, 200, "ccm: log in", login_form(""))
            return self._dashboard(request, admin)
        if path == ["login"] and method == b"POST":
            return self._log_in(request)
        if method != b"POST" or len(path) not in (1, 3):
            return self._page(request, 404, "ccm: not found", [tags.h2("Not found.")])
        if admin is None:
            return self._page(request, 403, "ccm: log in", login_form("Log in first."))
        if not csrf_matches(admin, _first(request, b"csrf")):
            return self._page(
                request, 403, "ccm: refused",
                [tags.h2("This form is out of date (CSRF check failed): reload the page.")],
            )
        if path == ["logout"]:
            if admin.session is not None:
                self._sessions.log_out(admin.session)
            request.setHeader(b"set-cookie", self._sessions.cookie(request, None))
            return self._back(request)
        if path[0] == "credentials" and path[2] in _ACTIONS:
            return self._act(request, admin, path[1], path[2])
        return self._page(request, 404, "ccm: not found", [tags.h2("Not found.")])

    def _static(self, request: Request, name: bytes) -> bytes:
        found = STATIC.get(name)
        if found is None or request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(404)
            return b""
        source, content_type = found
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"max-age=300")
        return source.getContent()

    def _page(self, request: Request, status: int, title: str, main: list[Tag]) -> int:
        request.setResponseCode(status)
        renderElement(request, Page(title, main, self._clock.seconds()))
        return NOT_DONE_YET

    def _back(self, request: Request) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"location", b"/ccm/")
        return b""

    def _dashboard(self, request: Request, admin: Admin) -> int:
        now = self._clock.seconds()
        overview = read_overview(self._sources, now)
        csrf = admin.session.csrf if admin.session is not None else ""
        page = Page("ccm", dashboard(overview, csrf), now, who=admin.name, csrf=csrf)
        request.setResponseCode(200)
        renderElement(request, page)
        return NOT_DONE_YET

    def _log_in(self, request: Request) -> bytes | int:
        token = (_first(request, b"token") or b"").decode("utf-8", "replace")
        try:
            session = self._sessions.log_in(token)
        except Refused as refusal:
            return self._page(request, refusal.status, "ccm: log in", login_form(refusal.message))
        self.log.info("admin {admin} logged in to the dashboard", admin=session.user.name)
        request.setHeader(b"set-cookie", self._sessions.cookie(request, session))
        return self._back(request)

    def _act(self, request: Request, admin: Admin, tag: str, action: str) -> bytes | int:
        member = self._members().get(tag)
        if member is None:
            return self._page(request, 404, "ccm: not found", [tags.h2("No such credential.")])
        now = self._clock.seconds()
        credential = member.credential
        if action == "clear-cooldown":
            cleared = credential.rate_limits.clear_cooldown(now)
            self.log.info(
                "admin {admin} cleared the cooldown of credential {tag}",
                admin=admin.name, tag=tag, cleared=cleared,
            )
        elif action == "pause":
            credential.pause(admin.name)
            self.log.info("admin {admin} paused credential {tag}", admin=admin.name, tag=tag)
        else:
            credential.resume()
            self.log.info("admin {admin} resumed credential {tag}", admin=admin.name, tag=tag)
        # The state log says what the credential's state is now.
        member.observe(now)
        return self._back(request)
