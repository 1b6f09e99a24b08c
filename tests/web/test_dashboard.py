"""
Tests for :obj:`ccm.web.dashboard` and :obj:`ccm.web.page`: the dashboard
of a service built by :obj:`ccm.build.build_service`, its login, its
actions and what it never shows.
"""

from __future__ import annotations

import dataclasses
import re
from typing import cast

from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.accounting.week import week_start_of
from ccm.web.admins import SESSION_SECONDS
from tests.fake_anthropic import overage_unified_headers, rejected_unified_headers
from tests.fixtures import record, usage_record
from tests.proxyharness import ALICE, BOB, ProxyHarness
from tests.shares.usedshare import FIVE_HOUR_RESET, used_share
from tests.web.dashcase import ADMIN_TOKEN, NOW, USER_TOKEN, DashboardCase

SECRETS = (ADMIN_TOKEN, USER_TOKEN, "sk-ant-oat01", "sk-ant-ort01")


def _headers(values: dict[str, str]) -> Headers:
    return Headers({name.encode(): [value.encode()] for name, value in values.items()})


def card(page: str, tag: str) -> str:
    """
    The HTML of credential ``tag``'s card in ``page``.
    """
    match = re.search(rf'<section class="card" data-credential="{tag}".*?</section>', page)
    assert match is not None, page
    return match.group(0)


class AccessTests(DashboardCase):
    """
    Who sees the dashboard.
    """

    def assert_no_secret(self, page: str) -> None:
        for secret in SECRETS:
            self.assertNotIn(secret, page)

    def test_no_token_gets_the_login_form(self) -> None:
        """
        A request without a token or a session gets the login form, and
        nothing of the dashboard: no credential, no path.
        """
        code, headers, page = self.get()
        self.assertEqual(code, 200)
        self.assertIn('action="/ccm/login"', page)
        self.assertIn('type="password"', page)
        self.assertNotIn("data-credential", page)
        self.assertNotIn(self.directory, page)
        self.assertEqual(headers.getRawHeaders(b"cache-control"), [b"no-store"])

    def test_non_admin_token_refused(self) -> None:
        """
        A user's token that is not an admin's gets a 403 page saying so,
        without credentials, paths or tokens.
        """
        code, _, page = self.get(headers=self.bearer(USER_TOKEN))
        self.assertEqual(code, 403)
        self.assertIn("not an admin", page)
        self.assertNotIn("data-credential", page)
        self.assertNotIn(self.directory, page)
        self.assert_no_secret(page)

    def test_unknown_token_refused(self) -> None:
        """
        A token that is nobody's gets a 403 page.
        """
        code, _, page = self.get(headers=self.bearer("not-a-token"))
        self.assertEqual(code, 403)
        self.assertIn("not a ccm token", page)

    def test_admin_token_sees_the_dashboard(self) -> None:
        """
        An admin's bearer token gets the dashboard: each credential with
        its state and windows, each user, and the security headers; no
        token of any kind is in the page.
        """
        code, headers, page = self.get(headers=self.bearer())
        self.assertEqual(code, 200)
        self.assertIn('data-state="usable"', card(page, "a"))
        self.assertIn("<svg", card(page, "b"))
        self.assertIn('data-user="root"', page)
        self.assertIn('data-user="bob"', page)
        self.assertIn(self.directory, page)
        self.assert_no_secret(page)
        [policy] = headers.getRawHeaders(b"content-security-policy", [])
        self.assertIn(b"default-src 'self'", policy)
        self.assertIn(b"frame-ancestors 'none'", policy)
        self.assertEqual(headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])

    def test_login_sets_a_strict_cookie(self) -> None:
        """
        Logging in with an admin's token sets an HttpOnly, SameSite=Strict
        cookie for ``/ccm/`` (not Secure over plain HTTP) holding a random
        session id, not the token; the cookie then opens the dashboard.
        """
        code, headers, _ = self.post("/ccm/login", {"token": ADMIN_TOKEN})
        self.assertEqual(code, 303)
        self.assertEqual(headers.getRawHeaders(b"location"), [b"/ccm/"])
        [cookie] = headers.getRawHeaders(b"set-cookie", [])
        self.assertIn(b"HttpOnly", cookie)
        self.assertIn(b"SameSite=Strict", cookie)
        self.assertIn(b"Path=/ccm/", cookie)
        self.assertNotIn(b"Secure", cookie)
        self.assertNotIn(ADMIN_TOKEN.encode(), cookie)
        cookies = {b"cookie": [cookie.split(b";")[0]]}
        code, _, page = self.get(headers=cookies)
        self.assertEqual(code, 200)
        self.assertIn("admin root", page)
        self.assert_no_secret(page)

    def test_login_refuses_non_admins(self) -> None:
        """
        The login form refuses a user's token that is not an admin's, and
        an unknown one, with a 403 and no cookie.
        """
        for token in (USER_TOKEN, "nobody", ""):
            code, headers, page = self.post("/ccm/login", {"token": token})
            self.assertEqual(code, 403)
            self.assertIsNone(headers.getRawHeaders(b"set-cookie"))
            self.assertIn('action="/ccm/login"', page)
            self.assert_no_secret(page)

    def test_logout(self) -> None:
        """
        Logging out ends the session on the server and clears the cookie.
        """
        cookies, csrf = self.log_in()
        code, headers, _ = self.post("/ccm/logout", {"csrf": csrf}, cookies)
        self.assertEqual(code, 303)
        [cleared] = headers.getRawHeaders(b"set-cookie", [])
        self.assertIn(b"Max-Age=0", cleared)
        _, _, page = self.get(headers=cookies)
        self.assertIn('action="/ccm/login"', page)

    def test_session_expires(self) -> None:
        """
        A browser session ends after its lifetime: the cookie then gets
        the login form.
        """
        cookies, _ = self.log_in()
        self.reactor.advance(SESSION_SECONDS + 1)
        _, _, page = self.get(headers=cookies)
        self.assertIn('action="/ccm/login"', page)

    def test_static_files(self) -> None:
        """
        The style sheet and the script are served without login, others
        are 404s.
        """
        code, headers, text = self.get("/ccm/static/refresh.js")
        self.assertEqual(code, 200)
        self.assertIn("location.reload", text)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/javascript; charset=utf-8"])
        self.assertEqual(self.get("/ccm/static/style.css")[0], 200)
        self.assertEqual(self.get("/ccm/static/dashboard.xml")[0], 404)


class ActionTests(DashboardCase):
    """
    The admins' actions, and their CSRF protection.
    """

    def limit(self, tag: str) -> None:
        """
        Make credential ``tag`` rate-limited by a 429 and paused for extra
        usage.
        """
        limits = self.member(tag).credential.rate_limits
        limits.observe_rejection(_headers(rejected_unified_headers(NOW)), NOW)
        limits.observe(_headers(overage_unified_headers(NOW, in_use=True)), NOW)
        # A poll sent before the 429 lowers the figures, not the limit.
        limits.apply_poll((50.0, NOW + 3600), (20.0, NOW + 86400), NOW, started=NOW - 1)
        self.assertIsNotNone(limits.limit(NOW))
        self.assertIsNotNone(limits.extra_usage.pause(NOW))

    def test_clear_cooldown(self) -> None:
        """
        "Clear cooldown" with the session's CSRF token ends a 429's limit
        and the extra-usage pause: the page then shows the credential
        usable, and the log names the admin.
        """
        self.limit("a")
        cookies, csrf = self.log_in()
        _, _, page = self.get(headers=cookies)
        self.assertIn('data-state="rate_limited"', card(page, "a"))
        self.assertIn("/ccm/credentials/a/clear-cooldown", card(page, "a"))
        events: list[dict[str, object]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        code, _, _ = self.post("/ccm/credentials/a/clear-cooldown", {"csrf": csrf}, cookies)
        self.assertEqual(code, 303)
        _, _, page = self.get(headers=cookies)
        self.assertIn('data-state="usable"', card(page, "a"))
        self.assertNotIn("clear-cooldown", card(page, "a"))
        self.assertIn(
            "admin root cleared the cooldown of credential a",
            [formatEvent(event) for event in events],
        )

    def test_csrf_required(self) -> None:
        """
        A browser's POST without the session's CSRF token, or with another,
        is refused with a 403 and changes nothing.
        """
        self.limit("a")
        cookies, csrf = self.log_in()
        # Another token: the first character changed (whatever it was).
        other = ("y" if csrf[0] == "x" else "x") + csrf[1:]
        for fields in ({}, {"csrf": other}, {"csrf": ""}):
            code, _, page = self.post("/ccm/credentials/a/clear-cooldown", fields, cookies)
            self.assertEqual(code, 403)
            self.assertIn("CSRF", page)
        self.assertFalse(self.member("a").state(NOW).usable)

    def test_bearer_needs_no_csrf(self) -> None:
        """
        A script with an admin's bearer token acts without a CSRF token (a
        browser never sends that header by itself).
        """
        code, _, _ = self.post("/ccm/credentials/b/pause", {}, self.bearer())
        self.assertEqual(code, 303)
        self.assertEqual(self.member("b").credential.admin_pause.by, "root")

    def test_non_admin_cannot_act(self) -> None:
        """
        A user's token that is not an admin's cannot act, nor can a request
        without a token.
        """
        self.limit("a")
        self.assertEqual(self.post("/ccm/credentials/a/clear-cooldown", {}, self.bearer(USER_TOKEN))[0], 403)
        self.assertEqual(self.post("/ccm/credentials/a/clear-cooldown", {})[0], 403)
        self.assertFalse(self.member("a").state(NOW).usable)

    def test_pause_and_resume(self) -> None:
        """
        Pausing a credential makes it unusable, by that admin: the balancer
        moves its sessions to the other; resuming ends the pause.
        """
        pool = self.service.user_pools.pools["pool"]
        self.assertEqual(pool.select("session-1").tag, "a")
        cookies, csrf = self.log_in()
        _, _, page = self.get(headers=cookies)
        self.assertIn("session-1", card(page, "a"))
        self.assertEqual(self.post("/ccm/credentials/a/pause", {"csrf": csrf}, cookies)[0], 303)
        _, _, page = self.get(headers=cookies)
        self.assertIn('data-reason="paused_by_admin"', card(page, "a"))
        self.assertIn("paused by admin root", card(page, "a"))
        self.assertIn("/ccm/credentials/a/resume", card(page, "a"))
        self.assertEqual(pool.select("session-1").tag, "b")
        self.assertEqual(self.post("/ccm/credentials/a/resume", {"csrf": csrf}, cookies)[0], 303)
        self.assertTrue(self.member("a").state(NOW).usable)

    def test_unknown_credential(self) -> None:
        """
        An action on a credential that does not exist is a 404.
        """
        self.assertEqual(self.post("/ccm/credentials/zz/pause", {}, self.bearer())[0], 404)


class StateTests(DashboardCase):
    """
    How a credential that cannot serve reads on its card.
    """

    def test_quarantined(self) -> None:
        """
        A banned credential's card says it is quarantined, why, and since
        when (the time of the ban and how long ago), and offers no "Clear
        cooldown": only a new login ends a quarantine.
        """
        self.member("a").credential.standing.enter_quarantine("Anthropic disabled its organization")
        self.reactor.advance(2 * 3600 + 600)
        _, _, page = self.get(headers=self.bearer())
        html = card(page, "a")
        self.assertIn('data-state="quarantined"', html)
        self.assertIn('data-reason="quarantined"', html)
        self.assertIn(
            "quarantined since 2027-01-15 08:00 UTC (2h10m ago): Anthropic disabled its organization",
            html,
        )
        self.assertNotIn("clear-cooldown", html)
        self.assertIn('data-state="usable"', card(page, "b"))


class FigureTests(DashboardCase):
    """
    The users' figures and the other sections.
    """

    def test_users_match_the_usage_book(self) -> None:
        """
        Each user's requests, tokens and cost this week are the usage
        book's for the credential's current week, and the 5-hour figures
        count what was recorded since.
        """
        member = self.member("a")
        member.credential.rate_limits.observe(_headers(rejected_unified_headers(NOW)), NOW)
        [saver] = [c for c in self.service if hasattr(c, "counters")]
        week = week_start_of(int(member.credential.rate_limits.weekly.resets_at))
        routes = self.service.proxy.context.routes
        recorder = routes["a"].recorder
        assert recorder is not None
        record(recorder, user="bob", week=week, input_tokens=1000, output_tokens=500)
        record(recorder, user="bob", week=week, input_tokens=1000, output_tokens=500)
        record(recorder, user="root", week=week, input_tokens=10, output_tokens=5)
        # Another week: not this week's.
        saver.counters.record(usage_record(user="bob", week=week - 604800, input_tokens=7))
        _, _, page = self.get(headers=self.bearer())
        row = re.search(r'<tr data-user="bob">(.*?)</tr>', page)
        assert row is not None
        cells = re.findall(r"<td>(.*?)</td>", row.group(1))
        self.assertEqual(cells[:3], ["bob", "2", "3,000"])
        self.assertEqual(cells[4:6], ["2", "3,000"])
        self.assertEqual(float(cells[3]), float(cells[6]))
        self.assertGreater(float(cells[3]), 0)

    def test_in_flight_and_problems(self) -> None:
        """
        The last warnings logged are listed, newest first; without requests
        the in-flight section says so.
        """
        self.publisher({"log_level": LogLevel.warn, "log_format": "first {n}", "n": 1, "log_time": NOW, "log_namespace": "t"})
        self.publisher({"log_level": LogLevel.error, "log_format": "second", "log_time": NOW, "log_namespace": "t"})
        self.publisher({"log_level": LogLevel.info, "log_format": "not shown", "log_time": NOW, "log_namespace": "t"})
        _, _, page = self.get(headers=self.bearer())
        self.assertIn("No request in flight.", page)
        self.assertLess(page.index("second"), page.index("first 1"))
        self.assertNotIn("not shown", page)


class ShareTableTests(SynchronousTestCase):
    """
    The users table's share columns, after a known sequence
    (:obj:`tests.shares.usedshare`).
    """

    def page(self, harness: ProxyHarness) -> str:
        response = harness.response("GET", "/ccm/")
        self.assertEqual(response.code, 200)
        return harness.body_of(response).decode("utf-8")

    def cells(self, page: str, user: str) -> list[str]:
        row = re.search(rf'<tr data-user="{user}">(.*?)</tr>', page)
        assert row is not None, page
        return re.findall(r'<td data-share="[a-z]+"[^>]*>(.*?)</td>', row.group(1))

    def test_share_columns(self) -> None:
        """
        For each window with a share there are four columns: alice's
        5-hour share is all used ($1.20 at $0.12 per 1 %), freeing up when
        the window resets (a ticking countdown); her weekly share is unused
        and has no reset to wait for, nor dollars; bob, without shares,
        shows ``-``.
        """
        harness = used_share(self)
        page = self.page(harness)
        for header in ("5-hour share", "5-hour used", "5-hour left", "5-hour next reset",
                       "weekly share", "weekly next reset"):
            self.assertIn(f"<th>{header}</th>", page)
        alice = self.cells(page, "alice")
        self.assertEqual(alice[0], "10%")
        self.assertEqual(
            alice[1],
            '10.0% <small class="usd" title="estimated at list price; 1% of the pool\'s '
            'window \u2248 $0.12">\u2248 $1.20</small>',
        )
        self.assertEqual(alice[2], "0.0%")
        self.assertEqual(alice[3], f'<span data-until="{FIVE_HOUR_RESET:.0f}">5h0m</span>')
        self.assertEqual(alice[4:], ["50%", "0.0%", "50.0%", "-"])
        self.assertIn('<td data-share="used" class="over">10.0% <small', page)
        self.assertEqual(self.cells(page, "bob"), ["-"] * 8)

    def test_no_share_no_columns(self) -> None:
        """
        Without any share configured, the table has no share columns.
        """
        harness = ProxyHarness(self, users=(dataclasses.replace(ALICE, admin=True), BOB))
        page = self.page(harness)
        self.assertNotIn("share</th>", page)
        self.assertNotIn("data-share", page)
