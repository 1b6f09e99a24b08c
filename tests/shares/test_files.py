"""
Tests for :obj:`ccm.shares.files`: the charges saved beside each usage
file, atomically, and read back at start.
"""

from __future__ import annotations

import json
import os
from typing import cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger
from twisted.trial.unittest import SynchronousTestCase

from ccm.pool.figures import Window
from ccm.shares.files import (
    SAVE_INTERVAL_SECONDS,
    ShareSaverService,
    load_shares,
    read_share_document,
    share_document,
    shares_path,
    users_of,
)
from ccm.shares.ledger import FIVE_HOUR, ShareBook
from ccm.shares.standing import Entitlement, Shares


def charged() -> ShareBook:
    """A book in which alice was charged 4 units on ``a``."""
    book = ShareBook()
    book.observe("a", {FIVE_HOUR: Window(10, 5000)}, 1.0, 0)
    key = book.begin("a", "alice", 0)
    book.finish(key, 1.0, 10)
    book.observe("a", {FIVE_HOUR: Window(14, 5000)}, 1.0, 20)
    return book


class _ShareFileCase(SynchronousTestCase):
    """
    A test with a share file path beside a usage file in a fresh
    directory, and a clock.
    """

    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = shares_path(os.path.join(directory, "usages.json"))
        self.clock = Clock()


class ShareFileTests(_ShareFileCase):
    """
    :obj:`ShareSaverService` and :obj:`load_shares`.
    """

    def test_path(self) -> None:
        """
        The share file sits beside the usage file, named after it.
        """
        self.assertEqual(shares_path("/var/lib/ccm/usages.json"), "/var/lib/ccm/usages.json.shares")

    def test_saved_every_minute_and_at_stop(self) -> None:
        """
        Nothing is written before the first minute; then the charges are;
        a charge after that is written when the service stops, and no
        timer is left behind.
        """
        book = charged()
        saver = ShareSaverService(book, {"a": self.path}, self.clock)
        saver.startService()
        self.assertFalse(os.path.exists(self.path))
        self.clock.advance(SAVE_INTERVAL_SECONDS)
        with open(self.path) as handle:
            saved = json.load(handle)
        self.assertEqual(saved["version"], 1)
        self.assertEqual(saved["windows"]["5-hour"]["charges"], {"alice": 4.0})
        key = book.begin("a", "bob", 30)
        book.finish(key, 1.0, 40)
        book.observe("a", {FIVE_HOUR: Window(15, 5000)}, 1.0, 50)
        self.successResultOf(saver.stopService())
        restored = ShareBook()
        load_shares(restored, {"a": self.path}, 60, Logger())
        self.assertEqual(restored.charged("bob", "a", FIVE_HOUR, 60), 1.0)
        self.assertEqual(restored.charged("alice", "a", FIVE_HOUR, 60), 4.0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_missing_and_bad_files(self) -> None:
        """
        A missing file is a fresh start, silently; a file that is not JSON
        or not a share file is ignored with a warning naming it.
        """
        events: list[dict] = []
        log = Logger(observer=cast(ILogObserver, events.append))
        book = ShareBook()
        load_shares(book, {"a": self.path}, 0, log)
        self.assertEqual(events, [])
        for content in ("not json", '{"version": 2}', '{"version": 1, "windows": {}}'):
            with open(self.path, "w") as handle:
                handle.write(content)
            load_shares(book, {"a": self.path}, 0, log)
        self.assertEqual(len(events), 3)
        self.assertTrue(all(event["path"] == self.path for event in events))
        self.assertEqual(book.used("alice", "a", FIVE_HOUR, 1), 0.0)

    def test_unwritable(self) -> None:
        """
        A save that fails is logged, and the service goes on.
        """
        book = charged()
        target = os.path.join(self.path, "no", "dir")
        saver = ShareSaverService(book, {"a": target}, self.clock)
        events: list[dict] = []
        saver.log = Logger(observer=cast(ILogObserver, events.append))
        saver.startService()
        self.clock.advance(SAVE_INTERVAL_SECONDS)
        self.successResultOf(saver.stopService())
        self.assertEqual([e["path"] for e in events], [target, target])
        self.assertTrue(all("cannot save share charges" in e["log_format"] for e in events))


class UsersTests(_ShareFileCase):
    """
    The ``users`` a share file records beside the ledger: each user's
    shares and their pool's capacity, for ``ccm usage``.
    """

    def read(self) -> dict:
        with open(self.path) as handle:
            document: dict = json.load(handle)
        return document

    def test_saved_with_users(self) -> None:
        """
        Each credential's file gets the users its pool serves, as they
        stand at the save: a share only for the windows that have one;
        a reload that changes them is saved at the next minute.
        """
        users = {"a": {"alice": Entitlement(600.0, Shares(five_hour=40)), "bob": Entitlement(600.0)}}
        saver = ShareSaverService(charged(), {"a": self.path}, self.clock, users=lambda: users)
        saver.startService()
        self.clock.advance(SAVE_INTERVAL_SECONDS)
        self.assertEqual(
            self.read()["users"],
            {
                "alice": {"capacity": 600.0, "share": {"5-hour": 40}},
                "bob": {"capacity": 600.0, "share": {}},
            },
        )
        users = {"a": {"alice": Entitlement(600.0, Shares(weekly=25))}}
        self.clock.advance(SAVE_INTERVAL_SECONDS)
        self.assertEqual(self.read()["users"], {"alice": {"capacity": 600.0, "share": {"weekly": 25}}})
        self.successResultOf(saver.stopService())

    def test_read_back(self) -> None:
        """
        :obj:`users_of` gives back what :obj:`share_document` wrote.
        """
        users = {"alice": Entitlement(600.0, Shares(40, 20)), "bob": Entitlement(100.0)}
        with open(self.path, "wb") as handle:
            handle.write(share_document(charged().snapshot()["a"], users))
        self.assertEqual(users_of(read_share_document(self.path)), users)

    def test_older_file(self) -> None:
        """
        A file saved before users were recorded has none, and its charges
        load as before.
        """
        with open(self.path, "w") as handle:
            json.dump({"version": 1, "windows": charged().snapshot()["a"]}, handle)
        self.assertEqual(users_of(read_share_document(self.path)), {})
        book = ShareBook()
        load_shares(book, {"a": self.path}, 30, Logger())
        self.assertEqual(book.charged("alice", "a", FIVE_HOUR, 30), 4.0)

    def test_broken_users(self) -> None:
        """
        Users that are not what the service writes are a ``ValueError`` for
        the report; the service, which reads only the ledger, still loads
        the charges.
        """
        with open(self.path, "w") as handle:
            json.dump(
                {"version": 1, "windows": charged().snapshot()["a"], "users": {"alice": {"share": {}}}},
                handle,
            )
        with self.assertRaises(ValueError) as raised:
            users_of(read_share_document(self.path))
        self.assertIn("not a share file's users", str(raised.exception))
        events: list[dict] = []
        book = ShareBook()
        load_shares(book, {"a": self.path}, 30, Logger(observer=cast(ILogObserver, events.append)))
        self.assertEqual((events, book.charged("alice", "a", FIVE_HOUR, 30)), ([], 4.0))

    def test_users_unknown(self) -> None:
        """
        When the users cannot be told, the charges are saved all the same,
        without ``users`` (read as a file that records none), and the
        failure is logged.
        """

        def broken() -> dict:
            raise KeyError("alice")

        saver = ShareSaverService(charged(), {"a": self.path}, self.clock, users=broken)
        events: list[dict] = []
        saver.log = Logger(observer=cast(ILogObserver, events.append))
        saver.save()
        document = self.read()
        self.assertNotIn("users", document)
        self.assertEqual(document["windows"]["5-hour"]["charges"], {"alice": 4.0})
        self.assertEqual(users_of(document), {})
        self.assertEqual(len(events), 1)
        self.assertIn("cannot take the users' shares", events[0]["log_format"])
        self.flushLoggedErrors(KeyError)
