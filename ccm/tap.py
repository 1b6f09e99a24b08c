# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin's options and service: ``twistd -n ccm --config
config.json``.  This is the one place that reads the configuration file and
touches the global reactor; :obj:`ccm.build` wires each service's parts.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
from typing import cast

from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage

from ccm.config.model import Config, ConfigError, EndpointListener, default_config
from ccm.config.listen import check_endpoint
from ccm.config.load import load_config
from ccm.config.reader import Problems
from ccm.web.listening import ListenError
from ccm.reload import Reloader
from ccm.build import ServiceReactor, build_service
from ccm.service import CcmService
from ccm.signals import SignalHandlers, SignalsReactor
from ccm.upstream.client import make_http_client

log = Logger(namespace="ccm")


class Options(usage.Options):
    """
    Command-line options of ``twistd ccm``.
    """

    synopsis = "[--config FILE] [--listen ENDPOINT ...]"
    longdesc = (
        "Serve Claude subscriptions to remote Claude Code clients. Without "
        "--config, listen on 127.0.0.1:8080 with the default Claude Code "
        "credentials file and no users."
    )
    optParameters = [
        ["config", "c", None, "JSON configuration file (a sing-box document or a ccm service object)."],
    ]
    compData = usage.Completions(optActions={"config": usage.CompleteFiles("*.json")})

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        Listen on this Twisted endpoint instead of the configured ones (repeatable).
        """
        self["listen"].append(description)

    def postOptions(self) -> None:
        # SystemExit, not usage.UsageError as twisted/web/tap.py raises:
        # twistd answers a UsageError by printing the whole --help text
        # before the message (twisted.application.app.run), which would bury
        # the one line per problem the configuration errors promise.
        # SystemExit prints only its message and exits non-zero.
        if self["config"] == "":
            raise SystemExit("--config: the file name is empty")
        try:
            self["ccm-config"] = self.read_config()
        except ConfigError as error:
            raise SystemExit("\n".join(error.problems)) from None

    def read_config(self) -> Config:
        """
        Read the configuration file (or take the defaults) and apply
        ``--listen``: at start-up, and again for each SIGHUP.

        :raises ConfigError: with one line per problem.
        """
        config = load_config(self["config"]) if self["config"] else default_config()
        if self["listen"]:
            config = self._override_listeners(config)
        return config

    def _override_listeners(self, config: Config) -> Config:
        problems = Problems("--listen")
        if len(config.services) != 1:
            problems.add("", f"the configuration has {len(config.services)} ccm services; --listen needs exactly one")
        for description in self["listen"]:
            check_endpoint(description, "", problems)
        if problems:
            raise ConfigError(problems.lines)
        listeners = tuple(EndpointListener(d) for d in self["listen"])
        service = dataclasses.replace(config.services[0], listeners=listeners)
        return dataclasses.replace(config, services=(service,))


class _ProcessReactor(ServiceReactor, SignalsReactor):
    """
    What :obj:`makeService` needs of the reactor, for type checking only: what
    each service needs, and what the signal handlers need.
    """


def makeService(options: Options, reactor: _ProcessReactor | None = None) -> IService:
    """
    Build every configured ccm service under one parent.
    """
    in_process = reactor is None
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        # Twisted types the global reactor with its common interfaces only
        # (not IReactorSSL or IReactorThreads); the reactors it installs
        # provide them all.
        reactor = cast(_ProcessReactor, global_reactor)
    config: Config = options["ccm-config"]
    for warning in config.warnings:
        # Not "warning=": that key marks Python warnings for legacy observers.
        log.warn("{problem}", problem=warning)
    parent = MultiService()
    services: list[CcmService] = []
    for service_config in config.services:
        http_client, pool = make_http_client(reactor)
        try:
            service = build_service(
                service_config,
                reactor=reactor,
                http_client=http_client,
                close_http=pool.closeCachedConnections,
                environ=os.environ,
                home=os.path.expanduser("~"),
                watch_with_inotify=sys.platform.startswith("linux"),
            )
        except ListenError as error:
            raise SystemExit(f"{config.source}: {error}") from None
        service.setServiceParent(parent)
        services.append(service)
    # SIGHUP reloads; a second SIGINT or SIGTERM ends the drain at once.
    reloader = Reloader(options.read_config, services)
    handlers = SignalHandlers(
        reactor, reloader.reload, lambda: sum(s.end_requests_now() for s in services)
    )
    if in_process:
        # SIGHUP's default action ends the process: handle it from now on,
        # not only once the reactor runs (a reload right after start).
        handlers.install_hangup()
    reactor.callWhenRunning(handlers.install)
    # Once running, move everything built at start-up (modules, classes,
    # configuration; ~57,000 objects) out of the collector's sight: a full
    # collection, which stalls every open stream, then scans only what
    # requests allocate (measured mid-run: 23.5 ms before, 9.3 ms after;
    # docs/performance.md).
    reactor.callWhenRunning(gc.freeze)
    return parent
