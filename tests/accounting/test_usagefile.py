"""
Tests for :obj:`ccm.accounting.usagefile`: loading usages files (sing-box's
included, corrupt ones moved aside), atomic saves, and the saver service.
"""

from __future__ import annotations

import json
import os
import stat

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting.book import UsageBook
from ccm.accounting.counters import Combination, UsageSnapshot
from ccm.accounting.document import serialize
from ccm.accounting.usagefile import FIRST_SAVE_DELAY_SECONDS, UsageFile, UsageSaverService
from tests.accounting.samples import EXPECTED_EMPTY_BOOK, EXPECTED_SMALL_BOOK, small_book
from tests.fixtures import (
    NOW,
    OPUS,
    PREMIUM,
    STANDARD,
    UTC_PLUS_8,
    WEEK_1,
    WEEK_1_KEY,
    clock_at,
    counts,
    logged_events,
    record,
    usage_record,
)


def log_text(events: EventLoggingObserver) -> list[str]:
    """
    The formatted text of the captured log events.
    """
    return [formatEvent(event) for event in events]


# As sing-box writes it (Go's MarshalIndent), with costs it computed; the
# first total's cost_usd and all the aggregates are deliberately wrong, to
# show that costs are recomputed rather than read.  The second combination
# has no week and no by_user.
SINGBOX_SAMPLE = """{
  "last_updated": "2026-03-14T21:15:13.123456789+08:00",
  "costs": {
    "total_usd": 99.99,
    "by_user": {
      "alice": 12.34
    },
    "by_week": {
      "2026-03-09 08:00:00 UTC+8": 12.34
    },
    "by_user_and_week": {
      "alice": {
        "2026-03-09 08:00:00 UTC+8": 12.34
      }
    }
  },
  "combinations": [
    {
      "model": "claude-opus-4-8",
      "context_window": 200000,
      "week_start_unix": 1773014400,
      "total": {
        "request_count": 4,
        "messages_count": 96,
        "input_tokens": 10000,
        "output_tokens": 20000,
        "cache_read_input_tokens": 400000,
        "cache_creation_input_tokens": 11000,
        "cache_creation_5m_input_tokens": 8000,
        "cache_creation_1h_input_tokens": 3000,
        "cost_usd": 12.34
      },
      "by_user": {
        "alice": {
          "request_count": 4,
          "messages_count": 96,
          "input_tokens": 10000,
          "output_tokens": 20000,
          "cache_read_input_tokens": 400000,
          "cache_creation_input_tokens": 11000,
          "cache_creation_5m_input_tokens": 8000,
          "cache_creation_1h_input_tokens": 3000,
          "cost_usd": 0.83
        }
      }
    },
    {
      "model": "claude-sonnet-4-5-20250929",
      "context_window": 1000000,
      "total": {
        "request_count": 2,
        "messages_count": 10,
        "input_tokens": 300000,
        "output_tokens": 20000,
        "cache_read_input_tokens": 200000,
        "cache_creation_input_tokens": 40000,
        "cost_usd": 2.67
      }
    }
  ]
}"""


class SingBoxFileTests(SynchronousTestCase):
    """
    A usages file written by sing-box loads and keeps counting.
    """

    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = os.path.join(directory, "usages.json")
        with open(self.path, "w") as handle:
            handle.write(SINGBOX_SAMPLE)
        self.clock = clock_at(NOW + 3600)
        self.file = UsageFile(self.path, self.clock, UTC_PLUS_8)

    def test_loads(self) -> None:
        """
        The combinations and ``last_updated`` are read; the missing week is
        0 and the missing ``by_user`` empty.
        """
        book = self.file.load()
        self.assertEqual(
            book.combinations,
            [
                Combination(
                    OPUS, STANDARD, WEEK_1,
                    counts(4, 96, 10000, 20000, 400000, 11000, 8000, 3000),
                    {"alice": counts(4, 96, 10000, 20000, 400000, 11000, 8000, 3000)},
                ),
                Combination(
                    "claude-sonnet-4-5-20250929", PREMIUM, 0,
                    counts(2, 10, 300000, 20000, 200000, 40000, 0, 0),
                    {},
                ),
            ],
        )
        # 2026-03-14T13:15:13.123456789Z, to the precision of a float.
        assert book.last_updated is not None
        self.assertAlmostEqual(book.last_updated, 1_773_494_113.123456789, places=6)
        self.assertEqual(book.snapshot().revision, 0)
        self.assertEqual(os.listdir(os.path.dirname(self.path)), ["usages.json"])

    def test_costs_recomputed(self) -> None:
        """
        Saving the loaded file writes the costs computed from the tokens,
        not the ones in the file.
        """
        self.file.save(self.file.load().snapshot())
        with open(self.path) as handle:
            document = json.load(handle)
        # Opus 4.8: 830000 / 1e6 = 0.83 (see CostTests.test_opus_with_cache_lifetimes).
        # Sonnet 4.5 at 1M, no split, writes at the 5-minute long-context rate:
        # 300000*6 + 20000*22.5 + 200000*0.6 + 40000*7.5
        # = 1800000 + 450000 + 120000 + 300000 = 2670000 -> 2.67
        self.assertEqual(document["combinations"][0]["total"]["cost_usd"], 0.83)
        self.assertEqual(document["combinations"][1]["total"]["cost_usd"], 2.67)
        self.assertEqual(document["combinations"][1]["by_user"], {})
        self.assertNotIn("week_start_unix", document["combinations"][1])
        self.assertEqual(
            document["costs"],
            {
                "total_usd": 3.5,
                "by_user": {"alice": 0.83},
                "by_week": {WEEK_1_KEY: 0.83},
                "by_user_and_week": {"alice": {WEEK_1_KEY: 0.83}},
            },
        )
        # Written back to the nanosecond, although a float cannot hold it.
        self.assertEqual(document["last_updated"], "2026-03-14T21:15:13.123456789+08:00")

    def test_keeps_counting(self) -> None:
        """
        Usage recorded after loading the sing-box file adds to its
        combinations and is saved with them.
        """
        book = self.file.load()
        record(book, user="bob", messages=2, input_tokens=5, output_tokens=6)
        record(book, model="claude-sonnet-4-5-20250929", context_window=PREMIUM, week=0, user="alice",
               input_tokens=1, output_tokens=1)
        self.file.save(book.snapshot())
        with open(self.path) as handle:
            document = json.load(handle)
        [opus, sonnet] = document["combinations"]
        self.assertEqual(
            (opus["total"]["request_count"], opus["total"]["messages_count"], opus["total"]["input_tokens"]),
            (5, 98, 10005),
        )
        self.assertEqual(sorted(opus["by_user"]), ["alice", "bob"])
        self.assertEqual(opus["by_user"]["bob"]["input_tokens"], 5)
        self.assertEqual(sonnet["total"]["request_count"], 3)
        self.assertEqual(sonnet["by_user"]["alice"]["request_count"], 1)
        self.assertEqual(document["last_updated"], "2026-03-14T22:15:13.25+08:00")


class SingBoxExactTests(SynchronousTestCase):
    """
    A sing-box file whose costs are current is written back unchanged.
    """

    def test_same_bytes(self) -> None:
        """
        Loading and saving a file as sing-box writes it, with correct
        costs and ``by_user`` present, reproduces it byte for byte,
        ``last_updated`` nanoseconds included.
        """
        current = (
            SINGBOX_SAMPLE.replace("99.99", "3.5")
            .replace("12.34", "0.83")
            .replace('"cost_usd": 2.67\n      }\n', '"cost_usd": 2.67\n      },\n      "by_user": {}\n')
        )
        self.assertIn('"by_user": {}', current)
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "usages.json")
        with open(path, "w") as handle:
            handle.write(current)
        usage_file = UsageFile(path, clock_at(), UTC_PLUS_8)
        usage_file.save(usage_file.load().snapshot())
        with open(path) as handle:
            self.assertEqual(handle.read(), current)


class UsageFileTestCase(SynchronousTestCase):
    """
    A usage file in a fresh directory, with log capture.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "usages.json")
        self.clock = clock_at()
        self.file = UsageFile(self.path, self.clock, UTC_PLUS_8)
        self.events = logged_events(self)

    def write(self, data: bytes, path: str | None = None) -> None:
        """
        Put ``data`` in the usage file (or at ``path``).
        """
        with open(path or self.path, "wb") as handle:
            handle.write(data)

    def read(self, path: str | None = None) -> bytes:
        """
        The bytes of the usage file (or of ``path``).
        """
        with open(path or self.path, "rb") as handle:
            return handle.read()


# The name a broken file is moved to at NOW (2026-03-14 13:15:13 UTC).
ASIDE_SUFFIX = ".corrupt-20260314T131513Z"


class LoadTests(UsageFileTestCase):
    """
    :obj:`UsageFile.load` reads the book, and moves a broken file aside instead
    of ever overwriting it.
    """

    def assert_moved_aside(self, book: UsageBook, aside: str, reason: str) -> None:
        """
        The book is empty, the usage file is gone, a warning names both
        paths and the reason.
        """
        self.assertEqual((book.combinations, book.last_updated, book.snapshot().revision), ([], None, 0))
        self.assertFalse(os.path.lexists(self.path))
        self.assertTrue(os.path.lexists(aside))
        warnings = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        text = formatEvent(warnings[0])
        self.assertIn(self.path, text)
        self.assertIn(aside, text)
        self.assertIn(reason, text)

    def test_missing(self) -> None:
        """
        A missing file is an empty book, not an error, and nothing is
        created or logged.
        """
        book = self.file.load()
        self.assertEqual((book.combinations, book.last_updated, book.snapshot().revision), ([], None, 0))
        self.assertEqual(os.listdir(self.directory), [])
        self.assertEqual(len(self.events), 0)

    def test_loads_saved(self) -> None:
        """
        A file this module saved loads back as the same book.
        """
        book = small_book(self.clock)
        self.file.save(book.snapshot())
        loaded = self.file.load()
        self.assertEqual(loaded.combinations, book.combinations)
        self.assertEqual(loaded.last_updated, NOW)

    def test_not_json(self) -> None:
        """
        A file that is not JSON is renamed aside with its bytes intact.
        """
        self.write(b'{"combinations": [')
        book = self.file.load()
        aside = self.path + ASIDE_SUFFIX
        self.assert_moved_aside(book, aside, "not valid JSON")
        self.assertEqual(self.read(aside), b'{"combinations": [')

    def test_not_utf8(self) -> None:
        """
        A file that is not UTF-8 text is moved aside too.
        """
        self.write(b"\xff\xfe\x00{")
        book = self.file.load()
        self.assert_moved_aside(book, self.path + ASIDE_SUFFIX, "usages.json")
        self.assertEqual(self.read(self.path + ASIDE_SUFFIX), b"\xff\xfe\x00{")

    def test_deeply_nested(self) -> None:
        """
        JSON nested too deeply for the parser is moved aside, not a crash.
        """
        self.write(b"[" * 200000)
        book = self.file.load()
        self.assert_moved_aside(book, self.path + ASIDE_SUFFIX, "not valid JSON")

    def test_wrong_structure(self) -> None:
        """
        Valid JSON that is not a usages document is moved aside; the
        warning says where the structure is wrong.
        """
        data = b'{"combinations": [{"model": "m", "total": {"input_tokens": "many"}}]}'
        self.write(data)
        book = self.file.load()
        self.assert_moved_aside(book, self.path + ASIDE_SUFFIX, "combinations[0].total.input_tokens")
        self.assertEqual(self.read(self.path + ASIDE_SUFFIX), data)

    def test_configuration_never_overwritten(self) -> None:
        """
        A ``usages_path`` pointing at a JSON object that is no usages file,
        such as ccm's configuration, is moved aside intact rather than
        loaded as an empty book and overwritten by the next save.
        """
        data = b'{"listen_port": 8080, "users": []}'
        self.write(data)
        book = self.file.load()
        self.assert_moved_aside(book, self.path + ASIDE_SUFFIX, "it looks like a ccm configuration")
        self.assertEqual(self.read(self.path + ASIDE_SUFFIX), data)

    def test_unreadable(self) -> None:
        """
        Something at the path that cannot be read as a file (a directory)
        is moved aside with its contents.
        """
        os.makedirs(os.path.join(self.path, "inside"))
        book = self.file.load()
        aside = self.path + ASIDE_SUFFIX
        self.assert_moved_aside(book, aside, "cannot read it")
        self.assertEqual(os.listdir(aside), ["inside"])

    def test_name_taken(self) -> None:
        """
        When the aside name is taken, ``-1``, ``-2``… are added; nothing
        existing is overwritten.
        """
        base = self.path + ASIDE_SUFFIX
        self.write(b"first", base)
        self.write(b"second", base + "-1")
        self.write(b"broken")
        book = self.file.load()
        self.assert_moved_aside(book, base + "-2", "not valid JSON")
        self.assertEqual(
            (self.read(base), self.read(base + "-1"), self.read(base + "-2")),
            (b"first", b"second", b"broken"),
        )

    def test_then_saved_fresh(self) -> None:
        """
        After a broken file was moved aside, saving writes a new file and
        leaves the moved one alone.
        """
        self.write(b"broken")
        book = self.file.load()
        record(book, output_tokens=1)
        self.file.save(book.snapshot())
        self.assertEqual(self.read(), serialize(book.snapshot(), UTC_PLUS_8))
        self.assertEqual(self.read(self.path + ASIDE_SUFFIX), b"broken")

    def test_cannot_move_aside(self) -> None:
        """
        When the broken file cannot even be renamed, an error is logged,
        the load gives an empty book, and saving refuses to replace it.
        """
        def failing_rename(source: str, destination: str) -> None:
            raise PermissionError(13, "Permission denied", source)

        self.patch(os, "rename", failing_rename)
        self.write(b"broken")
        book = self.file.load()
        self.assertEqual(book.combinations, [])
        errors = [formatEvent(e) for e in self.events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn(self.path, errors[0])
        self.assertIn("Permission denied", errors[0])
        record(book, output_tokens=1)
        snapshot = book.snapshot()
        error = self.assertRaises(OSError, self.file.save, snapshot)
        self.assertIn("refusing to replace", str(error))
        self.assertEqual(book.snapshot(), snapshot)
        self.assertEqual(self.read(), b"broken")


class SaveTests(UsageFileTestCase):
    """
    :obj:`UsageFile.save` replaces the file atomically.
    """

    def test_writes_serialized_book(self) -> None:
        """
        The file holds the snapshot's serialisation in the file's time
        zone, nothing else is left in the directory, and the book is left
        as it was (the saver, not the file, knows what was saved).
        """
        book = small_book(self.clock)
        snapshot = book.snapshot()
        self.file.save(snapshot)
        self.assertEqual(self.read(), EXPECTED_SMALL_BOOK.encode())
        self.assertEqual(os.listdir(self.directory), ["usages.json"])
        self.assertEqual(book.snapshot(), snapshot)

    def test_new_file_mode(self) -> None:
        """
        A new file is readable by its owner only (0600), whatever the umask.
        """
        previous = os.umask(0)
        self.addCleanup(os.umask, previous)
        self.file.save(UsageBook(self.clock).snapshot())
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_existing_mode_kept(self) -> None:
        """
        Replacing a file keeps its mode.
        """
        self.write(b"{}")
        os.chmod(self.path, 0o640)
        self.file.save(small_book(self.clock).snapshot())
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual(self.read(), EXPECTED_SMALL_BOOK.encode())

    def test_through_symbolic_link(self) -> None:
        """
        A usage path that is a symbolic link stays one; the file it points
        to is replaced.
        """
        target = os.path.join(self.directory, "real.json")
        self.write(b"{}", target)
        os.symlink("real.json", self.path)
        self.file.save(small_book(self.clock).snapshot())
        self.assertTrue(os.path.islink(self.path))
        self.assertEqual(self.read(target), EXPECTED_SMALL_BOOK.encode())

    def test_directory_gone(self) -> None:
        """
        When the directory has disappeared, saving raises :obj:`OSError`,
        creates nothing and leaves the book as it was.
        """
        book = small_book(self.clock)
        snapshot = book.snapshot()
        os.rmdir(self.directory)
        self.assertRaises(OSError, self.file.save, snapshot)
        self.assertFalse(os.path.exists(self.directory))
        self.assertEqual(book.snapshot(), snapshot)

    def test_rename_fails(self) -> None:
        """
        When the new file cannot be renamed into place (the path is a
        non-empty directory), saving raises, the temporary file is removed
        and the path is untouched.
        """
        os.makedirs(os.path.join(self.path, "inside"))
        book = small_book(self.clock)
        snapshot = book.snapshot()
        self.assertRaises(OSError, self.file.save, snapshot)
        self.assertEqual(os.listdir(self.directory), ["usages.json"])
        self.assertEqual(os.listdir(self.path), ["inside"])
        self.assertEqual(book.snapshot(), snapshot)

    def test_relative_path(self) -> None:
        """
        The file's path is made absolute, so log messages name it fully.
        """
        self.assertEqual(UsageFile("usages.json", self.clock).path, os.path.abspath("usages.json"))


class UsageSaverServiceTests(UsageFileTestCase):
    """
    :obj:`UsageSaverService` saves every minute when something changed and
    once more at shutdown.
    """

    def setUp(self) -> None:
        super().setUp()
        self.book = UsageBook(self.clock)
        self.service = UsageSaverService(self.file, self.book, self.clock)

    def test_saves_each_minute_when_changed(self) -> None:
        """
        Nothing is written before the first 60 s; a changed book is written
        at the tick; an unchanged one is not rewritten.
        """
        self.service.startService()
        record(self.book, output_tokens=1)
        self.clock.advance(59)
        self.assertFalse(os.path.exists(self.path))
        self.clock.advance(1)
        self.assertEqual(self.read(), serialize(self.book.snapshot(), UTC_PLUS_8))
        self.assertFalse(self.service.unsaved)
        os.unlink(self.path)
        self.clock.advance(60)
        self.assertFalse(os.path.exists(self.path))
        record(self.book, output_tokens=1)
        self.clock.advance(60)
        self.assertEqual(json.loads(self.read())["combinations"][0]["total"]["request_count"], 2)
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_record_after_stop_saved_at_once(self) -> None:
        """
        Usage recorded through the service while it runs is not written at
        once; usage recorded after it stopped (a stream cut at shutdown) is.
        """
        self.service.startService()
        self.service.record(usage_record(input_tokens=5))
        self.assertFalse(os.path.exists(self.path))
        self.service.stopService()
        self.assertEqual(json.loads(self.read())["combinations"][0]["total"]["input_tokens"], 5)
        self.service.record(usage_record(input_tokens=7))
        self.assertEqual(json.loads(self.read())["combinations"][0]["total"]["input_tokens"], 12)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def record_through_service(self, input_tokens: int) -> None:
        self.service.record(usage_record(input_tokens=input_tokens))

    def saved_input_tokens(self) -> int:
        document = json.loads(self.read())
        return int(document["combinations"][0]["total"]["input_tokens"])

    def test_first_record_saved_soon(self) -> None:
        """
        The first usage after start-up is saved FIRST_SAVE_DELAY_SECONDS
        later, not at the next minute, through the same atomic save (no
        temporary file is left); more usage within the minute waits for the
        tick; after a minute without a save, the next usage is saved soon
        again.
        """
        self.assertEqual(FIRST_SAVE_DELAY_SECONDS, 5)
        self.service.startService()
        self.clock.advance(100)  # Ticks at 0 and 60 found nothing to save.
        self.record_through_service(3)
        self.clock.advance(4.9)
        self.assertFalse(os.path.exists(self.path))
        self.clock.advance(0.1)
        self.assertEqual(self.saved_input_tokens(), 3)
        self.assertEqual(os.listdir(self.directory), [os.path.basename(self.path)])
        self.record_through_service(4)  # t=105: saved 0 s ago.
        self.clock.advance(10)
        self.assertEqual(self.saved_input_tokens(), 3)
        self.clock.advance(5)  # The tick at t=120.
        self.assertEqual(self.saved_input_tokens(), 7)
        self.clock.advance(200)  # t=320: ticks found nothing new since t=120.
        self.record_through_service(5)
        self.clock.advance(5)
        self.assertEqual(self.saved_input_tokens(), 12)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # Only the loop.
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_burst_saved_once(self) -> None:
        """
        Usage recorded while an early save is pending joins it: one save
        writes the whole burst.
        """
        saves: list[int] = []
        save = self.file.save

        def counted_save(snapshot: UsageSnapshot) -> None:
            saves.append(1)
            save(snapshot)

        self.patch(self.file, "save", counted_save)
        self.service.startService()
        for tokens in (1, 2, 3):
            self.record_through_service(tokens)
            self.clock.advance(1)
        self.clock.advance(2)
        self.assertEqual((len(saves), self.saved_input_tokens()), (1, 6))
        self.service.stopService()

    def test_stop_cancels_early_save(self) -> None:
        """
        Stopping while an early save is pending saves at once and leaves no
        timer behind.
        """
        self.service.startService()
        self.record_through_service(9)
        self.assertIsNone(self.successResultOf(self.service.stopService()))
        self.assertEqual(self.saved_input_tokens(), 9)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_nothing_recorded(self) -> None:
        """
        Without usage, running ticks write nothing.
        """
        self.service.startService()
        self.clock.pump([60] * 5)
        self.assertFalse(os.path.exists(self.path))
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failure_logged_and_retried(self) -> None:
        """
        A failed save is logged with the path and reason, keeps the book
        unsaved, and does not stop the loop: the next tick saves once it
        can.
        """
        directory = os.path.join(self.directory, "later")
        path = os.path.join(directory, "usages.json")
        service = UsageSaverService(UsageFile(path, self.clock, UTC_PLUS_8), self.book, self.clock)
        service.startService()
        record(self.book, output_tokens=1)
        self.clock.advance(60)
        errors = [formatEvent(e) for e in self.events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn(path, errors[0])
        self.assertIn("No such file or directory", errors[0])
        self.assertTrue(service.unsaved)
        os.makedirs(directory)
        self.clock.advance(60)
        self.assertEqual(self.read(path), serialize(self.book.snapshot(), UTC_PLUS_8))
        self.assertFalse(service.unsaved)
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_saves_even_unchanged(self) -> None:
        """
        Stopping the service saves once more even when nothing changed, so
        a shutdown always leaves a current file.
        """
        self.service.startService()
        self.clock.advance(30)
        self.assertIsNone(self.successResultOf(self.service.stopService()))
        self.assertEqual(self.read(), EXPECTED_EMPTY_BOOK.encode())
        self.assertFalse(self.service.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_saves_latest(self) -> None:
        """
        Usage recorded since the last tick is in the file after stopping.
        """
        self.service.startService()
        record(self.book, output_tokens=1)
        self.clock.advance(60)
        record(self.book, output_tokens=2)
        self.clock.advance(10)
        self.service.stopService()
        self.assertEqual(json.loads(self.read())["combinations"][0]["total"]["output_tokens"], 3)
        self.assertFalse(self.service.unsaved)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_failure_logged(self) -> None:
        """
        A failed save at shutdown is logged, not raised.
        """
        self.service.startService()
        os.rmdir(self.directory)
        self.assertIsNone(self.successResultOf(self.service.stopService()))
        errors = log_text(self.events)
        self.assertEqual(len(errors), 1)
        self.assertIn(self.path, errors[0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_custom_interval(self) -> None:
        """
        The interval is configurable.
        """
        service = UsageSaverService(self.file, self.book, self.clock, interval=5)
        service.startService()
        record(self.book, output_tokens=1)
        self.clock.advance(4)
        self.assertFalse(os.path.exists(self.path))
        self.clock.advance(1)
        self.assertTrue(os.path.exists(self.path))
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
