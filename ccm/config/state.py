# -*- test-case-name: tests.config.test_state -*-
"""
Parse a service's ``state`` object: where several ccm processes keep what
they share.  Without it a service keeps everything in its own memory and
files, as it always has.

Only Redis is supported: ``{"type": "redis", "url": "redis://host:6379/0"}``,
``rediss://`` for TLS, a password in the URL or, better, in
``password_file``.  No message ever repeats the URL or the password.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ccm.config.reader import ObjectReader, Problems

#: The keys of a ``state`` object, in the order the documentation lists them.
STATE_KEYS = (
    "type",
    "url",
    "password_file",
    "key_prefix",
    "tls_ca_file",
    "encryption_key_file",
)

DEFAULT_REDIS_PORT = 6379
DEFAULT_KEY_PREFIX = "ccm:"
# Larger files are not passwords; the bound keeps a mistake from being read.
_MAX_SECRET_FILE_BYTES = 4096


@dataclass(frozen=True)
class StateConfig:
    """
    A Redis server shared by several ccm processes, and how to reach it.
    """

    host: str
    port: int = DEFAULT_REDIS_PORT
    database: int = 0
    tls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    key_prefix: str = DEFAULT_KEY_PREFIX
    #: A PEM file of the authorities trusted for ``rediss://`` (the
    #: system's when empty).
    tls_ca_file: str = ""
    #: A file holding the key that encrypts the tokens kept in Redis
    #: (unencrypted when empty).
    encryption_key_file: str = ""

    @property
    def address(self) -> str:
        """
        Where the server is, for log lines: never the password.
        """
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.database}"


def parse_state(reader: ObjectReader, problems: Problems) -> StateConfig | None:
    """
    The ``state`` object of the service behind ``reader``, or None when it
    has none; every problem is reported with its JSON path.
    """
    obj = reader.object("state")
    if obj is None:
        return None
    state = ObjectReader(problems, obj, reader.where("state"), STATE_KEYS)
    kind = state.string("type")
    if kind != "redis":
        problems.add(
            state.where("type"),
            "must be \"redis\"" + (f", got {kind!r}" if kind else " (it is missing)"),
        )
        return None
    if not state.has("url"):
        problems.add(state.where("url"), "is missing: a redis:// or rediss:// URL")
        return None
    parsed = _parse_url(state.string("url"), state.where("url"), problems)
    if parsed is None:
        return None
    host, port, database, tls, username, password = parsed
    password_file = state.string("password_file")
    if password_file:
        if password:
            problems.add(
                state.where("password_file"),
                "the URL has a password already: give it in one place only",
            )
        password = _read_secret(password_file, state.where("password_file"), problems)
    prefix = state.string("key_prefix", DEFAULT_KEY_PREFIX)
    if not prefix or any(c.isspace() for c in prefix):
        problems.add(state.where("key_prefix"), "must be a non-empty string without spaces")
    tls_ca_file = state.string("tls_ca_file")
    if tls_ca_file:
        if not tls:
            problems.add(state.where("tls_ca_file"), "is only used with a rediss:// URL")
        elif not os.path.isfile(tls_ca_file):
            problems.add(state.where("tls_ca_file"), f"no such file: {tls_ca_file}")
    key_file = state.string("encryption_key_file")
    if key_file and not os.path.isfile(key_file):
        problems.add(state.where("encryption_key_file"), f"no such file: {key_file}")
    elif key_file:
        _check_fernet_key(key_file, state.where("encryption_key_file"), problems)
    return StateConfig(
        host=host,
        port=port,
        database=database,
        tls=tls,
        username=username,
        password=password,
        key_prefix=prefix,
        tls_ca_file=tls_ca_file,
        encryption_key_file=key_file,
    )


def _parse_url(
    text: str, where: str, problems: Problems
) -> tuple[str, int, int, bool, str, str] | None:
    """
    Host, port, database number, TLS, user name and password of a Redis
    URL; the problems never quote the URL, which may hold the password.
    """
    try:
        url = urlsplit(text)
        port = url.port or DEFAULT_REDIS_PORT
    except ValueError:
        problems.add(where, "is not a valid URL (its port is not a number from 1 to 65535)")
        return None
    if url.scheme not in ("redis", "rediss"):
        problems.add(where, f"must start with redis:// or rediss://, not {url.scheme!r}")
        return None
    if not url.hostname:
        problems.add(where, "names no host")
        return None
    if url.query or url.fragment:
        problems.add(where, "must not have a query or fragment")
        return None
    path = url.path.strip("/")
    if path and not path.isdigit():
        problems.add(where, "its path must be a database number, such as /0")
        return None
    return (
        url.hostname,
        port,
        int(path or "0"),
        url.scheme == "rediss",
        unquote(url.username or ""),
        unquote(url.password or ""),
    )


def _read_secret(path: str, where: str, problems: Problems) -> str:
    """
    The password in file ``path`` (surrounding white space removed), or ''
    after reporting why it cannot be read.
    """
    try:
        with open(path, "rb") as secret:
            data = secret.read(_MAX_SECRET_FILE_BYTES + 1)
    except OSError as error:
        problems.add(where, f"cannot read {path}: {error.strerror or error}")
        return ""
    if len(data) > _MAX_SECRET_FILE_BYTES:
        problems.add(where, f"{path} is larger than {_MAX_SECRET_FILE_BYTES} bytes")
        return ""
    text = data.decode("utf-8", "replace").strip()
    if not text:
        problems.add(where, f"{path} is empty")
    return text


def _check_fernet_key(path: str, where: str, problems: Problems) -> None:
    """
    Report the key file ``path`` unless it holds a Fernet key (44 URL-safe
    base64 characters, as ``ccm state-key`` prints); never quotes it.
    """
    from cryptography.fernet import Fernet

    key = _read_secret(path, where, problems)
    if not key:
        return
    try:
        Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        problems.add(
            where,
            f"{path} does not hold a Fernet key (44 URL-safe base64 characters); "
            "make one with `ccm state-key`",
        )
