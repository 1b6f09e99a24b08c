"""
Tests for :obj:`ccm.config.model`: the frozen configuration model.
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.load import parse_config
from ccm.config.model import (
    AddressListener,
    BalancerCredentialConfig,
    ConfigError,
    DefaultCredentialConfig,
    Detour,
    EndpointListener,
    ServiceConfig,
    default_config,
)
from tests.config.parsing import SOURCE, multi


class ModelTests(SynchronousTestCase):
    """
    The configuration model in :obj:`ccm.config.model`.
    """

    def test_frozen(self) -> None:
        """
        Configuration objects cannot be changed once built.
        """
        config = parse_config(
            multi(
                {"tag": "a"},
                {"tag": "p", "type": "balancer", "credentials": ["a"]},
                users=[{"name": "u", "token": "t", "credential": "p"}],
                tls={"enabled": True, "certificate": "c", "key": "k"},
            ),
            source=SOURCE,
        )
        service = config.services[0]
        a, pool = service.credentials
        listener = service.listeners[0]
        assert isinstance(listener, AddressListener)
        for obj, attribute, value in (
            (config, "source", "other"),
            (service, "upstream_url", "http://evil.test"),
            (a, "reserve_5h", 1),
            (pool, "strategy", "random"),
            (service.users[0], "token", "x"),
            (listener, "port", 1),
            (listener.tls, "key_pem", "x"),
            (Detour("direct"), "host", "x"),
            (EndpointListener("tcp:1"), "description", "tcp:2"),
            (service.connection_limits, "max_connections", 1),
        ):
            with self.assertRaises(dataclasses.FrozenInstanceError):
                setattr(obj, attribute, value)

    def test_legacy_default_credential(self) -> None:
        """
        Without a credentials list the service has one credential tagged
        ``default`` built from the top-level fields, capped at 99 %.
        """
        detour = Detour("http", "h", 1, name="http://h:1")
        service = ServiceConfig(
            where="", credential_path="/c.json", usages_path="/u.json", detour=detour
        )
        [credential] = service.default_credentials()
        self.assertEqual(
            credential,
            DefaultCredentialConfig(
                tag="default", credential_path="/c.json", usages_path="/u.json", detour=detour
            ),
        )
        self.assertEqual((credential.cap_5h, credential.cap_weekly), (99, 99))
        self.assertFalse(service.multi_credential)

    def test_default_credentials_skip_pools(self) -> None:
        """
        In multi-credential mode the default credentials are the entries of
        the default type only, in order.
        """
        a = DefaultCredentialConfig("a")
        b = DefaultCredentialConfig("b")
        service = ServiceConfig(
            where="", credentials=(a, BalancerCredentialConfig("p", ("a", "b")), b)
        )
        self.assertTrue(service.multi_credential)
        self.assertEqual(service.default_credentials(), (a, b))

    def test_caps(self) -> None:
        """
        A reserve pauses the credential at 100 minus the reserve, a limit at
        the limit itself; no reserve counts as a reserve of 1.
        """
        self.assertEqual(DefaultCredentialConfig("a", reserve_5h=20).cap_5h, 80)
        self.assertEqual(DefaultCredentialConfig("a", reserve_weekly=20).cap_weekly, 80)
        self.assertEqual(DefaultCredentialConfig("a", limit_5h=50).cap_5h, 50)
        self.assertEqual(DefaultCredentialConfig("a", limit_weekly=50).cap_weekly, 50)
        self.assertEqual(DefaultCredentialConfig("a").cap_5h, 99)
        self.assertEqual(DefaultCredentialConfig("a").cap_weekly, 99)

    def test_config_error(self) -> None:
        """
        :obj:`ConfigError` keeps its problem lines and reads as them.
        """
        error = ConfigError(["a.json: x: bad", "a.json: y: worse"])
        self.assertEqual(error.problems, ["a.json: x: bad", "a.json: y: worse"])
        self.assertEqual(str(error), "a.json: x: bad\na.json: y: worse")

    def test_default_config(self) -> None:
        """
        The configuration without ``--config`` is one service on loopback
        port 8080 with the default credential file, no users and no usage
        file.
        """
        config = default_config()
        [service] = config.services
        self.assertEqual(service.listeners, (EndpointListener("tcp:8080:interface=127.0.0.1"),))
        self.assertEqual((service.users, service.credentials), ((), ()))
        [credential] = service.default_credentials()
        self.assertEqual((credential.credential_path, credential.usages_path), ("", ""))
        self.assertEqual(config.warnings, ())
