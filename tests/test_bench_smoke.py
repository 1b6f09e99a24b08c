"""
The benchmark harness (``bench/run.py``) keeps working: its smoke mode runs
end to end (fake upstream, a real ccm process, nginx) and prints its table.

No figure is checked: the smoke sizes are tiny and timings on a shared CI
machine mean nothing. See docs/performance.md for the real run.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Optional

from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tests.e2e import REPO_ROOT, debian_package, run_python_script, skip_or_fail_without

BENCH = os.path.join(REPO_ROOT, "bench", "run.py")

#: A table row of the harness: ``| <path> | <number> | ...``.
_ROW = r"^\| {} \| \d+\.\d+ \|"


def nginx_bin() -> Optional[str]:
    """
    Where nginx is (it lives in /usr/sbin, not always on a user's PATH).
    """
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


class BenchSmokeTests(unittest.TestCase):
    """
    ``bench/run.py --smoke`` as a separate process.
    """

    timeout = 180

    def test_smoke_run_prints_every_path(self) -> Deferred[None]:
        """
        The smoke run exits 0 and prints one table with a row of figures for
        each path (direct, nginx, the twisted floor, ccm) and the list of ccm targets.
        """
        skip_or_fail_without(nginx_bin(), "nginx", debian_package("nginx-light"))
        source = "import runpy, sys; sys.argv = [{path!r}, '--smoke']; runpy.run_path({path!r}, run_name='__main__')".format(
            path=BENCH
        )
        d = run_python_script(self, source, timeout=150)

        def check(result: tuple[int, str, str]) -> None:
            rc, out, err = result
            self.assertEqual(rc, 0, "bench/run.py --smoke failed:\n" + out + err)
            for path in ("direct", "nginx", "twisted", "ccm"):
                self.assertRegex(out, re.compile(_ROW.format(path), re.MULTILINE))
            self.assertIn("| ccm target | target | ccm | nginx | met |", out)
            self.assertIn("Machine: ", out)

        return d.addCallback(check)
