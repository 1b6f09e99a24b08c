# -*- test-case-name: tests.web.test_dashboard -*-
"""
The dashboard's HTML, rendered on the server with
:obj:`twisted.web.template` from ``templates/dashboard.xml``: one page
for the dashboard itself, the login form and refusals.

Bars are inline SVG with presentation attributes, never style
attributes; the style sheet and the script are files of their own, served
under ``/ccm/static/``, so the content security policy is ``'self'``
without ``'unsafe-inline'`` or nonces (:obj:`ccm.web.dashboard`).  Every text comes from ccm's own state,
and the template escapes it.  No token is ever rendered: the CSRF token
of the admin's browser session is the only secret in a page, in the
hidden fields of its forms.
"""

from __future__ import annotations

from typing import Sequence
from urllib.parse import quote

from twisted.python.filepath import FilePath
from twisted.web.iweb import IRequest
from twisted.web.template import Element, Flattenable, Tag, XMLFile, renderer, tags

from ccm.units import format_duration
from ccm.pool.figures import WindowName
from ccm.shares.standing import ShareFigures
from ccm.web.overview import WINDOW_LABELS, CredentialView, Overview, UserRow, WindowBar

TEMPLATES = FilePath(__file__).sibling("templates")
#: The files served under ``/ccm/static/``, with their content types.
STATIC = {
    b"style.css": (TEMPLATES.child("style.css"), b"text/css; charset=utf-8"),
    b"refresh.js": (TEMPLATES.child("refresh.js"), b"text/javascript; charset=utf-8"),
}
COOLDOWN_NOTE = (
    "Clear cooldown ends a 429's rate limit and the extra-usage pauses; it does not end a "
    "quarantine, and a credential over its pause threshold stays paused until its window resets."
)


def _svg(name: str, **attributes: str) -> Tag:
    tag = Tag(name)
    tag.attributes.update(attributes)
    return tag


def bar(window: WindowBar) -> Tag:
    """
    A window as an SVG bar: the part used, and the reserve line where the
    credential pauses.
    """
    used = max(0.0, min(100.0, window.utilization))
    colour = "#c62828" if used >= window.cap else "#b26a00" if used >= window.cap - 10 else "#2e7d32"
    return _svg(
        "svg", viewBox="0 0 100 10", preserveAspectRatio="none", role="img", **{"class": "bar"}
    )(
        _svg("title")(f"{window.label}: {used:g}% used, pauses at {window.cap:g}%"),
        _svg("rect", x="0", y="0", width="100", height="10", fill="#8884"),
        _svg("rect", x="0", y="0", width=f"{used:g}", height="10", fill=colour),
        _svg(
            "line", x1=f"{window.cap:g}", x2=f"{window.cap:g}", y1="0", y2="10",
            stroke="currentColor", **{"stroke-width": "0.8"},
        ),
    )


def countdown(moment: float, now: float) -> Tag:
    """
    The time until ``moment``, which the page's script keeps ticking.
    """
    return tags.span(format_duration(max(0.0, moment - now)), **{"data-until": f"{moment:.0f}"})


def action(tag: str, name: str, label: str, csrf: str) -> Tag:
    """
    A POST form for one action on credential ``tag``.
    """
    return tags.form(method="post", action=f"/ccm/credentials/{quote(tag, safe='')}/{name}")(
        tags.input(type="hidden", name="csrf", value=csrf),
        tags.button(label, type="submit", name="action", value=name),
    )


def credential_card(view: CredentialView, now: float, csrf: str) -> Tag:
    """
    One credential: its state and why, its windows, sessions and actions.
    """
    windows = []
    for window in view.windows:
        resets: list[Flattenable] = (
            [", resets in ", countdown(window.resets_at, now)] if window.resets_at > now else []
        )
        windows.append(
            tags.div(
                tags.div(f"{window.label}: {window.utilization:g}% (pauses at {window.cap:g}%)", *resets),
                bar(window),
                **{"class": "window"},
            )
        )
    until: list[Flattenable] = []
    if view.until > now:
        until = [tags.div("serves again in ", countdown(view.until, now), **{"class": "meta"})]
    sessions = ", ".join(f"{sid[:12]} ({format_duration(now - used)} ago)" for sid, used in view.sessions[:5])
    more = f" and {len(view.sessions) - 5} more" if len(view.sessions) > 5 else ""
    buttons = [action(view.tag, "clear-cooldown", "Clear cooldown", csrf)] if view.cooldown else []
    if view.paused_by_admin:
        buttons.append(action(view.tag, "resume", "Resume", csrf))
    else:
        buttons.append(action(view.tag, "pause", "Pause", csrf))
    return tags.section(
        tags.h3(tags.span(view.tag), tags.span(view.state.replace("_", " "), **{"class": f"state {view.state}"})),
        tags.div(view.description, **{"class": "description"}),
        *until,
        *windows,
        tags.div(f"sessions: {len(view.sessions)}", f" \u2014 {sessions}{more}" if sessions else "", **{"class": "meta"}),
        tags.div(f"plan weight {view.plan_weight:g} \u00b7 {view.path}", **{"class": "meta"}),
        tags.div(*buttons, **{"class": "actions"}),
        **{"class": "card", "data-credential": view.tag, "data-state": view.state, "data-reason": view.reason or ""},
    )


def _figures(row: UserRow) -> list[Tag]:
    return [
        tags.td(f"{figures.requests:,}" if i == 0 else f"{figures.tokens:,}" if i == 1 else f"{figures.cost_usd:,.2f}")
        for figures in (row.week, row.five_hour)
        for i in range(3)
    ]


def dollars(amount: float) -> str:
    """``amount`` of dollars to the cent, or ``< $0.01`` for less."""
    return f"${amount:,.2f}" if amount >= 0.005 else "< $0.01"


def usd(figures: ShareFigures) -> list[Flattenable]:
    """
    The use of ``figures`` in estimated list-price dollars, small, after
    the percent, with what 1 % of the pool's window holds as its title;
    nothing while the pool has no estimate, or when nothing was used.
    """
    if not figures.used_usd:
        return []
    attributes = {"class": "usd"}
    per = figures.usd_per_percent
    if per:
        attributes["title"] = f"estimated at list price; 1% of the pool's window \u2248 {dollars(per)}"
    return [" ", tags.small(f"\u2248 {dollars(figures.used_usd)}", **attributes)]


def _share_cells(row: UserRow, window: WindowName, now: float) -> list[Tag]:
    """
    ``row``'s share of ``window``, what they used of it (also in dollars,
    when estimated), what is left and when their use next falls (percent
    of their pool's window); ``-`` for a user without a share of it.
    """
    found = [f for f in row.shares if f.window is window]
    if not found:
        return [tags.td("-", **{"data-share": "none"}) for _ in range(4)]
    [f] = found
    reset: Flattenable = countdown(f.resets_at, now) if f.resets_at > now else "-"
    return [
        tags.td(f"{f.share:g}%", **{"data-share": "share"}),
        tags.td(
            f"{f.used:.1f}%", *usd(f),
            **{"data-share": "used", **({"class": "over"} if f.exhausted else {})},
        ),
        tags.td(f"{f.remaining:.1f}%", **{"data-share": "remaining"}),
        tags.td(reset, **{"data-share": "reset"}),
    ]


def users_table(users: Sequence[UserRow], now: float) -> Tag:
    """
    Each user's requests, tokens and cost this week and this 5-hour window,
    and for each window anyone has a share of, each user's share of it.
    """
    windows = [w for w in WINDOW_LABELS if any(f.window is w for row in users for f in row.shares)]
    head = tags.tr(
        tags.th("user"),
        *(tags.th(f"{what} {when}") for when in ("week", "5h") for what in ("requests", "tokens", "USD")),
        *(
            tags.th(f"{WINDOW_LABELS[w]} {what}")
            for w in windows
            for what in ("share", "used", "left", "next reset")
        ),
    )
    rows = [
        tags.tr(
            tags.td(row.name),
            *_figures(row),
            *(cell for w in windows for cell in _share_cells(row, w, now)),
            **{"data-user": row.name},
        )
        for row in users
    ]
    return tags.div(tags.table(tags.thead(head), tags.tbody(*rows)), **{"class": "scroll"})


def dashboard(overview: Overview, csrf: str) -> list[Tag]:
    """
    The dashboard's sections.
    """
    now = overview.now
    flights = [
        tags.tr(
            tags.td(flight.user or "(anonymous)"),
            tags.td(f"{flight.method} {flight.path}", **{"class": "text"}),
            tags.td(format_duration(max(0.0, now - flight.started))),
        )
        for flight in overview.flights
    ]
    problems = [
        tags.li(
            tags.span(f"{format_duration(max(0.0, now - problem.at))} ago, {problem.level}: "),
            problem.text,
            **{"class": "error" if problem.level in ("error", "critical") else ""},
        )
        for problem in overview.problems
    ]
    return [
        tags.h2("Credentials"),
        tags.p(COOLDOWN_NOTE, **{"class": "note"}),
        tags.div(*(credential_card(view, now, csrf) for view in overview.credentials), **{"class": "cards"}),
        tags.h2("Users"),
        users_table(overview.users, now),
        tags.h2(f"In flight ({len(overview.flights)})"),
        tags.div(
            tags.table(tags.tr(tags.th("user"), tags.th("request"), tags.th("for")), *flights),
            **{"class": "scroll"},
        )
        if flights
        else tags.p("No request in flight."),
        tags.h2("Last problems"),
        tags.ul(*problems, **{"class": "problems"}) if problems else tags.p("Nothing logged."),
    ]


def login_form(message: str) -> list[Tag]:
    """
    The form that logs a browser in with an admin's ccm token.
    """
    return [
        tags.h2("Log in"),
        *([tags.p(message, **{"class": "error"})] if message else []),
        tags.form(method="post", action="/ccm/login", **{"class": "login"})(
            tags.label("Admin's ccm token", tags.br(), tags.input(type="password", name="token", autocomplete="current-password", required="required")),
            tags.button("Log in", type="submit"),
        ),
    ]


class Page(Element):
    """
    One page of the dashboard: ``main`` is its content; ``who`` the admin
    it is for ('' on the login page) and ``csrf`` that admin's browser
    session's CSRF token ('' for a bearer token: then no logout form).
    """

    loader = XMLFile(TEMPLATES.child("dashboard.xml"))

    def __init__(
        self, title: str, main: list[Tag], now: float, who: str = "", csrf: str = ""
    ) -> None:
        super().__init__()
        self._title = title
        self._main = main
        self._now = now
        self._who = who
        self._csrf = csrf

    @renderer
    def title(self, request: IRequest | None, tag: Tag) -> Tag:
        return tag(self._title)

    @renderer
    def body(self, request: IRequest | None, tag: Tag) -> Tag:
        return tag(**{"data-now": f"{self._now:.0f}"})

    @renderer
    def who(self, request: IRequest | None, tag: Tag) -> Tag | str:
        if not self._who:
            return ""
        logout: list[Flattenable] = []
        if self._csrf:
            logout = [
                " ",
                tags.form(method="post", action="/ccm/logout", **{"class": "logout"})(
                    tags.input(type="hidden", name="csrf", value=self._csrf),
                    tags.button("Log out", type="submit"),
                ),
            ]
        return tag(f"admin {self._who}", *logout)

    @renderer
    def main(self, request: IRequest | None, tag: Tag) -> Tag:
        return tag(*self._main)
