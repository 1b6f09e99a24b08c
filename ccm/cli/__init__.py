# -*- test-case-name: tests.cli.test_main -*-
"""
The ``ccm`` command: the operator's tools beside the service (which runs
under ``twistd ccm``).  :obj:`console` is the console script's entry point and
what ``python -m ccm`` runs; :obj:`ccm.cli.main` holds the parser, and each
subcommand has a module of its own.

This module and :obj:`ccm.cli.interpreter` import nothing of Twisted, so that
an interpreter without it gets one clear line instead of a traceback.
"""

from __future__ import annotations

import io
import sys

from ccm.cli.interpreter import missing_twisted


def console() -> int:
    """
    Run ``ccm`` with the process's arguments and streams.

    :return: the exit status (see :obj:`ccm.cli.main.main`).
    """
    problem = missing_twisted()
    if problem is not None:
        sys.stderr.write(f"ccm: {problem}\n")
        return 1
    from ccm.cli.main import main

    if isinstance(sys.stdout, io.TextIOWrapper):
        # A user name or model that the terminal cannot show is escaped
        # rather than ending the report with an encoding error.
        sys.stdout.reconfigure(errors="backslashreplace")
    return main(sys.argv[1:], sys.stdout, sys.stderr)
