# -*- test-case-name: tests.credentials.test_lock -*-
"""
Claude Code's own lock on its configuration directory, taken around every
token refresh so that ccm and Claude Code never spend the same refresh
token.

Claude Code (2.1.332, read from its binary) locks with the npm package
proper-lockfile.  A lock is a directory: ``mkdir`` succeeds for exactly one
process, the holder touches the directory's mtime every 5 seconds while it
holds it, and a lock whose mtime is more than 60 seconds old is stale (its
holder died): the next process removes it and takes it.  A refresh takes
two such locks, in this order: ``<dir>/.oauth_refresh.lock``, and, for
older releases (2.1.197 locked the same two with a 10 second stale time),
``<realpath(dir)>.lock``.  When the second is held, it lets go of the first
and tries again later; when the second cannot be made for another reason
(a read-only parent directory), it goes on without it.  A held lock is
tried again after 1 to 2 seconds, six times in all.

A lock whose directory vanished or whose mtime changed under its holder
was taken over: it is *compromised*, and its holder must not write as if
it still held it.  Claude Code also writes an owner record (its process
id) to take over the lock of a holder it can prove dead before the 60
seconds pass; ccm writes none and takes no lock over early, so a lock ccm
leaves behind (ccm killed mid-refresh) is simply stale after 60 seconds.
"""

from __future__ import annotations

import os
import random
import time
from typing import Callable, Protocol, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

LOCK_NAME = ".oauth_refresh.lock"
LEGACY_LOCK_SUFFIX = ".lock"
STALE_SECONDS = 60.0
UPDATE_SECONDS = 5.0
LOCK_ATTEMPTS = 6
RETRY_MIN_SECONDS = 1.0
RETRY_MAX_SECONDS = 2.0


class LockBusy(Exception):
    """
    Another process held the lock through every attempt.
    """


class LockError(Exception):
    """
    The lock could not be taken for another reason; the message says why.
    """


class DirectoryLock:
    """
    One proper-lockfile lock: the directory at ``path``.

    :param wall: the time to compare a lock's mtime with, which is real
        time whatever ``clock`` is.
    :ivar compromised: why the lock is no longer ours, or None.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        clock: IReactorTime,
        wall: Callable[[], float] = time.time,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        self.path = path
        self.compromised: str | None = None
        self._clock = clock
        self._wall = wall
        self._stale = stale_seconds
        self._mtime_ns = 0
        self._touched_at = 0.0
        self._held = False

    def take(self) -> bool:
        """
        One attempt to take the lock; a stale one is removed and taken.

        :return: whether it is ours now; False when another process holds it.
        :raises OSError: when it can be neither made nor judged.
        """
        may_remove = True
        while True:
            try:
                os.mkdir(self.path)
            except FileExistsError:
                if not may_remove:
                    return False
                try:
                    age = self._wall() - os.stat(self.path).st_mtime
                except FileNotFoundError:
                    # Released meanwhile: one more try, without removing.
                    may_remove = False
                    continue
                if age <= self._stale:
                    return False
                self.log.warn(
                    "removing the stale lock {path}, untouched for {age:.0f}s",
                    path=self.path,
                    age=age,
                )
                try:
                    os.rmdir(self.path)
                except FileNotFoundError:
                    pass
                may_remove = False
                continue
            break
        try:
            self._mtime_ns = os.stat(self.path).st_mtime_ns
        except OSError:
            os.rmdir(self.path)
            raise
        self._touched_at = self._clock.seconds()
        self._held = True
        return True

    def touch(self) -> None:
        """
        The heartbeat: set the lock's mtime to the wall time, unless it was
        taken over (then it is marked compromised).  A failure to touch is
        retried at the next beat, until the lock would look stale to others.
        """
        if not self._held or self.compromised is not None:
            return
        try:
            if os.stat(self.path).st_mtime_ns != self._mtime_ns:
                self._compromise("was taken over by another process")
                return
            now = self._wall()
            os.utime(self.path, (now, now))
            self._mtime_ns = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            self._compromise("was removed by another process")
            return
        except OSError as error:
            if self._clock.seconds() - self._touched_at > self._stale:
                self._compromise(f"could not be touched within {self._stale:g}s")
            else:
                self.log.warn(
                    "cannot touch the lock {path}: {error}", path=self.path, error=error.strerror
                )
            return
        self._touched_at = self._clock.seconds()

    def release(self) -> None:
        """
        Remove the lock, unless it is no longer ours.
        """
        if not self._held:
            return
        self._held = False
        if self.compromised is not None:
            return
        try:
            if os.stat(self.path).st_mtime_ns != self._mtime_ns:
                self._compromise("was taken over by another process")
                return
            os.rmdir(self.path)
        except FileNotFoundError:
            self._compromise("was removed by another process")
        except OSError as error:
            self.log.warn(
                "cannot remove the lock {path} ({error}); it goes stale in {stale:g}s",
                path=self.path,
                error=error.strerror,
                stale=self._stale,
            )

    def _compromise(self, reason: str) -> None:
        self.compromised = reason
        self.log.error(
            "the lock {path} {reason}: another program may be refreshing the same login",
            path=self.path,
            reason=reason,
        )


class HeldLock(Protocol):
    """
    A lock held for one refresh.
    """

    @property
    def compromised(self) -> str | None:
        """
        Why the lock is no longer ours, or None while it is.
        """

    def release(self) -> None:
        """
        Let go of the lock; safe to call more than once.
        """


class RefreshLocking(Protocol):
    """
    What a credential takes around a refresh.
    """

    def acquire(self) -> Deferred[HeldLock]:
        """
        Take the lock; fails with :obj:`LockBusy` or :obj:`LockError`.
        """


class _HeldRefreshLock:
    """
    Claude Code's locks, held, with their heartbeat.
    """

    log = Logger()

    def __init__(self, parts: Sequence[DirectoryLock], clock: IReactorTime, update: float) -> None:
        self._parts = parts
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = clock
        self._heartbeat.start(update, now=False).addErrback(self._stopped)

    @property
    def compromised(self) -> str | None:
        for part in self._parts:
            if part.compromised is not None:
                return f"Claude Code's lock {part.path} {part.compromised}"
        return None

    def _beat(self) -> None:
        for part in self._parts:
            try:
                part.touch()
            except Exception:
                self.log.failure("touching the lock {path} failed", path=part.path)

    def _stopped(self, failure: Failure) -> None:
        self.log.failure("the heartbeat of Claude Code's lock stopped", failure=failure)

    def release(self) -> None:
        if self._heartbeat.running:
            self._heartbeat.stop()
        # In the reverse order of taking, as Claude Code does.
        for part in reversed(self._parts):
            part.release()


class RefreshLock:
    """
    Claude Code's refresh lock on the configuration directory ``directory``
    (the directory of its ``.credentials.json``).

    :param jitter: a number in [0, 1), for the wait between attempts.
    :param wall: real time, to judge the age of another process's lock.
    """

    log = Logger()

    def __init__(
        self,
        directory: str,
        clock: IReactorTime,
        *,
        jitter: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
        attempts: int = LOCK_ATTEMPTS,
        stale_seconds: float = STALE_SECONDS,
        update_seconds: float = UPDATE_SECONDS,
    ) -> None:
        self.directory = os.path.abspath(directory)
        self._clock = clock
        self._jitter = jitter
        self._wall = wall
        self._attempts = attempts
        self._stale = stale_seconds
        self._update = update_seconds

    @property
    def paths(self) -> tuple[str, str]:
        """
        The lock directories, in the order they are taken.
        """
        return (
            os.path.join(self.directory, LOCK_NAME),
            os.path.realpath(self.directory) + LEGACY_LOCK_SUFFIX,
        )

    def acquire(self) -> Deferred[HeldLock]:
        """
        Take both locks, trying again after 1 to 2 seconds while another
        process holds one.

        :return: a Deferred firing with the held lock, or failing with
            :obj:`LockBusy` after the last attempt, or :obj:`LockError`.
        """
        return Deferred.fromCoroutine(self._acquire())

    async def _acquire(self) -> HeldLock:
        for attempt in range(1, self._attempts + 1):
            held = self._try()
            if held is not None:
                return held
            if attempt < self._attempts:
                spread = RETRY_MAX_SECONDS - RETRY_MIN_SECONDS
                await deferLater(self._clock, RETRY_MIN_SECONDS + self._jitter() * spread)
        raise LockBusy(
            f"another program held Claude Code's lock {self.paths[0]} through "
            f"{self._attempts} attempts"
        )

    def _lock(self, path: str) -> DirectoryLock:
        return DirectoryLock(path, self._clock, self._wall, self._stale)

    def _try(self) -> HeldLock | None:
        current_path, legacy_path = self.paths
        current = self._lock(current_path)
        try:
            # Claude Code makes its directory first, too (for the keychain,
            # it may not exist yet).
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            if not current.take():
                return None
        except OSError as error:
            raise LockError(
                f"cannot take Claude Code's lock {current_path}: {error.strerror}"
            ) from None
        legacy = self._lock(legacy_path)
        try:
            taken = legacy.take()
        except OSError as error:
            # A credentials file outside Claude Code's own directory, in a
            # read-only parent: nothing is wrong.
            self.log.info(
                "cannot take the lock {path} ({error}); going on without it, as Claude Code does",
                path=legacy_path,
                error=error.strerror,
            )
            return _HeldRefreshLock([current], self._clock, self._update)
        if not taken:
            current.release()
            return None
        return _HeldRefreshLock([current, legacy], self._clock, self._update)
