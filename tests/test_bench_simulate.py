"""
The replay simulator (``bench/simulate.py``) keeps working: its smoke mode
runs as the one command it is, and its report holds together.

The figures themselves are measurements (docs/pools.md), not checked here;
what is checked is what must hold for any seed: every request is either
served or refused, percentages and Jain's index are in range, the rows with
shares say they are not measured yet, and one seed gives one set of figures.
"""

from __future__ import annotations

import json
import os
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

    def _simulate(self, seed: int) -> Deferred[tuple[str, dict[str, Any]]]:
        """
        Run the smoke mode with ``seed``; its table and its JSON report.
        """
        out_path = os.path.abspath(self.mktemp())
        argv = [SIMULATE, "--smoke", "--seed", str(seed), "--json", out_path]
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

    def test_report_structure_and_invariants(self) -> None:
        """
        The smoke run prints one table row per default scenario; every
        measured row accounts for every request (served + refused = asked),
        has percentages within 0..100 and a Jain index in (0, 1]; the rows
        with shares are reported as not yet measured.
        """

        def check(result: tuple[str, dict[str, Any]]) -> None:
            out, report = result
            self.assertIn("| scenario | served % |", out)
            rows = {row["scenario"]: row for row in report["rows"]}
            for strategy in ("least_used", "round_robin", "random", "fallback"):
                self.assertRegex(out, rf"\| {strategy} \| \d+\.\d\d \|")
                self.assertFalse(rows[strategy + "+shares"]["measured"])
                self.assertIn(f"| {strategy}+shares | not yet measured |", out)
                row = rows[strategy]
                self.assertTrue(row["measured"])
                self.assertEqual(row["asked"], report["requests"])
                self.assertGreater(row["asked"], 0)
                self.assertEqual(row["served"] + row["refused"], row["asked"])
                self.assertEqual(sum(row["served_by"].values()), row["served"])
                self.assertGreater(row["jain"], 0.0)
                self.assertLessEqual(row["jain"], 1.0 + 1e-9)
                for key in ("served_pct", "sessions_one_credential_pct", "unused_5h_pct"):
                    self.assertGreaterEqual(row[key], 0.0, key)
                    self.assertLessEqual(row[key], 100.0, key)

        return self._simulate(1).addCallback(check)

    def test_same_seed_same_figures(self) -> None:
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
