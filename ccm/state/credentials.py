# -*- test-case-name: tests.state.test_credentials -*-
"""
A credential whose tokens several ccm processes share through Redis
(:obj:`ccm.state.tokens`): a :obj:`SharedCredentialStore` in place of the
credentials file (or keychain item), and a
:obj:`ccm.state.refreshlock.SharedRefreshLock` in place of Claude Code's
lock.

The store serves the newest token it knows, from Redis or from the local
file of the host that has one; a local token newer than Redis's is
imported, a Redis token newer than the local file's is written to it
(under Claude Code's lock), so Claude Code on that host never finds its
refresh token spent.  The lock is the refresh lease (one process refreshes
at a time), then Claude Code's lock when the host has the file.  While
Redis is away, only a process with the local file refreshes, under Claude
Code's lock alone; its token is offered to Redis when it returns.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from txredisapi import ConnectionError as RedisConnectionError

from ccm.credentials.file import CredentialFileError, OAuthTokens
from ccm.credentials.lock import HeldLock, RefreshLocking
from ccm.credentials.store import CredentialStore
from ccm.state.lease import Lease
from ccm.state.redis import StateUnavailable
from ccm.state.tokens import TokenRecord, TokenVault, VaultError, tokens_of, with_tokens

#: How long one refresh may hold the refresh lease.
REFRESH_LEASE_SECONDS = 60.0


def _newer(candidate: OAuthTokens, than: OAuthTokens | None) -> bool:
    return than is None or candidate.expires_at_ms > than.expires_at_ms


class SharedCredentialStore:
    """
    The tokens of credential ``tag`` in ``vault``, with ``local`` (a
    :obj:`ccm.credentials.file.CredentialFile` or keychain store having
    ``read_oauth``) the file of this host, which may not exist here.

    :ivar changed: called when a newer token arrived from Redis (the
        credential's reload).
    :ivar fence: the refresh lease's fence while this process holds it.
    """

    log = Logger()

    def __init__(self, tag: str, vault: TokenVault, local: Any, clock: IReactorTime) -> None:
        self.tag = tag
        self.vault = vault
        self.local = local
        self.path: str = local.path
        self._clock = clock
        self.changed: Callable[[], None] = lambda: None
        self.fence = 0
        #: The Redis version :obj:`_oauth` is, or was refreshed from.
        self.version = 0
        self._oauth: dict[str, Any] | None = None
        # A token this process has that Redis may not: offered at reconnection.
        self._pending = False
        self._writing_back: Deferred[Any] | None = None
        self.local_lock: RefreshLocking | None = None

    def _local(self) -> tuple[dict[str, Any], OAuthTokens] | None:
        try:
            oauth = self.local.read_oauth()
            return oauth, tokens_of(oauth, self.local.path)
        except CredentialFileError:
            return None

    @property
    def has_local(self) -> bool:
        """
        Whether this host has the credential's file (or keychain item).
        """
        return self._local() is not None

    def _current(self) -> OAuthTokens | None:
        return tokens_of(self._oauth, self.tag) if self._oauth is not None else None

    def read(self) -> OAuthTokens:
        """
        The newest token known: the local one when it is newer than
        Redis's (and then offered to Redis).
        """
        local = self._local()
        if local is not None and _newer(local[1], self._current()):
            self._oauth = local[0]
            self._pending = True
            self.push()
        tokens = self._current()
        if tokens is None:
            raise CredentialFileError(
                f"no tokens for credential {self.tag} in the shared state yet and {self.path} "
                "cannot be read here; import them on the host that has them with "
                "`ccm credentials import`"
            )
        return tokens

    def catch_up(self) -> Deferred[None]:
        """
        Read the local store and Redis again; never fails.
        """
        d: Deferred[Any] = self.local.catch_up()
        d.addCallback(lambda _: self.vault.fetch(self.tag) if self.vault.store.connected else None)
        d.addCallback(self._adopt)
        return d.addErrback(self._unreadable)

    def _unreadable(self, failure: Any) -> None:
        if failure.check(VaultError):
            self.log.error("{problem}", problem=failure.getErrorMessage())
        elif not failure.check(StateUnavailable, RedisConnectionError):
            self.log.failure("reading the shared tokens of {tag}", failure, tag=self.tag)

    def _adopt(self, record: TokenRecord | None) -> bool:
        """
        Take ``record`` when it is a newer version than known, or holds a
        later token (Redis restarted empty and was filled again); write it
        to the local file when that holds an older token.  A Redis without
        the token, or with an older one, is offered ours.
        """
        before = self._current()
        if record is None or (
            record.version <= self.version and not _newer(record.tokens, before)
        ):
            if before is not None and (record is None or _newer(before, record.tokens)):
                self._pending = True
                self.push()
            return False
        self.version = record.version
        if before is not None and not _newer(record.tokens, before) and record.tokens != before:
            # Ours (refreshed while Redis was away) expires later.
            self._pending = True
            self.push()
            return False
        self._oauth = record.oauth
        self._write_back(record)
        return record.tokens != before

    def check_writable(self) -> None:
        """
        Refreshed tokens must reach the local file when there is one.
        """
        if self.has_local:
            self.local.check_writable()

    def write_tokens(self, tokens: OAuthTokens) -> None:
        """
        Store refreshed tokens: in Redis under the fence held (or later,
        when refreshed without Redis), and in the local file if any.
        """
        if self._oauth is None:
            raise CredentialFileError(f"credential {self.tag} has no tokens to replace")
        self._oauth = with_tokens(self._oauth, tokens)
        if self.fence and self.vault.store.connected:
            d = self.vault.write(
                self.tag, self._oauth, self._fence_key(), self.fence, self.version
            )
            d.addCallbacks(self._written, self._not_written)
        else:
            self._pending = True
        if self.has_local:
            self.local.write_tokens(tokens)

    def _fence_key(self) -> str:
        return Lease(self.vault.store, f"refresh:{self.tag}", REFRESH_LEASE_SECONDS).fence_key

    def _written(self, version: int) -> None:
        if version:
            self.version = max(self.version, version)
            return
        self.log.warn(
            "The token refreshed for {tag} was not stored in the shared state: another "
            "process stored a newer one",
            tag=self.tag,
        )
        self.refetch()

    def _not_written(self, failure: Any) -> None:
        self._pending = True
        self._unreadable(failure)

    def refetch(self) -> Deferred[None]:
        """
        Read Redis again (a new version was announced, or the connection
        is back): reload the credential when it brought a newer token.
        """
        if not self.vault.store.connected:
            return succeed(None)
        d = self.vault.fetch(self.tag).addCallback(self._adopt)
        def reload(changed: bool) -> None:
            if changed:
                self.changed()

        return d.addCallback(reload).addErrback(self._unreadable)

    def push(self) -> None:
        """
        Offer the token this process has to Redis, if Redis may lack it.
        """
        if not self._pending or self._oauth is None or not self.vault.store.connected:
            return
        self._pending = False
        oauth = self._oauth

        def offered(version: int) -> None:
            if version:
                self.version = max(self.version, version)
                self.log.info(
                    "Imported the token of {tag} into the shared state (version {version})",
                    tag=self.tag,
                    version=version,
                )

        def failed(failure: Any) -> None:
            if failure.check(StateUnavailable, RedisConnectionError):
                self._pending = True
            else:
                self._unreadable(failure)

        self.vault.offer(self.tag, oauth).addCallbacks(offered, failed)

    def _write_back(self, record: TokenRecord) -> None:
        """
        Write ``record``'s tokens to the local file when it holds older
        ones, under Claude Code's lock, so Claude Code here does not spend
        a refresh token another process has rotated away.
        """
        local = self._local()
        if local is None or not _newer(record.tokens, local[1]) or self.fence:
            return
        if self._writing_back is not None:
            return
        self._writing_back = self._take_local_lock().addCallback(self._write_locked, record)
        self._writing_back.addErrback(self._write_back_failed)
        self._writing_back.addBoth(self._written_back)

    def _take_local_lock(self) -> Deferred[HeldLock | None]:
        if self.local_lock is None:
            return succeed(None)
        taken: Deferred[HeldLock | None] = Deferred()
        self.local_lock.acquire().chainDeferred(taken)  # type: ignore[arg-type]
        return taken

    def _write_locked(self, held: HeldLock | None, record: TokenRecord) -> None:
        try:
            local = self._local()
            if local is not None and _newer(record.tokens, local[1]):
                self.local.write_tokens(record.tokens)
                self.log.info(
                    "Wrote version {version} of {tag}'s token to {path}",
                    version=record.version,
                    tag=self.tag,
                    path=self.path,
                )
        finally:
            if held is not None:
                held.release()

    def _write_back_failed(self, failure: Any) -> None:
        self.log.warn(
            "Could not write the shared token of {tag} to {path}: {why}",
            tag=self.tag,
            path=self.path,
            why=failure.getErrorMessage(),
        )

    def _written_back(self, result: object) -> None:
        self._writing_back = None
