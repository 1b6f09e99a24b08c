# -*- test-case-name: tests.config.test_detour -*-
"""
Parse where a service or credential sends its upstream traffic: a detour,
given as a proxy URL or as the tag of an entry of a sing-box document's
``outbounds``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from ccm.config.model import Detour
from ccm.config.reader import ObjectReader, Problems, describe_type, json_path

_OUTBOUND_KEYS = ("type", "tag", "server", "server_port", "username", "password")


def index_outbounds(
    value: object, problems: Problems
) -> dict[str, tuple[str, dict[str, Any]]]:
    """
    Map outbound tags to their JSON path and object; they are validated only
    when a detour uses them, since a sing-box document has outbounds for
    other purposes too.
    """
    if value is None:
        return {}
    if not isinstance(value, list):
        problems.add("outbounds", f"must be an array, got {describe_type(value)}")
        return {}
    index: dict[str, tuple[str, dict[str, Any]]] = {}
    for position, entry in enumerate(value):
        if isinstance(entry, dict) and isinstance(entry.get("tag"), str):
            index[entry["tag"]] = (json_path("outbounds", position), entry)
    return index


def parse_detour(
    reader: ObjectReader,
    key: str,
    outbounds: dict[str, tuple[str, dict[str, Any]]],
    problems: Problems,
) -> Detour | None:
    """
    The detour named by ``key``: a proxy URL or an outbound's tag (checked
    only now, as other outbounds may be for sing-box's other uses); None for
    no detour or a problem.
    """
    text = reader.string(key)
    if not text:
        return None
    path = reader.where(key)
    if "://" in text:
        return _detour_from_url(text, path, problems)
    if text not in outbounds:
        known = ", ".join(sorted(outbounds)) or "none"
        # Never echo what may be a proxy URL with a password but no scheme.
        shown = "the value" if "@" in text else repr(text)
        problems.add(
            path,
            f"{shown} is neither a proxy URL (http://host:port, socks5://host:port) "
            f"nor the tag of an entry in outbounds (tags: {known})",
        )
        return None
    outbound_path, outbound = outbounds[text]
    out = ObjectReader(problems, outbound, outbound_path, _OUTBOUND_KEYS, ignored=outbound.keys())
    kind = out.string("type")
    if kind == "direct":
        return Detour(kind="direct", name=text)
    if kind not in ("http", "socks"):
        problems.add(
            out.where("type"),
            f"outbound {text!r} has type {kind!r}, which ccm cannot use as a detour "
            "(supported: http, socks, direct)",
        )
        return None
    host = out.string("server")
    if not host:
        problems.add(out.where("server"), f"outbound {text!r} needs a server")
    port = out.integer("server_port", 0, 1, 65535)
    if not out.has("server_port"):
        problems.add(out.where("server_port"), f"outbound {text!r} needs a server_port")
    return Detour(
        kind="socks5" if kind == "socks" else "http",
        host=host,
        port=port,
        username=out.string("username"),
        password=out.string("password"),
        name=text,
    )


def _detour_from_url(text: str, path: str, problems: Problems) -> Detour | None:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        # urllib's message quotes the URL, which may hold a password.
        problems.add(
            path,
            "invalid proxy URL: expected http://[user:pass@]host:port or "
            "socks5://[user:pass@]host:port with a port from 1 to 65535",
        )
        return None
    scheme = {"http": "http", "socks5": "socks5", "socks5h": "socks5", "socks": "socks5"}.get(parts.scheme)
    if scheme is None:
        problems.add(path, f"proxy URL scheme must be http or socks5, got {parts.scheme!r}")
        return None
    if not parts.hostname or not port:
        problems.add(path, "proxy URL needs a host and a port, e.g. http://127.0.0.1:3128")
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    safe_name = f"{parts.scheme}://{host}:{port}"
    return Detour(
        kind=scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        name=safe_name,
    )
