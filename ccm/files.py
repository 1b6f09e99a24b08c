# -*- test-case-name: tests.test_files -*-
"""
The files ccm keeps, read and written one way: a JSON file is read by
:obj:`read_json_file`, which explains in words why one cannot be used, and every
file ccm writes (refreshed credentials, usage) is replaced atomically by
:obj:`replace_file`.

Twisted's ``FilePath.setContent`` renames a temporary sibling too, but it
neither flushes the data to disk nor keeps the file's mode, which both
matter here: a crash must not leave half a credentials file, and a
credentials file must not become readable by others.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile

#: The mode of a file ccm creates: it holds tokens or user names.
NEW_FILE_MODE = 0o600


class JSONFileError(Exception):
    """
    A JSON file cannot be read, or what it holds is not JSON.

    Its text is a sentence naming the file, such as ``config.json is not
    valid JSON at line 3 column 21: Expecting ',' delimiter``; a caller that
    words its messages its own way finds the parts in the attributes.  None
    of them quotes the file's content, which may hold tokens.

    :ivar path: the file, as given.
    :ivar reason: what is wrong, worded to follow the file's name:
        ``cannot be read: Permission denied``, ``is not a regular file``,
        ``is empty``,
        ``is not valid JSON at line 3 column 21: Expecting ',' delimiter``,
        ``is not valid JSON (not UTF-8 text)``,
        ``is not valid JSON (nested too deeply)`` or
        ``is not valid JSON (a number has too many digits)``.
    :ivar os_error: why the file could not be read, or ``None`` when it was
        read.
    :ivar line: the line of a JSON syntax error (an empty file has one at
        line 1 column 1), or ``None``.
    :ivar column: the column of that error, or ``None``.
    :ivar detail: what is wrong with the content in a few words: the JSON
        decoder's message (``Expecting value``) when ``line`` is set, else
        ``not UTF-8 text``, ``nested too deeply`` or ``a number has too many
        digits``; ``""`` when the file could not be read.
    """

    def __init__(
        self,
        path: str,
        reason: str,
        *,
        os_error: OSError | None = None,
        line: int | None = None,
        column: int | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.reason = reason
        self.os_error = os_error
        self.line = line
        self.column = column
        self.detail = detail


def read_json_file(path: str, regular_file_only: bool = False) -> object:
    """
    The decoded content of the JSON file at ``path`` (UTF-8, or UTF-16 or
    UTF-32 as ``json.loads`` detects it).

    :param regular_file_only: refuse anything but a regular file (reason
        ``is not a regular file``), such as a device, which could be read
        for ever; by default a pipe (``--config <(...)``) is read too.
    :raises JSONFileError: when the file cannot be read, is empty or blank,
        is not text or not JSON, or is nested or holds numbers beyond what
        Python's decoder takes.  Never another error for the content.
    """
    try:
        with open(path, "rb") as handle:
            if regular_file_only and not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise JSONFileError(path, "is not a regular file")
            raw = handle.read()
    except OSError as error:
        raise JSONFileError(
            path, f"cannot be read: {error.strerror or error}", os_error=error
        ) from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        if raw.strip():
            reason = f"is not valid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        else:
            reason = "is empty"
        problem = JSONFileError(
            path, reason, line=error.lineno, column=error.colno, detail=error.msg
        )
    except UnicodeDecodeError:
        problem = _not_valid(path, "not UTF-8 text")
    except RecursionError:
        problem = _not_valid(path, "nested too deeply")
    except ValueError:
        # The one other refusal of the decoder: an integer longer than
        # Python converts (sys.get_int_max_str_digits()).
        problem = _not_valid(path, "a number has too many digits")
    raise problem


def _not_valid(path: str, detail: str) -> JSONFileError:
    return JSONFileError(path, f"is not valid JSON ({detail})", detail=detail)


def replace_file(path: str, data: bytes, mode: int | None = None) -> None:
    """
    Replace the file at ``path`` with ``data`` atomically: write a temporary
    file beside it, flush it to disk, and rename it over the target, so
    that a reader sees the old content or the new, never a part.

    A symbolic link at ``path`` is written through: the file it names is
    replaced and the link stays, so every user of that file sees the new
    content.

    :param mode: the new file's permission bits; by default those of the
        file it replaces, or :obj:`NEW_FILE_MODE` when there is none.
    :raises OSError: when any step fails, naming ``path`` (``filename``); the
        target is then unchanged and no temporary file is left.
    """
    target = os.path.realpath(path)
    try:
        if mode is None:
            try:
                mode = stat.S_IMODE(os.stat(target).st_mode)
            except FileNotFoundError:
                mode = NEW_FILE_MODE
        _replace(target, data, mode)
    except OSError as error:
        raise OSError(error.errno, error.strerror, path) from error


def _replace(target: str, data: bytes, mode: int) -> None:
    directory = os.path.dirname(target) or "."
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".ccm-tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
