"""
Tests for what ``pip install .`` puts in a wheel: setup.cfg lists the
packages one by one, so a new subpackage that is not listed works in the
checkout and is missing once installed.
"""

from __future__ import annotations

import configparser
import os

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e import REPO_ROOT


def listed_packages() -> set[str]:
    """
    The packages setup.cfg's ``[options] packages`` names.
    """
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO_ROOT, "setup.cfg"))
    return {line.strip() for line in parser["options"]["packages"].splitlines() if line.strip()}


def packages_in(top: str) -> set[str]:
    """
    Every package (a directory with an ``__init__.py``) of the checkout
    under ``top``, by dotted name.
    """
    found = set()
    for directory, subdirectories, files in os.walk(os.path.join(REPO_ROOT, top)):
        subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
        if "__init__.py" in files:
            relative = os.path.relpath(directory, REPO_ROOT)
            found.add(relative.replace(os.sep, "."))
    return found


class PackagesTests(SynchronousTestCase):
    """
    setup.cfg names every package of ``ccm``.
    """

    def test_every_package_listed(self) -> None:
        """
        Each subpackage of ``ccm`` in the checkout is in setup.cfg's list, so
        the installed ccm has it too (``ccm.shares`` once was not, and the
        installed ``ccm`` command failed to import).
        """
        self.assertEqual(packages_in("ccm") - listed_packages(), set())
