# -*- test-case-name: tests.cli.test_interpreter -*-
"""
Whether the running Python can run ccm at all, checked before anything of
Twisted is imported.

A checkout holds ``twisted/plugins/ccm_plugin.py`` with no ``__init__.py``
above it (the plugin's place, see docs/development.md), so from the
checkout's root ``import twisted`` succeeds even in a Python without Twisted:
it finds the directory as a namespace package.  Real Twisted always wins
over it when installed (a regular package takes precedence over namespace
portions wherever it is on the path), so the fragment shadows nothing; but
without Twisted, the first import of ccm fails with ``No module named
'twisted.logger'``, which points at the wrong culprit.  This module turns
that into one line saying which Python lacks Twisted and what to run
instead.
"""

from __future__ import annotations

import importlib.util
import sys


def missing_twisted(executable: str | None = None) -> str | None:
    """
    Why ccm cannot run in this Python, or ``None`` when Twisted is there.

    :param executable: the interpreter named in the message;
        :obj:`sys.executable` by default.
    """
    try:
        found = importlib.util.find_spec("twisted.logger") is not None
    except ImportError:
        # No module named 'twisted' at all, or a broken parent.
        found = False
    if found:
        return None
    return (
        f"Twisted is not installed for {executable or sys.executable}, so ccm cannot run in it "
        "(a checkout's twisted/plugins directory is not Twisted); run the ccm of the virtual "
        "environment ccm is installed in, such as /opt/ccm/venv/bin/ccm, or install ccm into "
        "this Python with: pip install ."
    )
