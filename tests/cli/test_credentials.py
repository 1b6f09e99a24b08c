"""
Tests for ``ccm state-key`` (:obj:`ccm.cli.statekey`) and ``ccm credentials
import`` (:obj:`ccm.cli.credentials`), the import against a real
``redis-server``.
"""

from __future__ import annotations

import io
import os
from typing import Any

from cryptography.fernet import Fernet
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial import unittest

from ccm.cli.credentials import import_credentials
from ccm.cli.terminal import Terminal
from ccm.config.load import parse_config
from ccm.state.tokens import TokenVault
from tests.cli.test_token import run_main
from tests.fixtures import write_credentials
from tests.redisserver import start_redis
from tests.state.test_redis import connect, eventually

ACCESS = "sk-ant-oat01-import-test"


class StateKeyTests(unittest.SynchronousTestCase):
    """
    ``ccm state-key``.
    """

    def test_key(self) -> None:
        """
        Stdout holds one Fernet key, which cryptography accepts, and
        stderr the instructions without it; two runs give two keys.
        """
        status, out, err = run_main("state-key")
        self.assertEqual(status, 0)
        key = out.strip()
        self.assertEqual(len(key), 44)
        Fernet(key.encode("ascii"))
        self.assertNotIn(key, err)
        self.assertIn("encryption_key_file", err)
        self.assertNotEqual(run_main("state-key")[1], out)


class ImportTests(unittest.TestCase):
    """
    ``ccm credentials import`` puts newer tokens into Redis, one line each.
    """

    timeout = 60

    def run_import(self, document: dict[str, Any], tag: str = "") -> Deferred[tuple[int, str]]:
        out, err = io.StringIO(), io.StringIO()
        service = parse_config(document, source="config.json").services[0]
        work = Deferred.fromCoroutine(
            import_credentials(service, reactor, Terminal(out, err), tag, {}, "/nonexistent", "linux")
        )
        return work.addCallback(lambda code: (code, out.getvalue() + err.getvalue()))

    @inlineCallbacks
    def test_import(self) -> Any:
        """
        The first import stores the file's token (unknown keys kept), a
        second one keeps Redis's as new; a missing file is reported and
        fails the command; no token is printed.
        """
        server = yield start_redis(self)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = write_credentials(
            os.path.join(directory, "a.json"), ACCESS, expires_at_ms=4_000_000_000_000,
            oauth={"futureKey": 1},
        )
        document: dict[str, Any] = {
            "credentials": [
                {"tag": "a", "credential_path": path},
                {"tag": "b", "credential_path": os.path.join(directory, "b.json")},
            ],
            "state": {"type": "redis", "url": f"redis://127.0.0.1:{server.port}/0"},
        }
        if server.password:
            document["state"]["url"] = f"redis://:{server.password}@127.0.0.1:{server.port}/0"
        code, text = yield self.run_import(document, tag="a")
        self.assertEqual(code, 0, text)
        self.assertIn("a: imported from", text)
        self.assertIn("1 of 1 credentials imported", text)
        code, text = yield self.run_import(document)
        self.assertEqual(code, 1, text)
        self.assertIn("a: kept:", text)
        self.assertIn("b: not imported:", text)
        self.assertNotIn(ACCESS, text)
        store = connect(self, server, key_prefix="ccm:")
        yield eventually(lambda: store.connected)
        record = yield TokenVault(store).fetch("a")
        self.assertEqual((record.version, record.oauth["futureKey"]), (1, 1))

    @inlineCallbacks
    def test_without_state(self) -> Any:
        """
        A configuration without ``state`` has nothing to import into.
        """
        code, text = yield self.run_import({"credentials": [{"tag": "a"}]})
        self.assertEqual(code, 1)
        self.assertIn("no state key", text)
