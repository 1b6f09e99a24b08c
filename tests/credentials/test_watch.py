"""
Tests for :obj:`ccm.credentials.watch`: noticing that a file was created, changed, moved
into place or deleted, by polling on a fake clock and with inotify on the
real reactor.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.task import Clock, deferLater
from twisted.python.runtime import platform
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ccm.credentials.watch import DEBOUNCE_SECONDS, POLL_INTERVAL_SECONDS, FileWatcher

# How long the real-reactor tests wait for an event before failing, and
# how long they wait to be sure that none comes.
EVENT_TIMEOUT_SECONDS = 5.0
QUIET_SECONDS = 0.3


def write_file(path: str, data: bytes) -> None:
    """
    Write ``data`` to ``path`` in place.
    """
    with open(path, "wb") as handle:
        handle.write(data)


def replace_file(path: str, data: bytes) -> None:
    """
    Write ``data`` beside ``path`` and move it into place, as atomic writers
    (Claude Code, ccm) do.
    """
    temporary = path + ".tmp"
    write_file(temporary, data)
    os.replace(temporary, path)


class PollingTests(SynchronousTestCase):
    """
    Without a reactor, :obj:`FileWatcher` polls the file's status on the clock
    and calls back once, debounced, per change.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, ".credentials.json")
        self.calls: list[float] = []

    def start(self, on_change: Any = None, **kwargs: Any) -> FileWatcher:
        """
        Start a polling watcher of the test file that records the time of
        each call; it is stopped at the end of the test.
        """
        watcher = FileWatcher(
            self.path, on_change or (lambda: self.calls.append(self.clock.seconds())),
            self.clock, **kwargs,
        )
        watcher.startService()
        self.addCleanup(lambda: watcher.stopService() if watcher.running else None)
        self.assertEqual(watcher.mode, "polling")
        return watcher

    def assert_one_call_after_poll(self) -> None:
        """
        The next poll sees the change and the callback follows it after
        the debounce delay, exactly once.
        """
        before = len(self.calls)
        start = self.clock.seconds()
        self.clock.advance(POLL_INTERVAL_SECONDS)
        self.assertEqual(len(self.calls), before)
        self.clock.advance(DEBOUNCE_SECONDS)
        self.assertEqual(self.calls[before:], [start + POLL_INTERVAL_SECONDS + DEBOUNCE_SECONDS])
        self.clock.advance(POLL_INTERVAL_SECONDS * 3)
        self.assertEqual(len(self.calls), before + 1)

    def test_created(self) -> None:
        """
        A file that did not exist at start is noticed when it appears.
        """
        self.start()
        write_file(self.path, b"{}")
        self.assert_one_call_after_poll()

    def test_no_change_no_call(self) -> None:
        """
        An existing file that does not change never triggers the callback,
        in particular not at start.
        """
        write_file(self.path, b"{}")
        self.start()
        self.clock.advance(0)
        for _ in range(10):
            self.clock.advance(POLL_INTERVAL_SECONDS)
        self.assertEqual(self.calls, [])

    def test_modified(self) -> None:
        """
        A change of content is noticed, whether the size changes or only
        the modification time.
        """
        write_file(self.path, b"{}")
        self.start()
        write_file(self.path, b'{"a": 1}')
        self.assert_one_call_after_poll()
        status = os.stat(self.path)
        os.utime(self.path, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))
        self.assert_one_call_after_poll()

    def test_replaced(self) -> None:
        """
        A new file moved over the old one is noticed, even with the same
        size and modification time.
        """
        write_file(self.path, b"{}")
        status = os.stat(self.path)
        self.start()
        replace_file(self.path, b"[]")
        os.utime(self.path, ns=(status.st_atime_ns, status.st_mtime_ns))
        self.assert_one_call_after_poll()

    def test_deleted(self) -> None:
        """
        Deleting the file is noticed, and so is its recreation.
        """
        write_file(self.path, b"{}")
        self.start()
        os.remove(self.path)
        self.assert_one_call_after_poll()
        write_file(self.path, b"{}")
        self.assert_one_call_after_poll()

    def test_burst_coalesced(self) -> None:
        """
        Several changes between two polls give one call.
        """
        self.start()
        write_file(self.path, b"{}")
        self.clock.advance(0.5)
        write_file(self.path, b"{ }")
        replace_file(self.path, b'{"x": 1}')
        self.clock.advance(1.0)
        os.remove(self.path)
        write_file(self.path, b"{}")
        self.clock.advance(0.5)
        self.clock.advance(DEBOUNCE_SECONDS)
        self.assertEqual(len(self.calls), 1)
        self.clock.advance(POLL_INTERVAL_SECONDS * 5)
        self.assertEqual(len(self.calls), 1)

    def test_debounce_across_polls(self) -> None:
        """
        With polls closer together than the debounce delay, changes seen by
        successive polls still give a single call, after the last one.
        """
        self.start(poll_interval=0.05)
        write_file(self.path, b"{}")
        self.clock.advance(0.05)
        write_file(self.path, b"{  }")
        self.clock.advance(0.05)
        self.assertEqual(self.calls, [])
        self.clock.advance(DEBOUNCE_SECONDS)
        self.assertEqual(len(self.calls), 1)
        self.assertAlmostEqual(self.calls[0], 0.1 + DEBOUNCE_SECONDS)

    def test_callback_error_logged(self) -> None:
        """
        An exception from the callback is logged and does not stop the
        watcher: the next change calls back again.
        """
        calls: list[float] = []

        def failing() -> None:
            calls.append(self.clock.seconds())
            raise ZeroDivisionError()

        self.start(failing)
        write_file(self.path, b"{}")
        self.clock.advance(POLL_INTERVAL_SECONDS)
        self.clock.advance(DEBOUNCE_SECONDS)
        self.assertEqual(len(calls), 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        os.remove(self.path)
        self.clock.advance(POLL_INTERVAL_SECONDS)
        self.clock.advance(DEBOUNCE_SECONDS)
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_stop(self) -> None:
        """
        Stopping cancels the polling and a pending callback, leaving no
        timer; later changes are not reported.
        """
        watcher = self.start()
        write_file(self.path, b"{}")
        self.clock.advance(POLL_INTERVAL_SECONDS)
        watcher.stopService()
        self.assertEqual(watcher.mode, "stopped")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        os.remove(self.path)
        self.clock.advance(POLL_INTERVAL_SECONDS * 3)
        self.assertEqual(self.calls, [])


class InotifyTests(TestCase):
    """
    With a reactor on Linux, :obj:`FileWatcher` watches the file's directory
    with inotify and reacts without waiting for a poll.  These tests run on
    the real reactor.
    """

    if not platform.isLinux():
        skip = "inotify is only available on Linux"

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, ".credentials.json")
        self.changes: DeferredQueue[None] = DeferredQueue()
        self.count = 0

    def on_change(self) -> None:
        """
        Count a change and hand it to whoever waits for one.
        """
        self.count += 1
        self.changes.put(None)

    def start(self, path: str | None = None, poll_interval: float = 60.0) -> FileWatcher:
        """
        Start a watcher on the real reactor, stopped at the end of the test.
        A long poll interval makes sure that any reaction before it comes
        from inotify.
        """
        watcher = FileWatcher(
            path or self.path,
            self.on_change,
            clock=self.reactor,
            reactor=self.reactor,
            poll_interval=poll_interval,
        )
        watcher.startService()
        self.addCleanup(lambda: watcher.stopService() if watcher.running else None)
        return watcher

    def next_change(self) -> Deferred[None]:
        """
        Wait for the next callback, failing the test if none comes in time.
        """
        waiting = self.changes.get()
        waiting.addTimeout(EVENT_TIMEOUT_SECONDS, self.reactor)
        return waiting

    async def assert_quiet(self) -> None:
        """
        Wait a while and check that no further callback came.
        """
        count = self.count
        await deferLater(self.reactor, QUIET_SECONDS, lambda: None)
        self.assertEqual(self.count, count)

    async def test_events(self) -> None:
        """
        Creating, rewriting, replacing and deleting the file each give
        exactly one callback, at once.
        """
        watcher = self.start()
        self.assertEqual(watcher.mode, "inotify")
        for change in (
            lambda: write_file(self.path, b"{}"),
            lambda: write_file(self.path, b'{"a": 1}'),
            lambda: replace_file(self.path, b'{"b": 2}'),
            lambda: os.remove(self.path),
        ):
            count = self.count
            change()
            await self.next_change()
            await self.assert_quiet()
            self.assertEqual(self.count, count + 1)

    async def test_moved_away(self) -> None:
        """
        Moving the file away counts as a change.
        """
        write_file(self.path, b"{}")
        self.start()
        os.rename(self.path, self.path + ".bak")
        await self.next_change()

    async def test_other_files_ignored(self) -> None:
        """
        Changes to other files in the directory do not call back.
        """
        self.start()
        write_file(os.path.join(self.directory, "other.json"), b"{}")
        replace_file(os.path.join(self.directory, "settings.json"), b"{}")
        await self.assert_quiet()
        self.assertEqual(self.count, 0)

    async def test_missing_directory_polls(self) -> None:
        """
        When the directory does not exist yet, the watcher polls instead,
        and notices the file once it appears.
        """
        path = os.path.join(self.directory, "not-yet", ".credentials.json")
        watcher = self.start(path, poll_interval=0.05)
        self.assertEqual(watcher.mode, "polling")
        os.makedirs(os.path.dirname(path))
        write_file(path, b"{}")
        await self.next_change()

    async def test_directory_removed(self) -> None:
        """
        When the watched directory itself is removed, the watcher notices
        the file is gone and keeps watching by polling, so a new directory
        and file (a new login) are noticed too.
        """
        write_file(self.path, b"{}")
        watcher = self.start(poll_interval=0.05)
        shutil.rmtree(self.directory)
        await self.next_change()
        await deferLater(self.reactor, QUIET_SECONDS, lambda: None)
        self.assertEqual(watcher.mode, "polling")
        count = self.count
        self.changes = DeferredQueue()
        os.makedirs(self.directory)
        write_file(self.path, b"{}")
        await self.next_change()
        self.assertEqual(self.count, count + 1)

    async def test_directory_moved(self) -> None:
        """
        When the watched directory is moved away, the file is gone from its
        path: the watcher calls back and polls from then on.
        """
        write_file(self.path, b"{}")
        watcher = self.start(poll_interval=0.05)
        os.rename(self.directory, self.directory + ".moved")
        await self.next_change()
        self.assertEqual(watcher.mode, "polling")
        self.changes = DeferredQueue()
        os.makedirs(self.directory)
        write_file(self.path, b"{}")
        await self.next_change()

    def test_stop(self) -> None:
        """
        Stopping closes the inotify descriptor and removes it from the
        reactor.
        """
        watcher = self.start()
        notifier = watcher._notifier
        assert notifier is not None
        self.assertIn(notifier, self.reactor.getReaders())
        watcher.stopService()
        self.assertEqual(watcher.mode, "stopped")
        self.assertNotIn(notifier, self.reactor.getReaders())
        self.assertTrue(notifier.disconnected)
