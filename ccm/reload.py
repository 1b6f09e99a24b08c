# -*- test-case-name: tests.test_reload -*-
"""
The reload itself: read the configuration file again, log what changes,
and apply what can change in place to the running services.

What changes is decided by :obj:`ccm.config.changes.plan_reload`, without I/O;
this module is the wiring around it, started by SIGHUP (:obj:`ccm.signals`).
"""

from __future__ import annotations

from typing import Callable, Protocol as TypingProtocol, Sequence

from twisted.logger import Logger

from ccm.config.changes import plan_reload
from ccm.config.model import Config, ConfigError, ServiceConfig


class Reconfigurable(TypingProtocol):
    """
    A running service whose settings can change in place.
    """

    config: ServiceConfig

    def reconfigure(self, config: ServiceConfig) -> None: ...


class Reloader:
    """
    Read the configuration again and apply what can change in place to the
    running services.

    :param load: reads and validates the configuration file; raises
        :obj:`ConfigError` with one line per problem.
    :param services: the running services, in the order of the file.
    """

    log = Logger()

    def __init__(self, load: Callable[[], Config], services: Sequence[Reconfigurable]) -> None:
        self._load = load
        self._services = services

    def reload(self) -> None:
        """
        Reload now.  A file with problems changes nothing; each problem is
        logged on one line, as at start-up.  Never raises: it runs from a
        signal.
        """
        try:
            # Blocking file I/O in the reactor thread, as at start-up: the
            # file is small and local, and this happens once per SIGHUP.
            config = self._load()
        except ConfigError as error:
            for problem in error.problems:
                self.log.error("{problem}", problem=problem)
            self.log.error("configuration not reloaded: the running one stays in use")
            return
        try:
            self._apply(config)
        except Exception:
            self.log.failure("reloading the configuration failed")

    def _apply(self, config: Config) -> None:
        for warning in config.warnings:
            self.log.warn("{problem}", problem=warning)
        plan = plan_reload([s.config for s in self._services], config)
        for line in plan.restart:
            self.log.warn("{line}", line=line)
        for index, service_config in plan.services:
            self._services[index].reconfigure(service_config)
        self.log.info(
            "configuration reloaded from {source}: {changes}",
            source=config.source,
            changes=", ".join(plan.applied) if plan.applied else "nothing changes in place",
            applied=list(plan.applied),
        )
