# -*- test-case-name: tests.shares.test_files -*-
"""
The share charges on disk: one file per credential beside its usage file
(``<usages_path>.shares``), written atomically, so that charges survive a
restart.

Not in the usage file itself: sing-box reads that document for its own keys
and writes it back with only those, as ccm does (:obj:`ccm.accounting.document`),
so charges kept there would be lost the first time either saves it, and
the file stays exactly the reference's.

:obj:`ShareSaverService` saves every minute when something changed, and
once more when it stops.  What is saved is what was settled (charges,
where each window stands, the dollars-per-percent estimates); requests in
flight at a restart are not carried over.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ccm.files import JSONFileError, read_json_file, replace_file
from ccm.shares.ledger import ShareBook

SAVE_INTERVAL_SECONDS = 60.0
FORMAT_VERSION = 1


def shares_path(usages_path: str) -> str:
    """The share file of the credential whose usage file is ``usages_path``."""
    return usages_path + ".shares"


def read_share_windows(path: str) -> dict[str, Any]:
    """
    The ``windows`` of the share file at ``path``, as :obj:`ShareBook.snapshot`
    wrote one credential's.

    :raises JSONFileError: when the file cannot be read as JSON.
    :raises ValueError: when it is not a version 1 share file.
    """
    document = read_json_file(path)
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise ValueError("not a version 1 share file")
    windows = document.get("windows")
    if not isinstance(windows, dict):
        raise ValueError("not a version 1 share file (no windows)")
    return windows


def load_shares(book: ShareBook, paths: Mapping[str, str], now: float, log: Logger) -> None:
    """
    Restore each credential's charges from its file in ``paths`` (by tag);
    a missing file is a fresh start, an unreadable one is logged and
    ignored (it is replaced at the next save).
    """
    for tag, path in paths.items():
        try:
            book.restore(tag, read_share_windows(path), now)
        except JSONFileError as error:
            if not isinstance(error.os_error, FileNotFoundError):
                log.warn("ignoring share file {path}: {reason}", path=path, reason=error.reason)
        except ValueError as error:
            log.warn("ignoring share file {path}: {reason}", path=path, reason=str(error))


def share_document(windows: Any) -> bytes:
    """One credential's file content."""
    document = {"version": FORMAT_VERSION, "windows": windows}
    return json.dumps(document, sort_keys=True, indent=1).encode("utf-8") + b"\n"


class ShareSaverService(Service):
    """
    Save ``book``'s charges to ``paths`` (by credential tag) every
    :obj:`SAVE_INTERVAL_SECONDS` when they changed, and when stopping;
    only while ``may_save()`` (the lease of one writer among processes).
    """

    log = Logger()

    def __init__(
        self,
        book: ShareBook,
        paths: Mapping[str, str],
        clock: IReactorTime,
        may_save: Callable[[], bool] = lambda: True,
    ) -> None:
        self._book = book
        self._may_save = may_save
        self._paths = dict(paths)
        self._saved: dict[str, bytes] = {}
        self._loop = LoopingCall(self.save)
        self._loop.clock = clock

    def startService(self) -> None:
        super().startService()
        self._loop.start(SAVE_INTERVAL_SECONDS, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        self.save()
        return succeed(None)

    def save(self) -> None:
        """Write each credential's file whose content changed.  Never raises."""
        if not self._may_save():
            return
        try:
            snapshot = self._book.snapshot()
        except Exception:
            self.log.failure("cannot take the share charges")
            return
        for tag, path in self._paths.items():
            if tag not in snapshot:
                continue
            data = share_document(snapshot[tag])
            if self._saved.get(tag) == data:
                continue
            try:
                replace_file(path, data)
            except OSError as error:
                self.log.error(
                    "cannot save share charges to {path}: {error}",
                    path=path,
                    error=error.strerror or str(error),
                )
            else:
                self._saved[tag] = data
