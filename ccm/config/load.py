# -*- test-case-name: tests.config.test_load -*-
"""
Load and validate a ccm configuration file.

Two document shapes are accepted so that existing sing-box configurations
work unchanged: a sing-box document C{{"services": [{"type": "ccm", ...}],
"outbounds": [...]}}, where every ccm service is served, and one bare ccm
service object.  Every problem is reported, one line each, naming the file
and the JSON path; a configuration with problems starts nothing.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.endpoints import serverFromString

from ccm.config.model import (
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_LISTEN_PORT,
    DEFAULT_MAX_REQUEST_BODY_BYTES,
    DEFAULT_OAUTH_TOKEN_URL,
    DEFAULT_SHUTDOWN_GRACE_SECONDS,
    DEFAULT_UPSTREAM_URL,
    AddressListener,
    Config,
    ConfigError,
    DefaultCredentialConfig,
    EndpointListener,
    Listener,
    ServiceConfig,
    TLSConfig,
)
from ccm.config.connections import CONNECTION_KEYS, parse_connection_limits
from ccm.config.credentials import parse_credentials, parse_users
from ccm.config.detour import index_outbounds, parse_detour
from ccm.config.reader import ObjectReader, Problems, describe_type, json_path
from ccm.files import JSONFileError, read_json_file
from ccm.units import parse_size
from ccm.accounting.usagefile import usage_path_problem

_LISTEN_KEYS = ("listen", "listen_port")

# sing-box listen fields that have no meaning for ccm; accepted with a
# warning so that a sing-box configuration still loads.
_IGNORED_LISTEN_KEYS = (
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

_SERVICE_KEYS = (
    "type",
    "tag",
    *_LISTEN_KEYS,
    "credential_path",
    "credentials",
    "usages_path",
    "users",
    "headers",
    "detour",
    "tls",
    "endpoint",
    "upstream_url",
    "oauth_token_url",
    "max_request_body",
    "shutdown_grace",
    *CONNECTION_KEYS,
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

# RFC 9110 token characters, for header names.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FORBIDDEN_HEADERS = {
    "authorization": "ccm sets Authorization to the subscription's OAuth token",
    "host": "the Host header follows upstream_url",
    "content-length": "ccm computes Content-Length from the body",
    "transfer-encoding": "it is a hop-by-hop header",
    "connection": "it is a hop-by-hop header",
    "keep-alive": "it is a hop-by-hop header",
    "te": "it is a hop-by-hop header",
    "upgrade": "it is a hop-by-hop header",
    "proxy-connection": "it is a hop-by-hop header",
    "proxy-authenticate": "it is a hop-by-hop header",
    "proxy-authorization": "it is a hop-by-hop header",
    "trailer": "it is a hop-by-hop header",
    "x-api-key": "ccm authenticates upstream with the subscription's OAuth token only",
    "api-key": "ccm authenticates upstream with the subscription's OAuth token only",
    "cookie": "ccm never sends cookies upstream",
}
# What a header value may hold: Latin-1 text without control characters
# (horizontal tab aside), as it goes on the wire.
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")


def load_config(path: str) -> Config:
    """
    Read and validate the configuration file at C{path}.

    :raises ConfigError: listing every problem, each naming the file and the
        JSON path of the offending value.
    """
    name = os.path.basename(path) or path
    try:
        document = read_json_file(path)
    except JSONFileError as error:
        # A file that cannot be read is named by the path given, so it can
        # be found; one that was read is named as its problems are.
        if error.os_error is not None:
            problem = f"{path}: cannot read: {error.os_error.strerror}"
        elif error.line is not None:
            problem = f"{name}: invalid JSON at line {error.line} column {error.column}: {error.detail}"
        else:
            problem = f"{name}: {error.detail}"
        raise ConfigError([problem]) from None
    config = parse_config(document, source=name)
    check_usage_paths(config)
    return config


def parse_config(document: object, source: str) -> Config:
    """
    Validate an already decoded JSON document.

    Relative file paths inside it are kept as written: like sing-box, ccm
    resolves them against its working directory.

    :raises ConfigError: listing every problem found.
    """
    problems = Problems(source)
    warnings: list[str] = []
    services = _parse_document(document, problems, warnings)
    if problems:
        raise ConfigError(problems.lines)
    return Config(
        source=source,
        services=tuple(services),
        warnings=tuple(f"{source}: {w}" for w in warnings),
    )


def check_usage_paths(config: Config) -> None:
    """
    Make sure every usage file of C{config} could be saved, so that a wrong
    C{usages_path} stops start-up instead of losing the usage at shutdown.
    This looks at the file system, so L{load_config} does it after
    L{parse_config}.

    :raises ConfigError: one line per unusable path, naming its JSON path.
    """
    problems = Problems(config.source)
    for service in config.services:
        paths = [(json_path(service.where, "usages_path"), service.usages_path)]
        # A parsed configuration has one entry per element of the
        # credentials array, in order, so the index is the element's.
        for index, credential in enumerate(service.credentials):
            if isinstance(credential, DefaultCredentialConfig):
                where = json_path(json_path(service.where, "credentials"), index)
                paths.append((json_path(where, "usages_path"), credential.usages_path))
        for where, usages_path in paths:
            problem = usage_path_problem(usages_path) if usages_path else None
            if problem is not None:
                problems.add(where, problem)
    if problems:
        raise ConfigError(problems.lines)


def _parse_document(
    document: object, problems: Problems, warnings: list[str]
) -> list[ServiceConfig]:
    if not isinstance(document, dict):
        problems.add(
            "", f"must be a JSON object, got {describe_type(document)}"
        )
        return []
    if "services" not in document:
        kind = document.get("type", "ccm")
        if kind != "ccm":
            problems.add(
                "type",
                f"must be \"ccm\" for a bare service object, got {kind!r} "
                "(a sing-box document has a \"services\" array)",
            )
            return []
        service = _parse_service(document, "", {}, problems, warnings)
        return [service] if service is not None else []
    services_value = document["services"]
    if not isinstance(services_value, list):
        problems.add(
            "services", f"must be an array, got {describe_type(services_value)}"
        )
        return []
    outbounds = index_outbounds(document.get("outbounds"), problems)
    services = []
    for index, entry in enumerate(services_value):
        path = json_path("services", index)
        if not isinstance(entry, dict):
            problems.add(path, f"must be an object, got {describe_type(entry)}")
            continue
        if entry.get("type") != "ccm":
            continue
        service = _parse_service(entry, path, outbounds, problems, warnings)
        if service is not None:
            services.append(service)
    if not services and not problems:
        problems.add("services", "has no service of type \"ccm\"")
    return services


def _parse_service(
    obj: dict[str, Any],
    path: str,
    outbounds: dict[str, tuple[str, dict[str, Any]]],
    problems: Problems,
    warnings: list[str],
) -> ServiceConfig | None:
    reader = ObjectReader(
        problems, obj, path, _SERVICE_KEYS, ignored=_IGNORED_LISTEN_KEYS
    )
    for key in reader.ignored_present:
        warnings.append(f"{reader.where(key)}: ignored, ccm does not use this listen field")

    listeners = _parse_listeners(reader, problems)
    detour = parse_detour(reader, "detour", outbounds, problems)
    credentials = parse_credentials(reader, outbounds, problems)
    credential_path = reader.string("credential_path")
    usages_path = reader.string("usages_path")
    if credentials:
        if credential_path:
            problems.add(
                reader.where("credential_path"),
                "credential_path and credentials are mutually exclusive",
            )
        if usages_path:
            problems.add(
                reader.where("usages_path"),
                "usages_path and credentials are mutually exclusive; "
                "use usages_path on individual credentials",
            )
        if detour is not None:
            problems.add(
                reader.where("detour"),
                "detour and credentials are mutually exclusive; "
                "use detour on individual credentials",
            )
    users = parse_users(reader, credentials, problems, warnings)
    return ServiceConfig(
        where=path,
        tag=reader.string("tag"),
        listeners=listeners,
        credential_path=credential_path,
        usages_path=usages_path,
        detour=detour,
        credentials=credentials,
        users=users,
        headers=_parse_headers(reader, problems),
        upstream_url=_parse_url(reader, "upstream_url", DEFAULT_UPSTREAM_URL),
        oauth_token_url=_parse_url(
            reader, "oauth_token_url", DEFAULT_OAUTH_TOKEN_URL, keep_path=True
        ),
        max_request_body=_parse_max_body(reader),
        shutdown_grace=reader.duration(
            "shutdown_grace", DEFAULT_SHUTDOWN_GRACE_SECONDS, allow_zero=True
        ),
        connection_limits=parse_connection_limits(reader),
    )


def _parse_listeners(reader: ObjectReader, problems: Problems) -> tuple[Listener, ...]:
    endpoints = reader.strings("endpoint")
    uses_listen_fields = any(reader.has(k) for k in (*_LISTEN_KEYS, "tls"))
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
        return (EndpointListener(f"tcp:{DEFAULT_LISTEN_PORT}:interface={DEFAULT_LISTEN_ADDRESS}"),)
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


def check_endpoint(description: str, path: str, problems: Problems) -> None:
    """
    Report C{description} if Twisted cannot parse it as a server endpoint.
    """
    try:
        # Parsing only stores the reactor; nothing listens here.
        serverFromString(None, description)  # type: ignore[arg-type]
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
    if alpn and "http/1.1" not in alpn:
        problems.add(
            tls.where("alpn"),
            f"lacks \"http/1.1\", the only protocol ccm serves, got {list(alpn)}",
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


def _parse_url(reader: ObjectReader, key: str, default: str, keep_path: bool = False) -> str:
    text = reader.string(key, default)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        reader.problems.add(
            reader.where(key), f"must be an http:// or https:// URL, got {text!r}"
        )
        return default
    if parts.query or parts.fragment:
        reader.problems.add(reader.where(key), "must not have a query or fragment")
        return default
    return text if keep_path else text.rstrip("/")


def _parse_max_body(reader: ObjectReader) -> int:
    value = reader.obj.get("max_request_body")
    if value is None:
        return DEFAULT_MAX_REQUEST_BODY_BYTES
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        got = repr(value) if isinstance(value, float) else describe_type(value)
        reader.problems.add(
            reader.where("max_request_body"),
            f"must be a whole number of bytes or a size such as \"64MiB\", got {got}",
        )
        return DEFAULT_MAX_REQUEST_BODY_BYTES
    try:
        size = parse_size(value)
    except ValueError as error:
        reader.problems.add(reader.where("max_request_body"), str(error))
        return DEFAULT_MAX_REQUEST_BODY_BYTES
    if size < 1:
        reader.problems.add(reader.where("max_request_body"), "must be at least 1 byte")
    return size


def _parse_headers(reader: ObjectReader, problems: Problems) -> tuple[tuple[str, tuple[str, ...]], ...]:
    obj = reader.object("headers")
    if not obj:
        return ()
    headers = []
    seen: dict[str, str] = {}
    for name in obj:
        path = json_path(reader.where("headers"), name)
        values = ObjectReader(problems, obj, reader.where("headers"), obj.keys()).strings(name)
        if not _HEADER_NAME.match(name):
            problems.add(path, "is not a valid header name")
            continue
        reason = _FORBIDDEN_HEADERS.get(name.lower())
        if reason is not None:
            problems.add(path, f"cannot be set here: {reason}")
            continue
        if any("\r" in v or "\n" in v for v in values):
            problems.add(path, "values must not contain line breaks")
            continue
        if not all(_HEADER_VALUE.match(v) for v in values):
            problems.add(path, "values must be Latin-1 text without control characters")
            continue
        if name.lower() in seen:
            problems.add(
                path, f"repeats {seen[name.lower()]!r}: header names are case-insensitive"
            )
            continue
        seen[name.lower()] = name
        headers.append((name, values))
    return tuple(headers)
