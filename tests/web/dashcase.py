"""
What the dashboard's tests share: a service built by
:obj:`ccm.build.build_service` on a memory reactor (two credentials, one
counting its usage, and a balancer), driven with ``StubTreq``, and the
admin's and a plain user's fake tokens.
"""

from __future__ import annotations

import os
import re
from typing import Any, cast
from urllib.parse import urlencode

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.build import ServiceReactor, build_service
from ccm.config.model import (
    BalancerCredentialConfig,
    DefaultCredentialConfig,
    EndpointListener,
    ServiceConfig,
    UserConfig,
)
from ccm.service import CcmService
from tests.fixtures import write_credentials

FAR_EXPIRY_MS = 4_102_444_800_000
ADMIN_TOKEN = "ccm-admin-secret-token-0123456789"
USER_TOKEN = "ccm-user-secret-token-9876543210"
NOW = 1_800_000_000.0

#: Headers as treq's client takes them.
_TreqHeaders = dict[bytes | str, list[bytes | str]]


class DashboardCase(SynchronousTestCase):
    """
    A running service with an admin, ``root``, and a user, ``bob``.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.usages = os.path.join(self.directory, "usages-a.json")
        for tag in ("a", "b"):
            write_credentials(
                os.path.join(self.directory, f"{tag}.json"),
                f"sk-ant-oat01-access-{tag}",
                f"sk-ant-ort01-refresh-{tag}",
                FAR_EXPIRY_MS,
            )
        self.publisher = LogPublisher()
        config = ServiceConfig(
            where="config.json",
            listeners=(EndpointListener("tcp:0:interface=127.0.0.1"),),
            credentials=(
                DefaultCredentialConfig(
                    "a", os.path.join(self.directory, "a.json"), usages_path=self.usages
                ),
                DefaultCredentialConfig("b", os.path.join(self.directory, "b.json")),
                BalancerCredentialConfig("pool", ("a", "b")),
            ),
            users=(
                UserConfig("root", ADMIN_TOKEN, "pool", admin=True),
                UserConfig("bob", USER_TOKEN, "pool"),
            ),
        )
        self.reactor = MemoryReactorClock()
        self.reactor.advance(NOW)
        self.service: CcmService = build_service(
            config,
            # The memory reactor has what this service uses: time and TCP.
            reactor=cast(ServiceReactor, self.reactor),
            http_client=object(),  # type: ignore[arg-type]
            environ={},
            home=self.directory,
            watch_with_inotify=False,
            platform="linux",
            log_publisher=self.publisher,
        )
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.client = StubTreq(self.service.site.resource)

    def member(self, tag: str) -> Any:
        """
        The pool member of credential ``tag``.
        """
        return self.service.user_pools.pools[tag].members[0]

    def get(self, path: str = "/ccm/", headers: dict[bytes, list[bytes]] | None = None) -> tuple[int, Headers, str]:
        """
        GET ``path``: the status, headers and body text.
        """
        client = cast(HTTPClient, self.client)
        sent = cast(_TreqHeaders, headers or {})
        response = self.successResultOf(client.get(f"http://ccm{path}", headers=sent, allow_redirects=False))
        body = self.successResultOf(response.content()).decode("utf-8")
        return response.code, response.headers, body

    def post(
        self, path: str, fields: dict[str, str], headers: dict[bytes, list[bytes]] | None = None
    ) -> tuple[int, Headers, str]:
        """
        POST a form to ``path``: the status, headers and body text.
        """
        sent = cast(
            _TreqHeaders, {b"content-type": [b"application/x-www-form-urlencoded"], **(headers or {})}
        )
        response = self.successResultOf(
            cast(HTTPClient, self.client).post(
                f"http://ccm{path}",
                data=urlencode(fields).encode("ascii"),
                headers=sent,
                allow_redirects=False,
            )
        )
        body = self.successResultOf(response.content()).decode("utf-8")
        return response.code, response.headers, body

    def bearer(self, token: str = ADMIN_TOKEN) -> dict[bytes, list[bytes]]:
        """
        The headers of a script using ``token``.
        """
        return {b"authorization": [b"Bearer " + token.encode("ascii")]}

    def log_in(self) -> tuple[dict[bytes, list[bytes]], str]:
        """
        Log in through the form: the cookie header to send from now on,
        and the CSRF token of the session's forms.
        """
        code, headers, _ = self.post("/ccm/login", {"token": ADMIN_TOKEN})
        self.assertEqual(code, 303)
        [cookie] = headers.getRawHeaders(b"set-cookie", [])
        value = cookie.split(b";")[0]
        cookies = {b"cookie": [value]}
        _, _, page = self.get(headers=cookies)
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match is not None, page
        return cookies, match.group(1)
