"""
Tests for :obj:`ccm.files`: reading a JSON file with an explanation of what is
wrong with it, and replacing a file atomically.
"""

from __future__ import annotations

import errno
import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from ccm.files import NEW_FILE_MODE, JSONFileError, read_json_file, replace_file


class ReadJSONFileTests(SynchronousTestCase):
    """
    :obj:`read_json_file` decodes a JSON file or says, in one sentence naming
    it, why it cannot.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "file.json")

    def write(self, data: bytes) -> None:
        """
        Make the file hold ``data``.
        """
        with open(self.path, "wb") as handle:
            handle.write(data)

    def assert_fails(self, reason: str) -> JSONFileError:
        """
        Reading the file fails with ``reason``, in a message naming the file.
        """
        error: JSONFileError = self.assertRaises(JSONFileError, read_json_file, self.path)
        self.assertEqual((error.path, error.reason), (self.path, reason))
        self.assertEqual(str(error), f"{self.path} {reason}")
        return error

    def test_decodes(self) -> None:
        """
        A JSON file gives its decoded content, whatever the top-level type;
        UTF-8 with a byte order mark and UTF-16 are read as ``json.loads``
        reads them.
        """
        for data, expected in (
            (b'{"a": [1, "\xc3\xa9"]}', {"a": [1, "\u00e9"]}),
            (b"[]", []),
            (b"3", 3),
            (b'\xef\xbb\xbf{"a": 1}', {"a": 1}),
            ('{"a": 1}'.encode("utf-16"), {"a": 1}),
        ):
            self.write(data)
            self.assertEqual(read_json_file(self.path), expected, data)

    def test_missing(self) -> None:
        """
        A missing file cannot be read; the operating system's error is kept
        for callers that treat a missing file apart.
        """
        error = self.assert_fails("cannot be read: No such file or directory")
        self.assertIsInstance(error.os_error, FileNotFoundError)
        self.assertEqual((error.line, error.column, error.detail), (None, None, ""))

    def test_directory(self) -> None:
        """
        A directory cannot be read as a file.
        """
        os.mkdir(self.path)
        error = self.assert_fails(f"cannot be read: {os.strerror(errno.EISDIR)}")
        assert error.os_error is not None
        self.assertEqual(error.os_error.errno, errno.EISDIR)

    def test_regular_file_only(self) -> None:
        """
        With ``regular_file_only``, a device is refused before it is read,
        while a regular file is read as usual; without it, a device is read.
        """
        error = self.assertRaises(JSONFileError, read_json_file, os.devnull, regular_file_only=True)
        self.assertEqual((error.reason, error.os_error), ("is not a regular file", None))
        self.assertEqual(self.assertRaises(JSONFileError, read_json_file, os.devnull).reason, "is empty")
        self.write(b"{}")
        self.assertEqual(read_json_file(self.path, regular_file_only=True), {})

    def test_empty(self) -> None:
        """
        An empty or blank file is said to be empty; the decoder's position
        is kept too (a caller may report it as a syntax error).
        """
        self.write(b"")
        error = self.assert_fails("is empty")
        self.assertEqual((error.line, error.column, error.detail), (1, 1, "Expecting value"))
        self.assertIsNone(error.os_error)
        self.write(b" \n\t\n")
        error = self.assert_fails("is empty")
        self.assertEqual((error.line, error.column), (3, 1))

    def test_syntax_error(self) -> None:
        """
        A syntax error is reported with its line, column and the decoder's
        message, never with the content around it.
        """
        self.write(b'{\n  "token": "secret-value",,\n}')
        error = self.assert_fails(
            "is not valid JSON at line 2 column 27: Expecting property name enclosed in double quotes"
        )
        self.assertEqual(
            (error.line, error.column, error.detail),
            (2, 27, "Expecting property name enclosed in double quotes"),
        )
        self.assertNotIn("secret-value", str(error))

    def test_not_utf8(self) -> None:
        """
        Bytes that are not UTF-8 text are not valid JSON, and the message
        says why without quoting them.
        """
        self.write(b'{"token": "caf\xe9"}')
        error = self.assert_fails("is not valid JSON (not UTF-8 text)")
        self.assertEqual((error.line, error.detail), (None, "not UTF-8 text"))
        self.assertNotIn("caf", str(error))

    def test_nested_too_deeply(self) -> None:
        """
        JSON nested deeper than the decoder goes is an error, not a crash.
        """
        self.write(b"[" * 200_000 + b"]" * 200_000)
        self.assertEqual(self.assert_fails("is not valid JSON (nested too deeply)").detail, "nested too deeply")

    def test_number_too_long(self) -> None:
        """
        An integer longer than Python converts is an error, not a crash.
        """
        self.write(b"1" * 5000)
        self.assert_fails("is not valid JSON (a number has too many digits)")


class ReplaceFileTests(SynchronousTestCase):
    """
    :obj:`replace_file` replaces a file in one step or not at all.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def read(self, path: str) -> bytes:
        """
        The bytes of the file at ``path``.
        """
        with open(path, "rb") as handle:
            return handle.read()

    def mode(self, path: str) -> int:
        """
        The permission bits of the file at ``path``.
        """
        return stat.S_IMODE(os.stat(path).st_mode)

    def test_new_file_mode(self) -> None:
        """
        A new file gets exactly the requested mode, not the umask's; without
        one it gets :obj:`NEW_FILE_MODE`, 0600.
        """
        path = os.path.join(self.directory, "new.json")
        replace_file(path, b"{}", NEW_FILE_MODE)
        self.assertEqual(self.mode(path), 0o600)
        self.assertEqual(self.read(path), b"{}")
        other = os.path.join(self.directory, "other.json")
        old_umask = os.umask(0)
        self.addCleanup(os.umask, old_umask)
        replace_file(other, b"[]")
        self.assertEqual((self.mode(other), NEW_FILE_MODE), (0o600, 0o600))
        replace_file(other, b"[1]", 0o640)
        self.assertEqual((self.mode(other), self.read(other)), (0o640, b"[1]"))

    def test_keeps_mode(self) -> None:
        """
        Without a mode, the replaced file's mode is kept, and nothing but
        the file is left in its directory.
        """
        path = os.path.join(self.directory, "kept.json")
        replace_file(path, b"old", 0o644)
        replace_file(path, b"new")
        self.assertEqual((self.mode(path), self.read(path)), (0o644, b"new"))
        self.assertEqual(os.listdir(self.directory), ["kept.json"])

    def test_writes_through_symlink(self) -> None:
        """
        A symbolic link is written through: the linked-to file is replaced,
        keeps its mode, and the link stays a link.
        """
        real = os.path.join(self.directory, "real.json")
        replace_file(real, b"old", 0o640)
        link = os.path.join(self.directory, "link.json")
        os.symlink(real, link)
        replace_file(link, b"new")
        self.assertTrue(os.path.islink(link))
        self.assertEqual((self.read(real), self.mode(real)), (b"new", 0o640))
        self.assertEqual(sorted(os.listdir(self.directory)), ["link.json", "real.json"])

    def test_target_cannot_be_replaced(self) -> None:
        """
        When the rename fails (the target is a non-empty directory), the
        target is untouched and the temporary file is removed; the error
        names the path and never the data.
        """
        target = os.path.join(self.directory, "target")
        os.makedirs(os.path.join(target, "inside"))
        error = self.assertRaises(OSError, replace_file, target, b"secret-data", 0o600)
        self.assertEqual(error.filename, target)
        self.assertIn(target, str(error))
        self.assertNotIn("secret-data", str(error))
        self.assertEqual(os.listdir(self.directory), ["target"])
        self.assertEqual(os.listdir(target), ["inside"])

    def test_missing_directory(self) -> None:
        """
        A target in a directory that does not exist fails with an error
        naming it.
        """
        target = os.path.join(self.directory, "absent", "file.json")
        error = self.assertRaises(OSError, replace_file, target, b"{}", 0o600)
        self.assertIn(target, str(error))
        self.assertIn(os.strerror(errno.ENOENT), str(error))
        self.assertIsInstance(error, FileNotFoundError)

    def test_failed_flush(self) -> None:
        """
        When the data cannot be flushed to disk, the old file stays as it
        was and the temporary file is removed.
        """
        path = os.path.join(self.directory, "file.json")
        replace_file(path, b"old")

        def failing_fsync(descriptor: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        self.patch(os, "fsync", failing_fsync)
        error = self.assertRaises(OSError, replace_file, path, b"new")
        self.assertEqual((error.errno, error.filename), (errno.EIO, path))
        self.assertEqual(self.read(path), b"old")
        self.assertEqual(os.listdir(self.directory), ["file.json"])
