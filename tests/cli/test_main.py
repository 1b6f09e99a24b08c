"""
Tests for the ``ccm`` command as a whole (:obj:`ccm.cli`, :obj:`ccm.cli.main`,
``python -m ccm``): ``--version``, the exit statuses of wrong command lines,
the console script that setup.cfg declares, and real processes of both
``python -m ccm`` and the installed ``ccm`` script.
"""

from __future__ import annotations

import configparser
import importlib
import importlib.metadata
import io
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import ccm
from ccm.cli import console
from ccm.cli.main import main, version_line
from tests.e2e import REPO_ROOT, skip_or_fail_without


def run_main(*argv: str) -> tuple[int, str, str]:
    """
    Run the command line: the status, stdout and stderr.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout, stderr)
    return status, stdout.getvalue(), stderr.getvalue()


class MainTests(SynchronousTestCase):
    """
    :obj:`main`: what every subcommand shares.
    """

    def test_version(self) -> None:
        """
        ``--version`` prints ccm's version (the package's), with Twisted's
        and Python's, and exits 0.
        """
        status, out, err = run_main("--version")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, version_line() + "\n")
        self.assertTrue(out.startswith(f"ccm {ccm.__version__} (Twisted "), out)

    def test_no_command(self) -> None:
        """
        Without a command, the usage goes to stderr and the status is 2.
        """
        status, out, err = run_main()
        self.assertEqual((status, out), (2, ""))
        self.assertIn("usage: ccm", err)
        self.assertIn("required", err)

    def test_unknown_command(self) -> None:
        """
        An unknown command is a wrong command line: status 2, naming the
        commands there are.
        """
        status, out, err = run_main("serve")
        self.assertEqual((status, out), (2, ""))
        self.assertIn("invalid choice: 'serve'", err)
        for command in ("check", "token", "usage", "client-env"):
            self.assertIn(command, err)

    def test_help(self) -> None:
        """
        ``--help`` lists every command and the exit statuses on stdout, with
        status 0.
        """
        status, out, err = run_main("--help")
        self.assertEqual((status, err), (0, ""))
        for command in ("check", "token", "usage", "client-env", "--version"):
            self.assertIn(command, out)
        self.assertIn("Exit status: 0 done, 1 problems found or unusable input, 2 wrong command line.", out)

    def test_console_uses_process_streams(self) -> None:
        """
        :obj:`console`, the script's entry, runs the process's arguments and
        returns the status.
        """
        stdout = io.StringIO()
        self.patch(sys, "argv", ["ccm", "token", "--name", "x"])
        self.patch(sys, "stdout", stdout)
        self.patch(sys, "stderr", io.StringIO())
        self.assertEqual(console(), 0)
        self.assertEqual(len(stdout.getvalue().splitlines()), 2)


class EntryPointTests(SynchronousTestCase):
    """
    The console script and ``python -m ccm`` as real processes.
    """

    def test_setup_cfg_declares_the_script(self) -> None:
        """
        setup.cfg's ``console_scripts`` makes ``ccm`` run
        :obj:`ccm.cli.console`, and ``ccm.cli`` is one of its packages.
        """
        parser = configparser.ConfigParser()
        parser.read(os.path.join(REPO_ROOT, "setup.cfg"))
        lines = parser["options.entry_points"]["console_scripts"].split("\n")
        pairs = [line.split("=", 1) for line in lines if line]
        scripts = {name.strip(): target.strip() for name, target in pairs}
        self.assertEqual(scripts, {"ccm": "ccm.cli:console"})
        module, _, name = scripts["ccm"].partition(":")
        self.assertIs(getattr(importlib.import_module(module), name), console)
        self.assertIn("ccm.cli", parser["options"]["packages"].split())

    def test_python_m_ccm_from_the_checkout(self) -> None:
        """
        ``python -m ccm --version`` run from the checkout's root (where
        ``twisted/plugins`` is) works: the same line as ``ccm --version``.
        """
        result = subprocess.run(
            [sys.executable, "-m", "ccm", "--version"],
            cwd=REPO_ROOT,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": REPO_ROOT},
            capture_output=True,
            timeout=60,
        )
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertEqual(result.stdout.decode(), version_line() + "\n")

    def test_installed_script(self) -> None:
        """
        The ``ccm`` script installed beside the tests' Python (``pip
        install .`` in scripts/test) runs from any directory: its
        ``--version`` is this checkout's, ``token`` works, and a wrong
        command line exits 2.  Its entry point is the distribution's.
        """
        script = skip_or_fail_without(
            os.path.join(os.path.dirname(sys.executable), "ccm"),
            "the installed ccm script",
            "./scripts/test installs it (pip install .)",
        )
        [entry] = importlib.metadata.entry_points(group="console_scripts", name="ccm")
        self.assertEqual(entry.value, "ccm.cli:console")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        environment = {"PATH": os.environ.get("PATH", "")}

        def run(*arguments: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([script, *arguments], cwd=directory, env=environment, capture_output=True, timeout=60)

        version = run("--version")
        self.assertEqual(version.returncode, 0, version.stderr)
        self.assertTrue(version.stdout.decode().startswith(f"ccm {ccm.__version__} "), version.stdout)
        token = run("token", "--name", "alice")
        self.assertEqual(token.returncode, 0, token.stderr)
        self.assertEqual(len(token.stdout.splitlines()), 2)
        self.assertEqual(run("frobnicate").returncode, 2)
