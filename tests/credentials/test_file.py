"""
Tests for :obj:`ccm.credentials.file`: finding, reading and safely rewriting
Claude Code's credentials file.
"""

from __future__ import annotations

import errno
import json
import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from ccm.credentials import file as credentialfile
from ccm.credentials.file import (
    CredentialFile,
    CredentialFileError,
    OAuthTokens,
    default_credential_path,
)
from tests.fixtures import credentials_document, write_credentials, write_document

ACCESS = "sk-ant-oat01-secret-access-token"
REFRESH = "sk-ant-ort01-secret-refresh-token"
EXPIRES_AT_MS = 1_790_003_600_000
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT_SKIP = (
    "running as root: root bypasses permission bits, so a file or directory "
    "cannot be made unwritable here (the refusal itself is covered by "
    "CheckWritableTests.test_unwritable_directory_reported and by "
    "tests.credentials.test_credential with an unwritable store)"
)


class CredentialFileTestCase(SynchronousTestCase):
    """
    Helpers for tests that need a credentials file in a fresh directory.
    """

    def setUp(self) -> None:
        self.directory: str = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, ".credentials.json")
        self.store = CredentialFile(self.path)

    def write_raw(self, data: bytes, mode: int = 0o600) -> None:
        """
        Put ``data`` in the credentials file with ``mode``.
        """
        write_document(self.path, data, mode)

    def write_document(self, document: object, mode: int = 0o600) -> None:
        """
        Put ``document``, as JSON, in the credentials file.
        """
        self.write_raw(json.dumps(document, indent=2).encode("utf-8"), mode)

    def read_raw(self) -> bytes:
        """
        The bytes of the credentials file.
        """
        with open(self.path, "rb") as handle:
            return handle.read()

    def assert_read_fails(self, *fragments: str) -> str:
        """
        Reading fails with a message naming the file and containing each of
        ``fragments``, and never any token.

        :return: the message.
        """
        error = self.assertRaises(CredentialFileError, self.store.read)
        message = str(error)
        self.assertIn(self.path, message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        self.assertNotIn(ACCESS, message)
        self.assertNotIn(REFRESH, message)
        return message


class DefaultPathTests(SynchronousTestCase):
    """
    :obj:`default_credential_path` finds the file where Claude Code keeps it.
    """

    def test_config_dir(self) -> None:
        """
        ``CLAUDE_CONFIG_DIR``, when set, holds the file.
        """
        path = default_credential_path({"CLAUDE_CONFIG_DIR": "/srv/claude"}, "/home/u")
        self.assertEqual(path, "/srv/claude/.credentials.json")

    def test_home(self) -> None:
        """
        Without ``CLAUDE_CONFIG_DIR`` the file is ``~/.claude/.credentials.json``.
        """
        path = default_credential_path({"HOME": "/elsewhere"}, "/home/u")
        self.assertEqual(path, "/home/u/.claude/.credentials.json")

    def test_empty_config_dir(self) -> None:
        """
        An empty ``CLAUDE_CONFIG_DIR`` counts as unset.
        """
        path = default_credential_path({"CLAUDE_CONFIG_DIR": ""}, "/home/u")
        self.assertEqual(path, "/home/u/.claude/.credentials.json")


class ReadTests(CredentialFileTestCase):
    """
    :obj:`CredentialFile.read` returns the tokens of a good file and explains,
    without quoting it, what is wrong with a bad one.
    """

    def test_good_file(self) -> None:
        """
        Tokens, expiry, subscription type and rate-limit tier are read.
        """
        self.write_document(credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS))
        tokens = self.store.read()
        self.assertEqual(
            tokens,
            OAuthTokens(
                access_token=ACCESS,
                refresh_token=REFRESH,
                expires_at_ms=EXPIRES_AT_MS,
                subscription_type="max",
                rate_limit_tier="default_claude_max_20x",
            ),
        )

    def test_repr_hides_tokens(self) -> None:
        """
        The repr of the tokens, which may end up in a log or traceback,
        shows neither token.
        """
        self.write_document(credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS))
        text = repr(self.store.read())
        self.assertIn(str(EXPIRES_AT_MS), text)
        self.assertNotIn(ACCESS, text)
        self.assertNotIn(REFRESH, text)

    def test_optional_fields(self) -> None:
        """
        A file with only an access token reads with an empty refresh token,
        a zero (never) expiry and an unknown plan; a float expiry is
        truncated to whole milliseconds.
        """
        self.write_document({"claudeAiOauth": {"accessToken": ACCESS}})
        self.assertEqual(self.store.read(), OAuthTokens(ACCESS, "", 0))
        self.write_document(
            credentials_document(
                ACCESS,
                REFRESH,
                oauth={"expiresAt": 1.5e12, "subscriptionType": None, "rateLimitTier": 7},
            )
        )
        tokens = self.store.read()
        self.assertEqual(tokens.expires_at_ms, 1_500_000_000_000)
        self.assertEqual(tokens.subscription_type, "")
        self.assertEqual(tokens.rate_limit_tier, "")

    def test_relative_path_made_absolute(self) -> None:
        """
        The store remembers an absolute path, so messages and the file
        watcher do not depend on the working directory.
        """
        store = CredentialFile("relative/.credentials.json")
        self.assertTrue(os.path.isabs(store.path))
        self.assertTrue(store.path.endswith(os.path.join("relative", ".credentials.json")))

    def test_missing(self) -> None:
        """
        A missing file says it does not exist and how to create it.
        """
        self.assert_read_fails("does not exist", "`claude /login`")

    def test_empty(self) -> None:
        """
        An empty or blank file is reported as empty.
        """
        self.write_raw(b"")
        self.assert_read_fails("is empty")
        self.write_raw(b" \n\t\n")
        self.assert_read_fails("is empty")

    def test_invalid_json(self) -> None:
        """
        Invalid JSON is reported with its line and column, and the message
        never quotes the content, which holds the tokens.
        """
        self.write_raw(
            b'{\n  "claudeAiOauth": {\n    "accessToken": "' + ACCESS.encode() + b'",,\n'
        )
        message = self.assert_read_fails("not valid JSON", "line 3 column")
        self.assertNotIn("accessToken", message)

    def test_invalid_utf8(self) -> None:
        """
        A file that is not text is reported as invalid JSON, not as a
        crash.
        """
        self.write_raw(b'{"claudeAiOauth": "\xff\xfe"}')
        self.assert_read_fails("not valid JSON")

    def test_not_an_object(self) -> None:
        """
        A JSON document other than an object is refused.
        """
        document: object
        for document in ([], "token", None, 3):
            self.write_document(document)
            self.assert_read_fails("does not hold a JSON object")

    def test_no_oauth_section(self) -> None:
        """
        A file without a ``claudeAiOauth`` object (for example one with only
        an API key) says to log in with ``claude /login``.
        """
        for document in ({"primaryApiKey": "x"}, {"claudeAiOauth": "x"}, {"claudeAiOauth": None}):
            self.write_document(document)
            self.assert_read_fails("no claudeAiOauth object", "`claude /login`")

    def test_no_access_token(self) -> None:
        """
        A missing, empty or non-string access token is refused.
        """
        for value in (None, "", 12, ["x"]):
            document = credentials_document(
                ACCESS, REFRESH, EXPIRES_AT_MS, oauth={"accessToken": value}
            )
            if value is None:
                del document["claudeAiOauth"]["accessToken"]
            self.write_document(document)
            self.assert_read_fails("no claudeAiOauth.accessToken")

    def test_bad_types(self) -> None:
        """
        A refresh token that is not a string, or an expiry that is not a
        number (booleans included), is refused naming the field.
        """
        self.write_document(
            credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS, oauth={"refreshToken": 42})
        )
        self.assert_read_fails("claudeAiOauth.refreshToken is not a string")
        value: object
        for value in ("1790003600000", True, None, {}):
            self.write_document(credentials_document(ACCESS, REFRESH, oauth={"expiresAt": value}))
            self.assert_read_fails("claudeAiOauth.expiresAt is not a number")

    def test_unreadable(self) -> None:
        """
        A path that cannot be read as a file (here, a directory) is
        reported with the operating system's reason.
        """
        os.mkdir(self.path)
        self.assert_read_fails("cannot read credential file", os.strerror(errno.EISDIR))


class TokensTests(SynchronousTestCase):
    """
    :obj:`OAuthTokens` knows when it expires and how it looks after a refresh.
    """

    def test_expires_within(self) -> None:
        """
        A token expires within the margin once ``now`` reaches the expiry
        minus the margin, and not a moment before.
        """
        tokens = OAuthTokens(ACCESS, REFRESH, expires_at_ms=1_000_000)
        self.assertFalse(tokens.expires_within(939.999, 60))
        self.assertTrue(tokens.expires_within(940, 60))
        self.assertFalse(tokens.expires_within(999.999, 0))
        self.assertTrue(tokens.expires_within(1000, 0))
        self.assertTrue(tokens.expires_within(5000, 60))

    def test_zero_expiry_never_expires(self) -> None:
        """
        An expiry of 0 means the token never expires, however late it is.
        """
        tokens = OAuthTokens(ACCESS, REFRESH, expires_at_ms=0)
        self.assertFalse(tokens.expires_within(1e12, 300))

    def test_refreshed(self) -> None:
        """
        After a refresh the tokens and expiry are replaced, the plan is
        kept, and an empty rotated refresh token keeps the current one.
        """
        tokens = OAuthTokens(ACCESS, REFRESH, 1, "max", "default_claude_max_5x")
        rotated = tokens.refreshed("new-access", "new-refresh", 2)
        self.assertEqual(
            rotated, OAuthTokens("new-access", "new-refresh", 2, "max", "default_claude_max_5x")
        )
        kept = tokens.refreshed("new-access", "", 3)
        self.assertEqual(kept.refresh_token, REFRESH)
        self.assertEqual(kept.expires_at_ms, 3)


class WriteTokensTests(CredentialFileTestCase):
    """
    :obj:`CredentialFile.write_tokens` saves refreshed tokens without losing
    anything and without ever leaving a broken or partial file.
    """

    def new_tokens(self) -> OAuthTokens:
        """
        Tokens as they look after a refresh.
        """
        return OAuthTokens("new-access", "new-refresh", EXPIRES_AT_MS + 28_800_000, "max")

    def test_keeps_unknown_keys(self) -> None:
        """
        Only the three token fields change; every other key, at the top
        level and inside ``claudeAiOauth``, is kept with its value.
        """
        unknown_oauth = {"isMax": True, "futureField": {"nested": [1, 2]}}
        unknown_top_level = {"mcpOAuth": {"server": {"token": "kept"}}, "unknownTopLevel": 7}
        self.write_document(
            credentials_document(
                ACCESS, REFRESH, EXPIRES_AT_MS, oauth=unknown_oauth, extra=unknown_top_level
            )
        )
        self.store.write_tokens(self.new_tokens())
        written = json.loads(self.read_raw())
        expected = credentials_document(
            "new-access",
            "new-refresh",
            EXPIRES_AT_MS + 28_800_000,
            oauth=unknown_oauth,
            extra=unknown_top_level,
        )
        self.assertEqual(written, expected)
        self.assertEqual(
            self.store.read(),
            OAuthTokens(
                "new-access",
                "new-refresh",
                EXPIRES_AT_MS + 28_800_000,
                "max",
                "default_claude_max_20x",
            ),
        )

    def test_keeps_mode(self) -> None:
        """
        The file keeps its permission bits, whatever they are.
        """
        for mode in (0o640, 0o600, 0o644):
            self.write_document(credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS), mode=mode)
            self.store.write_tokens(self.new_tokens())
            self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), mode, oct(mode))

    def test_atomic_replace(self) -> None:
        """
        The new content is a new file renamed over the old one (a reader
        never sees a half-written file), and no temporary file is left.
        """
        self.write_document(credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS))
        before = os.stat(self.path).st_ino
        self.store.write_tokens(self.new_tokens())
        self.assertNotEqual(os.stat(self.path).st_ino, before)
        self.assertEqual(os.listdir(self.directory), [".credentials.json"])

    def test_failure_leaves_original(self) -> None:
        """
        When writing the new file fails (here, the disk refuses to sync),
        the original file is untouched, no temporary file is left, and the
        error names the file but no token.
        """
        self.write_document(credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS))
        original = self.read_raw()

        def failing_fsync(descriptor: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        self.patch(credentialfile.os, "fsync", failing_fsync)
        error = self.assertRaises(
            CredentialFileError, self.store.write_tokens, self.new_tokens()
        )
        self.assertIn(self.path, str(error))
        self.assertIn(os.strerror(errno.EIO), str(error))
        self.assertNotIn("new-access", str(error))
        self.assertEqual(self.read_raw(), original)
        self.assertEqual(os.listdir(self.directory), [".credentials.json"])

    def test_refuses_invalid_file(self) -> None:
        """
        A file that became invalid JSON since it was read is not
        overwritten: the write fails and the file stays as it is.
        """
        broken = b'{"claudeAiOauth": {"accessToken": "half'
        self.write_raw(broken)
        error = self.assertRaises(
            CredentialFileError, self.store.write_tokens, self.new_tokens()
        )
        self.assertIn("not valid JSON", str(error))
        self.assertEqual(self.read_raw(), broken)
        self.assertEqual(os.listdir(self.directory), [".credentials.json"])

    def test_refuses_deleted_file(self) -> None:
        """
        A file deleted since it was read (a logout) is not recreated.
        """
        error = self.assertRaises(
            CredentialFileError, self.store.write_tokens, self.new_tokens()
        )
        self.assertIn("does not exist", str(error))
        self.assertEqual(os.listdir(self.directory), [])

    def test_writes_through_symlink(self) -> None:
        """
        When the credentials path is a symbolic link, the linked-to file is
        updated and the link stays a link, so every user of that file sees
        the rotated refresh token.
        """
        real_directory = os.path.abspath(self.mktemp())
        os.makedirs(real_directory)
        real_path = os.path.join(real_directory, "claude-credentials.json")
        write_credentials(real_path, ACCESS, REFRESH, EXPIRES_AT_MS, mode=0o640)
        os.symlink(real_path, self.path)
        self.store.write_tokens(self.new_tokens())
        self.assertTrue(os.path.islink(self.path))
        with open(real_path) as handle:
            written = json.load(handle)
        self.assertEqual(written["claudeAiOauth"]["refreshToken"], "new-refresh")
        self.assertEqual(stat.S_IMODE(os.stat(real_path).st_mode), 0o640)
        self.assertEqual(sorted(os.listdir(real_directory)), ["claude-credentials.json"])

    def test_unwritable_directory(self) -> None:
        """
        When the directory refuses new files, the write fails cleanly and
        the original file is untouched.
        """
        self.write_document(credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS))
        original = self.read_raw()
        os.chmod(self.directory, 0o500)
        self.addCleanup(os.chmod, self.directory, 0o700)
        error = self.assertRaises(
            CredentialFileError, self.store.write_tokens, self.new_tokens()
        )
        self.assertIn(os.strerror(errno.EACCES), str(error))
        self.assertEqual(self.read_raw(), original)

    if AS_ROOT:
        test_unwritable_directory.skip = ROOT_SKIP  # type: ignore[attr-defined]


class CheckWritableTests(CredentialFileTestCase):
    """
    :obj:`CredentialFile.check_writable` refuses when refreshed tokens could not
    be saved.
    """

    def assert_refused(self) -> None:
        """
        The check fails with a message that names the file and explains
        why a refresh is refused.
        """
        error = self.assertRaises(CredentialFileError, self.store.check_writable)
        self.assertIn(self.path, str(error))
        self.assertIn("not writable", str(error))
        self.assertIn("refuses to refresh", str(error))

    def test_writable(self) -> None:
        """
        A writable file in a writable directory passes.
        """
        self.write_document(credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS))
        # The None the check returns is what is tested.
        self.assertIsNone(self.store.check_writable())  # type: ignore[func-returns-value]

    def test_missing_file_refused(self) -> None:
        """
        A file that does not exist cannot be rewritten, so it is refused
        (this holds for root too).
        """
        self.assert_refused()

    def test_unwritable_directory_reported(self) -> None:
        """
        The directory is checked as well as the file (the new file is
        created there): when the system reports it unwritable, the check
        fails.  The system's answer is simulated so that this holds when
        the tests run as root.
        """
        self.write_document(credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS))
        checked: list[str] = []

        def access(path: str, mode: int) -> bool:
            checked.append(path)
            return path != self.directory

        self.patch(credentialfile.os, "access", access)
        self.assert_refused()
        self.assertIn(self.directory, checked)

    def test_read_only_file(self) -> None:
        """
        A read-only file is refused.
        """
        self.write_document(credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS), mode=0o400)
        self.assert_refused()

    def test_read_only_directory(self) -> None:
        """
        A writable file in a read-only directory is refused, since the
        atomic replacement needs to create a file beside it.
        """
        self.write_document(credentials_document(ACCESS, REFRESH, EXPIRES_AT_MS))
        os.chmod(self.directory, 0o500)
        self.addCleanup(os.chmod, self.directory, 0o700)
        self.assert_refused()

    if AS_ROOT:
        test_read_only_file.skip = ROOT_SKIP  # type: ignore[attr-defined]
        test_read_only_directory.skip = ROOT_SKIP  # type: ignore[attr-defined]
