"""
Tests for :obj:`ccm.shares.files`: the charges saved beside each usage
file, atomically, and read back at start.
"""

from __future__ import annotations

import json
import os

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from ccm.pool.figures import Window
from ccm.shares.files import (
    SAVE_INTERVAL_SECONDS,
    ShareSaverService,
    load_shares,
    shares_path,
)
from ccm.shares.ledger import FIVE_HOUR, ShareBook


def charged() -> ShareBook:
    """A book in which alice was charged 4 units on ``a``."""
    book = ShareBook()
    book.observe("a", {FIVE_HOUR: Window(10, 5000)}, 1.0, 0)
    key = book.begin("a", "alice", 0)
    book.finish(key, 1.0, 10)
    book.observe("a", {FIVE_HOUR: Window(14, 5000)}, 1.0, 20)
    return book


class ShareFileTests(SynchronousTestCase):
    """
    :obj:`ShareSaverService` and :obj:`load_shares`.
    """

    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = shares_path(os.path.join(directory, "usages.json"))
        self.clock = Clock()

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
        log = Logger(observer=events.append)
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
        saver.log = Logger(observer=events.append)
        saver.startService()
        self.clock.advance(SAVE_INTERVAL_SECONDS)
        self.successResultOf(saver.stopService())
        self.assertEqual([e["path"] for e in events], [target, target])
        self.assertTrue(all("cannot save share charges" in e["log_format"] for e in events))
