"""
Tests for :obj:`ccm.credentials.keychain` and :obj:`ccm.credentials.store`: Claude Code's
credentials in the macOS keychain, read through ``keyring``, with the file as
fallback (the choice :obj:`ccm.credentials.store.credential_store_for` makes) and
write-backs off the reactor.

The keychain is a real ``keyring`` backend class holding items in a dict
(:obj:`tests.credentials.fake_keyring`), so the tests run on Linux; write-backs
go through a runner that records each call and either runs it at once or
waits to be released.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, TypeVar

from keyring.backends import fail as fail_backend
from keyring.errors import KeyringError, PasswordSetError
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.credentials.file import CredentialFile, CredentialFileError, OAuthTokens
from ccm.credentials.credential import REFRESH_RETRY_SECONDS, Credential, CredentialUnavailable
from ccm.credentials.keychain import KEYCHAIN_SERVICE, KeychainStore, keychain_account, keychain_service_name
from ccm.credentials.oauth import RefreshError, TokenGrant
from ccm.credentials.lock import RefreshLock
from ccm.credentials.store import credential_store_for, lock_directory_for
from tests.credentials.fake_keyring import DictKeyring
from tests.fixtures import credentials_json, logged_events, write_document


START_TIME = 1_790_000_000.0
ACCESS = "sk-ant-oat01-keychain-access"
REFRESH = "sk-ant-ort01-keychain-refresh"
NEW_ACCESS = "sk-ant-oat01-keychain-new-access"
NEW_REFRESH = "sk-ant-ort01-keychain-new-refresh"
LOGIN_ACCESS = "sk-ant-oat01-keychain-login-access"
LOGIN_REFRESH = "sk-ant-ort01-keychain-login-refresh"
TOKEN_PREFIX = "sk-ant-"
USER = "alice"
HOME = "/Users/alice"


_Result = TypeVar("_Result")


class RecordingRunner:
    """
    Stands in for ``deferToThread``: records each function and runs it at
    once, or, with ``hold``, only when the test calls :obj:`release`.
    """

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.calls: list[Callable[[], object]] = []
        self._held: list[tuple[Callable[[], object], Deferred[Any]]] = []

    def __call__(self, function: Callable[[], _Result]) -> Deferred[_Result]:
        self.calls.append(function)
        if not self.hold:
            return maybeDeferred(function)
        result: Deferred[_Result] = Deferred()
        self._held.append((function, result))
        return result

    def release(self) -> None:
        """
        Run the oldest held function and fire its Deferred with the result.
        """
        function, result = self._held.pop(0)
        maybeDeferred(function).chainDeferred(result)

    @property
    def pending(self) -> int:
        """
        How many held functions have not run yet.
        """
        return len(self._held)


class KeychainTestCase(SynchronousTestCase):
    """
    A dict keyring, a temporary home, and a check that no token is logged.
    """

    def setUp(self) -> None:
        self.events = logged_events(self)
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.home, ".claude"))
        self.environ = {"USER": USER}
        self.backend = DictKeyring()
        self.runner = RecordingRunner()
        self.addCleanup(self.assert_no_token_logged)

    def assert_no_token_logged(self) -> None:
        """
        No log event mentions any token, in its text or its fields.
        """
        for event in self.events:
            text = formatEvent(event) + repr(event)
            self.assertNotIn(TOKEN_PREFIX, text)

    def messages(self) -> list[str]:
        """
        The text of every logged event.
        """
        return [formatEvent(event) for event in self.events]

    def store_for(self, platform: str = "darwin", path: str = "") -> CredentialFile | KeychainStore:
        """
        The store :obj:`credential_store_for` picks with the dict keyring and
        the recording runner.
        """
        return credential_store_for(
            path,
            self.environ,
            self.home,
            platform,
            keyring_backend=self.backend,
            run_in_thread=self.runner,
        )

    def write_file(self, content: str) -> str:
        """
        Write the default credentials file; return its path.
        """
        return write_document(os.path.join(self.home, ".claude", ".credentials.json"), content)

    def put_item(self, content: str, service: str = KEYCHAIN_SERVICE) -> None:
        """
        Store a keychain item for the user.
        """
        self.backend.items[(service, USER)] = content

    def stored_item(self, service: str = KEYCHAIN_SERVICE) -> dict[str, Any]:
        """
        The user's keychain item, parsed.
        """
        result: dict[str, Any] = json.loads(self.backend.items[(service, USER)])
        return result


class ServiceNameTests(SynchronousTestCase):
    """
    The keychain service and account Claude Code uses.
    """

    def test_default_service(self) -> None:
        """
        Without ``CLAUDE_CONFIG_DIR`` the service is ``Claude Code-credentials``.
        """
        self.assertEqual(keychain_service_name({}, HOME), "Claude Code-credentials")

    def test_empty_config_dir(self) -> None:
        """
        An empty ``CLAUDE_CONFIG_DIR`` counts as unset.
        """
        self.assertEqual(
            keychain_service_name({"CLAUDE_CONFIG_DIR": ""}, HOME), "Claude Code-credentials"
        )

    def test_config_dir_suffix(self) -> None:
        """
        A ``CLAUDE_CONFIG_DIR`` elsewhere appends ``-`` and the first 8 hex
        digits of its SHA-256.
        """
        config_dir = "/Users/alice/work-claude"
        expected = hashlib.sha256(config_dir.encode()).hexdigest()[:8]
        name = keychain_service_name({"CLAUDE_CONFIG_DIR": config_dir}, HOME)
        self.assertEqual(name, f"Claude Code-credentials-{expected}")
        self.assertRegex(name, r"^Claude Code-credentials-[0-9a-f]{8}$")

    def test_config_dir_equal_to_default(self) -> None:
        """
        A ``CLAUDE_CONFIG_DIR`` equal to ``<home>/.claude`` gets no suffix.
        """
        self.assertEqual(
            keychain_service_name({"CLAUDE_CONFIG_DIR": HOME + "/.claude"}, HOME),
            "Claude Code-credentials",
        )

    def test_config_dir_compared_as_string(self) -> None:
        """
        The comparison is of strings: a trailing slash makes it differ.
        """
        config_dir = HOME + "/.claude/"
        expected = hashlib.sha256(config_dir.encode()).hexdigest()[:8]
        self.assertEqual(
            keychain_service_name({"CLAUDE_CONFIG_DIR": config_dir}, HOME),
            f"Claude Code-credentials-{expected}",
        )

    def test_account_is_user(self) -> None:
        """
        The account is ``$USER``, else the login name from ``getpass``.
        """
        import getpass

        self.assertEqual(keychain_account({"USER": "bob"}), "bob")
        self.assertEqual(keychain_account({}), getpass.getuser())


class ReadTests(KeychainTestCase):
    """
    Choosing the keychain or the file, and reading the item.
    """

    def test_reads_keychain_item(self) -> None:
        """
        On macOS with no path, an existing item is used: its tokens are read
        from the service and account Claude Code uses.
        """
        self.put_item(credentials_json(ACCESS, REFRESH))
        store = self.store_for()
        self.assertIsInstance(store, KeychainStore)
        tokens = store.read()
        self.assertEqual(tokens.access_token, ACCESS)
        self.assertEqual(tokens.refresh_token, REFRESH)
        self.assertEqual(tokens.subscription_type, "max")
        self.assertEqual(tokens.rate_limit_tier, "default_claude_max_20x")
        self.assertEqual(store.path, 'macOS keychain item "Claude Code-credentials"')
        self.assertEqual(self.backend.calls, [("get", KEYCHAIN_SERVICE, USER)])

    def test_suffixed_service(self) -> None:
        """
        With ``CLAUDE_CONFIG_DIR`` elsewhere, the suffixed item is read, and
        the fallback file is under that directory.
        """
        config_dir = os.path.join(self.home, "other")
        self.environ["CLAUDE_CONFIG_DIR"] = config_dir
        service = keychain_service_name(self.environ, self.home)
        self.assertNotEqual(service, KEYCHAIN_SERVICE)
        self.put_item(credentials_json(ACCESS, REFRESH), service=service)
        store = self.store_for()
        assert isinstance(store, KeychainStore)
        self.assertEqual(store.service, service)
        self.assertEqual(store.read().access_token, ACCESS)
        del self.backend.items[(service, USER)]
        fallback = self.store_for()
        self.assertEqual(fallback.path, os.path.join(config_dir, ".credentials.json"))

    def test_reads_are_from_memory(self) -> None:
        """
        After loading, reads never call the keychain (it would block).
        """
        self.put_item(credentials_json(ACCESS, REFRESH))
        store = self.store_for()
        calls = list(self.backend.calls)
        store.read()
        store.read()
        store.check_writable()
        self.assertEqual(self.backend.calls, calls)

    def test_missing_item_falls_back_to_file(self) -> None:
        """
        Without the item, the default credentials file is used.
        """
        path = self.write_file(credentials_json("sk-ant-oat01-from-file", REFRESH))
        store = self.store_for()
        self.assertIsInstance(store, CredentialFile)
        self.assertEqual(store.path, path)
        self.assertEqual(store.read().access_token, "sk-ant-oat01-from-file")
        self.assertTrue(any("does not exist" in message for message in self.messages()))

    def test_no_keyring_falls_back_to_file(self) -> None:
        """
        A host with no usable keyring (keyring's own fail backend raises
        NoKeyringError) logs a warning and uses the file.
        """
        path = self.write_file(credentials_json(ACCESS, REFRESH))
        store = credential_store_for(
            "", self.environ, self.home, "darwin", keyring_backend=fail_backend.Keyring()
        )
        self.assertIsInstance(store, CredentialFile)
        self.assertEqual(store.path, path)
        warnings = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("NoKeyringError", formatEvent(warnings[0]))
        self.assertIn(path, formatEvent(warnings[0]))

    def test_keyring_error_falls_back_to_file(self) -> None:
        """
        Any other keychain error (a locked keychain) also falls back to the
        file, logged.
        """
        self.write_file(credentials_json(ACCESS, REFRESH))
        self.backend.failure = KeyringError("keychain is locked")
        store = self.store_for()
        self.assertIsInstance(store, CredentialFile)
        self.assertTrue(any("keychain is locked" in message for message in self.messages()))

    def test_unusable_item_falls_back_to_file(self) -> None:
        """
        An item that is not JSON, or has no ``claudeAiOauth``, is not used.
        """
        self.write_file(credentials_json(ACCESS, REFRESH))
        for content in ["not json", json.dumps({"other": 1})]:
            self.put_item(content)
            self.assertIsInstance(self.store_for(), CredentialFile)

    def test_default_backend(self) -> None:
        """
        Without an injected backend, the one ``keyring.get_keyring()``
        chooses is used.
        """
        import keyring

        self.patch(keyring, "get_keyring", lambda: self.backend)
        self.put_item(credentials_json(ACCESS, REFRESH))
        store = credential_store_for("", self.environ, self.home, "darwin")
        assert isinstance(store, KeychainStore)
        self.assertIs(store.backend, self.backend)
        self.assertEqual(store.read().access_token, ACCESS)

    def test_explicit_path_skips_keychain(self) -> None:
        """
        With ``credential_path`` set, only that file is used; the keychain is
        not queried even on macOS.
        """
        self.put_item(credentials_json(ACCESS, REFRESH))
        store = self.store_for(path="/srv/ccm/credentials.json")
        self.assertIsInstance(store, CredentialFile)
        self.assertEqual(store.path, "/srv/ccm/credentials.json")
        self.assertEqual(self.backend.calls, [])

    def test_not_macos_uses_file(self) -> None:
        """
        On other systems the default file is used and the keychain is not
        queried.
        """
        self.put_item(credentials_json(ACCESS, REFRESH))
        store = self.store_for(platform="linux")
        self.assertIsInstance(store, CredentialFile)
        self.assertEqual(store.path, os.path.join(self.home, ".claude", ".credentials.json"))
        self.assertEqual(self.backend.calls, [])

    def test_read_before_load_fails(self) -> None:
        """
        A store whose item was never loaded, or was missing, says so.
        """
        store = KeychainStore(self.backend, KEYCHAIN_SERVICE, USER, self.runner)
        self.assertIn("has not been read", str(self.assertRaises(CredentialFileError, store.read)))
        self.assertFalse(store.load())
        error = self.assertRaises(CredentialFileError, store.read)
        self.assertIn('macOS keychain item "Claude Code-credentials" does not exist', str(error))
        self.assertRaises(CredentialFileError, store.check_writable)
        self.assertRaises(CredentialFileError, store.write_tokens, OAuthTokens(ACCESS, REFRESH, 0))
        self.assertEqual(self.runner.calls, [])


class WriteTests(KeychainTestCase):
    """
    Writing refreshed tokens back to the item.
    """

    def loaded_store(self, **fields: Any) -> KeychainStore:
        """
        A keychain store loaded from an item; ``fields`` as for
        :obj:`credentials_json`, unknown keys for example.
        """
        self.put_item(credentials_json(ACCESS, REFRESH, **fields))
        store = self.store_for()
        assert isinstance(store, KeychainStore)
        return store

    def test_write_back_through_runner(self) -> None:
        """
        Refreshed tokens are written back in the runner (a thread), to the
        same service and account, compactly, keeping every other key.
        """
        store = self.loaded_store(
            oauth={"futureField": {"kept": True}}, extra={"mcpOAuth": {"server": "value"}}
        )
        store.write_tokens(store.read().refreshed(NEW_ACCESS, NEW_REFRESH, 1234))
        self.assertEqual(len(self.runner.calls), 1)
        self.assertIn(("set", KEYCHAIN_SERVICE, USER), self.backend.calls)
        raw = self.backend.items[(KEYCHAIN_SERVICE, USER)]
        document = json.loads(raw)
        self.assertEqual(raw, json.dumps(document, separators=(",", ":")))
        oauth = document["claudeAiOauth"]
        self.assertEqual(oauth["accessToken"], NEW_ACCESS)
        self.assertEqual(oauth["refreshToken"], NEW_REFRESH)
        self.assertEqual(oauth["expiresAt"], 1234)
        self.assertEqual(oauth["futureField"], {"kept": True})
        self.assertEqual(oauth["scopes"], ["user:inference", "user:profile"])
        self.assertEqual(document["mcpOAuth"], {"server": "value"})
        self.assertEqual(store.read().access_token, NEW_ACCESS)

    def test_memory_updated_before_thread_runs(self) -> None:
        """
        The in-memory copy changes at once; the keychain only when the
        runner runs the write.
        """
        self.runner.hold = True
        store = self.loaded_store()
        store.write_tokens(store.read().refreshed(NEW_ACCESS, NEW_REFRESH, 1234))
        self.assertEqual(store.read().access_token, NEW_ACCESS)
        self.assertEqual(self.stored_item()["claudeAiOauth"]["accessToken"], ACCESS)
        self.assertEqual(self.runner.pending, 1)
        self.runner.release()
        self.assertEqual(self.stored_item()["claudeAiOauth"]["accessToken"], NEW_ACCESS)
        self.assertEqual(self.runner.pending, 0)

    def test_keeps_keys_added_meanwhile(self) -> None:
        """
        The write re-reads the item, so keys another program added since
        start-up survive.
        """
        store = self.loaded_store()
        self.put_item(credentials_json(ACCESS, REFRESH, extra={"addedLater": "yes"}))
        store.write_tokens(store.read().refreshed(NEW_ACCESS, NEW_REFRESH, 1234))
        document = self.stored_item()
        self.assertEqual(document["addedLater"], "yes")
        self.assertEqual(document["claudeAiOauth"]["accessToken"], NEW_ACCESS)

    def test_recreates_deleted_item(self) -> None:
        """
        An item deleted since start-up is written again from the in-memory
        copy, with its unknown keys.
        """
        store = self.loaded_store(extra={"mcpOAuth": {"server": "value"}})
        del self.backend.items[(KEYCHAIN_SERVICE, USER)]
        store.write_tokens(store.read().refreshed(NEW_ACCESS, NEW_REFRESH, 1234))
        document = self.stored_item()
        self.assertEqual(document["claudeAiOauth"]["refreshToken"], NEW_REFRESH)
        self.assertEqual(document["mcpOAuth"], {"server": "value"})

    def test_writes_do_not_overlap(self) -> None:
        """
        A write requested while one runs waits for it, then writes the
        newest tokens once, so an older write never lands last.
        """
        self.runner.hold = True
        store = self.loaded_store()
        tokens = store.read()
        store.write_tokens(tokens.refreshed("sk-ant-oat01-second", "sk-ant-ort01-second", 2))
        store.write_tokens(tokens.refreshed("sk-ant-oat01-third", "sk-ant-ort01-third", 3))
        store.write_tokens(tokens.refreshed(NEW_ACCESS, NEW_REFRESH, 4))
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.release()
        self.assertEqual(len(self.runner.calls), 2)
        self.assertEqual(self.runner.pending, 1)
        self.runner.release()
        self.assertEqual(self.stored_item()["claudeAiOauth"]["accessToken"], NEW_ACCESS)
        self.assertEqual(self.stored_item()["claudeAiOauth"]["expiresAt"], 4)
        self.assertEqual((len(self.runner.calls), self.runner.pending), (2, 0))

    def test_write_failure_logged_without_token(self) -> None:
        """
        A failed write is logged as an error naming the item and the error
        (any token in the error text removed); the tokens stay in memory.
        """
        store = self.loaded_store()
        self.backend.set_failure = PasswordSetError(f"cannot store {NEW_REFRESH}")
        store.write_tokens(store.read().refreshed(NEW_ACCESS, NEW_REFRESH, 1234))
        errors = [e for e in self.events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        message = formatEvent(errors[0])
        self.assertIn('"Claude Code-credentials"', message)
        self.assertIn("PasswordSetError: cannot store <redacted>", message)
        self.assertEqual(store.read().access_token, NEW_ACCESS)
        self.assertEqual(self.stored_item()["claudeAiOauth"]["accessToken"], ACCESS)
        # The failed write is over: the next one starts at once.
        store.write_tokens(store.read().refreshed(NEW_ACCESS, NEW_REFRESH, 1235))
        self.assertEqual(len(self.runner.calls), 2)


class FetchTests(KeychainTestCase):
    """
    Fetching the item again after start-up, in the runner.
    """

    def loaded_store(self) -> KeychainStore:
        """
        A keychain store loaded from an item, with a holding runner.
        """
        self.put_item(credentials_json(ACCESS, REFRESH))
        self.runner.hold = True
        store = self.store_for()
        assert isinstance(store, KeychainStore)
        return store

    def test_fetch_in_runner(self) -> None:
        """
        A fetch queries the keychain only in the runner, then replaces the
        in-memory copy with the item Claude Code changed.
        """
        store = self.loaded_store()
        self.put_item(credentials_json(NEW_ACCESS, NEW_REFRESH))
        calls = len(self.backend.calls)
        fetched = store.fetch()
        self.assertEqual(len(self.backend.calls), calls)
        self.assertEqual(store.read().access_token, ACCESS)
        self.runner.release()
        self.assertIs(self.successResultOf(fetched), True)
        self.assertEqual(store.read().access_token, NEW_ACCESS)

    def test_fetch_missing_item(self) -> None:
        """
        An item deleted since start-up (a logout) makes reads fail.
        """
        store = self.loaded_store()
        del self.backend.items[(KEYCHAIN_SERVICE, USER)]
        fetched = store.fetch()
        self.runner.release()
        self.assertIs(self.successResultOf(fetched), False)
        self.assertIn("does not exist", str(self.assertRaises(CredentialFileError, store.read)))

    def test_fetch_error(self) -> None:
        """
        A keychain error fails the fetch and keeps the in-memory copy.
        """
        store = self.loaded_store()
        self.backend.failure = KeyringError("keychain is locked")
        fetched = store.fetch()
        self.runner.release()
        self.failureResultOf(fetched, KeyringError)
        self.assertEqual(store.read().access_token, ACCESS)

    def test_fetch_read_before_finished_refresh_ignored(self) -> None:
        """
        A fetch that read the item before a refresh, but whose result
        arrives after that refresh's write finished, is ignored too.
        """
        self.put_item(credentials_json(ACCESS, REFRESH))
        results: list[tuple[object, Deferred[Any]]] = []

        def run_now_answer_later(function: Callable[[], Any]) -> Deferred[Any]:
            result: Deferred[Any] = Deferred()
            results.append((function(), result))
            return result

        store = KeychainStore(self.backend, KEYCHAIN_SERVICE, USER, run_now_answer_later)
        self.assertTrue(store.load())
        fetched = store.fetch()
        store.write_tokens(store.read().refreshed(NEW_ACCESS, NEW_REFRESH, 1234))
        value, write = results.pop()
        write.callback(value)
        self.assertIsNone(self.successResultOf(write))
        value, fetch = results.pop()
        fetch.callback(value)
        self.assertIs(self.successResultOf(fetched), True)
        self.assertEqual(store.read().access_token, NEW_ACCESS)

    def test_fetch_older_than_refresh_ignored(self) -> None:
        """
        A fetch that started before tokens were refreshed does not bring
        the old tokens back.
        """
        store = self.loaded_store()
        fetched = store.fetch()
        store.write_tokens(store.read().refreshed(NEW_ACCESS, NEW_REFRESH, 1234))
        self.runner.release()
        self.assertIs(self.successResultOf(fetched), True)
        self.assertEqual(store.read().access_token, NEW_ACCESS)
        self.runner.release()
        self.assertEqual(self.stored_item()["claudeAiOauth"]["accessToken"], NEW_ACCESS)


class CredentialEndToEndTests(KeychainTestCase):
    """
    A :obj:`Credential` using the keychain store as it would the file.
    """

    def test_reload_refresh_write_back(self) -> None:
        """
        The credential loads from the keychain item, becomes available,
        refreshes its expired token with the refresh token read from the
        item, and the new tokens are written back to the item.
        """
        clock = Clock()
        clock.advance(START_TIME)
        expired_ms = int((START_TIME - 10) * 1000)
        self.put_item(
            credentials_json(ACCESS, REFRESH, expired_ms, oauth={"futureField": {"kept": True}})
        )
        store = self.store_for()
        assert isinstance(store, KeychainStore)
        refreshed_with: list[str] = []

        def refresh(refresh_token: str) -> Deferred[TokenGrant]:
            refreshed_with.append(refresh_token)
            return succeed(TokenGrant(NEW_ACCESS, NEW_REFRESH, 3600))

        credential = Credential("keychain", store, refresh, clock)
        credential.reload()
        self.assertTrue(credential.available)
        self.assertEqual(self.successResultOf(credential.access_token()), NEW_ACCESS)
        self.assertEqual(refreshed_with, [REFRESH])
        # One fetch of the item before the refresh, one write-back after.
        self.assertEqual(len(self.runner.calls), 2)
        oauth = self.stored_item()["claudeAiOauth"]
        self.assertEqual(oauth["accessToken"], NEW_ACCESS)
        self.assertEqual(oauth["refreshToken"], NEW_REFRESH)
        self.assertEqual(oauth["expiresAt"], int((START_TIME + 3600) * 1000))
        self.assertEqual(oauth["futureField"], {"kept": True})
        credential.reload()
        self.assertTrue(credential.available)
        self.assertEqual(self.successResultOf(credential.access_token()), NEW_ACCESS)
        self.assertEqual(refreshed_with, [REFRESH])
        self.assertEqual(clock.getDelayedCalls(), [])


class CatchUpTests(KeychainTestCase):
    """
    Before each refresh, a credential backed by the keychain fetches the
    item again, so what Claude Code on the same Mac did since start-up is
    seen without a restart.
    """

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()
        self.clock.advance(START_TIME)
        self.refreshed_with: list[str] = []
        self.grants: list[Deferred[TokenGrant]] = []

    def expiring_ms(self) -> int:
        """
        An expiry within the next minute: the token needs a refresh.
        """
        return int((self.clock.seconds() + 30) * 1000)

    def refresh(self, refresh_token: str) -> Deferred[TokenGrant]:
        """
        The token endpoint: records the refresh token, answers with the
        next queued result or else a new grant.
        """
        self.refreshed_with.append(refresh_token)
        if self.grants:
            return self.grants.pop(0)
        return succeed(TokenGrant(NEW_ACCESS, NEW_REFRESH, 3600))

    def loaded_credential(self) -> tuple[Credential, KeychainStore]:
        """
        A credential loaded from an item whose token is about to expire.
        """
        self.put_item(credentials_json(ACCESS, REFRESH, self.expiring_ms()))
        store = self.store_for()
        assert isinstance(store, KeychainStore)
        credential = Credential("mac", store, self.refresh, self.clock)
        credential.reload()
        self.assertTrue(credential.available)
        return credential, store

    def test_adopts_tokens_refreshed_by_claude_code(self) -> None:
        """
        When Claude Code refreshed in the keychain meanwhile (rotating the
        refresh token ccm holds), the credential takes those tokens and does
        not call the token endpoint with its stale refresh token.
        """
        credential, store = self.loaded_credential()
        later_ms = int((self.clock.seconds() + 3600) * 1000)
        self.put_item(credentials_json(LOGIN_ACCESS, LOGIN_REFRESH, later_ms))
        self.assertEqual(self.successResultOf(credential.access_token()), LOGIN_ACCESS)
        self.assertEqual(self.refreshed_with, [])
        self.assertEqual(store.read().refresh_token, LOGIN_REFRESH)
        self.assertEqual(self.stored_item()["claudeAiOauth"]["accessToken"], LOGIN_ACCESS)

    def test_refreshes_with_the_newest_refresh_token(self) -> None:
        """
        When the item holds a newer refresh token whose access token also
        needs refreshing, the refresh uses the newer one, and the result is
        written back.
        """
        credential, _ = self.loaded_credential()
        self.put_item(credentials_json(LOGIN_ACCESS, LOGIN_REFRESH, self.expiring_ms()))
        self.assertEqual(self.successResultOf(credential.access_token()), NEW_ACCESS)
        self.assertEqual(self.refreshed_with, [LOGIN_REFRESH])
        self.assertEqual(self.stored_item()["claudeAiOauth"]["refreshToken"], NEW_REFRESH)

    def test_new_login_after_rejected_refresh_token(self) -> None:
        """
        After the refresh token was rejected, a new ``claude /login`` on the
        Mac is picked up by the next background refresh attempt: the
        credential serves again without a restart.
        """
        self.put_item(credentials_json(ACCESS, REFRESH, int((START_TIME - 10) * 1000)))
        store = self.store_for()
        credential = Credential("mac", store, self.refresh, self.clock)
        credential.reload()
        self.grants.append(fail(RefreshError("invalid_grant", permanent=True)))
        self.failureResultOf(credential.access_token(), CredentialUnavailable)
        self.assertFalse(credential.available)
        later_ms = int((self.clock.seconds() + 8 * 3600) * 1000)
        self.put_item(credentials_json(LOGIN_ACCESS, LOGIN_REFRESH, later_ms))
        self.clock.advance(REFRESH_RETRY_SECONDS)
        self.assertEqual(self.successResultOf(credential.refresh()).access_token, LOGIN_ACCESS)
        self.assertTrue(credential.available)
        self.assertEqual(self.refreshed_with, [REFRESH])

    def test_keychain_error_keeps_the_copy(self) -> None:
        """
        When the keychain cannot be read again, a warning names the item
        (and no token), and the refresh goes ahead with the copy read at
        start-up.
        """
        credential, _ = self.loaded_credential()
        self.backend.failure = KeyringError("keychain is locked")
        self.assertEqual(self.successResultOf(credential.access_token()), NEW_ACCESS)
        self.assertEqual(self.refreshed_with, [REFRESH])
        [warning] = [e for e in self.events if e["log_level"] == LogLevel.warn]
        message = formatEvent(warning)
        self.assertIn('could not read macOS keychain item "Claude Code-credentials" again', message)
        self.assertIn("KeyringError: keychain is locked", message)

    def test_logout_makes_the_credential_unavailable(self) -> None:
        """
        An item deleted since start-up (``claude /logout``) makes the refresh
        fail and the credential unavailable, as a deleted file does.
        """
        credential, _ = self.loaded_credential()
        del self.backend.items[(KEYCHAIN_SERVICE, USER)]
        self.failureResultOf(credential.access_token(), CredentialUnavailable)
        self.assertEqual(self.refreshed_with, [])
        self.assertFalse(credential.available)
        self.assertIn("does not exist", credential.unavailable_reason or "")


class LockDirectoryTests(KeychainTestCase):
    """
    :obj:`lock_directory_for`: Claude Code's refresh lock sits on its
    configuration directory, whichever store holds the tokens.
    """

    def test_file(self) -> None:
        """
        A credentials file's lock is on the directory holding it, followed
        through a symbolic link.
        """
        directory = os.path.join(self.home, "real")
        os.makedirs(directory)
        path = write_document(os.path.join(directory, ".credentials.json"), "{}")
        link = os.path.join(self.home, "link.json")
        os.symlink(path, link)
        self.assertEqual(lock_directory_for(CredentialFile(path), self.environ, self.home), directory)
        self.assertEqual(lock_directory_for(CredentialFile(link), self.environ, self.home), directory)

    def test_keychain(self) -> None:
        """
        For the keychain, it is the directory Claude Code would keep the
        file in: ``~/.claude``, or ``$CLAUDE_CONFIG_DIR``.
        """
        self.put_item(credentials_json(ACCESS, REFRESH, 0))
        store = self.store_for()
        self.assertIsInstance(store, KeychainStore)
        self.assertEqual(
            lock_directory_for(store, self.environ, self.home), os.path.join(self.home, ".claude")
        )
        self.assertEqual(
            lock_directory_for(store, {"CLAUDE_CONFIG_DIR": "/srv/claude"}, self.home),
            "/srv/claude",
        )

    def test_keychain_refresh_waits_for_claude_code(self) -> None:
        """
        A keychain credential's refresh waits while Claude Code holds the
        lock of ``~/.claude``, then takes the tokens Claude Code rotated in
        the item, without refreshing.
        """
        clock = Clock()
        clock.advance(START_TIME)
        self.put_item(credentials_json(ACCESS, REFRESH, int((START_TIME - 10) * 1000)))
        store = self.store_for()
        refreshed_with: list[str] = []

        def refresh(refresh_token: str) -> Deferred[TokenGrant]:
            refreshed_with.append(refresh_token)
            return succeed(TokenGrant(NEW_ACCESS, NEW_REFRESH, 3600))

        directory = lock_directory_for(store, self.environ, self.home)
        lock = RefreshLock(directory, clock, jitter=lambda: 0.0)
        credential = Credential("mac", store, refresh, clock, lock=lock)
        credential.reload()
        held_by_claude_code = os.path.join(directory, ".oauth_refresh.lock")
        os.mkdir(held_by_claude_code)
        result = credential.access_token()
        clock.advance(1.0)
        self.assertNoResult(result)
        self.put_item(credentials_json(LOGIN_ACCESS, LOGIN_REFRESH, int((START_TIME + 3600) * 1000)))
        os.rmdir(held_by_claude_code)
        clock.advance(1.0)
        self.assertEqual(self.successResultOf(result), LOGIN_ACCESS)
        self.assertEqual(refreshed_with, [])
        self.assertEqual(os.listdir(directory), [])
        self.assertEqual(clock.getDelayedCalls(), [])
