# -*- test-case-name: tests.cli.test_main -*-
"""
``python -m ccm``: the ``ccm`` command (:obj:`ccm.cli`), for a Python whose
scripts directory is not at hand.
"""

import sys

from ccm.cli import console

if __name__ == "__main__":
    sys.exit(console())
