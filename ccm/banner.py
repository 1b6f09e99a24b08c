# -*- test-case-name: tests.test_banner -*-
"""
What ccm says about a service when it starts: where each credential's
tokens come from, how many users it has, and the URL clients should set as
``ANTHROPIC_BASE_URL``.  Started on its defaults, ccm is then understandable
from its first log lines alone.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Iterable

from twisted.logger import Logger

from ccm.config.model import AddressListener, EndpointListener, Listener, ServiceConfig

#: Endpoint types whose first argument is a TCP port, and the scheme clients
#: reach them with.
_SCHEMES = {"tcp": "http", "tcp6": "http", "ssl": "https"}

#: Stands for a port the system chooses at start-up (a configured port 0).
CHOSEN_PORT = "<port>"


def _is_wildcard(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def _endpoint_parts(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    An endpoint string's type, positional arguments and keyword arguments,
    with ``\\:`` unescaped, as Twisted reads them.
    """
    kind, _, rest = description.partition(":")
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for part in re.split(r"(?<!\\):", rest) if rest else []:
        name, equals, value = part.partition("=")
        if equals:
            keywords[name] = value.replace("\\:", ":")
        else:
            positional.append(part.replace("\\:", ":"))
    return kind.lower(), positional, keywords


def _target(listener: Listener) -> tuple[str, str, str] | None:
    """
    The scheme, address and port clients connect to for ``listener``, or
    ``None`` when it is no TCP listener (a UNIX socket, a systemd socket).
    """
    if isinstance(listener, AddressListener):
        scheme = "http" if listener.tls is None else "https"
        return scheme, listener.address, str(listener.port)
    kind, positional, keywords = _endpoint_parts(listener.description)
    if kind not in _SCHEMES:
        return None
    port = keywords.get("port") or (positional[0] if positional else "")
    default_interface = "::" if kind == "tcp6" else "0.0.0.0"
    return _SCHEMES[kind], keywords.get("interface", default_interface), port


def base_url(listener: Listener, host_name: str) -> str | None:
    """
    The ``ANTHROPIC_BASE_URL`` that reaches ``listener``, or ``None`` when it is
    no TCP listener.  A wildcard address (``0.0.0.0``, ``::``) becomes
    ``host_name``; a port of 0 is written :obj:`CHOSEN_PORT`.

    :param host_name: this machine's name.
    """
    target = _target(listener)
    if target is None:
        return None
    scheme, address, port = target
    if _is_wildcard(address):
        host = host_name
    elif ":" in address:
        host = f"[{address}]"
    else:
        host = address
    return f"{scheme}://{host}:{CHOSEN_PORT if port in ('', '0') else port}"


def startup_lines(
    config: ServiceConfig, stores: Iterable[tuple[str, str]], host_name: str
) -> list[str]:
    """
    The lines ccm logs about a service as it starts.

    :param stores: each credential's tag and where its tokens are kept (a
        file's path, or the macOS keychain item).
    :param host_name: this machine's name, for listeners on every address.
    """
    prefix = ""
    if config.tag:
        prefix = f"service {config.tag}: "
    elif config.where:
        prefix = f"{config.where}: "
    lines = [f"{prefix}credential {tag} uses {where}" for tag, where in stores]
    count = len(config.users)
    if count:
        noun = "user" if count == 1 else "users"
        lines.append(
            f"{prefix}{count} {noun} configured; each client sets ANTHROPIC_AUTH_TOKEN "
            "to its user's ccm token"
        )
    else:
        lines.append(
            f"{prefix}no users configured: requests need no token, and anyone who can "
            "connect is served"
        )
    for listener in config.listeners:
        url = base_url(listener, host_name)
        target = _target(listener)
        if url is None or target is None:
            assert isinstance(listener, EndpointListener)
            lines.append(
                f"{prefix}listening on {listener.description}, which has no URL of its "
                "own: point ANTHROPIC_BASE_URL at whatever forwards to it"
            )
            continue
        notes = []
        if _is_wildcard(target[1]) and target[0] == "https":
            notes.append("this machine's name; use a name the TLS certificate holds")
        elif _is_wildcard(target[1]):
            notes.append("this machine's name; any name or address of it works")
        if CHOSEN_PORT in url:
            notes.append("the port the system chose, logged as 'starting on <port>'")
        note = f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"{prefix}clients set ANTHROPIC_BASE_URL={url}{note}")
    if config.state is not None:
        lines.append(
            f"{prefix}state shared with the other ccm processes of {config.state.address}, "
            f"keys starting {config.state.key_prefix}"
        )
    return lines


def log_startup(
    log: Logger, config: ServiceConfig, stores: Iterable[tuple[str, str]], host_name: str = ""
) -> None:
    """
    Log :obj:`startup_lines` for a service, one event per line.

    :param stores: as for :obj:`startup_lines`.
    :param host_name: this machine's name; :obj:`socket.gethostname` when empty.
    """
    for line in startup_lines(config, stores, host_name or socket.gethostname()):
        log.info("{line}", line=line)
