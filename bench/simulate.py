"""
The replay simulator: a synthetic team week against ccm's real pools, one
row of figures per strategy.

Usage (from the repository root)::

    .venv/bin/python bench/simulate.py --seed 1 [--smoke] [--strategies least_used fallback ...]
        [--load 1.3] [--share-5h 20] [--share-weekly 20] [--json out.json]

Deterministic from ``--seed``: the same seed gives the same figures (but for
the ``seconds`` each run took).  ``--smoke`` simulates a small team for one
day, in about a second, for CI.  The method and the latest full-week
results are in docs/pools.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench.simulator.simulation import Scenario, Setup, run, team_week  # noqa: E402

STRATEGIES = ("least_used", "round_robin", "random", "fallback")
#: The default rows: each strategy with ccm's defaults, the tuning
#: variants of least_used, and each strategy with shares.
DEFAULT_SCENARIOS = (
    *STRATEGIES,
    "least_used:rebalance=10",
    "least_used:rebalance=25",
    "least_used:reserve=5",
    "least_used:reserve=0",
    *(s + "+shares" for s in STRATEGIES),
)

COLUMNS = (
    ("scenario", "scenario", "{}"),
    ("served_pct", "served %", "{:.2f}"),
    ("refused", "429s seen", "{}"),
    ("refused_by_share", "of them shares", "{}"),
    ("absorbed_429", "429s absorbed", "{}"),
    ("sessions_one_credential_pct", "one-credential sessions %", "{:.1f}"),
    ("jain", "Jain", "{:.3f}"),
    ("unused_5h_pct", "unused 5h %", "{:.1f}"),
    ("unused_weekly_pct", "unused weekly %", "{:.1f}"),
    ("seconds", "seconds", "{:.1f}"),
)


def table(rows: list[dict[str, Any]]) -> str:
    """
    The rows as a markdown table.
    """
    lines = [
        "| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows:
        cells = ["n/a" if row[key] is None else form.format(row[key]) for key, _, form in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """
    Parse the command line, run each scenario and print the table.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="a small team for one day (CI)")
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_SCENARIOS),
                        help="scenarios: STRATEGY[:rebalance=N][:reserve=N][+shares]")
    parser.add_argument("--load", type=float, default=None,
                        help="what the week asks for, times the pool's weekly capacity (0.9)")
    parser.add_argument("--share-5h", type=float, default=None,
                        help="every user's share_5h in the +shares rows (default 200/users)")
    parser.add_argument("--share-weekly", type=float, default=None,
                        help="every user's share_weekly in the +shares rows (default 200/users)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:
        scenarios = [Scenario.parse(text) for text in args.strategies]
    except ValueError as error:
        parser.error(str(error))
    setup = Setup(seed=args.seed)
    if args.smoke:
        setup = Setup(seed=args.seed, users=4, heavy=1, days=1.0, load=1.5)
    if args.load is not None:
        setup.load = args.load
    setup.share_5h, setup.share_weekly = args.share_5h, args.share_weekly
    requests = team_week(setup)
    rows = [run(setup, scenario, requests) for scenario in scenarios]
    share_5h, share_weekly = setup.shares_of(len({r.user for r in requests}))
    print(
        f"seed {setup.seed}: {setup.users} users ({setup.heavy} heavy), {setup.days:g} days, "
        f"{len(requests)} requests, load {setup.load:g} x weekly capacity, subscriptions "
        + ", ".join(f"{tag} ({plan})" for tag, plan in setup.subscriptions)
        + f"; +shares: share_5h {share_5h:g} %, share_weekly {share_weekly:g} % each"
    )
    print(table(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"setup": vars(setup), "requests": len(requests), "rows": rows}, handle,
                      indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
