"""
Tests for ``ccm usage`` (:obj:`ccm.cli.usage`): it prints a usages file as
tables or as JSON, several files as one team, with its exit codes and
messages, and never changes the files it reads.  The tables themselves are
tested in :obj:`tests.accounting.test_report` and
:obj:`tests.accounting.test_team`.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

import ccm
from ccm.cli.main import main
from ccm.accounting.document import serialize
from ccm.pool.figures import Window
from ccm.shares.files import share_document, shares_path
from ccm.shares.ledger import FIVE_HOUR, ShareBook
from ccm.shares.report import NOTE
from ccm.shares.standing import Entitlement, Shares
from tests.accounting.samples import (
    BY_MODEL,
    BY_USER,
    BY_WEEK,
    FULL_REPORT,
    HEADER,
    PATH,
    SING_BOX_FILE,
    sample_book,
)
from tests.fixtures import UTC, UTC_PLUS_8


class CommandLineTests(SynchronousTestCase):
    """
    ``ccm usage`` through :obj:`ccm.cli.main.main`, run in the test's process.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "usages.json")

    def run_main(self, *argv: str) -> tuple[int, str, str]:
        """
        Run the command line with ``argv`` in UTC+8.

        :return: the exit status, the output and the error output.
        """
        stdout, stderr = io.StringIO(), io.StringIO()
        status = main(list(argv), stdout, stderr, tz=UTC_PLUS_8)
        return status, stdout.getvalue(), stderr.getvalue()

    def write(self, content: bytes) -> None:
        """
        Write the usages file.
        """
        with open(self.path, "wb") as handle:
            handle.write(content)

    def assert_refused(self, content: bytes | None, *reason: str) -> None:
        """
        The command fails with status 1 and one line naming the file and
        the ``reason`` parts, prints nothing on stdout, and leaves the
        directory exactly as it was (the file's bytes included).
        """
        if content is not None:
            self.write(content)
        before = sorted(os.listdir(self.directory))
        status, out, err = self.run_main("usage", self.path)
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.endswith("\n"), err)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.startswith("ccm usage: "), err)
        self.assertIn(repr(self.path), err)
        for part in reason:
            self.assertIn(part, err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(sorted(os.listdir(self.directory)), before)
        if content is not None:
            with open(self.path, "rb") as handle:
                self.assertEqual(handle.read(), content)

    def test_report(self) -> None:
        """
        ``usage PATH`` prints the whole report of the file and exits 0; the
        file is left as it was.
        """
        content = serialize(sample_book().snapshot(), UTC_PLUS_8)
        self.write(content)
        status, out, err = self.run_main("usage", self.path)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, FULL_REPORT.replace(PATH, self.path))
        with open(self.path, "rb") as handle:
            self.assertEqual(handle.read(), content)

    def test_by_options(self) -> None:
        """
        ``--by user``, ``--by model``, ``--by week`` print one table each and
        ``--by all`` all three.
        """
        self.write(serialize(sample_book().snapshot(), UTC_PLUS_8))
        header = HEADER.replace(PATH, self.path) + "\n"
        for by, expected in [
            ("user", header + BY_USER),
            ("model", header + BY_MODEL),
            ("week", header + BY_WEEK),
            ("all", FULL_REPORT.replace(PATH, self.path)),
        ]:
            self.assertEqual(self.run_main("usage", self.path, "--by", by), (0, expected, ""))

    def test_json(self) -> None:
        """
        ``--json`` prints the file's document with its costs computed now,
        not those stored in the file; the file is left as it was.
        """
        self.write(SING_BOX_FILE)
        status, out, err = self.run_main("usage", "--json", self.path)
        self.assertEqual((status, err), (0, ""))
        self.assertTrue(out.endswith("}\n"))
        document = json.loads(out)
        self.assertEqual(document["last_updated"], "2026-03-14T21:15:13.123456789+08:00")
        self.assertEqual(document["costs"], {"total_usd": 0.72, "by_user": {"alice": 0.72}})
        [combination] = document["combinations"]
        self.assertEqual(combination["total"]["cost_usd"], 0.72)
        self.assertEqual(combination["by_user"]["alice"]["cost_usd"], 0.72)
        self.assertEqual(combination["total"]["cache_read_input_tokens"], 900_000)
        with open(self.path, "rb") as handle:
            self.assertEqual(handle.read(), SING_BOX_FILE)

    def test_empty_file_document(self) -> None:
        """
        A file with no combinations (as ccm writes at its first shutdown)
        says that nothing has been recorded.
        """
        self.write(
            b'{\n  "last_updated": "0001-01-01T00:00:00Z",\n'
            b'  "costs": {\n    "total_usd": 0,\n    "by_user": {}\n  },\n  "combinations": []\n}'
        )
        self.assertEqual(
            self.run_main("usage", self.path),
            (0, f"Usage recorded in {self.path}, last updated never\nNo usage has been recorded yet.\n", ""),
        )

    def test_missing_file(self) -> None:
        """
        A missing file is an error (status 1, one line) and is not created.
        """
        self.assert_refused(None, "cannot read", "No such file or directory")
        self.assertFalse(os.path.exists(self.path))

    def test_directory(self) -> None:
        """
        A directory given as the file is an error, not a traceback.
        """
        os.mkdir(self.path)
        self.assert_refused(None, "cannot read")

    def test_device(self) -> None:
        """
        A device given as the file (one that could be read for ever) is
        refused without being read.
        """
        status, out, err = self.run_main("usage", os.devnull)
        self.assertEqual(
            (status, out, err),
            (1, "", f"ccm usage: cannot use {os.devnull!r}: it is not a regular file\n"),
        )

    def test_not_json(self) -> None:
        """
        A file that is not JSON is an error; it is neither changed nor moved
        aside.
        """
        self.assert_refused(b'{"combinations": [', "not valid JSON", "line 1")

    def test_not_utf8(self) -> None:
        """
        A file that is not UTF-8 is an error; it is left alone.
        """
        self.assert_refused(b'{"last_updated": "\xff"}', "not UTF-8")

    def test_deeply_nested(self) -> None:
        """
        JSON nested too deeply to decode is an error, not a traceback.
        """
        self.assert_refused(b"[" * 200_000 + b"]" * 200_000, "not valid JSON")

    def test_wrong_structure(self) -> None:
        """
        JSON without the usages structure is an error naming the problem;
        the file is left alone.
        """
        self.assert_refused(
            b'{"combinations": {"model": "x"}}', "does not hold usage statistics", "combinations"
        )
        self.assert_refused(b"[]", "does not hold usage statistics")
        self.assert_refused(
            b'{"combinations": [{"model": "claude-opus-4-8", "total": {"input_tokens": -5}}]}',
            "combinations[0].total.input_tokens",
        )

    def test_not_a_usages_file(self) -> None:
        """
        A JSON object that is not a usages file (an empty object, a ccm
        configuration, which is named as such) is refused with one line and
        status 1, without repeating what it holds; a real usages file is
        read normally afterwards.
        """
        self.assert_refused(
            b"{}",
            'does not hold usage statistics (no "combinations" key, which every usages file has',
        )
        configuration = json.dumps(
            {"listen_port": 8080, "users": [{"name": "alice", "token": "ccm-token-in-config"}]}
        ).encode()
        self.assert_refused(configuration, "it looks like a ccm configuration")
        status, out, err = self.run_main("usage", self.path)
        self.assertNotIn("ccm-token-in-config", out + err)
        self.write(b'{"last_updated": "0001-01-01T00:00:00Z", "combinations": []}')
        status, out, err = self.run_main("usage", self.path)
        self.assertEqual((status, err), (0, ""))
        self.assertIn("No usage has been recorded yet.", out)

    def test_counts_too_large_to_price(self) -> None:
        """
        Token counts beyond 64 bits (no real file has them) are refused
        with one line, not a traceback.
        """
        huge = b"9" * 400
        self.assert_refused(
            b'{"combinations": [{"model": "claude-opus-4-8", "context_window": 200000, '
            b'"total": {"input_tokens": ' + huge + b"}}]}",
            "must be a non-negative 64-bit integer",
        )

    def test_no_command(self) -> None:
        """
        Without a command, the usage is printed on stderr and the status is
        2.
        """
        status, out, err = self.run_main()
        self.assertEqual((status, out), (2, ""))
        self.assertIn("usage: ccm", err)
        self.assertIn("required", err)

    def test_bad_by(self) -> None:
        """
        An unknown ``--by`` value is refused with status 2 before the file
        is read.
        """
        status, out, err = self.run_main("usage", self.path, "--by", "day")
        self.assertEqual((status, out), (2, ""))
        self.assertIn("invalid choice: 'day'", err)

    def test_help(self) -> None:
        """
        ``usage --help`` describes the command on stdout and exits 0.
        """
        status, out, err = self.run_main("usage", "--help")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("--by {user,model,week,credential,all}", out)
        self.assertIn("--json", out)


class TeamTests(SynchronousTestCase):
    """
    ``ccm usage`` with several files: one team report, or one line naming
    the file that cannot be used.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.first = os.path.join(self.directory, "a.json")
        self.second = os.path.join(self.directory, "b.json")
        with open(self.first, "wb") as handle:
            handle.write(serialize(sample_book().snapshot(), UTC_PLUS_8))
        with open(self.second, "wb") as handle:
            handle.write(SING_BOX_FILE)

    def run_main(self, *argv: str) -> tuple[int, str, str]:
        """
        Run the command line in UTC+8: the status, stdout and stderr.
        """
        stdout, stderr = io.StringIO(), io.StringIO()
        status = main(list(argv), stdout, stderr, tz=UTC_PLUS_8)
        return status, stdout.getvalue(), stderr.getvalue()

    def test_team_report(self) -> None:
        """
        Two files give one report over both, with a table by credential
        naming each file by its base name, and status 0.
        """
        status, out, err = self.run_main("usage", self.first, self.second)
        self.assertEqual((status, err), (0, ""))
        self.assertTrue(out.startswith("Usage recorded in 2 files, last updated "), out)
        table = out.split("By credential (usage file)\n")[1].splitlines()
        self.assertEqual([line.split()[:3] for line in table[2:4]], [["a.json", "6", "255,600"], ["b.json", "10", "1,234"]])

    def test_same_base_names(self) -> None:
        """
        Files with the same base name are told apart by the ends of their
        paths (``temp/a.json``, ``other/a.json``).
        """
        other = os.path.join(self.directory, "other")
        os.makedirs(other)
        renamed = os.path.join(other, "a.json")
        os.rename(self.second, renamed)
        status, out, err = self.run_main("usage", "--by", "credential", "--", self.first, renamed)
        self.assertEqual((status, err), (0, ""))
        rows = out.split("By credential (usage file)\n")[1].splitlines()[2:4]
        labels = [row.split()[0] for row in rows]
        self.assertEqual(labels, [os.path.join("temp", "a.json"), os.path.join("other", "a.json")])

    def test_by_credential_of_one_file(self) -> None:
        """
        ``--by credential`` works with one file too: its one row.
        """
        status, out, err = self.run_main("usage", "--by", "credential", self.first)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual([l for l in out.splitlines() if l.startswith("By ")], ["By credential (usage file)"])

    def test_broken_file_named(self) -> None:
        """
        A broken second file ends the command with one line naming it and
        status 1; nothing of the first file is printed.
        """
        with open(self.second, "wb") as handle:
            handle.write(b"{not json")
        status, out, err = self.run_main("usage", self.first, self.second)
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.startswith(f"ccm usage: cannot use {self.second!r}: "), err)

    def test_same_file_twice(self) -> None:
        """
        The same file given twice (under two names) is refused: it would be
        counted twice.
        """
        alias = os.path.join(self.directory, ".", "a.json")
        status, out, err = self.run_main("usage", self.first, alias)
        self.assertEqual((status, out), (1, ""))
        self.assertIn("is the same file as", err)

    def test_json_of_several(self) -> None:
        """
        ``--json`` with several files is a wrong command line (status 2).
        """
        status, out, err = self.run_main("usage", "--json", self.first, self.second)
        self.assertEqual((status, out), (2, ""))
        self.assertIn("--json prints one file", err)


class SubprocessTests(TestCase):
    """
    ``python -m ccm usage`` as a real process.
    """

    def test_smoke(self) -> Deferred[None]:
        """
        ``python -m ccm usage PATH --by user`` run from the source tree
        prints the table by user and exits 0; a missing file exits 1 with
        one line on stderr.
        """
        from twisted.internet import reactor

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "usages.json")
        with open(path, "wb") as handle:
            handle.write(serialize(sample_book().snapshot(), UTC))
        source_root = os.path.dirname(os.path.dirname(os.path.abspath(ccm.__file__)))
        environment = {"TZ": "UTC", "PYTHONPATH": source_root}

        def run(*arguments: str) -> Deferred[tuple[bytes, bytes, int]]:
            ran: Deferred[tuple[bytes, bytes, int]] = getProcessOutputAndValue(
                sys.executable,
                ["-m", "ccm", "usage", *arguments],
                env=environment,
                path=source_root,
                reactor=reactor,
            )
            return ran

        def check_success(result: tuple[bytes, bytes, int]) -> Deferred[tuple[bytes, bytes, int]]:
            out, err, code = result
            self.assertEqual((code, err), (0, b""))
            expected = (
                f"Usage recorded in {path}, last updated 2026-03-14T13:15:13.25Z\n\n" + BY_USER
            ).encode("utf-8")
            self.assertEqual(out, expected)
            return run(os.path.join(directory, "missing.json"))

        def check_missing(result: tuple[bytes, bytes, int]) -> None:
            out, err, code = result
            self.assertEqual((code, out), (1, b""))
            self.assertEqual(err.count(b"\n"), 1, err)
            self.assertIn(b"No such file or directory", err)
            self.assertNotIn(b"Traceback", err)

        done: Deferred[None] = run(path, "--by", "user").addCallback(check_success).addCallback(check_missing)
        return done


if TYPE_CHECKING:
    # The setUp and run_main of TeamTests are borrowed below, and with them
    # its attributes.
    _ShareFileBase = TeamTests
else:
    _ShareFileBase = SynchronousTestCase


class ShareFileTests(_ShareFileBase):
    """
    ``ccm usage`` with share files (``FILE.shares``) beside the usages
    files of :obj:`TeamTests`.  Their windows reset in 2096, so that the
    real clock the command reads never passes them.
    """

    FAR = 4_000_000_000.0
    setUp = TeamTests.setUp
    run_main = TeamTests.run_main

    def write_shares(
        self, path: str, alice: float, bob: float, users: dict[str, Entitlement] | None = None
    ) -> None:
        """
        Save, beside ``path``, the share file of a credential (plan weight
        1) whose 5-hour window rose ``alice`` % during alice's request, then
        ``bob`` % during bob's, recording ``users`` (none: a file saved
        before ccm recorded them).
        """
        book = ShareBook()
        now = self.FAR - 3600
        book.observe("c", {FIVE_HOUR: Window(0, self.FAR)}, 1.0, now)
        for user, rise in (("alice", alice), ("bob", bob)):
            key = book.begin("c", user, now)
            book.finish(key, 1.0, now + 1)
            now += 10
            book.observe("c", {FIVE_HOUR: Window(alice + (bob if user == "bob" else 0), self.FAR)}, 1.0, now)
        with open(shares_path(path), "wb") as handle:
            handle.write(share_document(book.snapshot()["c"], users))

    def shares_table(self, out: str) -> list[str]:
        return out.split("\nShares\n")[1].splitlines()

    def test_one_file(self) -> None:
        """
        After the tables of one file, each user's share, use and what
        remains per window, in percent of the pool the file recorded (one
        Pro, 100 units): alice used 3.0 % of her 5 %, bob, without a
        share, 1.5 %; their use in Pro-percent, and the reset in the
        terminal's time zone.
        """
        users = {"alice": Entitlement(100.0, Shares(five_hour=5)), "bob": Entitlement(100.0)}
        self.write_shares(self.first, 3.0, 1.5, users)
        status, out, err = self.run_main("usage", self.first)
        self.assertEqual((status, err), (0, ""))
        table = self.shares_table(out)
        self.assertEqual(table[0], NOTE)
        self.assertEqual(
            table[3:],
            [
                "alice  5-hour     5%  3.0%       2.0%          3.00  2096-10-02 15:06",
                "alice  weekly      -  0.0%          -          0.00                 -",
                "bob    5-hour      -  1.5%          -          1.50  2096-10-02 15:06",
                "bob    weekly      -  0.0%          -          0.00                 -",
            ],
        )

    def test_older_file(self) -> None:
        """
        A share file that records no users gives the use in Pro-percent
        only, ``-`` for the rest.
        """
        self.write_shares(self.first, 3.0, 1.5)
        status, out, err = self.run_main("usage", self.first)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            self.shares_table(out)[3],
            "alice  5-hour      -     -          -          3.00  2096-10-02 15:06",
        )

    def test_team_sums(self) -> None:
        """
        Several files: each user's charges add up over the credentials.
        """
        self.write_shares(self.first, 3.0, 1.5)
        self.write_shares(self.second, 1.0, 2.0)
        status, out, err = self.run_main("usage", self.first, self.second)
        self.assertEqual((status, err), (0, ""))
        table = self.shares_table(out)
        self.assertEqual(
            [[line.split()[i] for i in (0, 1, 5)] for line in table[3:]][::2],
            [["alice", "5-hour", "4.00"], ["bob", "5-hour", "3.50"]],
        )

    def test_only_with_user_tables(self) -> None:
        """
        ``--by model`` and ``--json`` leave the shares out; no share file,
        no table.
        """
        self.write_shares(self.first, 3.0, 1.5)
        for argv in (("--by", "model"), ("--json",)):
            status, out, err = self.run_main("usage", *argv, self.first)
            self.assertEqual((status, err), (0, ""))
            self.assertNotIn(NOTE, out)
        status, out, _ = self.run_main("usage", self.second)
        self.assertNotIn("Shares", out)

    def test_broken_share_file(self) -> None:
        """
        A broken share file is one line on stderr naming it and why; the
        usage report is printed all the same, without the shares.
        """
        with open(shares_path(self.first), "wb") as handle:
            handle.write(b'{"version": 7}')
        status, out, err = self.run_main("usage", self.first)
        self.assertEqual(status, 0)
        self.assertIn("By user", out)
        self.assertNotIn("Shares", out)
        self.assertEqual(
            err,
            f"ccm usage: ignoring the shares of {self.first!r}: {shares_path(self.first)!r} "
            "is not a share file: not a version 1 share file\n",
        )
