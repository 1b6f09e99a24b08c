"""
Tests for :obj:`ccm.cli.interpreter`: a Python without Twisted gets one
line saying so, also from a checkout whose ``twisted/plugins`` directory
looks like a ``twisted`` package.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import ccm
from ccm.cli.interpreter import missing_twisted

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ccm.__file__)))


class MissingTwistedTests(SynchronousTestCase):
    """
    :obj:`missing_twisted`, and ``python -m ccm`` in a Python without
    Twisted.
    """

    def test_twisted_here(self) -> None:
        """
        In the tests' Python, which has Twisted, nothing is missing.
        """
        self.assertIsNone(missing_twisted())

    def test_python_without_twisted(self) -> None:
        """
        ``python -m ccm --version`` from the checkout's root in a Python that
        cannot import the installed Twisted (``-S -I``: no site-packages, so
        only the checkout's ``twisted/`` fragment is found) prints one line
        naming that Python and the ccm to run instead, exit status 1, and no
        traceback.
        """
        result = subprocess.run(
            [sys.executable, "-S", "-I", "-c", "import runpy, sys; sys.path.insert(0, ''); "
             "sys.argv = ['ccm', '--version']; runpy.run_module('ccm', run_name='__main__')"],
            cwd=SOURCE_ROOT,
            capture_output=True,
            timeout=60,
        )
        err = result.stderr.decode()
        self.assertEqual((result.returncode, result.stdout), (1, b""), err)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.startswith(f"ccm: Twisted is not installed for {sys.executable}"), err)
        self.assertIn("bin/ccm", err)
        self.assertNotIn("Traceback", err)
