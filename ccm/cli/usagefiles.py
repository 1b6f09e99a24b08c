# -*- test-case-name: tests.cli.test_usage -*-
"""
Reading a usages file for the command line: only reading, never writing,
moving or locking it, so that it is safe while ccm saves it.
"""

from __future__ import annotations

from ccm.accounting.counters import UsageSnapshot
from ccm.accounting.document import UsageFileError, from_document
from ccm.files import JSONFileError, read_json_file


def read_usage(path: str) -> UsageSnapshot:
    """
    Read the usages file at ``path``, without changing anything on disk.

    :raises OSError: when it cannot be read.
    :raises ValueError: when it is not a usages file, with a message for
        people.
    """
    try:
        document = read_json_file(path, regular_file_only=True)
    except JSONFileError as error:
        if error.os_error is not None:
            raise error.os_error from None
        raise ValueError(f"it {error.reason}") from None
    try:
        return from_document(document)
    except UsageFileError as error:
        raise ValueError(f"it does not hold usage statistics ({error})")
