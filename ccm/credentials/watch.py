# -*- test-case-name: tests.credentials.test_watch -*-
"""
Noticing when a file is created, changed, moved or deleted.

On Linux the file's directory is watched with inotify, so changes are seen
at once; elsewhere, or when the directory does not exist yet, the file's
status is polled.  Bursts of events are debounced into one callback.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

from twisted.application.service import Service
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

if TYPE_CHECKING:
    # Imported where it is used: only Linux has it.
    from twisted.internet.inotify import INotify

POLL_INTERVAL_SECONDS = 2.0
DEBOUNCE_SECONDS = 0.1

_Signature = tuple[int, int, int, int] | None


def _signature(path: str) -> _Signature:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


class FileWatcher(Service):
    """
    Call ``on_change`` (debounced) whenever the file at ``path`` may have
    changed, including its creation and deletion.

    :param reactor: the reactor, for inotify; None to always poll.
    :param clock: time for debouncing and polling.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        on_change: Callable[[], object],
        clock: IReactorTime,
        reactor: IReactorFDSet | None = None,
        poll_interval: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        self.path = os.path.abspath(path)
        self._on_change = on_change
        self._clock = clock
        self._reactor = reactor
        self._poll_interval = poll_interval
        self._pending: IDelayedCall | None = None
        self._notifier: INotify | None = None
        self._poller: LoopingCall | None = None
        self._last_signature: _Signature = None
        self._directory_gone_mask = 0
        self._switching: IDelayedCall | None = None
        self.mode = "stopped"

    def startService(self) -> None:
        super().startService()
        self._last_signature = _signature(self.path)
        if self._reactor is not None and self._start_inotify():
            self.mode = "inotify"
        else:
            self._start_polling()
            self.mode = "polling"

    def stopService(self) -> None:
        super().stopService()
        for call in (self._pending, self._switching):
            if call is not None and call.active():
                call.cancel()
        self._pending = None
        self._switching = None
        self._close_notifier()
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        self._poller = None
        self.mode = "stopped"

    def _close_notifier(self) -> None:
        """
        Release the inotify descriptor now, rather than when the reactor
        next gets round to it, so no descriptor outlives the watcher.
        """
        notifier, self._notifier = self._notifier, None
        # After its directory is deleted, INotify closes itself.
        if notifier is not None and not (notifier.disconnecting or notifier.disconnected):
            notifier.stopReading()
            notifier.connectionLost(Failure(ConnectionDone()))

    def _start_inotify(self) -> bool:
        try:
            from twisted.internet import inotify
        except ImportError:
            return False
        directory = os.path.dirname(self.path)
        mask = (
            inotify.IN_CREATE
            | inotify.IN_CLOSE_WRITE
            | inotify.IN_MODIFY
            | inotify.IN_MOVED_TO
            | inotify.IN_MOVED_FROM
            | inotify.IN_DELETE
            | inotify.IN_ATTRIB
            | inotify.IN_MOVE_SELF
        )
        self._directory_gone_mask = inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF
        try:
            notifier = inotify.INotify(reactor=self._reactor)
        except Exception:
            return False
        try:
            notifier.startReading()
            notifier.watch(FilePath(directory), mask=mask, callbacks=[self._inotify_event])
        except Exception as error:
            notifier.loseConnection()
            self.log.info(
                "cannot watch {directory} with inotify ({error}); polling {path} instead",
                directory=directory,
                error=str(error) or type(error).__name__,
                path=self.path,
            )
            return False
        self._notifier = notifier
        return True

    def _inotify_event(self, ignored: object, filepath: FilePath[bytes], mask: int) -> None:
        # Twisted reports paths in bytes mode.
        path = os.fsdecode(filepath.path)
        if path == self.path:
            self._schedule()
        elif mask & self._directory_gone_mask and path == os.path.dirname(self.path):
            # The directory itself was removed or moved: inotify cannot see
            # the file any more.  Switch to polling, outside of the
            # notifier's own event handling.
            if self._switching is None:
                self._switching = self._clock.callLater(0, self._switch_to_polling)

    def _switch_to_polling(self) -> None:
        self._switching = None
        self._close_notifier()
        self.log.info(
            "{directory} was removed or moved; polling {path} instead",
            directory=os.path.dirname(self.path),
            path=self.path,
        )
        self._last_signature = _signature(self.path)
        self._start_polling()
        self.mode = "polling"
        self._schedule()

    def _start_polling(self) -> None:
        self._poller = LoopingCall(self._poll)
        self._poller.clock = self._clock
        self._poller.start(self._poll_interval, now=False)

    def _poll(self) -> None:
        signature = _signature(self.path)
        if signature != self._last_signature:
            self._last_signature = signature
            self._schedule()

    def _schedule(self) -> None:
        if self._pending is not None and self._pending.active():
            self._pending.reset(DEBOUNCE_SECONDS)
            return
        self._pending = self._clock.callLater(DEBOUNCE_SECONDS, self._fire)

    def _fire(self) -> None:
        self._pending = None
        try:
            self._on_change()
        except Exception:
            self.log.failure("handling a change of {path} failed", path=self.path)
