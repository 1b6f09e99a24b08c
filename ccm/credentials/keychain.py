# -*- test-case-name: tests.credentials.test_keychain -*-
"""
Claude Code's credentials in the macOS keychain, through ``keyring``.

On macOS, Claude Code keeps its OAuth tokens in a generic password item
(service ``Claude Code-credentials``, account = the user name) holding the
same JSON as the credentials file.  With no ``credential_path`` configured,
ccm reads that item first and falls back to the file
(:obj:`ccm.credentials.store.credential_store_for` chooses); refreshed tokens are
written back where they were read.

Keychain calls block (and may even prompt to unlock), so they never run on
the reactor: :obj:`KeychainStore.load` fetches the item once at start-up, the
store then serves reads from its in-memory copy, fetches it again in a
thread before each refresh (Claude Code on the same Mac may have refreshed,
rotating the refresh token, or logged in again), and write-backs run in a
thread too, through an injected runner (``deferToThread`` by default).
"""

from __future__ import annotations

import copy
import getpass
import hashlib
import json
import os
from typing import Any, Callable, Mapping, Protocol, TypeVar

from keyring.backend import KeyringBackend
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from ccm.credentials.file import CredentialFileError, OAuthTokens, tokens_from_document

KEYCHAIN_SERVICE = "Claude Code-credentials"

_Result = TypeVar("_Result")


class RunInThread(Protocol):
    """
    Runs a blocking call off the reactor thread, as :obj:`deferToThread` does.
    """

    def __call__(self, work: Callable[[], _Result], /) -> Deferred[_Result]: ...


def keychain_service_name(environ: Mapping[str, str], home: str) -> str:
    """
    The keychain service Claude Code uses: ``Claude Code-credentials``, with
    ``-`` and the first 8 hex digits of the SHA-256 of ``CLAUDE_CONFIG_DIR``
    appended when that is set and differs, as a string, from
    ``<home>/.claude``.
    """
    config_dir = environ.get("CLAUDE_CONFIG_DIR", "")
    if not config_dir or config_dir == os.path.join(home, ".claude"):
        return KEYCHAIN_SERVICE
    digest = hashlib.sha256(config_dir.encode("utf-8")).hexdigest()
    return f"{KEYCHAIN_SERVICE}-{digest[:8]}"


def keychain_account(environ: Mapping[str, str]) -> str:
    """
    The keychain account Claude Code uses: the user name.
    """
    return environ.get("USER", "") or getpass.getuser()


def describe_error(error: BaseException | Failure, secrets: tuple[str, ...] = ()) -> str:
    """
    An error (or the error of a :obj:`Failure`) for a log line: its class and
    message, with any token removed.
    """
    if isinstance(error, Failure):
        # A Failure is only ever built around an exception.
        assert error.value is not None
        error = error.value
    text = f"{type(error).__name__}: {error}"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


class KeychainStore:
    """
    One keychain item holding Claude Code's credentials JSON, with the same
    interface as :obj:`ccm.credentials.file.CredentialFile`
    (:obj:`ccm.credentials.store.CredentialStore`).

    :param backend: a ``keyring`` backend; ``keyring.get_keyring()`` in
        production.
    :param run_in_thread: runs a blocking call off the reactor and returns a
        Deferred of its result.
    """

    log = Logger()

    def __init__(
        self,
        backend: KeyringBackend,
        service: str,
        account: str,
        run_in_thread: RunInThread = deferToThread,
    ) -> None:
        self.backend = backend
        self.service = service
        self.account = account
        self.path = f'macOS keychain item "{service}"'
        self._run_in_thread = run_in_thread
        self._document: dict[str, Any] | None = None
        self._problem = f"{self.path} has not been read"
        self._writing: Deferred[None] | None = None
        self._write_again = False
        self._generation = 0

    @property
    def problem(self) -> str | None:
        """
        Why the item cannot be used, or None when it was read.
        """
        return None if self._document is not None else self._problem

    def load(self) -> bool:
        """
        Fetch the item; blocking, so call it only at start-up.

        :return: whether the item exists and holds usable credentials.
        :raises keyring.errors.KeyringError: (or any other backend error)
            when the keychain cannot be queried.
        """
        return self._adopt(self.backend.get_password(self.service, self.account))

    def fetch(self) -> Deferred[bool]:
        """
        Fetch the item again in a thread (Claude Code may have changed it)
        and replace the in-memory copy; for reloads after start-up, which
        must not block.

        :return: a Deferred firing with whether the item exists and holds
            usable credentials, or failing with the backend's error.
        """
        generation = self._generation
        fetched = self._run_in_thread(
            lambda: self.backend.get_password(self.service, self.account)
        )
        return fetched.addCallback(self._adopt_fetched, generation)

    def catch_up(self) -> Deferred[None]:
        """
        Fetch the item again; on a keychain error, log it and keep the copy
        read earlier.
        """

        def keep_copy(failure: Failure) -> None:
            self.log.warn(
                "could not read {item} again, so the copy read earlier is used: {error}",
                item=self.path,
                error=describe_error(failure, self._secrets()),
            )

        return self.fetch().addCallbacks(lambda _: None, keep_copy)

    def _secrets(self) -> tuple[str, ...]:
        try:
            tokens = self.read()
        except CredentialFileError:
            return ()
        return (tokens.access_token, tokens.refresh_token)

    def _adopt_fetched(self, data: str | None, generation: int) -> bool:
        if generation != self._generation or self._writing is not None:
            # Tokens were refreshed meanwhile: what was fetched is older
            # than what is in memory.
            return self._document is not None
        return self._adopt(data)

    def _adopt(self, data: str | None) -> bool:
        if data is None:
            self._document = None
            self._problem = f"{self.path} does not exist"
            return False
        try:
            document = json.loads(data)
            tokens_from_document(document, self.path)
        except json.JSONDecodeError:
            self._document = None
            self._problem = f"{self.path} is not valid JSON"
            return False
        except CredentialFileError as error:
            self._document = None
            self._problem = str(error).replace("credential file ", "", 1)
            return False
        self._document = document
        return True

    def read(self) -> OAuthTokens:
        """
        The tokens from the in-memory copy of the item.

        :raises CredentialFileError: when the item was missing or unusable.
        """
        if self._document is None:
            raise CredentialFileError(self._problem)
        return tokens_from_document(self._document, self.path)

    def read_oauth(self) -> dict[str, Any]:
        """
        A copy of the item's whole ``claudeAiOauth`` object, keys ccm does
        not know included.

        :raises CredentialFileError: when the item was missing or unusable.
        """
        if self._document is None:
            raise CredentialFileError(self._problem)
        return copy.deepcopy(self._document["claudeAiOauth"])

    def check_writable(self) -> None:
        """
        Refreshed tokens can be saved once the item was read: it is written
        back through the same backend.

        :raises CredentialFileError: when the item was never read.
        """
        if self._document is None:
            raise CredentialFileError(self._problem)

    def write_tokens(self, tokens: OAuthTokens) -> None:
        """
        Store refreshed tokens: update the in-memory copy at once (keeping
        every other key), then write the item back in a thread.  Writes never
        overlap: one requested while another runs follows it with the newest
        tokens.  A failed write is logged and the tokens stay in memory.

        At a clean shutdown a write that has started, or waits in the
        reactor's thread pool, still reaches the keychain: the reactor stops
        its pool during shutdown, which runs the work queued in it and joins
        its threads.  Only what would run on the reactor afterwards is lost:
        the log line of a write that fails then, and a write requested while
        another ran, which needs two refreshes of one credential within one
        keychain write.

        :raises CredentialFileError: when the item was never read.
        """
        if self._document is None:
            raise CredentialFileError(self._problem)
        oauth = self._document["claudeAiOauth"]
        oauth["accessToken"] = tokens.access_token
        oauth["refreshToken"] = tokens.refresh_token
        oauth["expiresAt"] = tokens.expires_at_ms
        self._generation += 1
        if self._writing is not None:
            self._write_again = True
            return
        self._start_write()

    def _start_write(self) -> None:
        assert self._document is not None
        cached = copy.deepcopy(self._document)
        oauth = cached["claudeAiOauth"]
        secrets = (str(oauth["accessToken"]), str(oauth["refreshToken"]))
        self._writing = self._run_in_thread(lambda: self._write_item(cached))
        self._writing.addErrback(self._write_failed, secrets)
        self._writing.addBoth(self._write_done)

    def _write_item(self, cached: dict[str, Any]) -> None:
        """
        Runs in a thread: re-read the item so keys another program added
        survive, put our three token fields in (or, when the item is gone or
        unreadable, use our own copy), and write it compactly.
        """
        oauth = cached["claudeAiOauth"]
        document = cached
        current = self.backend.get_password(self.service, self.account)
        if current is not None:
            try:
                parsed = json.loads(current)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict) and isinstance(parsed.get("claudeAiOauth"), dict):
                document = parsed
                document["claudeAiOauth"].update(
                    accessToken=oauth["accessToken"],
                    refreshToken=oauth["refreshToken"],
                    expiresAt=oauth["expiresAt"],
                )
        self.backend.set_password(
            self.service, self.account, json.dumps(document, separators=(",", ":"))
        )

    def _write_failed(self, failure: Failure, secrets: tuple[str, ...]) -> None:
        self.log.error(
            "refreshed tokens could not be saved to {item}: {error}; they are "
            "kept in memory only, so after a restart Claude Code may need "
            "`claude /login` again",
            item=self.path,
            error=describe_error(failure, secrets),
        )

    def _write_done(self, _: object) -> None:
        self._writing = None
        if self._write_again:
            self._write_again = False
            self._start_write()
