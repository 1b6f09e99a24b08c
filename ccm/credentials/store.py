# -*- test-case-name: tests.credentials.test_keychain -*-
"""
Where a credential's tokens live: the protocol of every store, the
choice, at start-up, between Claude Code's credentials file and its macOS
keychain item, and the directory whose lock guards their refresh.
"""

from __future__ import annotations

import os
from typing import Mapping, Protocol, Union

import keyring
from keyring.backend import KeyringBackend
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from ccm.credentials.file import CredentialFile, OAuthTokens, default_credential_path
from ccm.credentials.keychain import (
    KeychainStore,
    RunInThread,
    describe_error,
    keychain_account,
    keychain_service_name,
)

MACOS_PLATFORM = "darwin"


class CredentialStore(Protocol):
    """
    Where a credential's tokens live: a file or a keychain item.
    """

    path: str

    def read(self) -> OAuthTokens:
        """
        The stored tokens; raises
        :obj:`ccm.credentials.file.CredentialFileError` saying why not.
        """

    def catch_up(self) -> Deferred[None]:
        """
        Make :obj:`read` see what other programs stored since; called before a
        refresh, which must start from the newest refresh token.  Never
        fails.
        """

    def check_writable(self) -> None:
        """
        Raise :obj:`ccm.credentials.file.CredentialFileError` when refreshed
        tokens could not be saved.
        """

    def write_tokens(self, tokens: OAuthTokens) -> None:
        """
        Save refreshed tokens, keeping everything else stored.
        """


def credential_store_for(
    credential_path: str,
    environ: Mapping[str, str],
    home: str,
    platform: str,
    keyring_backend: KeyringBackend | None = None,
    run_in_thread: RunInThread = deferToThread,
) -> Union[CredentialFile, KeychainStore]:
    """
    Where a default credential's tokens live.  An explicit
    ``credential_path``, or any system but macOS, means that file (or the
    default one).  On macOS without a path, the keychain item is used when
    it exists and holds credentials; otherwise, or when the keychain cannot
    be queried (logged), the default file.  Blocking: call at start-up only.

    :param platform: ``sys.platform``.
    :param keyring_backend: defaults to ``keyring.get_keyring()``.
    """
    if credential_path or platform != MACOS_PLATFORM:
        return CredentialFile(credential_path or default_credential_path(environ, home))
    fallback = CredentialFile(default_credential_path(environ, home))
    service = keychain_service_name(environ, home)
    try:
        if keyring_backend is None:
            keyring_backend = keyring.get_keyring()
        store = KeychainStore(
            keyring_backend, service, keychain_account(environ), run_in_thread
        )
        found = store.load()
    except Exception as error:
        KeychainStore.log.warn(
            "cannot query the keychain for {service}: {error}; using {path}",
            service=service,
            error=describe_error(error),
            path=fallback.path,
        )
        return fallback
    if not found:
        KeychainStore.log.info(
            "{item}: {problem}; using {path}",
            item=store.path,
            problem=store.problem,
            path=fallback.path,
        )
        return fallback
    KeychainStore.log.info("credentials are read from {item}", item=store.path)
    return store


def lock_directory_for(
    store: CredentialStore, environ: Mapping[str, str], home: str
) -> str:
    """
    The directory whose lock Claude Code takes to refresh ``store``'s
    tokens: its configuration directory, the one holding the credentials
    file (followed through a symbolic link), which it locks even when the
    tokens live in the keychain.
    """
    if isinstance(store, CredentialFile):
        return os.path.dirname(os.path.realpath(store.path))
    return os.path.dirname(default_credential_path(environ, home))
