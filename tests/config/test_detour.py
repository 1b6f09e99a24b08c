"""
Tests for :obj:`ccm.config.detour`: where a service or credential sends its
upstream traffic, as a proxy URL or the tag of a sing-box outbound.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.load import parse_config
from ccm.config.model import Detour
from tests.config.parsing import SOURCE, ProblemsTestMixin, problems_of, service_of


class DetourTests(SynchronousTestCase, ProblemsTestMixin):
    """
    ``detour``: a proxy URL or the tag of a sing-box outbound.
    """

    def detour_of(self, document: dict[str, Any]) -> Detour | None:
        return service_of(document).detour

    def test_none(self) -> None:
        """
        No detour, or an empty one, means a direct connection.
        """
        self.assertIsNone(self.detour_of({}))
        self.assertIsNone(self.detour_of({"detour": ""}))

    def test_http_url(self) -> None:
        """
        An http URL with credentials is an HTTP CONNECT proxy; the password
        is kept but neither shown nor part of its name.
        """
        detour = self.detour_of({"detour": "http://proxy-user:S3cr%40t@proxy.example.test:3128"})
        self.assertEqual(
            detour,
            Detour(
                kind="http",
                host="proxy.example.test",
                port=3128,
                username="proxy-user",
                password="S3cr@t",
                name="http://proxy.example.test:3128",
            ),
        )
        assert detour is not None
        self.assertNotIn("S3cr", repr(detour))
        self.assertNotIn("S3cr", str(detour))

    def test_socks5_url(self) -> None:
        """
        A socks5 URL is a SOCKS5 proxy, with or without credentials.
        """
        self.assertEqual(
            self.detour_of({"detour": "socks5://10.0.0.2:1080"}),
            Detour(kind="socks5", host="10.0.0.2", port=1080, name="socks5://10.0.0.2:1080"),
        )
        detour = self.detour_of({"detour": "socks5://u:pw-secret@[::1]:1080"})
        assert detour is not None
        self.assertEqual(
            (detour.kind, detour.host, detour.port, detour.username), ("socks5", "::1", 1080, "u")
        )
        self.assertEqual(str(detour), "socks5://[::1]:1080")
        self.assertNotIn("pw-secret", repr(detour))

    def test_bad_urls(self) -> None:
        """
        URLs with another scheme, without a host or port, or with a bad
        port are refused, and never echo the password.
        """
        cases = {
            "ftp://u:pw-secret@h:21": "proxy URL scheme must be http or socks5, got 'ftp'",
            "http://u:pw-secret@proxy.example.test": "proxy URL needs a host and a port, e.g. http://127.0.0.1:3128",
            "http://u:pw-secret@h:0": "proxy URL needs a host and a port, e.g. http://127.0.0.1:3128",
            "http://u:pw-secret@h:99999": "invalid proxy URL: expected http://[user:pass@]host:port or "
            "socks5://[user:pass@]host:port with a port from 1 to 65535",
            "socks5://user:pw-secret": "invalid proxy URL: expected http://[user:pass@]host:port or "
            "socks5://[user:pass@]host:port with a port from 1 to 65535",
        }
        for url, message in cases.items():
            self.assert_problem({"detour": url}, f"config.json: detour: {message}")

    def test_outbound_tags(self) -> None:
        """
        A tag names an outbound of the document: http and socks outbounds
        are proxies, direct is a direct connection.
        """
        config = parse_config(
            {
                "services": [
                    {"type": "ccm", "detour": "corp", "listen_port": 1},
                    {"type": "ccm", "detour": "tor", "listen_port": 2},
                    {"type": "ccm", "detour": "direct-out", "listen_port": 3},
                ],
                "outbounds": [
                    {
                        "type": "http",
                        "tag": "corp",
                        "server": "10.0.0.1",
                        "server_port": 3128,
                        "username": "u",
                        "password": "outbound-secret",
                        "tls": {},
                    },
                    {
                        "type": "socks",
                        "tag": "tor",
                        "server": "127.0.0.1",
                        "server_port": 9050,
                        "version": "5",
                    },
                    {"type": "direct", "tag": "direct-out"},
                    {"type": "vmess", "tag": "unused"},
                ],
            },
            source=SOURCE,
        )
        self.assertEqual(
            [s.detour for s in config.services],
            [
                Detour("http", "10.0.0.1", 3128, "u", "outbound-secret", "corp"),
                Detour("socks5", "127.0.0.1", 9050, name="tor"),
                Detour("direct", name="direct-out"),
            ],
        )
        self.assertNotIn("outbound-secret", repr(config))

    def test_credential_detour(self) -> None:
        """
        Default credentials take a detour of their own, by URL or tag.
        """
        config = parse_config(
            {
                "services": [
                    {
                        "type": "ccm",
                        "credentials": [
                            {"tag": "a", "detour": "corp"},
                            {"tag": "b", "detour": "http://10.0.0.9:8080"},
                        ],
                    }
                ],
                "outbounds": [
                    {"type": "http", "tag": "corp", "server": "10.0.0.1", "server_port": 3128}
                ],
            },
            source=SOURCE,
        )
        a, b = config.services[0].default_credentials()
        self.assertEqual(a.detour, Detour("http", "10.0.0.1", 3128, name="corp"))
        self.assertEqual(b.detour, Detour("http", "10.0.0.9", 8080, name="http://10.0.0.9:8080"))

    def test_unknown_tag(self) -> None:
        """
        A tag that names no outbound is refused, listing the known tags.
        """
        self.assert_problem(
            {
                "services": [{"type": "ccm", "detour": "proxy"}],
                "outbounds": [{"type": "direct", "tag": "direct"}],
            },
            "config.json: services[0].detour: 'proxy' is neither a proxy URL (http://host:port, "
            "socks5://host:port) nor the tag of an entry in outbounds (tags: direct)",
        )

    def test_unknown_value_with_password(self) -> None:
        """
        A value that looks like a URL without its scheme is refused without
        echoing it, as it may hold a password.
        """
        [line] = problems_of({"detour": "user:pw-secret@proxy:3128"})
        self.assertNotIn("pw-secret", line)
        self.assertTrue(
            line.startswith("config.json: detour: the value is neither a proxy URL"), line
        )

    def test_unsupported_outbound(self) -> None:
        """
        An outbound ccm cannot use as a detour is refused at the outbound.
        """
        self.assert_problem(
            {
                "services": [{"type": "ccm", "detour": "wg"}],
                "outbounds": [{"type": "wireguard", "tag": "wg"}],
            },
            "config.json: outbounds[0].type: outbound 'wg' has type 'wireguard', which ccm "
            "cannot use as a detour (supported: http, socks, direct)",
        )

    def test_incomplete_outbound(self) -> None:
        """
        A proxy outbound needs a server and a port, reported once even when
        several detours use it.
        """
        self.assert_problems(
            {
                "services": [
                    {
                        "type": "ccm",
                        "credentials": [{"tag": "a", "detour": "p"}, {"tag": "b", "detour": "p"}],
                    }
                ],
                "outbounds": [{"type": "http", "tag": "p"}],
            },
            [
                "config.json: outbounds[0].server: outbound 'p' needs a server",
                "config.json: outbounds[0].server_port: outbound 'p' needs a server_port",
            ],
        )
        self.assert_problem(
            {
                "services": [{"type": "ccm", "detour": "p"}],
                "outbounds": [{"type": "socks", "tag": "p", "server": "h", "server_port": 0}],
            },
            "config.json: outbounds[0].server_port: must be between 1 and 65535, got 0",
        )
