"""
End-to-end tests of Claude Code's refresh lock against a real second
process, and of what ccm's own calls to the token, usage and profile
endpoints look like from the fake upstream.

The second process is a Python child playing Claude Code: it takes the
lock the proper-lockfile way (``mkdir`` of ``<dir>/.oauth_refresh.lock``
and ``<realpath(dir)>.lock``, touching their mtimes while it holds them),
waits until the test says go, rotates the tokens in the credentials file as
Claude Code writes it (in place, mode 0600, flushed), holds a moment more
and lets go.  It reports whether its lock stayed its own throughout.  The
fake token endpoint then accepts only the rotated tokens, so a refresh
with the spent refresh token would show up in its count.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from ccm.credentials.credential import Credential
from ccm.credentials.file import CredentialFile
from ccm.credentials.lock import RefreshLock
from ccm.credentials.oauth import TokenEndpoint
from ccm.upstream.client import BytesProducer
from ccm.upstream.identity import CHECKED_AXIOS_VERSION, CHECKED_CLAUDE_CODE_VERSION
from tests import e2e, fixtures

USER_TOKEN = "ak-ccm-alice"
USERS = [{"name": "alice", "token": USER_TOKEN}]
ROTATED_ACCESS = "sk-ant-oat01-rotated-by-claude-code"
ROTATED_REFRESH = "sk-ant-ort01-rotated-by-claude-code"
# How long the child waits for the test's go before rotating anyway.
CHILD_MAX_WAIT_SECONDS = 20
# How long the test waits for something the other side does.
WAIT_SECONDS = 15.0

CLAUDE_CODE_STAND_IN = r"""
import json, os, time

directory = os.environ["LOCK_TEST_DIRECTORY"]
path = os.environ["LOCK_TEST_CREDENTIALS"]
go = os.environ["LOCK_TEST_GO"]
deadline = time.time() + float(os.environ["LOCK_TEST_MAX_WAIT"])
# Claude Code's two refresh locks, in its order.
locks = [os.path.join(directory, ".oauth_refresh.lock"), os.path.realpath(directory) + ".lock"]
for lock in locks:
    os.mkdir(lock)
mtimes = {lock: os.stat(lock).st_mtime_ns for lock in locks}
intact = True


def beat():
    # proper-lockfile's heartbeat: the lock must still be ours.
    global intact
    for lock in locks:
        try:
            if os.stat(lock).st_mtime_ns != mtimes[lock]:
                intact = False
                continue
            os.utime(lock)
            mtimes[lock] = os.stat(lock).st_mtime_ns
        except FileNotFoundError:
            intact = False


while not os.path.exists(go) and time.time() < deadline:
    beat()
    time.sleep(0.2)
with open(path) as handle:
    document = json.load(handle)
document["claudeAiOauth"].update(
    accessToken=os.environ["LOCK_TEST_ACCESS"],
    refreshToken=os.environ["LOCK_TEST_REFRESH"],
    expiresAt=int((time.time() + 8 * 3600) * 1000),
)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as handle:
    json.dump(document, handle)
    handle.flush()
    os.fsync(handle.fileno())
for _ in range(3):
    beat()
    time.sleep(0.2)
for lock in reversed(locks):
    os.rmdir(lock)
print(json.dumps({"intact": intact, "went": os.path.exists(go)}))
"""


@inlineCallbacks
def wait_for(predicate: Callable[[], bool], what: str) -> Any:
    """
    Check ``predicate`` every 0.05 s until it holds; fail after
    :obj:`WAIT_SECONDS`.
    """
    waited = 0.0
    while not predicate():
        if waited >= WAIT_SECONDS:
            raise AssertionError(f"no {what} within {WAIT_SECONDS}s")
        yield deferLater(reactor, 0.05)
        waited += 0.05


class _LockTestCase(unittest.TestCase):
    """
    The fake upstream on loopback, an expired login in a directory of its
    own, and the stand-in for Claude Code.
    """

    timeout = 120

    def setUp(self) -> None:
        self.fake, self.fake_url = e2e.serve_fake_anthropic(self)
        self.secrets = {USER_TOKEN, ROTATED_ACCESS, ROTATED_REFRESH}
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, ".credentials.json")
        self.locks = [os.path.join(self.directory, ".oauth_refresh.lock"), self.directory + ".lock"]
        self.go = os.path.abspath(self.mktemp())
        self.child: Deferred[tuple[int, str, str]] | None = None

    def write_expired(self, **fields: Any) -> None:
        """
        The login in the file: the fake's tokens, expired a minute ago.
        """
        self.secrets.update({self.fake.access_token, self.fake.refresh_token})
        fixtures.write_credentials(
            self.path,
            self.fake.access_token,
            self.fake.refresh_token,
            fixtures.expiry_ms(-60),
            **fields,
        )

    @inlineCallbacks
    def claude_code_holds_the_lock(self) -> Any:
        """
        Start the stand-in and wait until it holds both locks; from then on
        the fake takes only the tokens it will rotate to, as if Claude Code
        had refreshed already.
        """
        self.child = e2e.run_python_script(
            self,
            CLAUDE_CODE_STAND_IN,
            env={
                "LOCK_TEST_DIRECTORY": self.directory,
                "LOCK_TEST_CREDENTIALS": self.path,
                "LOCK_TEST_GO": self.go,
                "LOCK_TEST_MAX_WAIT": str(CHILD_MAX_WAIT_SECONDS),
                "LOCK_TEST_ACCESS": ROTATED_ACCESS,
                "LOCK_TEST_REFRESH": ROTATED_REFRESH,
            },
            timeout=CHILD_MAX_WAIT_SECONDS + 30,
        )
        yield wait_for(lambda: all(os.path.isdir(lock) for lock in self.locks), "lock taken")
        self.fake.access_token = ROTATED_ACCESS
        self.fake.refresh_token = ROTATED_REFRESH

    def let_claude_code_finish(self) -> None:
        """
        Tell the stand-in to rotate the tokens and let go.
        """
        with open(self.go, "w"):
            pass

    @inlineCallbacks
    def assert_claude_code_undisturbed(self) -> Any:
        """
        The stand-in ended well, with its lock its own until it let go of
        it, and no lock is left behind.
        """
        assert self.child is not None
        code, out, err = yield self.child
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out), {"intact": True, "went": True})
        self.assertEqual(os.listdir(self.directory), [".credentials.json"])
        self.assertFalse(os.path.exists(self.locks[1]))


class InProcessLockTests(_LockTestCase):
    """
    A :obj:`Credential` in this process, on the real reactor, against the
    stand-in in another.
    """

    @inlineCallbacks
    def test_waits_for_claude_code_and_adopts(self) -> Any:
        """
        While the other process holds the lock, the refresh waits; once it
        rotated the tokens and let go, the credential serves the rotated
        tokens and never sends the spent refresh token.
        """
        self.write_expired()
        yield self.claude_code_holds_the_lock()
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        endpoint = TokenEndpoint(
            HTTPClient(Agent(reactor, pool=pool)), reactor, self.fake_url + "/v1/oauth/token"
        )
        credential = Credential(
            "work",
            CredentialFile(self.path),
            endpoint.refresh,
            reactor,
            lock=RefreshLock(self.directory, reactor),
        )
        credential.reload()
        token = credential.access_token()
        yield deferLater(reactor, 1.0)
        self.assertFalse(token.called)
        self.let_claude_code_finish()
        access = yield token
        self.assertEqual(access, ROTATED_ACCESS)
        self.assertEqual(self.fake.token_requests, [])
        yield self.assert_claude_code_undisturbed()


class _CcmTestCase(_LockTestCase):
    """
    ccm as a real ``twistd`` process, and requests to it.
    """

    def setUp(self) -> None:
        super().setUp()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.agent = Agent(reactor, pool=self.pool)
        self.ccm: e2e.CcmProcess | None = None

    @inlineCallbacks
    def start_ccm(self) -> Any:
        """
        Start ccm on the file; its output is checked for secrets and
        tracebacks after it stopped.
        """
        self.addCleanup(self.check_ccm_output)
        self.ccm = yield e2e.start_ccm(self, e2e.ccm_config(self.fake_url, self.path, USERS))

    def check_ccm_output(self) -> None:
        """
        ccm printed no secret and no traceback.
        """
        if self.ccm is None:
            return
        output = self.ccm.output()
        for secret in self.secrets | {self.fake.access_token, self.fake.refresh_token}:
            self.assertNotIn(secret, output)
        self.assertNotIn("Traceback", output)

    @inlineCallbacks
    def post_message(self, user_agent: str = "claude-cli/2.1.332 (external, cli)") -> Any:
        """
        A non-streaming ``POST /v1/messages`` as alice.

        :return: a Deferred firing with ``(status, body)``.
        """
        assert self.ccm is not None
        body = json.dumps(
            {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        ).encode()
        headers = Headers(
            {
                b"authorization": [b"Bearer " + USER_TOKEN.encode()],
                b"content-type": [b"application/json"],
                b"user-agent": [user_agent.encode()],
            }
        )
        response = yield self.agent.request(
            b"POST", (self.ccm.url + "/v1/messages").encode(), headers, BytesProducer(body)
        )
        content = yield readBody(response)
        return response.code, content

    def upstream(self, path: str) -> list[Any]:
        """
        The requests the fake received on ``path``.
        """
        return [r for r in self.fake.requests if r.path.split("?")[0] == path]


class CcmProcessLockTests(_CcmTestCase):
    """
    ccm waits for Claude Code's lock before refreshing.
    """

    @inlineCallbacks
    def test_request_waits_for_claude_code(self) -> Any:
        """
        ccm starts with an expired token while Claude Code holds the lock:
        a request waits, and once Claude Code rotated the tokens and let
        go, it is served with the rotated token; the token endpoint is
        never called, and Claude Code's lock stays its own.
        """
        self.write_expired()
        yield self.claude_code_holds_the_lock()
        yield self.start_ccm()
        request = self.post_message()
        yield deferLater(reactor, 1.0)
        self.assertFalse(request.called)
        self.let_claude_code_finish()
        code, body = yield request
        waited = 0.0
        while code != 200 and waited < WAIT_SECONDS:
            # Slow machine: ccm's lock attempts gave up first, and the file
            # watcher brings the rotated tokens.
            yield deferLater(reactor, 0.2)
            waited += 0.2
            code, body = yield self.post_message()
        self.assertEqual(code, 200, body)
        [message] = self.upstream("/v1/messages")[-1:]
        self.assertEqual(message.header("authorization"), "Bearer " + ROTATED_ACCESS)
        self.assertEqual(self.fake.token_requests, [])
        yield self.assert_claude_code_undisturbed()


class CcmProcessIdentityTests(_CcmTestCase):
    """
    What the fake's token, usage and profile endpoints receive from ccm,
    and how a 429 of the token endpoint holds refreshes back.
    """

    @inlineCallbacks
    def test_refresh_rate_limited(self) -> Any:
        """
        A 429 with a ``Retry-After`` of two minutes from the token endpoint
        makes requests fail with ccm's 503 saying so, without another
        refresh; the one refresh sent looks like Claude Code's axios.
        """
        self.fake.token_mode = "rate_limited"
        self.fake.token_retry_after = "120"
        self.write_expired()
        yield self.start_ccm()
        for _ in range(3):
            code, body = yield self.post_message()
            self.assertEqual(code, 503, body)
            message = json.loads(body)["error"]["message"]
            self.assertIn("HTTP 429", message)
            self.assertIn("before refreshing again", message)
        [refresh] = self.fake.token_requests
        self.assertEqual(refresh.header("user-agent"), f"axios/{CHECKED_AXIOS_VERSION}")
        self.assertEqual(refresh.header("accept"), "application/json, text/plain, */*")
        self.assertEqual(refresh.header("content-type"), "application/json")
        self.assertTrue(refresh.body.startswith(b'{"grant_type":"refresh_token",'))
        self.assertEqual(self.upstream("/v1/messages"), [])

    @inlineCallbacks
    def test_polls_identify_as_claude_code(self) -> Any:
        """
        The usage poll at start goes out as Claude Code's API client and the
        profile fetch (for a file that names no plan tier) as Claude Code,
        naming the release ccm was checked against.
        """
        self.secrets.update({self.fake.access_token, self.fake.refresh_token})
        fixtures.write_credentials(
            self.path,
            self.fake.access_token,
            self.fake.refresh_token,
            fixtures.expiry_ms(3600),
            rate_limit_tier="",
        )
        yield self.start_ccm()
        yield wait_for(lambda: bool(self.upstream("/api/oauth/profile")), "profile fetch")
        [usage] = self.upstream("/api/oauth/usage")
        [profile] = self.upstream("/api/oauth/profile")
        self.assertEqual(
            usage.header("user-agent"), f"claude-cli/{CHECKED_CLAUDE_CODE_VERSION} (external, cli)"
        )
        self.assertEqual(usage.header("anthropic-beta"), "oauth-2025-04-20")
        self.assertEqual(profile.header("user-agent"), f"claude-code/{CHECKED_CLAUDE_CODE_VERSION}")
        self.assertEqual(profile.header("cache-control"), "no-cache")
