# -*- test-case-name: tests.test_e2e_dashboard -*-
"""
A real headless Chromium, driven through chromedriver's W3C WebDriver HTTP
API with treq (no Selenium): :obj:`start_browser` starts chromedriver on a
free loopback port and opens a headless session with a user data directory
of its own; both end with the test (the session is deleted, which quits
Chromium, then chromedriver is stopped).

Chromium and chromedriver come from the Debian packages ``chromium`` and
``chromium-driver``, which ``.ci/run`` installs; without them the tests
skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import base64
import os
import shutil
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from tests import e2e

#: The key of an element reference in W3C WebDriver answers.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
#: Where the programs are looked for (Debian installs them in /usr/bin).
TOOL_PATH = "/usr/bin:/usr/lib/chromium"


def _tool(name: str, package: str) -> str:
    return e2e.skip_or_fail_without(shutil.which(name, path=TOOL_PATH), name, e2e.debian_package(package))


class Browser:
    """
    One WebDriver session of a headless Chromium.
    """

    def __init__(self, http: HTTPClient, base: str, session: str) -> None:
        self._http = http
        self._base = base
        self.session = session

    @inlineCallbacks
    def command(self, method: str, path: str, body: Any = None) -> Any:
        """
        Send one WebDriver command; return its ``value``.

        :raises AssertionError: when the driver answers with an error.
        """
        url = f"{self._base}/session/{self.session}{path}"
        extra = {"json": body} if method == "POST" else {}
        response = yield self._http.request(method, url, **extra)
        document = yield response.json()
        if response.code != 200:
            raise AssertionError(f"WebDriver {method} {path}: {response.code} {document}")
        return document.get("value")

    def go(self, url: str) -> Any:
        """
        Load ``url`` and wait until it loaded.
        """
        return self.command("POST", "/url", {"url": url})

    @inlineCallbacks
    def find(self, css: str) -> Any:
        """
        The element matching the CSS selector ``css`` (its reference).
        """
        found = yield self.command("POST", "/element", {"using": "css selector", "value": css})
        return found[ELEMENT]

    @inlineCallbacks
    def click(self, css: str) -> Any:
        """
        Click the element matching ``css``.
        """
        element = yield self.find(css)
        yield self.command("POST", f"/element/{element}/click", {})

    @inlineCallbacks
    def type(self, css: str, text: str) -> Any:
        """
        Type ``text`` into the element matching ``css``.
        """
        element = yield self.find(css)
        yield self.command("POST", f"/element/{element}/value", {"text": text})

    def script(self, source: str, *args: Any) -> Any:
        """
        Run ``source`` (a function body) in the page; its return value.
        """
        return self.command("POST", "/execute/sync", {"script": source, "args": list(args)})

    @inlineCallbacks
    def wait_for(self, css: str, timeout: float = 10.0) -> Any:
        """
        Wait until an element matches ``css`` (a page loading after a
        click, say).

        :raises AssertionError: after ``timeout`` seconds without one.
        """
        waited = 0.0
        while True:
            found = yield self.script("return document.querySelector(arguments[0]) !== null;", css)
            if found:
                return
            if waited >= timeout:
                page = yield self.source()
                raise AssertionError(f"nothing matches {css} after {timeout}s in:\n{page}")
            yield deferLater(reactor, 0.1)
            waited += 0.1

    def source(self) -> Any:
        """
        The page's DOM, serialized.
        """
        return self.command("GET", "/source")

    def resize(self, width: int, height: int) -> Any:
        """
        Make the window ``width`` by ``height`` CSS pixels.
        """
        return self.command("POST", "/window/rect", {"width": width, "height": height})

    @inlineCallbacks
    def screenshot(self, path: str) -> Any:
        """
        Save a PNG of the window to ``path``.
        """
        encoded = yield self.command("GET", "/screenshot")
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(encoded))

    def quit(self) -> Any:
        """
        End the session, which quits Chromium.
        """
        return self._http.delete(f"{self._base}/session/{self.session}").addCallback(
            lambda response: response.content()
        )


@inlineCallbacks
def _wait_for_port(port: int, child: Any, timeout: float = 20.0) -> Any:
    waited = 0.0
    while True:
        try:
            protocol = yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
                Factory.forProtocol(Protocol)
            )
        except Exception:
            if not child.running or waited >= timeout:
                raise AssertionError(f"chromedriver did not listen on {port}:\n{child.output()}") from None
            yield deferLater(reactor, 0.1)
            waited += 0.1
        else:
            protocol.transport.loseConnection()
            return


@inlineCallbacks
def start_browser(testcase: unittest.TestCase, width: int = 1200, height: int = 1000) -> Any:
    """
    Start chromedriver and a headless Chromium session for the rest of
    ``testcase``.

    :return: fires with the :obj:`Browser`.
    """
    driver = _tool("chromedriver", "chromium-driver")
    chromium = _tool("chromium", "chromium")
    directory = os.path.abspath(testcase.mktemp())
    profile = os.path.join(directory, "profile")
    os.makedirs(profile)
    port = e2e.free_port()
    child = e2e._Child(
        testcase, [driver, f"--port={port}"], env={"HOME": directory}, cwd=directory
    )
    yield _wait_for_port(port, child)
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    base = f"http://127.0.0.1:{port}"
    arguments = [
        "--headless=new",
        "--disable-gpu",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ]
    if os.geteuid() == 0:
        arguments.append("--no-sandbox")
    capabilities = {
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": arguments},
            }
        }
    }
    response = yield http.post(f"{base}/session", json=capabilities)
    document = yield response.json()
    if response.code != 200:
        raise AssertionError(f"no WebDriver session: {document}")
    browser = Browser(http, base, document["value"]["sessionId"])
    # Cleanups run last in, first out: the session ends before chromedriver.
    testcase.addCleanup(browser.quit)
    return browser
