"""
Tests for :obj:`ccm.banner`: what ccm logs about a service as it starts, and
that :obj:`ccm.build.build_service` logs it before anything else it says.
"""

from __future__ import annotations

import os
from typing import cast

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.banner import base_url, startup_lines
from ccm.config.state import StateConfig
from ccm.config.model import (
    AddressListener,
    EndpointListener,
    ServiceConfig,
    TLSConfig,
    UserConfig,
    default_config,
)
from ccm.build import ServiceReactor, build_service
from tests.fixtures import logged_events

HOST = "ccm-box"
USER_TOKEN = "ccm-token-banner-7c1e"


class BaseURLTests(SynchronousTestCase):
    """
    :obj:`base_url` turns a listener into the URL clients set as
    ``ANTHROPIC_BASE_URL``.
    """

    def assert_urls(self, cases: list[tuple[object, str | None]]) -> None:
        for listener, expected in cases:
            self.assertEqual(base_url(listener, HOST), expected, listener)  # type: ignore[arg-type]

    def test_address_listeners(self) -> None:
        """
        Listen fields give their address, in brackets for IPv6, or this
        machine's name for a wildcard address; TLS makes it ``https``.
        """
        tls = TLSConfig(certificate_path="c.pem", key_path="k.pem")
        self.assert_urls(
            [
                (AddressListener("127.0.0.1", 8080), "http://127.0.0.1:8080"),
                (AddressListener("0.0.0.0", 8080), f"http://{HOST}:8080"),
                (AddressListener("::", 8443, tls), f"https://{HOST}:8443"),
                (AddressListener("::1", 9000), "http://[::1]:9000"),
                (AddressListener("192.0.2.7", 443, tls), "https://192.0.2.7:443"),
            ]
        )

    def test_endpoint_strings(self) -> None:
        """
        TCP and SSL endpoint strings give their port and interface (escaped
        colons included); without an interface they listen everywhere; a
        port of 0 is shown as chosen at start-up; other endpoint types have
        no URL.
        """
        self.assert_urls(
            [
                (EndpointListener("tcp:8080:interface=127.0.0.1"), "http://127.0.0.1:8080"),
                (EndpointListener("tcp:port=8081"), f"http://{HOST}:8081"),
                (EndpointListener("tcp6:8082:interface=\\:\\:1"), "http://[::1]:8082"),
                (EndpointListener("tcp6:8083"), f"http://{HOST}:8083"),
                (
                    EndpointListener("ssl:8443:privateKey=key.pem:certKey=cert.pem"),
                    f"https://{HOST}:8443",
                ),
                (EndpointListener("tcp:0:interface=127.0.0.1"), "http://127.0.0.1:<port>"),
                (EndpointListener("unix:/run/ccm.sock"), None),
                (EndpointListener("systemd:domain=INET:index=0"), None),
            ]
        )


class StartupLinesTests(SynchronousTestCase):
    """
    :obj:`startup_lines` says where each credential's tokens come from, how
    many users there are, and what URL clients set.
    """

    def test_defaults(self) -> None:
        """
        The service of the built-in defaults: the default credentials file,
        no users, and the loopback URL.
        """
        [service] = default_config().services
        self.assertEqual(
            startup_lines(service, [("default", "/home/op/.claude/.credentials.json")], HOST),
            [
                "credential default uses /home/op/.claude/.credentials.json",
                "no users configured: requests need no token, and anyone who can connect "
                "is served",
                "clients set ANTHROPIC_BASE_URL=http://127.0.0.1:8080",
            ],
        )

    def test_team(self) -> None:
        """
        A tagged service with several credentials (one in the macOS
        keychain), users and listeners names itself on every line, counts
        the users without naming their tokens, and explains wildcard
        addresses, chosen ports and listeners without a URL.
        """
        service = ServiceConfig(
            where="services[1]",
            tag="team",
            listeners=(
                AddressListener("0.0.0.0", 8080),
                EndpointListener("tcp:0:interface=127.0.0.1"),
                EndpointListener("ssl:8443:privateKey=k.pem:certKey=c.pem"),
                EndpointListener("unix:/run/ccm.sock"),
            ),
            users=(UserConfig("alice", USER_TOKEN), UserConfig("bob", "ccm-token-bob-x")),
        )
        lines = startup_lines(
            service,
            [("a", "/srv/a/.credentials.json"), ("b", 'macOS keychain item "Claude Code-credentials"')],
            HOST,
        )
        self.assertEqual(
            lines,
            [
                "service team: credential a uses /srv/a/.credentials.json",
                'service team: credential b uses macOS keychain item "Claude Code-credentials"',
                "service team: 2 users configured; each client sets ANTHROPIC_AUTH_TOKEN to "
                "its user's ccm token",
                f"service team: clients set ANTHROPIC_BASE_URL=http://{HOST}:8080 (this "
                "machine's name; any name or address of it works)",
                "service team: clients set ANTHROPIC_BASE_URL=http://127.0.0.1:<port> (the "
                "port the system chose, logged as 'starting on <port>')",
                f"service team: clients set ANTHROPIC_BASE_URL=https://{HOST}:8443 (this "
                "machine's name; use a name the TLS certificate holds)",
                "service team: listening on unix:/run/ccm.sock, which has no URL of its own: "
                "point ANTHROPIC_BASE_URL at whatever forwards to it",
            ],
        )
        self.assertNotIn(USER_TOKEN, "\n".join(lines))

    def test_shared_state(self) -> None:
        """
        A service with a ``state`` key says where it shares its state, with
        the key prefix and never the password.
        """
        service = ServiceConfig(
            where="",
            state=StateConfig(host="10.0.0.4", password="redis-secret", key_prefix="team:"),
        )
        lines = startup_lines(service, [], HOST)
        self.assertEqual(
            lines[-1],
            "state shared with the other ccm processes of redis://10.0.0.4:6379/0, keys "
            "starting team:",
        )
        self.assertNotIn("redis-secret", "\n".join(lines))

    def test_untagged_service_in_document(self) -> None:
        """
        An untagged service of a sing-box document is named by its JSON
        path; one user is counted in the singular.
        """
        service = ServiceConfig(where="services[0]", users=(UserConfig("alice", USER_TOKEN),))
        lines = startup_lines(service, [("default", "/c.json")], HOST)
        self.assertEqual(lines[0], "services[0]: credential default uses /c.json")
        self.assertEqual(
            lines[1],
            "services[0]: 1 user configured; each client sets ANTHROPIC_AUTH_TOKEN to its "
            "user's ccm token",
        )


class ServiceLogsStartupTests(SynchronousTestCase):
    """
    :obj:`build_service` logs the start-up lines as it builds a service, first
    of all its messages, with the credentials file it will really read.
    """

    def test_defaults_logged_first(self) -> None:
        """
        On the defaults with ``--listen`` beyond loopback, the lines name the
        default credentials file under the home directory and this
        machine's name, and come before the warning about anonymous access.
        """
        observer = logged_events(self)
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        config = ServiceConfig(where="", listeners=(EndpointListener("tcp:8080"),))
        build_service(
            config,
            # Built, not started: the memory reactor has all it uses.
            reactor=cast(ServiceReactor, MemoryReactorClock()),
            http_client=object(),  # type: ignore[arg-type]  # never asked anything
            environ={},
            home=home,
            watch_with_inotify=False,
            platform="linux",
        )
        texts = [formatEvent(event) for event in observer]
        path = os.path.join(home, ".claude", ".credentials.json")
        self.assertEqual(texts[0], f"credential default uses {path}")
        self.assertTrue(texts[1].startswith("no users configured"), texts)
        self.assertTrue(texts[2].startswith("clients set ANTHROPIC_BASE_URL=http://"), texts)
        self.assertNotIn("<port>", texts[2])
        self.assertEqual(
            [observer[i]["log_level"] for i in range(3)], [LogLevel.info] * 3
        )
        self.assertIn("no users are configured and ccm listens beyond this machine", texts[3])
