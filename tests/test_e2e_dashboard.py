"""
End-to-end test of the dashboard: a real ``twistd -n ccm`` process with
two subscriptions in a balancer, in front of the fake upstream, after a few
proxied requests, seen and used in a real headless Chromium.

The screenshot of the page is kept in the test's ``_trial_temp`` directory
(``dashboard.png``, and ``dashboard-phone.png`` at a phone's width); set
``CCM_DASHBOARD_SCREENSHOT`` to a path to also copy the first there (this
is how ``docs/dashboard.png`` is made).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from tests import e2e
from tests.fake_anthropic import UNIFIED_PREFIX, error_reply, rejected_unified_headers, text_reply
from tests.fixtures import expiry_ms, write_credentials
from tests.webdriver import start_browser

ADMIN = "ccm-e2e-admin-token-5f1c0e"
BOB = "ccm-e2e-bob-token-9a7d21"
SECOND_ACCESS = "sk-ant-oat01-fake-second-subscription"
SESSION = "33333333-3333-4333-8333-333333333333"


class DashboardInBrowserTests(unittest.TestCase):
    """
    The dashboard of a real ccm, in a real browser.
    """

    timeout = 180

    @inlineCallbacks
    def start(self) -> Any:
        """
        Start the fake upstream and ccm (credentials ``a`` and ``b`` in a
        balancer, each counting its usage; an admin and a user), and send
        three requests as bob: the first is answered with a 429 on ``a``, so
        ccm moves it to ``b`` and ``a`` is rate-limited.
        """
        self.fake, url = e2e.serve_fake_anthropic(self)
        self.fake.extra_access_tokens.add(SECOND_ACCESS)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        paths = {}
        for tag, access in (("a", self.fake.access_token), ("b", SECOND_ACCESS)):
            paths[tag] = os.path.join(directory, f"{tag}.json")
            write_credentials(paths[tag], access, f"sk-ant-ort01-{tag}", expiry_ms(86400))
        self.usages = {tag: os.path.join(directory, f"usages-{tag}.json") for tag in "ab"}
        config = {
            "endpoint": "tcp:0:interface=127.0.0.1",
            "upstream_url": url,
            "oauth_token_url": url + "/v1/oauth/token",
            "credentials": [
                {"tag": "a", "credential_path": paths["a"], "usages_path": self.usages["a"]},
                {"tag": "b", "credential_path": paths["b"], "usages_path": self.usages["b"]},
                {"tag": "pool", "type": "balancer", "strategy": "least_used", "credentials": ["a", "b"]},
            ],
            "users": [
                {"name": "root", "token": ADMIN, "credential": "pool", "admin": True},
                {"name": "bob", "token": BOB, "credential": "pool"},
            ],
        }
        self.ccm = yield e2e.start_ccm(self, config)
        self.artifacts = os.path.abspath(self.mktemp())
        os.makedirs(self.artifacts)
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        # A 429 that names the 5-hour window, though the window is not full:
        # the limit alone keeps ``a`` from serving, and clearing ends it.
        limited = rejected_unified_headers(time.time())
        limited[UNIFIED_PREFIX + "5h-utilization"] = "0.42"
        limited["retry-after"] = "3600"
        self.fake.enqueue(
            error_reply(429, "rate_limit_error", "rate limited", headers=limited),
            text_reply("one"),
            text_reply("two"),
            text_reply("three"),
        )
        for text in ("first", "second", "third"):
            headers: dict[bytes | str, bytes | str] = {
                "authorization": f"Bearer {BOB}",
                "x-claude-code-session-id": SESSION,
            }
            response = yield self.http.post(
                self.ccm.url + "/v1/messages",
                json={
                    "model": "claude-sonnet-4-5-20250929",
                    "max_tokens": 100,
                    "messages": [{"role": "user", "content": text}],
                },
                headers=headers,
            )
            yield response.content()
            self.assertEqual(response.code, 200)

    @inlineCallbacks
    def card_state(self, browser: Any, tag: str) -> Any:
        """
        The ``data-state`` of credential ``tag``'s card in the DOM.
        """
        state = yield browser.script(
            "return document.querySelector(arguments[0]).dataset.state;",
            f'section[data-credential="{tag}"]',
        )
        return state

    @inlineCallbacks
    def test_dashboard(self) -> Any:
        """
        A user's token is refused; the admin logs in through the form and
        sees both credentials (``a`` rate-limited, ``b`` usable, with the
        session), each user's figures as the usage file counts them, and
        no token anywhere in the page; "Clear cooldown" makes ``a`` usable.
        """
        yield self.start()
        as_bob: dict[bytes | str, bytes | str] = {"authorization": f"Bearer {BOB}"}
        response = yield self.http.get(self.ccm.url + "/ccm/", headers=as_bob)
        refused = yield response.text()
        self.assertEqual(response.code, 403)
        self.assertNotIn(BOB, refused)

        browser = yield start_browser(self)
        yield browser.go(self.ccm.url + "/ccm/")
        yield browser.type('input[name="token"]', ADMIN)
        yield browser.click('form.login button')
        yield browser.wait_for('section[data-credential="a"]')
        self.assertEqual((yield self.card_state(browser, "a")), "rate_limited")
        self.assertEqual((yield self.card_state(browser, "b")), "usable")
        html = yield browser.source()
        for secret in (ADMIN, BOB, self.fake.access_token, SECOND_ACCESS, "sk-ant-ort01"):
            self.assertNotIn(secret, html)
        self.assertIn(SESSION[:12], html)
        cookie = yield browser.script("return document.cookie;")
        self.assertEqual(cookie, "", "the session cookie is HttpOnly")

        # Bob's figures this week are what the usage file of b holds.
        cells = yield browser.script(
            "return Array.from(document.querySelectorAll('tr[data-user=\"bob\"] td'))"
            ".map(function (cell) { return cell.textContent; });"
        )
        yield self.ccm_saved()
        with open(self.usages["b"]) as handle:
            saved = json.load(handle)
        [combination] = saved["combinations"]
        bob = combination["by_user"]["bob"]
        tokens = sum(
            bob[name]
            for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        )
        self.assertEqual(cells[:4], ["bob", str(bob["request_count"]), f"{tokens:,}", f"{bob['cost_usd']:,.2f}"])
        self.assertEqual(cells[4:6], ["3", f"{tokens:,}"])

        yield browser.resize(1200, 1400)
        yield browser.screenshot(os.path.join(self.artifacts, "dashboard.png"))
        copy_to = os.environ.get("CCM_DASHBOARD_SCREENSHOT")
        if copy_to:
            shutil.copyfile(os.path.join(self.artifacts, "dashboard.png"), copy_to)
        yield browser.resize(400, 900)
        yield browser.screenshot(os.path.join(self.artifacts, "dashboard-phone.png"))
        width = yield browser.script("return document.documentElement.scrollWidth;")
        inner = yield browser.script("return window.innerWidth;")
        self.assertLessEqual(width, inner, "no horizontal scrolling on a phone")

        yield browser.click('section[data-credential="a"] form[action$="/clear-cooldown"] button')
        yield browser.wait_for('section[data-credential="a"][data-state="usable"]')
        self.assertEqual((yield self.card_state(browser, "a")), "usable")

    @inlineCallbacks
    def ccm_saved(self) -> Any:
        """
        Wait until ccm saved b's usage file (within seconds of the first
        request).
        """
        for _ in range(100):
            if os.path.exists(self.usages["b"]):
                return
            yield deferLater(reactor, 0.1)
        raise AssertionError("ccm did not save the usage file")
