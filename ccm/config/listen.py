# -*- test-case-name: tests.config.test_listen -*-
"""
Where a service listens, as its configuration says: Twisted endpoint
strings (``endpoint``), or the sing-box listen fields (``listen``,
``listen_port``) with an optional sing-box inbound ``tls`` object; and the
metrics' own listeners (``metrics_listen``, endpoint strings).

Everything about listeners that can be checked without binding is checked
here, the TLS files' existence included, so that :obj:`ccm.web.listening` only
turns a valid :obj:`Listener` into a Twisted endpoint.
"""

from __future__ import annotations

import ipaddress
import os

from twisted.internet.endpoints import serverFromString

from ccm.config.model import (
    DEFAULT_ENDPOINT,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_LISTEN_PORT,
    SERVED_ALPN_PROTOCOL,
    AddressListener,
    EndpointListener,
    Listener,
    TLSConfig,
)
from ccm.config.reader import ObjectReader, Problems, json_path

#: The sing-box listen fields of a service object.
LISTEN_KEYS = ("listen", "listen_port")

#: sing-box listen fields that have no meaning for ccm; accepted with a
#: warning so that a sing-box configuration still loads.
IGNORED_LISTEN_KEYS = (
    "bind_interface",
    "routing_mark",
    "reuse_addr",
    "netns",
    "tcp_fast_open",
    "tcp_multi_path",
    "disable_tcp_keep_alive",
    "tcp_keep_alive",
    "tcp_keep_alive_interval",
    "udp_fragment",
    "udp_timeout",
)

_TLS_KEYS = (
    "enabled",
    "server_name",
    "certificate",
    "certificate_path",
    "key",
    "key_path",
    "alpn",
    "min_version",
    "max_version",
)
_UNSUPPORTED_TLS_KEYS = (
    "acme",
    "ech",
    "reality",
    "cipher_suites",
    "curve_preferences",
    "client_authentication",
    "client_certificate",
    "client_certificate_path",
    "client_certificate_public_key_sha256",
    "kernel_tx",
    "kernel_rx",
)
_TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


def parse_listeners(reader: ObjectReader, problems: Problems) -> tuple[Listener, ...]:
    """
    The listeners of the service object ``reader`` reads: its ``endpoint``
    strings, else its listen fields, else :obj:`DEFAULT_ENDPOINT`.
    """
    endpoints = reader.strings("endpoint")
    uses_listen_fields = any(reader.has(k) for k in (*LISTEN_KEYS, "tls"))
    if reader.has("endpoint"):
        if uses_listen_fields:
            problems.add(
                reader.where("endpoint"),
                "endpoint and listen/listen_port/tls are mutually exclusive",
            )
        if reader.obj["endpoint"] == []:
            problems.add(reader.where("endpoint"), "must name at least one endpoint")
        for index, description in enumerate(endpoints):
            check_endpoint(description, json_path(reader.where("endpoint"), index), problems)
        return tuple(EndpointListener(d) for d in endpoints)
    if not uses_listen_fields:
        return (EndpointListener(DEFAULT_ENDPOINT),)
    address = reader.string("listen", DEFAULT_LISTEN_ADDRESS)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        problems.add(
            reader.where("listen"),
            f"must be an IP address such as \"127.0.0.1\", \"0.0.0.0\" or \"::\", got {address!r}",
        )
    port = reader.integer("listen_port", DEFAULT_LISTEN_PORT, 0, 65535)
    return (AddressListener(address=address, port=port, tls=_parse_tls(reader, problems)),)


def parse_metrics_listeners(
    reader: ObjectReader, problems: Problems
) -> tuple[EndpointListener, ...]:
    """
    The listeners of ``metrics_listen``: endpoint strings (one, or an
    array) where the metrics are served without authentication; none by
    default.
    """
    key = "metrics_listen"
    endpoints = reader.strings(key)
    single = isinstance(reader.obj.get(key), str)
    for index, description in enumerate(endpoints):
        path = reader.where(key) if single else json_path(reader.where(key), index)
        check_endpoint(description, path, problems)
    return tuple(EndpointListener(d) for d in endpoints)


def check_endpoint(description: str, path: str, problems: Problems) -> None:
    """
    Report ``description`` if Twisted cannot parse it as a server endpoint.
    """
    try:
        # Parsing only stores the reactor (Twisted leaves it untyped);
        # nothing listens here.
        serverFromString(None, description)
    except Exception as error:  # Twisted raises many kinds for bad strings.
        detail = str(error) or type(error).__name__
        problems.add(path, f"invalid endpoint {description!r}: {detail}")


def _parse_tls(reader: ObjectReader, problems: Problems) -> TLSConfig | None:
    obj = reader.object("tls")
    if obj is None:
        return None
    tls = ObjectReader(problems, obj, reader.where("tls"), _TLS_KEYS, ignored=_UNSUPPORTED_TLS_KEYS)
    for key in tls.ignored_present:
        problems.add(tls.where(key), "is not supported by ccm; use a front proxy or an ssl: endpoint")
    if not tls.boolean("enabled", False):
        return None
    certificate_path = tls.string("certificate_path")
    key_path = tls.string("key_path")
    certificate_pem = "\n".join(tls.strings("certificate"))
    key_pem = "\n".join(tls.strings("key"))
    for inline, file_key, what in (
        (certificate_pem, "certificate_path", "certificate"),
        (key_pem, "key_path", "key"),
    ):
        if inline and not inline.isascii():
            problems.add(tls.where(what), "must be PEM text, which is ASCII")
        if inline and tls.has(file_key):
            problems.add(tls.where(what), f"{what} and {file_key} are mutually exclusive")
        elif not inline and not tls.has(file_key) and not tls.ignored_present:
            # (With acme or reality refused above, asking for a certificate
            # too would point the wrong way.)
            problems.add(tls.where(file_key), f"TLS is enabled but no {what} is given")
    for file_key, file_path in (("certificate_path", certificate_path), ("key_path", key_path)):
        if file_path and not os.path.isfile(file_path):
            problems.add(tls.where(file_key), f"no such file: {file_path}")
        elif file_path and not os.access(file_path, os.R_OK):
            problems.add(tls.where(file_key), f"cannot read {file_path}")
    versions = []
    for key in ("min_version", "max_version"):
        version = tls.string(key)
        if version and version not in _TLS_VERSIONS:
            problems.add(tls.where(key), f"must be one of {', '.join(_TLS_VERSIONS)}, got {version!r}")
        versions.append(version)
    alpn = tls.strings("alpn")
    if alpn and SERVED_ALPN_PROTOCOL not in alpn:
        # twisted.web serves HTTP/2 only with the optional h2 package, and
        # ccm's request limits are HTTP/1.1's: offering "h2" alone (as
        # sing-box configurations may) would break every client choosing it.
        problems.add(
            tls.where("alpn"),
            f"lacks \"{SERVED_ALPN_PROTOCOL}\", the only protocol ccm serves, got {list(alpn)}",
        )
    return TLSConfig(
        certificate_path=certificate_path,
        key_path=key_path,
        certificate_pem=certificate_pem,
        key_pem=key_pem,
        min_version=versions[0],
        max_version=versions[1],
        alpn=alpn,
    )
