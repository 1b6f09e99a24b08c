# -*- test-case-name: tests.accounting.test_usagefile -*-
"""
The usages file on disk, and the service that saves it soon after the first
request, then every minute and at shutdown.

Unlike the reference, a file that cannot be read is moved aside instead of
being overwritten by an empty one, and the file is replaced atomically.
"""

from __future__ import annotations

import datetime
import errno
import math
import os

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ccm.accounting.book import UsageBook
from ccm.accounting.counters import UsageCounters, UsageRecord, UsageSnapshot
from ccm.accounting.document import UsageFileError, from_document, serialize
from ccm.files import JSONFileError, read_json_file, replace_file

SAVE_INTERVAL_SECONDS = 60.0


def usage_path_problem(path: str) -> str | None:
    """
    Why a usage file could never be saved at ``path``, or ``None`` when it
    can: its directory must exist and be writable, since every save writes
    a temporary file there and renames it over the file.  Checked at
    start-up, because a save that fails is only noticed at shutdown, when
    the usage is lost.
    """
    target = os.path.realpath(path)
    if os.path.isdir(target):
        return f"{path} is a directory; name a file in it, such as {os.path.join(path, 'usages.json')}"
    directory = os.path.dirname(target)
    if os.path.exists(directory) and not os.path.isdir(directory):
        return f"cannot save usage to {path}: {directory} is not a directory; fix the path"
    if not os.path.isdir(directory):
        return (
            f"cannot save usage to {path}: directory {directory} does not exist; create "
            "it (writable by the user ccm runs as) or fix the path"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        return (
            f"cannot save usage to {path}: directory {directory} is not writable by "
            "the user ccm runs as; make it writable or choose another path"
        )
    return None


class UsageFile:
    """
    The usages file on disk.

    :param path: where it is.
    :param clock: the clock of the books it loads and of the names of
        files moved aside.
    :param tz: the time zone of the timestamps and week keys it writes; the
        local one when ``None``, like the reference.
    """

    log = Logger()

    def __init__(self, path: str, clock: IReactorTime, tz: datetime.tzinfo | None = None) -> None:
        self.path = os.path.abspath(path)
        self._clock = clock
        self._tz = tz
        self._unsafe_to_replace = False

    def load(self) -> UsageBook:
        """
        The book the file holds.  A missing file gives an empty book.  A
        file that cannot be read, is not JSON or does not have the usages
        structure is renamed aside (to ``<path>.corrupt-<UTC time>``), with a
        warning naming both paths, and an empty book is returned: it is
        never overwritten.  If it cannot even be moved aside, an error is
        logged and :obj:`save` refuses to replace it.
        """
        try:
            loaded = from_document(read_json_file(self.path))
        except JSONFileError as error:
            if isinstance(error.os_error, FileNotFoundError):
                return UsageBook(self._clock)
            if error.os_error is not None:
                reason = f"cannot read it: {error.os_error.strerror or error.os_error}"
            else:
                reason = f"it {error.reason}"
        except UsageFileError as error:
            reason = f"it does not hold usage statistics ({error})"
        else:
            return UsageBook(self._clock, loaded)
        self._move_aside(reason)
        return UsageBook(self._clock)

    def _move_aside(self, reason: str) -> None:
        stamp = datetime.datetime.fromtimestamp(
            math.floor(self._clock.seconds()), datetime.timezone.utc
        ).strftime("%Y%m%dT%H%M%SZ")
        base = f"{self.path}.corrupt-{stamp}"
        aside = base
        suffix = 0
        while os.path.lexists(aside):
            suffix += 1
            aside = f"{base}-{suffix}"
        try:
            os.rename(self.path, aside)
        except OSError as error:
            self._unsafe_to_replace = True
            self.log.error(
                "cannot load usage file {path}: {reason}; it could not be moved aside "
                "({error}), so it will not be replaced: fix or remove it and restart",
                path=self.path,
                reason=reason,
                error=error.strerror or str(error),
            )
            return
        self.log.warn(
            "cannot load usage file {path}: {reason}; moved it to {aside} and "
            "started counting from zero",
            path=self.path,
            reason=reason,
            aside=aside,
        )

    def save(self, snapshot: UsageSnapshot) -> None:
        """
        Write the snapshot, replacing the file atomically (temporary file in
        the same directory, fsync, rename).  An existing file's mode is
        kept, a new file gets 0600.

        :raises OSError: when the file cannot be written; it is then
            unchanged and no temporary file is left.
        """
        if self._unsafe_to_replace:
            raise OSError(
                errno.EEXIST,
                "refusing to replace a usage file that could not be loaded or moved aside",
                self.path,
            )
        replace_file(self.path, serialize(snapshot, self._tz))


#: How long after the first usage of a quiet spell (since start-up, or
#: after a whole save interval without a save) that usage is saved: soon,
#: so the file exists right after the first request, yet late enough to
#: take the other requests of the same burst along.
FIRST_SAVE_DELAY_SECONDS = 5.0


class UsageSaverService(TimerService):
    """
    The recorder of one usages file: counts each response in its counters
    and saves them to the file every ``interval`` seconds when something was
    recorded, and once more at shutdown.  The first usage recorded after
    start-up, or after an interval without a save, is saved
    :obj:`FIRST_SAVE_DELAY_SECONDS` later instead of waiting for the next tick.
    A failed save is logged and retried at the next tick.
    """

    log = Logger()

    def __init__(
        self,
        file: UsageFile,
        counters: UsageCounters,
        clock: IReactorTime,
        interval: float = SAVE_INTERVAL_SECONDS,
    ) -> None:
        """
        :param file: where the counters are saved.
        :param counters: the counters, at revision 0 when they hold only
            what the file held (nothing to save yet).
        :param clock: drives the saves.
        :param interval: seconds between saves.
        """
        super().__init__(interval, self._tick)
        # TimerService's loop runs on self.clock; ours is never None.
        self.clock = self._clock = clock
        self._file = file
        self._counters = counters
        self._saved_revision = 0
        self._last_save: float | None = None
        self._early_save: IDelayedCall | None = None

    @property
    def counters(self) -> UsageCounters:
        """
        The counters this service saves, for those that show them.
        """
        return self._counters

    @property
    def unsaved(self) -> bool:
        """
        Whether usage was recorded since the last successful save.
        """
        return self._counters.snapshot().revision != self._saved_revision

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[None] = super().stopService()
        if self._early_save is not None:
            self._early_save.cancel()
            self._early_save = None
        self._save()
        return stopped

    def record(self, record: UsageRecord) -> None:
        """
        Count a response's usage.  Usage that arrives once the service has
        stopped (streams cut at shutdown) is saved at once, so it is not
        lost.
        """
        self._counters.record(record)
        if not self.running:
            self._save()
        elif self._early_save is None and (
            self._last_save is None or self._clock.seconds() - self._last_save >= self.step
        ):
            self._early_save = self._clock.callLater(FIRST_SAVE_DELAY_SECONDS, self._save_early)

    def _save_early(self) -> None:
        self._early_save = None
        self._tick()

    def _tick(self) -> None:
        self._save(only_if_changed=True)

    def _save(self, only_if_changed: bool = False) -> None:
        """
        Write a snapshot of the counters, unless ``only_if_changed`` and
        nothing was recorded since the last successful save.  Never raises.
        """
        try:
            snapshot = self._counters.snapshot()
            if only_if_changed and snapshot.revision == self._saved_revision:
                return
            self._last_save = self._clock.seconds()
            self._file.save(snapshot)
        except OSError as error:
            self.log.error(
                "cannot save usage to {path}: {error}",
                path=self._file.path,
                error=error.strerror or str(error),
            )
        except Exception:
            self.log.failure("cannot save usage to {path}", path=self._file.path)
        else:
            self._saved_revision = snapshot.revision
