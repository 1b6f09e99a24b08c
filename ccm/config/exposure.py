# -*- test-case-name: tests.config.test_exposure,tests.cli.test_check -*-
"""
What a service's configuration leaves open beyond this machine, in words:
the warnings start-up logs (and a reload, for what it opens anew) and
``ccm check`` prints, from this one list so that they always say the same.

They are warnings, not problems, since each can be what the operator means
(a trusted network, TLS ended in front of ccm):

- no users, and a listener beyond this machine: anyone who reaches ccm
  uses the subscription;
- a ``metrics_listen`` endpoint beyond this machine: it asks for no token;
- an admin, and a listener beyond this machine without TLS: admins' tokens
  and the dashboard's cookie cross the network in clear.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable

from ccm.config.model import AddressListener, Listener, ServiceConfig

#: The warning of a service anyone who can reach may use.
OPEN_SERVICE_WARNING = (
    "no users are configured and ccm listens beyond this machine: "
    "anyone who can reach it can use the subscription; add users "
    "with tokens"
)


def _is_loopback(listener: Listener) -> bool:
    """
    Whether a listener only accepts connections from this machine.
    """
    if isinstance(listener, AddressListener):
        return ipaddress.ip_address(listener.address).is_loopback
    kind, _, rest = listener.description.partition(":")
    if kind == "unix":
        return True
    for option in re.split(r"(?<!\\):", rest):
        name, _, value = option.partition("=")
        if name == "interface":
            try:
                return ipaddress.ip_address(value.replace("\\", "")).is_loopback
            except ValueError:
                return False
    return False


def _listens_beyond_this_machine(listeners: Iterable[Listener]) -> bool:
    """
    Whether any of ``listeners`` accepts connections from other machines.
    """
    return not all(_is_loopback(listener) for listener in listeners)


def _is_plain_http(listener: Listener) -> bool:
    """
    Whether a listener speaks HTTP without TLS.
    """
    if isinstance(listener, AddressListener):
        return listener.tls is None
    kind = listener.description.partition(":")[0].lower()
    return kind not in ("ssl", "tls", "txtls")


def _open_service_warnings(config: ServiceConfig) -> list[str]:
    if not config.users and _listens_beyond_this_machine(config.listeners):
        return [OPEN_SERVICE_WARNING]
    return []


def _metrics_warnings(config: ServiceConfig) -> list[str]:
    return [
        f"metrics_listen {listener.description} is reachable beyond this machine and asks "
        "for no token: whoever reaches it reads every user's and credential's figures"
        for listener in config.metrics_listen
        if not _is_loopback(listener)
    ]


def _admin_pages_warnings(config: ServiceConfig) -> list[str]:
    exposed = [
        listener
        for listener in config.listeners
        if _is_plain_http(listener) and not _is_loopback(listener)
    ]
    if not exposed or not any(user.admin for user in config.users):
        return []
    return [
        "the dashboard (/ccm/) is reachable over plain HTTP beyond this machine: admins' "
        "tokens and session cookies cross the network unencrypted; serve it over TLS "
        "or on loopback"
    ]


def exposure_warnings(config: ServiceConfig) -> list[str]:
    """
    Every warning of what ``config`` leaves open beyond this machine, one
    line each, in the order start-up logs them.
    """
    return [
        *_open_service_warnings(config),
        *_metrics_warnings(config),
        *_admin_pages_warnings(config),
    ]
