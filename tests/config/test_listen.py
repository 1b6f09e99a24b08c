"""
Tests for :obj:`ccm.config.listen`: where a service listens, from the sing-box
listen fields, its ``tls`` object, or Twisted endpoint strings.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.model import DEFAULT_ENDPOINT, AddressListener, EndpointListener, TLSConfig
from ccm.config.load import parse_config
from tests.config.parsing import SOURCE, ProblemsTestMixin, service_of


class ListenerTests(SynchronousTestCase, ProblemsTestMixin):
    """
    Where a service listens: the sing-box listen fields or Twisted endpoint
    strings.
    """

    def test_default(self) -> None:
        """
        With no listen fields a service listens on 127.0.0.1:8080.
        """
        self.assertEqual(
            service_of({}).listeners, (EndpointListener("tcp:8080:interface=127.0.0.1"),)
        )
        self.assertEqual(DEFAULT_ENDPOINT, "tcp:8080:interface=127.0.0.1")

    def test_listen_fields(self) -> None:
        """
        ``listen`` and ``listen_port`` give an address listener; each defaults
        to loopback and 8080 when the other is given.
        """
        self.assertEqual(
            service_of({"listen": "0.0.0.0"}).listeners, (AddressListener("0.0.0.0", 8080),)
        )
        self.assertEqual(
            service_of({"listen_port": 9000}).listeners, (AddressListener("127.0.0.1", 9000),)
        )
        self.assertEqual(
            service_of({"listen": "::", "listen_port": 65535}).listeners,
            (AddressListener("::", 65535),),
        )

    def test_listen_address(self) -> None:
        """
        ``listen`` must be an IP address.
        """
        for address in ("localhost", "", "1.2.3.4.5"):
            self.assert_problem(
                {"listen": address},
                'config.json: listen: must be an IP address such as "127.0.0.1", '
                f'"0.0.0.0" or "::", got {address!r}',
            )

    def test_listen_port_range(self) -> None:
        """
        ``listen_port`` is a TCP port number.
        """
        self.assert_problem(
            {"listen_port": 65536},
            "config.json: listen_port: must be between 0 and 65535, got 65536",
        )
        self.assert_problem(
            {"listen_port": -1}, "config.json: listen_port: must be between 0 and 65535, got -1"
        )

    def test_endpoint_string(self) -> None:
        """
        ``endpoint`` may be one Twisted endpoint string.
        """
        self.assertEqual(
            service_of({"endpoint": "tcp:9000:interface=127.0.0.1"}).listeners,
            (EndpointListener("tcp:9000:interface=127.0.0.1"),),
        )

    def test_endpoint_list(self) -> None:
        """
        ``endpoint`` may be a list of endpoint strings, all served.
        """
        self.assertEqual(
            service_of(
                {"endpoint": ["tcp:9000:interface=127.0.0.1", "tcp6:9000:interface=\\:\\:1"]}
            ).listeners,
            (
                EndpointListener("tcp:9000:interface=127.0.0.1"),
                EndpointListener("tcp6:9000:interface=\\:\\:1"),
            ),
        )

    def test_invalid_endpoints(self) -> None:
        """
        Strings Twisted cannot parse as server endpoints are refused by
        index; an empty list is refused.
        """
        self.assert_problems(
            {"endpoint": ["tcp:9000", "carrier-pigeon:1", "tcp:port"]},
            [
                "config.json: endpoint[1]: invalid endpoint 'carrier-pigeon:1': Unknown endpoint type: 'carrier-pigeon'",
                "config.json: endpoint[2]: invalid endpoint 'tcp:port': invalid literal for int() with base 10: 'port'",
            ],
        )
        self.assert_problem(
            {"endpoint": []}, "config.json: endpoint: must name at least one endpoint"
        )

    def test_endpoint_with_listen_fields(self) -> None:
        """
        ``endpoint`` cannot be combined with ``listen``, ``listen_port`` or
        ``tls``.
        """
        for extra in ({"listen": "0.0.0.0"}, {"listen_port": 1}, {"tls": {"enabled": False}}):
            self.assert_problem(
                {"endpoint": "tcp:9000", **extra},
                "config.json: endpoint: endpoint and listen/listen_port/tls are mutually exclusive",
            )

    def test_ignored_listen_fields(self) -> None:
        """
        sing-box listen fields ccm has no use for are accepted with a
        warning each.
        """
        config = parse_config(
            {"services": [{"type": "ccm", "tcp_fast_open": True, "reuse_addr": True}]},
            source=SOURCE,
        )
        self.assertEqual(
            config.warnings,
            (
                "config.json: services[0].reuse_addr: ignored, ccm does not use this listen field",
                "config.json: services[0].tcp_fast_open: ignored, ccm does not use this listen field",
            ),
        )
        self.assertEqual(config.services[0].listeners, (EndpointListener(DEFAULT_ENDPOINT),))


class TLSTests(SynchronousTestCase, ProblemsTestMixin):
    """
    The sing-box inbound ``tls`` object.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.cert = os.path.join(self.directory, "cert.pem")
        self.key = os.path.join(self.directory, "key.pem")
        for path in (self.cert, self.key):
            with open(path, "w") as handle:
                handle.write("PEM\n")

    def tls_of(self, tls: dict[str, Any]) -> TLSConfig | None:
        [listener] = service_of({"listen": "0.0.0.0", "listen_port": 8443, "tls": tls}).listeners
        assert isinstance(listener, AddressListener)
        return listener.tls

    def test_disabled(self) -> None:
        """
        A disabled or empty ``tls`` object means plain HTTP, whatever it
        holds.
        """
        self.assertIsNone(self.tls_of({}))
        self.assertIsNone(self.tls_of({"enabled": False, "certificate_path": "/nowhere.pem"}))

    def test_files(self) -> None:
        """
        Enabled TLS with existing files keeps their paths and the options.
        """
        tls = self.tls_of(
            {
                "enabled": True,
                "server_name": "ccm.example.test",
                "certificate_path": self.cert,
                "key_path": self.key,
                "alpn": ["h2", "http/1.1"],
                "min_version": "1.2",
                "max_version": "1.3",
            }
        )
        self.assertEqual(
            tls,
            TLSConfig(
                certificate_path=self.cert,
                key_path=self.key,
                min_version="1.2",
                max_version="1.3",
                alpn=("h2", "http/1.1"),
            ),
        )

    def test_missing_files(self) -> None:
        """
        Missing certificate or key files are refused, naming the path.
        """
        missing_cert = os.path.join(self.directory, "missing-cert.pem")
        missing_key = os.path.join(self.directory, "missing-key.pem")
        self.assert_problems(
            {"tls": {"enabled": True, "certificate_path": missing_cert, "key_path": missing_key}},
            [
                f"config.json: tls.certificate_path: no such file: {missing_cert}",
                f"config.json: tls.key_path: no such file: {missing_key}",
            ],
        )

    def test_nothing_given(self) -> None:
        """
        Enabled TLS needs a certificate and a key.
        """
        self.assert_problems(
            {"tls": {"enabled": True}},
            [
                "config.json: tls.certificate_path: TLS is enabled but no certificate is given",
                "config.json: tls.key_path: TLS is enabled but no key is given",
            ],
        )

    def test_inline_lines(self) -> None:
        """
        Inline certificate and key given as arrays of lines are joined; the
        key does not appear in the representation.
        """
        secret_line = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-secret"
        tls = self.tls_of(
            {
                "enabled": True,
                "certificate": ["-----BEGIN CERTIFICATE-----", "MIIB", "-----END CERTIFICATE-----"],
                "key": ["-----BEGIN PRIVATE KEY-----", secret_line, "-----END PRIVATE KEY-----"],
            }
        )
        assert tls is not None
        self.assertEqual(
            tls.certificate_pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
        )
        self.assertEqual(
            tls.key_pem, f"-----BEGIN PRIVATE KEY-----\n{secret_line}\n-----END PRIVATE KEY-----"
        )
        self.assertNotIn(secret_line, repr(tls))

    def test_inline_not_ascii(self) -> None:
        """
        Inline PEM text must be ASCII.
        """
        self.assert_problems(
            {
                "tls": {
                    "enabled": True,
                    "certificate": ["-----BEGIN CERTIFICATE-----", "\u00e9"],
                    "key": "\u20ac",
                }
            },
            [
                "config.json: tls.certificate: must be PEM text, which is ASCII",
                "config.json: tls.key: must be PEM text, which is ASCII",
            ],
        )

    def test_inline_and_path(self) -> None:
        """
        An inline value and a path for the same thing are refused.
        """
        self.assert_problems(
            {
                "tls": {
                    "enabled": True,
                    "certificate": "PEM",
                    "certificate_path": self.cert,
                    "key": "PEM",
                    "key_path": self.key,
                }
            },
            [
                "config.json: tls.certificate: certificate and certificate_path are mutually exclusive",
                "config.json: tls.key: key and key_path are mutually exclusive",
            ],
        )

    def test_unsupported(self) -> None:
        """
        ACME, REALITY and ECH are refused with a pointer to alternatives,
        even when TLS is disabled.
        """
        self.assert_problems(
            {
                "tls": {
                    "enabled": False,
                    "acme": {"domain": ["x"]},
                    "reality": {"enabled": True},
                    "ech": {},
                }
            },
            [
                "config.json: tls.acme: is not supported by ccm; use a front proxy or an ssl: endpoint",
                "config.json: tls.ech: is not supported by ccm; use a front proxy or an ssl: endpoint",
                "config.json: tls.reality: is not supported by ccm; use a front proxy or an ssl: endpoint",
            ],
        )

    def test_acme_alone(self) -> None:
        """
        TLS enabled with ACME and no certificate reports only that ACME is
        not supported, not the missing certificate and key as well.
        """
        self.assert_problems(
            {"tls": {"enabled": True, "acme": {"domain": ["ccm.example"]}}},
            ["config.json: tls.acme: is not supported by ccm; use a front proxy or an ssl: endpoint"],
        )

    def test_alpn_needs_http_1_1(self) -> None:
        """
        An ``alpn`` list must offer ``http/1.1``, the only protocol ccm
        serves; sing-box's usual ``["h2", "http/1.1"]`` is accepted.
        """
        base = {"enabled": True, "certificate_path": self.cert, "key_path": self.key}
        self.assert_problems(
            {"tls": dict(base, alpn=["h2"])},
            ['config.json: tls.alpn: lacks "http/1.1", the only protocol ccm serves, got [\'h2\']'],
        )
        tls = self.tls_of(dict(base, alpn=["h2", "http/1.1"]))
        assert tls is not None
        self.assertEqual(tls.alpn, ("h2", "http/1.1"))

    def test_bad_versions(self) -> None:
        """
        TLS versions are ``1.0`` to ``1.3``.
        """
        self.assert_problems(
            {
                "tls": {
                    "enabled": True,
                    "certificate_path": self.cert,
                    "key_path": self.key,
                    "min_version": "1.4",
                    "max_version": "TLSv1.3",
                }
            },
            [
                "config.json: tls.min_version: must be one of 1.0, 1.1, 1.2, 1.3, got '1.4'",
                "config.json: tls.max_version: must be one of 1.0, 1.1, 1.2, 1.3, got 'TLSv1.3'",
            ],
        )


class MetricsListenTests(SynchronousTestCase, ProblemsTestMixin):
    """
    ``metrics_listen``: where the metrics are served without a token.
    """

    def test_default(self) -> None:
        """
        Without ``metrics_listen`` there is no metrics listener.
        """
        self.assertEqual(service_of({}).metrics_listen, ())

    def test_string_and_list(self) -> None:
        """
        One endpoint string, or a list of them.
        """
        self.assertEqual(
            service_of({"metrics_listen": "tcp:9464:interface=127.0.0.1"}).metrics_listen,
            (EndpointListener("tcp:9464:interface=127.0.0.1"),),
        )
        self.assertEqual(
            service_of(
                {"metrics_listen": ["tcp:9464:interface=127.0.0.1", "unix:/run/ccm/metrics"]}
            ).metrics_listen,
            (
                EndpointListener("tcp:9464:interface=127.0.0.1"),
                EndpointListener("unix:/run/ccm/metrics"),
            ),
        )

    def test_invalid(self) -> None:
        """
        A string Twisted cannot parse, or a value of another type, is
        refused with its JSON path.
        """
        self.assert_problem(
            {"metrics_listen": "tcp:port"},
            "config.json: metrics_listen: invalid endpoint 'tcp:port': "
            "invalid literal for int() with base 10: 'port'",
        )
        self.assert_problem(
            {"metrics_listen": ["tcp:9464", "carrier-pigeon:1"]},
            "config.json: metrics_listen[1]: invalid endpoint 'carrier-pigeon:1': "
            "Unknown endpoint type: 'carrier-pigeon'",
        )
        self.assert_problem(
            {"metrics_listen": 9464},
            "config.json: metrics_listen: must be a string or an array of strings, got a number",
        )
