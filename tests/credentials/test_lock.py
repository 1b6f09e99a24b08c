"""
Tests for :obj:`ccm.credentials.lock`: Claude Code's refresh lock, as
proper-lockfile takes it, on real directories.

Time that schedules (retries, the heartbeat) is a :obj:`Clock`; the time a
lock's age is judged by is ``wall``, real time plus what a test adds, so a
test ages another process's lock with :obj:`os.utime`.
"""

from __future__ import annotations

import errno
import os
import time

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.credentials import lock as lockmodule
from ccm.credentials.lock import (
    LOCK_ATTEMPTS,
    STALE_SECONDS,
    UPDATE_SECONDS,
    DirectoryLock,
    HeldLock,
    LockBusy,
    LockError,
    RefreshLock,
)
from tests.fixtures import logged_events


class LockTestCase(SynchronousTestCase):
    """
    A configuration directory of its own, a clock, and a wall time.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.now = time.time()
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.current = os.path.join(self.directory, ".oauth_refresh.lock")
        self.legacy = self.directory + ".lock"
        self.events = logged_events(self)

    def wall(self) -> float:
        """
        The wall time the locks see.
        """
        return self.now

    def lock(self, directory: str | None = None, jitter: float = 0.5) -> RefreshLock:
        """
        Claude Code's lock on ``directory`` (the test's by default).
        """
        return RefreshLock(
            directory or self.directory, self.clock, jitter=lambda: jitter, wall=self.wall
        )

    def acquire(self, lock: RefreshLock | None = None) -> HeldLock:
        """
        Take the lock, which must be free, and release it at cleanup.
        """
        held = self.successResultOf((lock or self.lock()).acquire())
        self.addCleanup(held.release)
        return held

    def hold_elsewhere(self, *paths: str, age: float = 0.0) -> None:
        """
        Make lock directories as another process would, ``age`` seconds old.
        """
        for path in paths:
            os.mkdir(path)
            os.utime(path, (self.now - age, self.now - age))

    def mtime(self, path: str) -> float:
        """
        The mtime of ``path``.
        """
        return os.stat(path).st_mtime

    def messages(self, level: LogLevel) -> list[str]:
        """
        The log messages of ``level`` so far.
        """
        return [formatEvent(e) for e in self.events if e["log_level"] == level]


class AcquireTests(LockTestCase):
    """
    :obj:`RefreshLock.acquire` takes both of Claude Code's locks.
    """

    def test_paths(self) -> None:
        """
        The locks are ``<dir>/.oauth_refresh.lock`` and, with the directory's
        symbolic links resolved, ``<dir>.lock``.
        """
        real = os.path.join(self.directory, "real")
        os.mkdir(real)
        link = os.path.join(self.directory, "link")
        os.symlink(real, link)
        self.assertEqual(
            self.lock(link).paths, (os.path.join(link, ".oauth_refresh.lock"), real + ".lock")
        )

    def test_fresh(self) -> None:
        """
        With no lock held, both directories are made at once, and nothing
        waits but the heartbeat.
        """
        held = self.successResultOf(self.lock().acquire())
        self.assertTrue(os.path.isdir(self.current))
        self.assertTrue(os.path.isdir(self.legacy))
        self.assertIsNone(held.compromised)
        self.assertEqual([call.getTime() for call in self.clock.getDelayedCalls()], [UPDATE_SECONDS])
        held.release()

    def test_release(self) -> None:
        """
        Releasing removes both directories and stops the heartbeat;
        releasing again changes nothing.
        """
        held = self.successResultOf(self.lock().acquire())
        held.release()
        self.assertFalse(os.path.exists(self.current))
        self.assertFalse(os.path.exists(self.legacy))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        held.release()
        self.assertEqual(self.messages(LogLevel.error), [])

    def test_makes_the_directory(self) -> None:
        """
        A configuration directory that does not exist yet (the keychain's)
        is made, private, as Claude Code makes it.
        """
        missing = os.path.join(self.directory, "claude")
        held = self.acquire(self.lock(missing))
        self.assertTrue(os.path.isdir(os.path.join(missing, ".oauth_refresh.lock")))
        self.assertEqual(os.stat(missing).st_mode & 0o777, 0o700)
        held.release()

    def test_held_waits_and_retries(self) -> None:
        """
        While another process holds the lock, each attempt waits 1 to 2
        seconds (as the jitter says) and leaves the lock alone; once it is
        released, the next attempt takes it.
        """
        self.hold_elsewhere(self.current)
        mtime = self.mtime(self.current)
        attempt = self.lock(jitter=0.5).acquire()
        self.assertNoResult(attempt)
        self.clock.advance(1.5)
        self.assertNoResult(attempt)
        self.assertEqual(self.mtime(self.current), mtime)
        self.assertFalse(os.path.exists(self.legacy))
        os.rmdir(self.current)
        self.clock.advance(1.5)
        held = self.successResultOf(attempt)
        self.assertTrue(os.path.isdir(self.legacy))
        held.release()

    def test_busy_after_every_attempt(self) -> None:
        """
        A lock held through six attempts (five waits, here of 2 seconds)
        fails with :obj:`LockBusy` naming it; the other process's lock stays.
        """
        self.hold_elsewhere(self.current)
        attempt = self.lock(jitter=1.0).acquire()
        self.clock.pump([2.0] * (LOCK_ATTEMPTS - 2) + [1.9])
        self.assertNoResult(attempt)
        self.clock.advance(0.1)
        error = self.failureResultOf(attempt, LockBusy).value
        self.assertIn(self.current, str(error))
        self.assertIn("6 attempts", str(error))
        self.assertTrue(os.path.isdir(self.current))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_legacy_held(self) -> None:
        """
        When only the older lock is held, the new one is let go again (not
        left behind) and taken with the older one once that is free.
        """
        self.hold_elsewhere(self.legacy)
        attempt = self.lock(jitter=0.0).acquire()
        self.assertNoResult(attempt)
        self.assertFalse(os.path.exists(self.current))
        os.rmdir(self.legacy)
        self.clock.advance(1.0)
        held = self.successResultOf(attempt)
        self.assertTrue(os.path.isdir(self.current))
        self.assertTrue(os.path.isdir(self.legacy))
        held.release()

    def test_legacy_impossible(self) -> None:
        """
        When the older lock cannot be made at all (here its name is too
        long), the new lock is enough, as Claude Code finds it, and says so.
        """
        directory = os.path.join(self.directory, "d" * 251)
        os.mkdir(directory)
        held = self.acquire(self.lock(directory))
        self.assertTrue(os.path.isdir(os.path.join(directory, ".oauth_refresh.lock")))
        [note] = self.messages(LogLevel.info)
        self.assertIn("going on without it", note)
        held.release()
        self.assertEqual(os.listdir(directory), [])

    def test_error(self) -> None:
        """
        A lock that cannot be made for another reason than another holder
        (the directory is a file) fails with :obj:`LockError` naming it.
        """
        path = os.path.join(self.directory, "file")
        with open(path, "w"):
            pass
        error = self.failureResultOf(self.lock(path).acquire(), LockError).value
        self.assertIn(os.path.join(path, ".oauth_refresh.lock"), str(error))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class StaleTests(LockTestCase):
    """
    A lock untouched for more than 60 seconds is stale: its holder died.
    """

    def test_stale_taken_over(self) -> None:
        """
        Stale locks (both kinds) are removed and taken at once, with a
        warning each.
        """
        self.hold_elsewhere(self.current, self.legacy, age=STALE_SECONDS + 1)
        held = self.acquire()
        self.assertIsNone(held.compromised)
        self.assertGreater(self.mtime(self.current), self.now - 10)
        warnings = self.messages(LogLevel.warn)
        self.assertEqual(len(warnings), 2)
        self.assertIn("removing the stale lock " + self.current, warnings[0])

    def test_not_yet_stale(self) -> None:
        """
        A lock touched 59 seconds ago is held.
        """
        self.hold_elsewhere(self.current, age=STALE_SECONDS - 1)
        attempt = self.lock().acquire()
        self.assertNoResult(attempt)
        self.assertTrue(os.path.isdir(self.current))
        attempt.cancel()
        self.failureResultOf(attempt, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_wall_time_judges(self) -> None:
        """
        The age is the wall time since the mtime, not the clock's: a fresh
        lock stays held however far the clock moves, and goes stale once
        the wall time moves on.
        """
        self.hold_elsewhere(self.current)
        lock = DirectoryLock(self.current, self.clock, self.wall)
        self.clock.advance(3600)
        self.assertFalse(lock.take())
        self.now += STALE_SECONDS + 1
        self.assertTrue(lock.take())
        lock.release()


class HeartbeatTests(LockTestCase):
    """
    A held lock's mtime is touched every 5 seconds, so that other processes
    never find it stale.
    """

    def test_touched(self) -> None:
        """
        Every 5 seconds both locks' mtimes become the wall time.
        """
        self.acquire()
        self.now += 30
        self.clock.advance(UPDATE_SECONDS)
        self.assertAlmostEqual(self.mtime(self.current), self.now, places=2)
        self.assertAlmostEqual(self.mtime(self.legacy), self.now, places=2)

    def test_never_stale_for_others(self) -> None:
        """
        Held for minutes, the lock is never stale to another process.
        """
        held = self.acquire()
        other = DirectoryLock(self.current, self.clock, self.wall)
        for _ in range(30):
            self.now += UPDATE_SECONDS
            self.clock.advance(UPDATE_SECONDS)
            self.assertFalse(other.take())
        self.assertIsNone(held.compromised)

    def test_touch_errors_logged(self) -> None:
        """
        A touch that fails is logged and tried again at the next beat; the
        heartbeat goes on.
        """
        held = self.acquire()
        failing = [True]
        real_utime = os.utime

        def utime(path: str, *args: object) -> None:
            if failing[0]:
                raise PermissionError(errno.EACCES, "Permission denied")
            real_utime(path, *args)  # type: ignore[arg-type]

        self.patch(lockmodule.os, "utime", utime)
        self.now += UPDATE_SECONDS
        self.clock.advance(UPDATE_SECONDS)
        self.assertIn("cannot touch the lock", " ".join(self.messages(LogLevel.warn)))
        self.assertIsNone(held.compromised)
        failing[0] = False
        self.now += UPDATE_SECONDS
        self.clock.advance(UPDATE_SECONDS)
        self.assertAlmostEqual(self.mtime(self.current), self.now, places=2)

    def test_touch_failing_too_long(self) -> None:
        """
        A lock that could not be touched for longer than the stale time may
        have been taken over: it is compromised.
        """
        held = self.acquire()

        def utime(path: str, *args: object) -> None:
            raise PermissionError(errno.EACCES, "Permission denied")

        self.patch(lockmodule.os, "utime", utime)
        for _ in range(int(STALE_SECONDS / UPDATE_SECONDS) + 1):
            self.clock.advance(UPDATE_SECONDS)
        self.assertIn("could not be touched", held.compromised or "")

    def test_crashing_touch_logged(self) -> None:
        """
        An unexpected error in a beat is logged; the heartbeat goes on.
        """
        self.acquire()
        calls: list[str] = []

        def touch(lock: DirectoryLock) -> None:
            calls.append(lock.path)
            raise RuntimeError("boom")

        self.patch(DirectoryLock, "touch", touch)
        self.clock.advance(UPDATE_SECONDS)
        self.clock.advance(UPDATE_SECONDS)
        self.assertEqual(calls, [self.current, self.legacy] * 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 4)


class CompromisedTests(LockTestCase):
    """
    A lock removed or taken over under its holder is compromised: the holder
    says so and leaves the other process's lock alone.
    """

    def test_removed(self) -> None:
        """
        A lock removed by another process is compromised at the next beat,
        with an error naming it.
        """
        held = self.acquire()
        os.rmdir(self.current)
        self.clock.advance(UPDATE_SECONDS)
        self.assertEqual(
            held.compromised,
            f"Claude Code's lock {self.current} was removed by another process",
        )
        [error] = self.messages(LogLevel.error)
        self.assertIn(self.current, error)

    def test_taken_over(self) -> None:
        """
        A lock whose mtime changed (another process took it as stale and
        touches it now) is compromised, and releasing leaves it in place.
        """
        held = self.acquire()
        os.utime(self.current, (self.now + 100, self.now + 100))
        self.clock.advance(UPDATE_SECONDS)
        self.assertIn("was taken over", held.compromised or "")
        held.release()
        self.assertTrue(os.path.isdir(self.current))
        self.assertFalse(os.path.exists(self.legacy))

    def test_taken_over_before_release(self) -> None:
        """
        A takeover between beats is noticed at release: the other process's
        lock stays.
        """
        held = self.successResultOf(self.lock().acquire())
        os.utime(self.legacy, (self.now + 100, self.now + 100))
        held.release()
        self.assertTrue(os.path.isdir(self.legacy))
        self.assertFalse(os.path.exists(self.current))
        self.assertIn("was taken over", held.compromised or "")
        self.assertEqual(self.clock.getDelayedCalls(), [])
