"""
The replay simulator (``bench/simulate.py``) keeps working: its smoke mode
runs as the one command it is, and its report holds together.

The figures themselves are measurements (docs/pools.md), not checked here;
what is checked is what must hold for any seed: every request is either
served or refused, percentages and Jain's index are in range, only the rows
with shares (ccm's own share gate) refuse by share, and in the smoke
scenario they do, and one seed gives one set of figures.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tests.e2e import REPO_ROOT, run_python_script

SIMULATE = os.path.join(REPO_ROOT, "bench", "simulate.py")


class SimulateSmokeTests(unittest.TestCase):
    """
    ``bench/simulate.py --smoke`` as a separate process.
    """

    timeout = 120

    def _simulate(self, seed: int, *extra: str) -> Deferred[tuple[str, dict[str, Any]]]:
        """
        Run the smoke mode with ``seed`` and ``extra`` arguments; its table
        and its JSON report.
        """
        out_path = os.path.abspath(self.mktemp())
        argv = [SIMULATE, "--smoke", "--seed", str(seed), "--json", out_path, *extra]
        source = (
            f"import runpy, sys; sys.argv = {argv!r}; "
            f"runpy.run_path({SIMULATE!r}, run_name='__main__')"
        )
        d = run_python_script(self, source, timeout=100)

        def read(result: tuple[int, str, str]) -> tuple[str, dict[str, Any]]:
            rc, out, err = result
            self.assertEqual(rc, 0, "bench/simulate.py --smoke failed:\n" + out + err)
            with open(out_path) as handle:
                return out, json.load(handle)

        return d.addCallback(read)

    def test_report_structure_and_invariants(self) -> Deferred[None]:
        """
        The smoke run prints one table row of figures per default scenario,
        the ``+shares`` rows included; every row accounts for every request
        (served + refused = asked, the share refusals among the refused),
        has percentages within 0..100 and a Jain index in (0, 1]; only the
        ``+shares`` rows refuse by share, with the default equal shares
        (twice a fair part: 50 % for the smoke's four users), and there the
        heavy user's share binds.
        """

        def check(result: tuple[str, dict[str, Any]]) -> None:
            out, report = result
            self.assertIn("| scenario | served % | 429s seen | of them shares |", out)
            self.assertIn("+shares: share_5h 50 %, share_weekly 50 % each", out)
            rows = {row["scenario"]: row for row in report["rows"]}
            for strategy in ("least_used", "round_robin", "random", "fallback"):
                for name in (strategy, strategy + "+shares"):
                    figures = rf"\| {re.escape(name)} \| \d+\.\d\d \| \d+ \| \d+ \|"
                    self.assertRegex(out, figures)
                    row = rows[name]
                    self.assertEqual(row["asked"], report["requests"])
                    self.assertGreater(row["asked"], 0)
                    self.assertEqual(row["served"] + row["refused"], row["asked"])
                    self.assertLessEqual(row["refused_by_share"], row["refused"])
                    self.assertEqual(sum(row["served_by"].values()), row["served"])
                    self.assertGreater(row["jain"], 0.0)
                    self.assertLessEqual(row["jain"], 1.0 + 1e-9)
                    for key in ("served_pct", "sessions_one_credential_pct", "unused_5h_pct"):
                        self.assertGreaterEqual(row[key], 0.0, key)
                        self.assertLessEqual(row[key], 100.0, key)
                self.assertEqual(rows[strategy]["refused_by_share"], 0)
                self.assertIsNone(rows[strategy]["share_5h"])
                shared = rows[strategy + "+shares"]
                self.assertEqual((shared["share_5h"], shared["share_weekly"]), (50.0, 50.0))
                self.assertGreater(shared["refused_by_share"], 0)
                self.assertLess(shared["served"], rows[strategy]["served"])

        return self._simulate(1).addCallback(check)

    def test_same_seed_same_figures(self) -> Deferred[None]:
        """
        Two runs with one seed report the same figures (all but the seconds
        each run took); another seed gives another week.
        """
        results: list[dict[str, Any]] = []

        def keep(result: tuple[str, dict[str, Any]]) -> None:
            results.append(result[1])

        def figures(report: dict[str, Any]) -> list[dict[str, Any]]:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in report["rows"]]

        def compare(_: object) -> None:
            first, second, other = results
            self.assertEqual(figures(first), figures(second))
            self.assertNotEqual(figures(first), figures(other))

        d = self._simulate(7).addCallback(keep)
        d.addCallback(lambda _: self._simulate(7)).addCallback(keep)
        d.addCallback(lambda _: self._simulate(8)).addCallback(keep)
        return d.addCallback(compare)

    def test_share_flags(self) -> Deferred[None]:
        """
        ``--share-5h`` and ``--share-weekly`` set every user's shares: with
        both 0 (no share) the share gate refuses nobody and the ``+shares``
        row serves exactly as the row without; with 10 % each it refuses
        more than the default 50 %.
        """
        strategies = ["--strategies", "least_used", "least_used+shares"]
        default_refusals: list[int] = []

        def figures(row: dict[str, Any]) -> dict[str, Any]:
            return {
                k: v for k, v in row.items()
                if k not in ("scenario", "seconds", "share_5h", "share_weekly")
            }

        def unlimited(result: tuple[str, dict[str, Any]]) -> None:
            plain, shared = result[1]["rows"]
            self.assertEqual(shared["share_5h"], 0.0)
            self.assertEqual(shared["refused_by_share"], 0)
            self.assertEqual(figures(shared), figures(plain))

        def tight(result: tuple[str, dict[str, Any]]) -> None:
            _, shared = result[1]["rows"]
            self.assertEqual((shared["share_5h"], shared["share_weekly"]), (10.0, 10.0))
            self.assertGreater(shared["refused_by_share"], default_refusals[0])

        def default(result: tuple[str, dict[str, Any]]) -> None:
            default_refusals.append(result[1]["rows"][1]["refused_by_share"])

        d = self._simulate(1, *strategies, "--share-5h", "0", "--share-weekly", "0")
        d.addCallback(unlimited)
        d.addCallback(lambda _: self._simulate(1, *strategies))
        d.addCallback(default)
        d.addCallback(
            lambda _: self._simulate(1, *strategies, "--share-5h", "10", "--share-weekly", "10")
        )
        return d.addCallback(tight)
