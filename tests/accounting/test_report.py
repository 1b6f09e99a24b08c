"""
Tests for L{ccm.accounting.report} and the C{python -m ccm usage} command line
(L{ccm.__main__}): the tables by user, model and week, and the command's
exit codes and messages, which never change the file they read.

The sample book's costs are worked out by hand below from the official
prices (Opus 4.8: 5/25/0.5/6.25/10 USD per million tokens for input,
output, cache read, 5-minute and 1-hour writes; Sonnet 4.5 in the 1M
window: 6/22.5/0.6/7.5/12), each combination and each user's part rounded
to cents, as in the usages file.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import sys

from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

import ccm
from ccm.__main__ import main
from ccm.accounting.report import context_window_label, format_report, week_label
from ccm.accounting.book import UsageBook
from ccm.accounting.document import from_document, serialize
from tests.fixtures import OPUS, SONNET, UTC, UTC_PLUS_8, WEEK_1, WEEK_2, clock_at, usage_record

UTC_MINUS_5 = datetime.timezone(datetime.timedelta(hours=-5))
PATH = "/var/lib/ccm/usages.json"

# The sample book, combination by combination:
#
# A: Opus 4.8, 200k, week 1
#   alice, 2 requests, each 1,000 in, 20,000 out, 200,000 read, 10,000 1h:
#     2 x (5,000 + 500,000 + 100,000 + 100,000) = 1,410,000 -> 1.41
#   bob, 1 request, 500 in, 4,000 out, 100,000 read, 8,000 5m:
#     2,500 + 100,000 + 50,000 + 50,000 = 202,500 -> 0.2025 -> 0.20
#   anonymous, 1 request, 100 in, 1,000 out
#   total 2,600 in, 45,000 out, 500,000 read, 8,000 5m, 20,000 1h:
#     13,000 + 1,125,000 + 250,000 + 50,000 + 200,000 = 1,638,000 -> 1.64
#   so anonymous 1.64 - 1.41 - 0.20 = 0.03
# B: Sonnet 4.5, 1M, week 2
#   alice, 1 request, 250,000 in, 4,000 out:
#     1,500,000 + 90,000 = 1,590,000 -> 1.59
# C: Opus 4.8, 200k, week 2
#   bob, 1 request, 3,000 in, 10,000 out, 50,000 read, 2,000 5m:
#     15,000 + 250,000 + 25,000 + 12,500 = 302,500 -> 0.3025 -> 0.30
#
# By user: alice 1.41 + 1.59 = 3.00; bob 0.20 + 0.30 = 0.50; anonymous 0.03.
# By model: Opus 200k 1.64 + 0.30 = 1.94; Sonnet 1M 1.59.
# By week: 2026-03-16 1.59 + 0.30 = 1.89; 2026-03-09 1.64.
# Total 1.64 + 1.59 + 0.30 = 3.53.

HEADER = "Usage recorded in /var/lib/ccm/usages.json, last updated 2026-03-14T21:15:13.25+08:00\n"

BY_USER = """\
By user
user         requests    input  output  cache read  cache write (5m+1h)  cost USD
-----------  --------  -------  ------  ----------  -------------------  --------
alice               3  252,000  44,000     400,000               20,000      3.00
bob                 2    3,500  14,000     150,000               10,000      0.50
(anonymous)         1      100   1,000           0                    0      0.03
-----------  --------  -------  ------  ----------  -------------------  --------
total               6  255,600  59,000     550,000               30,000      3.53
"""

BY_MODEL = """\
By model
model                       context  requests    input  output  cache read  cache write (5m+1h)  cost USD
--------------------------  -------  --------  -------  ------  ----------  -------------------  --------
claude-opus-4-8             200k            5    5,600  55,000     550,000               30,000      1.94
claude-sonnet-4-5-20250929  1M              1  250,000   4,000           0                    0      1.59
--------------------------  -------  --------  -------  ------  ----------  -------------------  --------
total                                       6  255,600  59,000     550,000               30,000      3.53
"""

BY_WEEK = """\
By week
week of     requests    input  output  cache read  cache write (5m+1h)  cost USD
----------  --------  -------  ------  ----------  -------------------  --------
2026-03-16         2  253,000  14,000      50,000                2,000      1.89
2026-03-09         4    2,600  45,000     500,000               28,000      1.64
----------  --------  -------  ------  ----------  -------------------  --------
total              6  255,600  59,000     550,000               30,000      3.53
"""

FULL_REPORT = HEADER + "\n" + BY_USER + "\n" + BY_MODEL + "\n" + BY_WEEK

# A file as sing-box writes it, with stale costs (cost_usd 99) that must be
# recomputed and no cache-write split (priced as 5-minute writes):
# Opus 4.6 1,234 x 5 + 5,678 x 25 + 900,000 x 0.5 + 20,000 x 6.25
# = 6,170 + 141,950 + 450,000 + 125,000 = 723,120 -> 0.72312 -> 0.72.
SING_BOX_FILE = b"""{
  "last_updated": "2026-03-14T21:15:13.123456789+08:00",
  "costs": {
    "total_usd": 99,
    "by_user": {
      "alice": 99
    }
  },
  "combinations": [
    {
      "model": "claude-opus-4-6",
      "context_window": 200000,
      "total": {
        "request_count": 10,
        "messages_count": 240,
        "input_tokens": 1234,
        "output_tokens": 5678,
        "cache_read_input_tokens": 900000,
        "cache_creation_input_tokens": 20000,
        "cost_usd": 99
      },
      "by_user": {
        "alice": {
          "request_count": 10,
          "messages_count": 240,
          "input_tokens": 1234,
          "output_tokens": 5678,
          "cache_read_input_tokens": 900000,
          "cache_creation_input_tokens": 20000,
          "cost_usd": 99
        }
      }
    }
  ]
}"""


def record(
    book: UsageBook,
    model: str,
    context_window: int,
    week: int,
    user: str,
    **counts: int,
) -> None:
    """
    Record one response of two messages in C{book}.
    """
    book.record(usage_record(model=model, context_window=context_window, week=week, user=user, messages=2, **counts))


def sample_book() -> UsageBook:
    """
    The sample book: two users and anonymous traffic, two models (one in
    the 1M window), two weeks, as worked out at the top of this module.
    """
    book = UsageBook(clock_at())
    for _ in range(2):
        record(
            book,
            OPUS,
            200_000,
            WEEK_1,
            "alice",
            input_tokens=1_000,
            output_tokens=20_000,
            cache_read_input_tokens=200_000,
            cache_creation_1h_input_tokens=10_000,
        )
    record(
        book,
        OPUS,
        200_000,
        WEEK_1,
        "bob",
        input_tokens=500,
        output_tokens=4_000,
        cache_read_input_tokens=100_000,
        cache_creation_5m_input_tokens=8_000,
    )
    record(book, OPUS, 200_000, WEEK_1, "", input_tokens=100, output_tokens=1_000)
    record(book, SONNET, 1_000_000, WEEK_2, "alice", input_tokens=250_000, output_tokens=4_000)
    record(
        book,
        OPUS,
        200_000,
        WEEK_2,
        "bob",
        input_tokens=3_000,
        output_tokens=10_000,
        cache_read_input_tokens=50_000,
        cache_creation_5m_input_tokens=2_000,
    )
    return book


class FormatReportTests(SynchronousTestCase):
    """
    L{format_report} prints a book as tables.
    """

    def test_all_sections(self) -> None:
        """
        The whole report: the header with the path and the time of the last
        record, then the tables by user, by model (with the context window)
        and by week (start dates in the given time zone), each by cost,
        highest first, with a total row.
        """
        self.assertEqual(format_report(sample_book().snapshot(), PATH, "all", UTC_PLUS_8), FULL_REPORT)

    def test_by_user(self) -> None:
        """
        C{by="user"} prints the header and the table by user alone.
        """
        self.assertEqual(format_report(sample_book().snapshot(), PATH, "user", UTC_PLUS_8), HEADER + "\n" + BY_USER)

    def test_by_model(self) -> None:
        """
        C{by="model"} prints the header and the table by model alone.
        """
        self.assertEqual(format_report(sample_book().snapshot(), PATH, "model", UTC_PLUS_8), HEADER + "\n" + BY_MODEL)

    def test_by_week(self) -> None:
        """
        C{by="week"} prints the header and the table by week alone.
        """
        self.assertEqual(format_report(sample_book().snapshot(), PATH, "week", UTC_PLUS_8), HEADER + "\n" + BY_WEEK)

    def test_unknown_section(self) -> None:
        """
        A section other than user, model, week or all is refused.
        """
        self.assertRaises(ValueError, format_report, sample_book(), PATH, "day", UTC_PLUS_8)

    def test_week_dates_in_time_zone(self) -> None:
        """
        Week start dates are those of the given time zone: 2026-03-09
        00:00 UTC is still 2026-03-08 in UTC-5, and the header's time is
        in that zone too.
        """
        text = format_report(sample_book().snapshot(), PATH, "week", UTC_MINUS_5)
        self.assertIn("last updated 2026-03-14T08:15:13.25-05:00\n", text)
        self.assertIn("\n2026-03-15         2  253,000", text)
        self.assertIn("\n2026-03-08         4    2,600", text)
        self.assertNotIn("2026-03-09", text)

    def test_empty_book(self) -> None:
        """
        A book with nothing recorded gives the header, with "never" for the
        time, and a line saying nothing has been recorded.
        """
        self.assertEqual(
            format_report(UsageBook(clock_at()).snapshot(), PATH, "all", UTC_PLUS_8),
            "Usage recorded in /var/lib/ccm/usages.json, last updated never\n"
            "No usage has been recorded yet.\n",
        )

    def test_empty_combinations_with_time(self) -> None:
        """
        A file that has a time but no combinations also says nothing has
        been recorded, for every C{by}.
        """
        usage = from_document({"last_updated": "2026-03-14T13:15:13Z", "combinations": []})
        for by in ("all", "user", "model", "week"):
            self.assertEqual(
                format_report(usage, PATH, by, UTC),
                "Usage recorded in /var/lib/ccm/usages.json, last updated 2026-03-14T13:15:13Z\n"
                "No usage has been recorded yet.\n",
            )

    def test_no_anonymous_row_when_users_cover_everything(self) -> None:
        """
        Without anonymous traffic there is no C{(anonymous)} row.
        """
        book = UsageBook(clock_at())
        # Opus 4.8: 10,000 x 5 + 2,000 x 25 = 100,000 -> 0.10.
        record(book, OPUS, 200_000, WEEK_1, "carol", input_tokens=10_000, output_tokens=2_000)
        self.assertEqual(
            format_report(book.snapshot(), PATH, "user", UTC),
            "Usage recorded in /var/lib/ccm/usages.json, last updated 2026-03-14T13:15:13.25Z\n"
            "\n"
            "By user\n"
            "user   requests   input  output  cache read  cache write (5m+1h)  cost USD\n"
            "-----  --------  ------  ------  ----------  -------------------  --------\n"
            "carol         1  10,000   2,000           0                    0      0.10\n"
            "-----  --------  ------  ------  ----------  -------------------  --------\n"
            "total         1  10,000   2,000           0                    0      0.10\n",
        )

    def test_rounding_difference_is_not_anonymous(self) -> None:
        """
        When the users account for every token, a cent left over by the
        rounding of their parts is not shown as anonymous traffic; the
        total row is the file's total.
        """
        book = UsageBook(clock_at())
        # Each user: 800 x 5 = 4,000 -> 0.004 -> 0.00; the combination:
        # 1,600 x 5 = 8,000 -> 0.008 -> 0.01.
        record(book, OPUS, 200_000, WEEK_1, "alice", input_tokens=800)
        record(book, OPUS, 200_000, WEEK_1, "bob", input_tokens=800)
        self.assertEqual(
            format_report(book.snapshot(), PATH, "user", UTC),
            "Usage recorded in /var/lib/ccm/usages.json, last updated 2026-03-14T13:15:13.25Z\n"
            "\n"
            "By user\n"
            "user   requests  input  output  cache read  cache write (5m+1h)  cost USD\n"
            "-----  --------  -----  ------  ----------  -------------------  --------\n"
            "alice         1    800       0           0                    0      0.00\n"
            "bob           1    800       0           0                    0      0.00\n"
            "-----  --------  -----  ------  ----------  -------------------  --------\n"
            "total         2  1,600       0           0                    0      0.01\n",
        )

    def test_users_exceeding_total(self) -> None:
        """
        A file whose users add up to more than the combination's total
        (hand-edited, inconsistent) shows no negative anonymous row.
        """
        document = {
            "combinations": [
                {
                    "model": OPUS,
                    "context_window": 200_000,
                    "total": {"request_count": 1, "input_tokens": 100},
                    "by_user": {"alice": {"request_count": 2, "input_tokens": 200}},
                }
            ]
        }
        text = format_report(from_document(document), PATH, "user", UTC)
        self.assertNotIn("(anonymous)", text)
        self.assertNotIn("-1", text)
        self.assertIn("\nalice         2    200", text)

    def test_anonymous_only_and_untagged_week(self) -> None:
        """
        Without users all traffic is C{(anonymous)}; usage without a weekly
        cycle is shown as C{(no week)}.
        """
        book = UsageBook(clock_at())
        # Haiku 4.5: 1,000,000 x 1 + 200,000 x 5 = 2,000,000 -> 2.00.
        record(book, "claude-haiku-4-5", 200_000, 0, "", input_tokens=1_000_000, output_tokens=200_000)
        self.assertEqual(
            format_report(book.snapshot(), PATH, "all", UTC),
            "Usage recorded in /var/lib/ccm/usages.json, last updated 2026-03-14T13:15:13.25Z\n"
            "\n"
            "By user\n"
            "user         requests      input   output  cache read  cache write (5m+1h)  cost USD\n"
            "-----------  --------  ---------  -------  ----------  -------------------  --------\n"
            "(anonymous)         1  1,000,000  200,000           0                    0      2.00\n"
            "-----------  --------  ---------  -------  ----------  -------------------  --------\n"
            "total               1  1,000,000  200,000           0                    0      2.00\n"
            "\n"
            "By model\n"
            "model             context  requests      input   output  cache read  cache write (5m+1h)  cost USD\n"
            "----------------  -------  --------  ---------  -------  ----------  -------------------  --------\n"
            "claude-haiku-4-5  200k            1  1,000,000  200,000           0                    0      2.00\n"
            "----------------  -------  --------  ---------  -------  ----------  -------------------  --------\n"
            "total                             1  1,000,000  200,000           0                    0      2.00\n"
            "\n"
            "By week\n"
            "week of    requests      input   output  cache read  cache write (5m+1h)  cost USD\n"
            "---------  --------  ---------  -------  ----------  -------------------  --------\n"
            "(no week)         1  1,000,000  200,000           0                    0      2.00\n"
            "---------  --------  ---------  -------  ----------  -------------------  --------\n"
            "total             1  1,000,000  200,000           0                    0      2.00\n",
        )

    def test_sing_box_file_costs_recomputed(self) -> None:
        """
        A file written by sing-box shows costs computed now, not the ones
        stored in it, with writes recorded without the 5m/1h split priced
        as 5-minute writes.
        """
        usage = from_document(json.loads(SING_BOX_FILE))
        self.assertEqual(
            format_report(usage, PATH, "model", UTC_PLUS_8),
            "Usage recorded in /var/lib/ccm/usages.json, last updated 2026-03-14T21:15:13.123456789+08:00\n"
            "\n"
            "By model\n"
            "model            context  requests  input  output  cache read  cache write (5m+1h)  cost USD\n"
            "---------------  -------  --------  -----  ------  ----------  -------------------  --------\n"
            "claude-opus-4-6  200k           10  1,234   5,678     900,000               20,000      0.72\n"
            "---------------  -------  --------  -----  ------  ----------  -------------------  --------\n"
            "total                           10  1,234   5,678     900,000               20,000      0.72\n",
        )

    def test_same_cost_ordered_by_name(self) -> None:
        """
        Rows of equal cost are ordered by name, so the output does not
        depend on the order usage was recorded in.
        """
        book = UsageBook(clock_at())
        # Each: 10,000 x 5 = 50,000 -> 0.05.
        for user in ("zoe", "adam", "mia"):
            record(book, OPUS, 200_000, WEEK_1, user, input_tokens=10_000)
        lines = format_report(book.snapshot(), PATH, "user", UTC).splitlines()
        self.assertEqual([line.split()[0] for line in lines[5:8]], ["adam", "mia", "zoe"])

    def test_labels_escaped_and_shortened(self) -> None:
        """
        Names from the file cannot move the terminal's cursor or break
        lines: control characters are escaped, and names longer than 60
        characters are cut with an ellipsis.
        """
        book = UsageBook(clock_at())
        record(book, "claude-" + "x" * 200, 200_000, WEEK_1, "eve\x1b[2J\nroot", input_tokens=10)
        text = format_report(book.snapshot(), PATH + "\r", "all", UTC)
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\r", text)
        self.assertIn("\neve\\x1b[2J\\nroot  ", text)
        self.assertIn("usages.json\\r, last updated", text)
        self.assertIn("\nclaude-" + "x" * 52 + "\u2026  200k", text)
        self.assertNotIn("x" * 53, text)

    def test_context_window_labels(self) -> None:
        """
        Context windows are shown as 200k and 1M; other sizes a file may
        hold stay readable.
        """
        self.assertEqual(
            [context_window_label(size) for size in (200_000, 1_000_000, 2_000_000, 123_456, 0)],
            ["200k", "1M", "2M", "123,456", "0"],
        )

    def test_week_label(self) -> None:
        """
        A week is labelled with its start date in the time zone; an
        untagged one as C{(no week)}.
        """
        self.assertEqual(week_label(WEEK_1, UTC_PLUS_8), "2026-03-09")
        self.assertEqual(week_label(WEEK_1, UTC_MINUS_5), "2026-03-08")
        self.assertEqual(week_label(0, UTC), "(no week)")


class CommandLineTests(SynchronousTestCase):
    """
    L{ccm.__main__.main}, run in the test's process.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "usages.json")

    def run_main(self, *argv: str) -> tuple[int, str, str]:
        """
        Run the command line with C{argv} in UTC+8.

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
        the C{reason} parts, prints nothing on stdout, and leaves the
        directory exactly as it was (the file's bytes included).
        """
        if content is not None:
            self.write(content)
        before = sorted(os.listdir(self.directory))
        status, out, err = self.run_main("usage", self.path)
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.endswith("\n"), err)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.startswith("python -m ccm usage: "), err)
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
        C{usage PATH} prints the whole report of the file and exits 0; the
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
        C{--by user}, C{--by model}, C{--by week} print one table each and
        C{--by all} all three.
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
        C{--json} prints the file's document with its costs computed now,
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
            (1, "", f"python -m ccm usage: cannot use {os.devnull!r}: it is not a regular file\n"),
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
        self.assertIn("usage: python -m ccm", err)
        self.assertIn("required", err)

    def test_bad_by(self) -> None:
        """
        An unknown C{--by} value is refused with status 2 before the file
        is read.
        """
        status, out, err = self.run_main("usage", self.path, "--by", "day")
        self.assertEqual((status, out), (2, ""))
        self.assertIn("invalid choice: 'day'", err)

    def test_help(self) -> None:
        """
        C{usage --help} describes the command on stdout and exits 0.
        """
        status, out, err = self.run_main("usage", "--help")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("--by {user,model,week,all}", out)
        self.assertIn("--json", out)


class SubprocessTests(TestCase):
    """
    C{python -m ccm usage} as a real process.
    """

    def test_smoke(self) -> Deferred[None]:
        """
        C{python -m ccm usage PATH --by user} run from the source tree
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
            return getProcessOutputAndValue(
                sys.executable,
                ["-m", "ccm", "usage", *arguments],
                env=environment,
                path=source_root,
                reactor=reactor,
            )

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
