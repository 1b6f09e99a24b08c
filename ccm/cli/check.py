# -*- test-case-name: tests.cli.test_check -*-
"""
``ccm check CONFIG``: whether ``twistd ccm --config CONFIG`` would start,
without starting anything.

It runs start-up's own checks, in the same code: the file is read and
validated by :obj:`ccm.config.load.load_config` (every key, every
reference, the usage files' directories), and the TLS material of every
listener is loaded as :obj:`ccm.web.listening` would load it to listen.  It
prints start-up's warnings (the loader's, and those of
:obj:`ccm.config.exposure`), and warns of a usage file ccm would move aside
because it cannot read it.

What it cannot know without starting: whether the ports can be bound,
whether the credentials files or keychain items hold a login (a missing one
does not stop start-up: its credential is unavailable until it appears), and
whether the API, the token endpoint and the detours answer.  It writes
nothing and opens no connection.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, cast

from twisted.internet.interfaces import IReactorTCP

from ccm.cli.terminal import Terminal
from ccm.cli.usagefiles import read_usage
from ccm.config.exposure import exposure_warnings
from ccm.config.load import load_config
from ccm.config.model import AddressListener, Config, ConfigError, EndpointListener, ServiceConfig
from ccm.web.listening import ListenError, endpoint_for, tls_options

if TYPE_CHECKING:
    from ccm.cli.terminal import Subcommands


def _no_reactor() -> IReactorTCP:
    """
    What building a ``ssl:`` endpoint to load its TLS material is given as
    its reactor: the endpoint is dropped unused, so it is never called.
    """
    return cast(IReactorTCP, object())


def tls_problems(config: Config) -> list[str]:
    """
    The TLS material that start-up could not load (a file missing, a key
    that does not match its certificate), one line each, as start-up says
    it.
    """
    problems = []
    for service in config.services:
        for listener in service.listeners:
            try:
                if isinstance(listener, AddressListener) and listener.tls is not None:
                    tls_options(listener.tls)
                elif isinstance(listener, EndpointListener) and listener.description.startswith("ssl:"):
                    endpoint_for(_no_reactor(), listener)
            except ListenError as error:
                problems.append(f"{config.source}: {error}")
    return problems


def _usage_file_warnings(source: str, service: ServiceConfig) -> list[str]:
    warnings = []
    paths = [service.usages_path, *(c.usages_path for c in service.default_credentials())]
    for path in dict.fromkeys(p for p in paths if p):
        if not os.path.lexists(path):
            continue
        try:
            read_usage(path)
        except OSError as error:
            reason = f"cannot read it: {error.strerror or error}"
        except ValueError as error:
            reason = str(error)
        else:
            continue
        warnings.append(f"{source}: usages_path {path}: {reason}; ccm would move it aside and count afresh")
    return warnings


def warnings_of(config: Config) -> list[str]:
    """
    What start-up would warn about: the loader's warnings, what each
    service leaves open beyond this machine (start-up's own list:
    :obj:`ccm.config.exposure.exposure_warnings`), and usage files that
    cannot be read.
    """
    warnings = list(config.warnings)
    for service in config.services:
        name = f"service {service.tag}" if service.tag else service.where
        prefix = f"{config.source}: {name}: " if name else f"{config.source}: "
        warnings += [prefix + warning for warning in exposure_warnings(service)]
        warnings += _usage_file_warnings(config.source, service)
    return warnings


def summary(config: Config) -> str:
    """
    The final line of a configuration that would start.
    """
    services = len(config.services)
    users = sum(len(s.users) for s in config.services)
    credentials = sum(len(s.default_credentials()) for s in config.services)
    listeners = sum(len(s.listeners) for s in config.services)

    def count(n: int, noun: str) -> str:
        return f"{n} {noun}" + ("" if n == 1 else "s")

    return (
        f"{config.source}: OK ({count(services, 'service')}, {count(listeners, 'listener')}, "
        f"{count(credentials, 'credential')}, {count(users, 'user')})"
    )


def register(commands: Subcommands) -> None:
    """
    Add ``check`` to the subcommands.
    """
    command = commands.add_parser(
        "check",
        help="validate a configuration file without starting ccm",
        description=(
            "Validate CONFIG as start-up does, without binding, connecting or writing "
            "anything: one line per problem on stderr and status 1, or the warnings "
            "and a final OK line."
        ),
    )
    command.add_argument("config", metavar="CONFIG", help="the configuration file (as twistd ccm --config)")
    command.set_defaults(run=run)


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    """
    Check the file and report.

    :return: 0 when ccm would start with it, 1 when it would not.
    """
    path: str = arguments.config
    try:
        config = load_config(path)
        problems = tls_problems(config)
    except ConfigError as error:
        problems = error.problems
    if problems:
        for line in problems:
            terminal.stderr.write(line + "\n")
        noun = "problem" if len(problems) == 1 else "problems"
        terminal.error("check", f"{len(problems)} {noun} in {path}: ccm would not start")
        return 1
    for warning in warnings_of(config):
        terminal.stderr.write(f"warning: {warning}\n")
    terminal.stdout.write(summary(config) + "\n")
    return 0
