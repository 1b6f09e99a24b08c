"""
Tests for :obj:`ccm.accounting.team`: several usages files as one team's
report, whose tables add the files up and whose table by credential gives
each file's own total.

The sample book (3.53 USD, see :obj:`tests.accounting.test_report`) and the
sing-box file (0.72 USD, all alice's, see
:obj:`tests.accounting.samples.SING_BOX_FILE`) are the two files.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from ccm.accounting.counters import UsageSnapshot
from ccm.accounting.document import from_document
from ccm.accounting.report import format_report
from ccm.accounting.team import format_team_report
from tests.accounting.samples import SING_BOX_FILE, sample_book
from tests.fixtures import UTC_PLUS_8

BY_CREDENTIAL = """\
By credential (usage file)
file    requests    input  output  cache read  cache write (5m+1h)  cost USD
------  --------  -------  ------  ----------  -------------------  --------
a.json         6  255,600  59,000     550,000               30,000      3.53
b.json        10    1,234   5,678     900,000               20,000      0.72
------  --------  -------  ------  ----------  -------------------  --------
total         16  256,834  64,678   1,450,000               50,000      4.25
"""

BY_USER = """\
By user
user         requests    input  output  cache read  cache write (5m+1h)  cost USD
-----------  --------  -------  ------  ----------  -------------------  --------
alice              13  253,234  49,678   1,300,000               40,000      3.72
bob                 2    3,500  14,000     150,000               10,000      0.50
(anonymous)         1      100   1,000           0                    0      0.03
-----------  --------  -------  ------  ----------  -------------------  --------
total              16  256,834  64,678   1,450,000               50,000      4.25
"""

HEADER = "Usage recorded in 2 files, last updated 2026-03-14T21:15:13.25+08:00\n"


def two_files() -> list[tuple[str, UsageSnapshot]]:
    """
    The sample book as ``a.json`` and the sing-box file as ``b.json``.
    """
    return [("a.json", sample_book().snapshot()), ("b.json", from_document(json.loads(SING_BOX_FILE)))]


class TeamReportTests(SynchronousTestCase):
    """
    :obj:`format_team_report`.
    """

    def test_by_user_adds_the_files(self) -> None:
        """
        A user's row adds its requests, tokens and costs in every file; the
        header names the number of files and the newest update.
        """
        self.assertEqual(format_team_report(two_files(), "user", UTC_PLUS_8), HEADER + "\n" + BY_USER)

    def test_by_credential(self) -> None:
        """
        The table by credential has one row per file with that file's own
        total, and their sum as the total.
        """
        self.assertEqual(
            format_team_report(two_files(), "credential", UTC_PLUS_8), HEADER + "\n" + BY_CREDENTIAL
        )

    def test_all_tables(self) -> None:
        """
        ``all`` shows the tables by user, model, week and credential in that
        order, each ending with the same total.
        """
        report = format_team_report(two_files(), "all", UTC_PLUS_8)
        titles = [line for line in report.splitlines() if line.startswith("By ")]
        self.assertEqual(titles, ["By user", "By model", "By week", "By credential (usage file)"])
        totals = [line for line in report.splitlines() if line.startswith("total")]
        self.assertEqual(len(totals), 4)
        self.assertTrue(all(line.endswith(" 4.25") for line in totals), totals)
        self.assertIn("claude-opus-4-6             200k           10", report)

    def test_one_file_agrees_with_its_report(self) -> None:
        """
        With one file, every table but the one by credential is the single
        file report's.
        """
        [(label, usage)] = two_files()[:1]
        single = format_report(usage, label, "all", UTC_PLUS_8)
        team = format_team_report([(label, usage)], "all", UTC_PLUS_8)
        self.assertEqual(team.split("\n", 1)[1].split("\nBy credential")[0], single.split("\n", 1)[1])

    def test_nothing_recorded(self) -> None:
        """
        Files without any usage say so, and that they were never updated.
        """
        self.assertEqual(
            format_team_report([("a.json", UsageSnapshot()), ("b.json", UsageSnapshot())]),
            "Usage recorded in 2 files, last updated never\nNo usage has been recorded yet.\n",
        )

    def test_unknown_section(self) -> None:
        """
        A section that is no table is a programming error.
        """
        self.assertRaises(ValueError, format_team_report, two_files(), "day")
