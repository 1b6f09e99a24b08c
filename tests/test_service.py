"""
Tests for L{ccm.service.CcmService}: how a configured service is assembled.
"""

from __future__ import annotations

import os

from twisted.application.service import IService
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from ccm.config import ConnectionLimits, ServiceConfig
from ccm.connections import CcmChannel
from ccm.keychain import KeychainStore, keychain_service_name
from ccm.service import CcmService
from ccm.watch import FileWatcher
from tests.test_keychain import DictKeyring, credentials_json


class KeychainWiringTests(SynchronousTestCase):
    """
    On macOS, a credential without C{credential_path} comes from the
    keychain when Claude Code keeps it there.
    """

    def build(self, backend: DictKeyring, platform: str) -> CcmService:
        """
        A service with the default credential, as on C{platform}.
        """
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        self.home = home
        return CcmService(
            ServiceConfig(where=""),
            reactor=MemoryReactorClock(),
            http_client=object(),
            environ={"USER": "alice"},
            home=home,
            watch_with_inotify=False,
            platform=platform,
            keyring_backend=backend,
        )

    def watchers(self, service: CcmService) -> list[IService]:
        """
        The file watchers among the service's children.
        """
        return [child for child in service if isinstance(child, FileWatcher)]

    def test_keychain_on_macos(self) -> None:
        """
        With the item in the keychain, the credential reads it, becomes
        available, and no file is watched.
        """
        backend = DictKeyring()
        service_name = keychain_service_name({}, "/nowhere")
        backend.items[(service_name, "alice")] = credentials_json()
        service = self.build(backend, "darwin")
        [credential] = service.credentials
        self.assertIsInstance(credential.store, KeychainStore)
        credential.reload()
        self.assertTrue(credential.available)
        self.assertEqual(self.watchers(service), [])

    def test_file_elsewhere(self) -> None:
        """
        On Linux the keychain is never asked: the default file is used and
        watched.
        """
        backend = DictKeyring()
        service = self.build(backend, "linux")
        [credential] = service.credentials
        self.assertEqual(
            credential.store.path, os.path.join(self.home, ".claude", ".credentials.json")
        )
        self.assertEqual(backend.calls, [])
        self.assertEqual(len(self.watchers(service)), 1)

    def test_file_when_no_item(self) -> None:
        """
        On macOS without a keychain item, the default file is used, as
        sing-box falls back to it.
        """
        backend = DictKeyring()
        service = self.build(backend, "darwin")
        [credential] = service.credentials
        directory = os.path.join(self.home, ".claude")
        os.makedirs(directory)
        with open(os.path.join(directory, ".credentials.json"), "w") as handle:
            handle.write(credentials_json())
        credential.reload()
        self.assertTrue(credential.available)
        self.assertEqual(len(self.watchers(service)), 1)
        self.assertEqual(
            [call[0] for call in backend.calls], ["get"]
        )


class ConnectionLimitsWiringTests(SynchronousTestCase):
    """
    The service's site takes its connection bounds from the configuration.
    """

    def test_site_limits(self) -> None:
        """
        The site holds the configured L{ConnectionLimits} and gives them to
        each new connection.
        """
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        limits = ConnectionLimits(max_connections=7, max_connections_per_address=3)
        service = CcmService(
            ServiceConfig(where="", connection_limits=limits),
            reactor=MemoryReactorClock(),
            http_client=object(),
            environ={},
            home=home,
            watch_with_inotify=False,
            platform="linux",
        )
        self.assertIs(service.site.connection_limits, limits)
        channel = service.site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
        self.assertIsInstance(channel, CcmChannel)
        self.assertIs(channel.limits, limits)
        channel.release()
