"""
Tests for :obj:`ccm.accounting.report`: the tables by user, model and week of a
usages file.  The command line that prints them is tested in
:obj:`tests.cli.test_usage`.

The sample book's costs (:obj:`tests.accounting.samples.sample_book`) are worked
out by hand there from the official prices (Opus 4.8: 5/25/0.5/6.25/10 USD
per million tokens for input, output, cache read, 5-minute and 1-hour
writes; Sonnet 4.5 in the 1M window: 6/22.5/0.6/7.5/12), each combination
and each user's part rounded to cents, as in the usages file.
"""

from __future__ import annotations

import datetime
import json

from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting.report import context_window_label, format_report, week_label
from ccm.accounting.book import UsageBook
from ccm.accounting.document import from_document
from tests.accounting.samples import (
    BY_MODEL,
    BY_USER,
    BY_WEEK,
    FULL_REPORT,
    HEADER,
    PATH,
    SING_BOX_FILE,
    record_response,
    sample_book,
)
from tests.fixtures import OPUS, UTC, UTC_PLUS_8, WEEK_1, clock_at

UTC_MINUS_5 = datetime.timezone(datetime.timedelta(hours=-5))


class FormatReportTests(SynchronousTestCase):
    """
    :obj:`format_report` prints a book as tables.
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
        ``by="user"`` prints the header and the table by user alone.
        """
        self.assertEqual(format_report(sample_book().snapshot(), PATH, "user", UTC_PLUS_8), HEADER + "\n" + BY_USER)

    def test_by_model(self) -> None:
        """
        ``by="model"`` prints the header and the table by model alone.
        """
        self.assertEqual(format_report(sample_book().snapshot(), PATH, "model", UTC_PLUS_8), HEADER + "\n" + BY_MODEL)

    def test_by_week(self) -> None:
        """
        ``by="week"`` prints the header and the table by week alone.
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
        been recorded, for every ``by``.
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
        Without anonymous traffic there is no ``(anonymous)`` row.
        """
        book = UsageBook(clock_at())
        # Opus 4.8: 10,000 x 5 + 2,000 x 25 = 100,000 -> 0.10.
        record_response(book, OPUS, 200_000, WEEK_1, "carol", input_tokens=10_000, output_tokens=2_000)
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
        record_response(book, OPUS, 200_000, WEEK_1, "alice", input_tokens=800)
        record_response(book, OPUS, 200_000, WEEK_1, "bob", input_tokens=800)
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
        Without users all traffic is ``(anonymous)``; usage without a weekly
        cycle is shown as ``(no week)``.
        """
        book = UsageBook(clock_at())
        # Haiku 4.5: 1,000,000 x 1 + 200,000 x 5 = 2,000,000 -> 2.00.
        record_response(book, "claude-haiku-4-5", 200_000, 0, "", input_tokens=1_000_000, output_tokens=200_000)
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
            record_response(book, OPUS, 200_000, WEEK_1, user, input_tokens=10_000)
        lines = format_report(book.snapshot(), PATH, "user", UTC).splitlines()
        self.assertEqual([line.split()[0] for line in lines[5:8]], ["adam", "mia", "zoe"])

    def test_labels_escaped_and_shortened(self) -> None:
        """
        Names from the file cannot move the terminal's cursor or break
        lines: control characters are escaped, and names longer than 60
        characters are cut with an ellipsis.
        """
        book = UsageBook(clock_at())
        record_response(book, "claude-" + "x" * 200, 200_000, WEEK_1, "eve\x1b[2J\nroot", input_tokens=10)
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
        untagged one as ``(no week)``.
        """
        self.assertEqual(week_label(WEEK_1, UTC_PLUS_8), "2026-03-09")
        self.assertEqual(week_label(WEEK_1, UTC_MINUS_5), "2026-03-08")
        self.assertEqual(week_label(0, UTC), "(no week)")
