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

Beside the ledger (``windows``), a file records under ``users`` each
configured user whose pool holds the credential: their shares and the
pool's capacity at save time (:obj:`ccm.shares.view.ShareView.entitlements`),
so that ``ccm usage`` can tell share, use and what remains without the
service.  The service reads only ``windows`` back; a file written before
``users`` existed is still version 1, read without them.
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
from ccm.shares.ledger import WINDOWS, ShareBook
from ccm.shares.standing import Entitlement, Shares

SAVE_INTERVAL_SECONDS = 60.0
FORMAT_VERSION = 1


def shares_path(usages_path: str) -> str:
    """The share file of the credential whose usage file is ``usages_path``."""
    return usages_path + ".shares"


def read_share_document(path: str) -> dict[str, Any]:
    """
    The share file at ``path``, checked to hold a version 1 ``windows``.

    :raises JSONFileError: when the file cannot be read as JSON.
    :raises ValueError: when it is not a version 1 share file.
    """
    document = read_json_file(path)
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise ValueError("not a version 1 share file")
    if not isinstance(document.get("windows"), dict):
        raise ValueError("not a version 1 share file (no windows)")
    return document


def read_share_windows(path: str) -> dict[str, Any]:
    """
    The ``windows`` of the share file at ``path``, as :obj:`ShareBook.snapshot`
    wrote one credential's.

    :raises JSONFileError: when the file cannot be read as JSON.
    :raises ValueError: when it is not a version 1 share file.
    """
    windows: dict[str, Any] = read_share_document(path)["windows"]
    return windows


def users_of(document: Mapping[str, Any]) -> dict[str, Entitlement]:
    """
    The ``users`` a share file's ``document`` records, by name; none for
    a file written before they were recorded.

    :raises ValueError: when they are not what :obj:`share_document` wrote.
    """
    try:
        return {
            str(name): Entitlement(
                float(entry["capacity"]),
                Shares(*(float(entry["share"].get(w.value, 0.0)) for w in WINDOWS)),
            )
            for name, entry in document.get("users", {}).items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"not a share file's users: {error!r}") from None


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


def share_document(windows: Any, users: Mapping[str, Entitlement] | None = None) -> bytes:
    """
    One credential's file content: its ledger and its ``users`` (left out
    when None: not known).
    """
    document: dict[str, Any] = {"version": FORMAT_VERSION, "windows": windows}
    if users is not None:
        document["users"] = {
            name: {
                "capacity": entitlement.capacity,
                "share": {
                    w.value: entitlement.shares.of(w) for w in WINDOWS if entitlement.shares.of(w) > 0
                },
            }
            for name, entitlement in users.items()
        }
    return json.dumps(document, sort_keys=True, indent=1).encode("utf-8") + b"\n"


class ShareSaverService(Service):
    """
    Save ``book``'s charges to ``paths`` (by credential tag) every
    :obj:`SAVE_INTERVAL_SECONDS` when they changed, and when stopping;
    only while ``may_save()`` (the lease of one writer among processes),
    with the ``users`` of each credential's file (by tag) as they stand.
    """

    log = Logger()

    def __init__(
        self,
        book: ShareBook,
        paths: Mapping[str, str],
        clock: IReactorTime,
        may_save: Callable[[], bool] = lambda: True,
        users: Callable[[], Mapping[str, Mapping[str, Entitlement]]] = lambda: {},
    ) -> None:
        self._book = book
        self._users = users
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
        users: Mapping[str, Mapping[str, Entitlement]] | None
        try:
            users = self._users()
        except Exception:
            # The charges matter more: saved without the users.
            self.log.failure("cannot take the users' shares for the share files")
            users = None
        for tag, path in self._paths.items():
            if tag not in snapshot:
                continue
            data = share_document(snapshot[tag], None if users is None else users.get(tag, {}))
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
