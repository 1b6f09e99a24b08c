"""
Tests for :obj:`ccm.config.exposure`: the warnings of what a service's
configuration leaves open beyond this machine, which start-up logs and
``ccm check`` prints.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.exposure import OPEN_SERVICE_WARNING, exposure_warnings
from ccm.config.load import parse_config
from ccm.config.model import EndpointListener, ServiceConfig, UserConfig

ADMIN = [{"name": "root", "token": "t", "admin": True}]
USER = [{"name": "bob", "token": "t"}]


def warnings(document: dict[str, Any]) -> list[str]:
    """
    The warnings for the service ``document`` describes.
    """
    [config] = parse_config({"type": "ccm", **document}, "config.json").services
    return exposure_warnings(config)


class OpenServiceTests(SynchronousTestCase):
    """
    A service without users that listens beyond this machine.
    """

    def test_warns(self) -> None:
        """
        No users and a listener on every interface: anyone who reaches it
        uses the subscription, and the warning says so.
        """
        self.assertEqual(warnings({"endpoint": "tcp:8080"}), [OPEN_SERVICE_WARNING])
        self.assertEqual(
            warnings({"listen": "0.0.0.0", "listen_port": 8080}), [OPEN_SERVICE_WARNING]
        )

    def test_quiet(self) -> None:
        """
        No warning with users, on loopback, or on a Unix socket.
        """
        for document in (
            {"endpoint": "tcp:8080", "users": USER},
            {"endpoint": "tcp:8080:interface=127.0.0.1"},
            {"listen": "::1", "listen_port": 8080},
            {"endpoint": "unix:/run/ccm.sock"},
        ):
            self.assertEqual(warnings(document), [], document)


class MetricsListenerTests(SynchronousTestCase):
    """
    A ``metrics_listen`` endpoint beyond this machine.
    """

    def test_warns(self) -> None:
        """
        Each metrics listener beyond this machine is named in a warning of
        its own, since it asks for no token; a loopback one is not.
        """
        found = warnings(
            {
                "endpoint": "tcp:8080:interface=127.0.0.1",
                "metrics_listen": ["tcp:9464:interface=127.0.0.1", "tcp:9465"],
            }
        )
        self.assertEqual(
            found,
            [
                "metrics_listen tcp:9465 is reachable beyond this machine and asks for no "
                "token: whoever reaches it reads every user's and credential's figures"
            ],
        )


class AdminOverPlainHttpTests(SynchronousTestCase):
    """
    The dashboard served over plain HTTP beyond this machine to admins.
    """

    def test_warns(self) -> None:
        """
        With an admin and a plain HTTP listener beyond loopback, one warning
        says the dashboard is reachable over plain HTTP.
        """
        [warning] = warnings({"endpoint": "tcp:8080", "users": ADMIN})
        self.assertIn("plain HTTP beyond this machine", warning)
        self.assertEqual(
            warnings({"listen": "0.0.0.0", "listen_port": 8080, "users": ADMIN}), [warning]
        )

    def test_quiet(self) -> None:
        """
        No warning on loopback, over TLS, or without admins.
        """
        for document in (
            {"endpoint": "tcp:8080:interface=127.0.0.1", "users": ADMIN},
            {"endpoint": "tcp:8080", "users": USER},
        ):
            self.assertEqual(warnings(document), [], document)
        tls = ServiceConfig(
            where="config.json",
            listeners=(EndpointListener("ssl:8443:privateKey=k.pem:certKey=c.pem"),),
            users=(UserConfig("root", "t", admin=True),),
        )
        self.assertEqual(exposure_warnings(tls), [])

    def test_order(self) -> None:
        """
        Several warnings are one line each, in start-up's order: the
        metrics listener's before the dashboard's.
        """
        found = warnings({"endpoint": "tcp:8080", "metrics_listen": "tcp:9465", "users": ADMIN})
        self.assertEqual(len(found), 2, found)
        self.assertTrue(found[0].startswith("metrics_listen tcp:9465 "), found)
        self.assertTrue(found[1].startswith("the dashboard (/ccm/) "), found)
