"""
Tests for :obj:`ccm.reload`: the :obj:`Reloader` reads the file again, logs what
happens, and reconfigures the running services with what applies.  The
configurations are those of :obj:`tests.config.test_changes`, built in memory
as the file would give them.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.config.model import Config, ConfigError, ServiceConfig
from ccm.reload import Reloader
from tests.config.test_changes import ALICE_NEW_TOKEN, SECRETS, SINGLE, edited, load
from tests.fixtures import logged_events


class FakeService:
    """
    A running service that records what it was reconfigured with.
    """

    def __init__(self, config: ServiceConfig, fail: bool = False) -> None:
        self.config = config
        self.reconfigured: list[ServiceConfig] = []
        self._fail = fail

    def reconfigure(self, config: ServiceConfig) -> None:
        if self._fail:
            raise RuntimeError("broken service")
        self.reconfigured.append(config)
        self.config = config


class ReloaderTests(SynchronousTestCase):
    """
    :obj:`Reloader` reads the file, logs what happens, and reconfigures the
    services.
    """

    def setUp(self) -> None:
        self.events = logged_events(self)
        self.service = FakeService(load(SINGLE).services[0])
        self.loaded: list[Any] = []

    def reloader(self, *results: Config | Exception) -> Reloader:
        """
        A reloader whose file gives ``results``, one per reload (a
        :obj:`ConfigError` is raised).
        """
        queue = list(results)

        def read() -> Config:
            result = queue.pop(0)
            if isinstance(result, Exception):
                raise result
            return result

        return Reloader(read, [self.service])

    def lines(self, level: LogLevel = LogLevel.debug) -> list[str]:
        texts = [formatEvent(e) for e in self.events if e["log_level"] >= level]
        for text in texts:
            for secret in SECRETS:
                self.assertNotIn(secret, text)
        return texts

    def test_applies_and_logs(self) -> None:
        """
        A changed file reconfigures the service, and one line says what
        was applied.
        """
        loaded = load(edited(SINGLE, users=[{"name": "alice", "token": ALICE_NEW_TOKEN}]))
        self.reloader(loaded).reload()
        [config] = self.service.reconfigured
        self.assertEqual(config.users, loaded.services[0].users)
        self.assertEqual(
            self.lines(),
            ["configuration reloaded from config.json: users (removed bob; changed alice)"],
        )
        [event] = self.events
        self.assertEqual(event["applied"], ["users (removed bob; changed alice)"])

    def test_restart_lines_logged(self) -> None:
        """
        Each difference that needs a restart is one warning; the rest
        applies.
        """
        loaded = load(edited(SINGLE, endpoint="tcp:9999", max_request_body="2MiB"))
        self.reloader(loaded).reload()
        self.assertEqual(
            self.lines(LogLevel.warn),
            ["config.json: endpoint: needs a restart; keeping the running value"],
        )
        self.assertEqual(self.service.config.max_request_body, 2 * 1024 * 1024)
        self.assertEqual(self.service.config.listeners, load(SINGLE).services[0].listeners)

    def test_broken_file_refused(self) -> None:
        """
        A file with problems is refused: each problem is logged on one line
        as at start-up, then one line says the running configuration stays;
        nothing is reconfigured, and the next good file applies.
        """
        problems = [
            "config.json: users[0].token: user alice needs a non-empty token",
            "config.json: max_request_body: must be a size, got 'a lot'",
        ]
        reloader = self.reloader(
            ConfigError(problems), load(edited(SINGLE, shutdown_grace="3s"))
        )
        reloader.reload()
        self.assertEqual(self.service.reconfigured, [])
        self.assertEqual(
            self.lines(LogLevel.error),
            problems + ["configuration not reloaded: the running one stays in use"],
        )
        reloader.reload()
        self.assertEqual(self.service.config.shutdown_grace, 3.0)

    def test_unchanged_file(self) -> None:
        """
        An unchanged file reconfigures nothing and says so.
        """
        self.reloader(load(SINGLE)).reload()
        self.assertEqual(self.service.reconfigured, [])
        self.assertEqual(
            self.lines(), ["configuration reloaded from config.json: nothing changes in place"]
        )

    def test_warnings_logged(self) -> None:
        """
        The file's warnings are logged again, as at start-up.
        """
        loaded = load(edited(SINGLE, tcp_fast_open=True))
        self.reloader(loaded).reload()
        self.assertIn(
            "config.json: tcp_fast_open: ignored, ccm does not use this listen field",
            self.lines(LogLevel.warn),
        )

    def test_failure_is_logged_not_raised(self) -> None:
        """
        A bug while applying is logged, never raised into the signal
        handler's caller.
        """
        self.service = FakeService(load(SINGLE).services[0], fail=True)
        self.reloader(load(edited(SINGLE, shutdown_grace="3s"))).reload()
        [failure] = self.flushLoggedErrors(RuntimeError)
        self.assertIn("broken service", str(failure.value))
