# -*- test-case-name: tests.config.test_load -*-
"""
Load and validate a ccm configuration file.

Two document shapes are accepted so that existing sing-box configurations
work unchanged: a sing-box document ``{"services": [{"type": "ccm", ...}],
"outbounds": [...]}``, where every ccm service is served, and one bare ccm
service object.  Every problem is reported, one line each, naming the file
and the JSON path; a configuration with problems starts nothing.

This module reads the documents and the service object's own keys (URLs,
the body limit); :obj:`ccm.config.listen` reads its listeners,
:obj:`ccm.config.headers` its ``headers``,
:obj:`ccm.config.credentials` its credentials and users,
:obj:`ccm.config.detour` its detours, :obj:`ccm.config.connections` its
connection bounds and :obj:`ccm.config.state` its shared state.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from ccm.config.model import (
    DEFAULT_MAX_REQUEST_BODY_BYTES,
    DEFAULT_OAUTH_TOKEN_URL,
    DEFAULT_SHUTDOWN_GRACE_SECONDS,
    DEFAULT_UPSTREAM_URL,
    Config,
    ConfigError,
    DefaultCredentialConfig,
    ServiceConfig,
)
from ccm.config.connections import CONNECTION_KEYS, parse_connection_limits
from ccm.config.credentials import parse_credentials, parse_users
from ccm.config.detour import index_outbounds, parse_detour
from ccm.config.headers import parse_headers
from ccm.config.listen import (
    IGNORED_LISTEN_KEYS,
    LISTEN_KEYS,
    parse_listeners,
    parse_metrics_listeners,
)
from ccm.config.reader import ObjectReader, Problems, describe_type, json_path
from ccm.config.state import parse_state
from ccm.files import JSONFileError, read_json_file
from ccm.units import parse_size
from ccm.accounting.usagefile import usage_path_problem

_SERVICE_KEYS = (
    "type",
    "tag",
    *LISTEN_KEYS,
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
    "metrics_listen",
    "state",
)

def load_config(path: str) -> Config:
    """
    Read and validate the configuration file at ``path``.

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
    Make sure every usage file of ``config`` could be saved, so that a wrong
    ``usages_path`` stops start-up instead of losing the usage at shutdown.
    This looks at the file system, so :obj:`load_config` does it after
    :obj:`parse_config`.

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
        problems, obj, path, _SERVICE_KEYS, ignored=IGNORED_LISTEN_KEYS
    )
    for key in reader.ignored_present:
        warnings.append(f"{reader.where(key)}: ignored, ccm does not use this listen field")

    listeners = parse_listeners(reader, problems)
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
        headers=parse_headers(reader, problems),
        upstream_url=_parse_url(reader, "upstream_url", DEFAULT_UPSTREAM_URL),
        oauth_token_url=_parse_url(
            reader, "oauth_token_url", DEFAULT_OAUTH_TOKEN_URL, keep_path=True
        ),
        max_request_body=_parse_max_body(reader),
        shutdown_grace=reader.duration(
            "shutdown_grace", DEFAULT_SHUTDOWN_GRACE_SECONDS, allow_zero=True
        ),
        connection_limits=parse_connection_limits(reader),
        metrics_listen=parse_metrics_listeners(reader, problems),
        state=parse_state(reader, problems),
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
