"""
End-to-end tests of the ccm service as a real ``twistd -n ccm`` process:
start-up failures, the credentials file coming and going while it runs,
token refresh against the fake OAuth endpoint, and shutdown.

Requests come from this test process (a plain :obj:`twisted.web.client.Agent`);
the upstream is the fake of :obj:`tests.fake_anthropic`.  Every test that starts
ccm also checks, once it has stopped, that its output holds no secret (OAuth
tokens, user tokens) and no traceback.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any, Callable, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from ccm.upstream.client import BytesProducer

from tests import e2e, fixtures
from tests.fake_anthropic import text_reply

USER_TOKEN = "ak-ccm-alice"
USERS = [{"name": "alice", "token": USER_TOKEN}]
MODEL = "claude-sonnet-4-5-20250929"
# Claude Code's OAuth client id (anthropic-wire.md section 4.1): ccm's
# refreshes must look like the CLI's own.
CLAUDE_CODE_CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
# How long a change of the credentials file may take to be noticed.
FILE_CHANGE_TIMEOUT_SECONDS = 5.0
# twistd's log lines look like "<time> [<namespace>#<level>] <text>".
_ERROR_LEVEL_RE = re.compile(r"#(error|critical)\]")


class ClientReply:
    """
    A response as this test process received it.
    """

    def __init__(self, code: int, headers: Headers, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """
        The first value of header ``name``, or ``None``.
        """
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        """
        The body parsed as JSON.
        """
        return json.loads(self.body)

    def __repr__(self) -> str:
        return "<ClientReply {} {!r}>".format(self.code, self.body[:300])


class _ServiceTestCase(unittest.TestCase):
    """
    Helpers to run ccm in front of a fake upstream and to talk to it.
    """

    timeout = 300

    def setUp(self) -> None:
        self.fake, self.fake_url = e2e.serve_fake_anthropic(self)
        # Every token the fake hands out is added here as it rotates.
        self.secrets: set[str] = {USER_TOKEN}
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.credential_path = os.path.join(self.directory, ".credentials.json")
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(self.pool.closeCachedConnections)
        self.agent = Agent(reactor, pool=self.pool)
        self.ccm: e2e.CcmProcess | None = None

    def note_fake_tokens(self) -> None:
        """
        Remember the fake's current tokens as secrets ccm must never print.
        """
        self.secrets.update({self.fake.access_token, self.fake.refresh_token})

    def write_credentials(self, expires_in_seconds: float, mode: int = 0o600, **fields: Any) -> None:
        """
        Write a credentials file holding the fake's current tokens;
        ``fields`` as for :obj:`fixtures.credentials_document`.
        """
        self.note_fake_tokens()
        fixtures.write_credentials(
            self.credential_path,
            self.fake.access_token,
            self.fake.refresh_token,
            fixtures.expiry_ms(expires_in_seconds),
            mode=mode,
            **fields,
        )

    @inlineCallbacks
    def start_ccm(self) -> Any:
        """
        Start ccm with the fake as upstream and token endpoint; its output
        is checked for secrets and tracebacks after it stopped.
        """
        # Registered before start_ccm registers the stop: runs after it.
        self.addCleanup(self.check_ccm_output)
        self.ccm = yield e2e.start_ccm(
            self, e2e.ccm_config(self.fake_url, self.credential_path, USERS)
        )
        return self.ccm

    def check_ccm_output(self) -> None:
        """
        Nothing ccm printed holds a secret or a traceback.
        """
        if self.ccm is None:
            return  # It never started; the test failed already.
        self.note_fake_tokens()
        output = self.ccm.output()
        for secret in self.secrets:
            self.assertNotIn(secret, output)
        self.assertNotIn("Traceback", output)

    @inlineCallbacks
    def post_message(self) -> Any:
        """
        Send a non-streaming ``POST /v1/messages`` to ccm as alice.

        :return: a Deferred firing with the :obj:`ClientReply`.
        """
        assert self.ccm is not None
        body = json.dumps(
            {"model": MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
        ).encode()
        headers = Headers(
            {
                b"authorization": [b"Bearer " + USER_TOKEN.encode()],
                b"content-type": [b"application/json"],
                b"anthropic-version": [b"2023-06-01"],
            }
        )
        response = yield self.agent.request(
            b"POST",
            (self.ccm.url + "/v1/messages").encode(),
            headers,
            BytesProducer(body),
        )
        content = yield readBody(response)
        return ClientReply(response.code, response.headers, content)

    @inlineCallbacks
    def poll_until(self, predicate: Callable[[ClientReply], bool], what: str) -> Any:
        """
        Send requests every 0.1 s until one gets a reply satisfying
        ``predicate``; fail after :obj:`FILE_CHANGE_TIMEOUT_SECONDS`.

        :return: a Deferred firing with that reply.
        """
        waited = 0.0
        while True:
            reply = yield self.post_message()
            if predicate(reply):
                return reply
            if waited >= FILE_CHANGE_TIMEOUT_SECONDS:
                self.fail(
                    "no {} within {}s; last reply {!r}".format(
                        what, FILE_CHANGE_TIMEOUT_SECONDS, reply
                    )
                )
            yield deferLater(reactor, 0.1)
            waited += 0.1

    def assert_unavailable(self, reply: ClientReply, *fragments: str) -> None:
        """
        ``reply`` is ccm's own 503 for a credential it cannot use, telling
        clients not to retry, with every one of ``fragments`` in its message.
        """
        self.assertEqual(reply.code, 503, reply)
        self.assertEqual(reply.header("x-should-retry"), "false")
        self.assertEqual(reply.header("content-type"), "application/json")
        document = reply.json()
        self.assertEqual(document["type"], "error")
        self.assertEqual(document["error"]["type"], "api_error")
        self.assertEqual(reply.header("request-id"), document["request_id"])
        for fragment in fragments:
            self.assertIn(fragment, document["error"]["message"])


def _ok(reply: ClientReply) -> bool:
    return reply.code == 200


def _unavailable(reply: ClientReply) -> bool:
    return reply.code == 503


class StartupFailureTests(_ServiceTestCase):
    """
    ccm refuses to start, with a short explanation and no traceback, when
    it cannot run as configured.
    """

    @inlineCallbacks
    def test_bad_configuration_lists_every_problem(self) -> Any:
        """
        A configuration with several mistakes makes twistd exit non-zero
        with exactly one line per problem on stderr, each naming the file
        and the JSON path, and nothing else: no traceback, no secret.
        """
        config = {
            "endpoint": "tcp:0:interface=127.0.0.1",
            "credential_path": self.credential_path,
            "users": [{"name": "alice", "tokn": USER_TOKEN}],
            "max_request_body": "a lot",
        }
        rc, out, err = yield e2e.run_ccm_expecting_exit(self, config)
        self.assertNotEqual(rc, 0)
        # ccm names the file as the operator knows it: by its base name.
        self.assertEqual(
            sorted(line.split(": ")[:2] for line in err.splitlines()),
            [
                ["config.json", "max_request_body"],
                ["config.json", "users[0].token"],
                ["config.json", "users[0].tokn"],
            ],
            err,
        )
        self.assertEqual(out, "")
        self.assertIn("'a lot'", err)
        self.assertIn("did you mean 'token'?", err)
        self.assertNotIn("Traceback", out + err)
        self.assertNotIn(USER_TOKEN, out + err)

    @inlineCallbacks
    def test_usage_directory_missing(self) -> Any:
        """
        A credential's ``usages_path`` in a directory that does not exist
        makes twistd exit non-zero at start-up with one line naming the
        JSON path and the directory, instead of losing the usage at
        shutdown; no traceback, and nothing listens.
        """
        missing = os.path.join(os.path.abspath(self.mktemp()), "no-such-dir")
        config = e2e.ccm_config(self.fake_url, self.credential_path, USERS)
        config["usages_path"] = os.path.join(missing, "usages.json")
        rc, out, err = yield e2e.run_ccm_expecting_exit(self, config)
        self.assertNotEqual(rc, 0)
        [line] = err.splitlines()
        self.assertTrue(line.startswith("config.json: usages_path: cannot save usage to "), line)
        self.assertIn(f"directory {missing} does not exist", line)
        self.assertNotIn("Traceback", out + err)
        self.assertNotIn("starting on", out + err)
        self.assertNotIn(USER_TOKEN, out + err)
        self.assertFalse(os.path.exists(missing))

    @inlineCallbacks
    def test_invalid_json(self) -> Any:
        """
        A configuration file that is not JSON gives one line naming the file
        and where the syntax error is.
        """
        rc, out, err = yield e2e.run_ccm_expecting_exit(self, '{"endpoint": "tcp:0",\n  oops}')
        self.assertNotEqual(rc, 0)
        [line] = err.splitlines()
        self.assertRegex(line, r"^config\.json: .*\bline 2\b")
        self.assertNotIn("Traceback", out + err)

    @inlineCallbacks
    def test_port_in_use(self) -> Any:
        """
        When the configured port is taken, ccm exits non-zero at start-up
        with one line naming the address and port, and no traceback.
        """
        # forProtocol is typed to make a Factory, whatever class it is called on.
        factory = cast(ServerFactory, ServerFactory.forProtocol(Protocol))
        taken = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        port = cast(IPv4Address, taken.getHost()).port
        config = e2e.ccm_config(self.fake_url, self.credential_path, USERS)
        config["endpoint"] = "tcp:{}:interface=127.0.0.1".format(port)
        rc, out, err = yield e2e.run_ccm_expecting_exit(self, config)
        self.assertNotEqual(rc, 0)
        output = out + err
        lines = [line for line in output.splitlines() if "cannot listen" in line]
        self.assertEqual(len(lines), 1, output)
        self.assertIn("127.0.0.1:{}".format(port), lines[0])
        self.assertIn("in use", lines[0])
        self.assertNotIn("Traceback", output)
        self.assertNotIn("starting on", output)


class CredentialFileTests(_ServiceTestCase):
    """
    A running ccm follows its credentials file as it appears, breaks,
    vanishes and comes back.
    """

    @inlineCallbacks
    def test_file_lifecycle(self) -> Any:
        """
        Without a file, requests get a 503 naming the missing path; a new
        valid file is used within moments, without restart; invalid JSON
        and deletion make requests fail with a 503 at once, and a restored
        file makes them succeed again.  Upstream only ever sees the OAuth
        token.
        """
        yield self.start_ccm()

        reply = yield self.post_message()
        self.assert_unavailable(reply, self.credential_path, "does not exist")
        self.assertEqual(self.fake.requests, [])

        self.write_credentials(expires_in_seconds=86400)
        reply = yield self.poll_until(_ok, "success after the file was created")
        self.assertEqual(reply.json()["content"][0]["text"], "Hello from the fake.")

        with open(self.credential_path, "w") as f:
            f.write('{"claudeAiOauth": ')
        reply = yield self.poll_until(_unavailable, "503 after the file was broken")
        self.assert_unavailable(reply, self.credential_path, "not valid JSON")

        os.remove(self.credential_path)
        reply = yield self.poll_until(
            lambda r: r.code == 503 and b"does not exist" in r.body,
            "503 after the file was deleted",
        )
        self.assert_unavailable(reply, self.credential_path, "does not exist")

        self.fake.enqueue(text_reply("Back again."))
        self.write_credentials(expires_in_seconds=86400)
        reply = yield self.poll_until(_ok, "success after the file was restored")
        self.assertEqual(reply.json()["content"][0]["text"], "Back again.")

        self.assertTrue(self.fake.requests)
        for request in self.fake.requests:
            self.assertEqual(request.path, "/v1/messages")
            self.assertEqual(request.header("authorization"), "Bearer " + self.fake.access_token)
        self.assertEqual(self.fake.token_requests, [])


class RefreshTests(_ServiceTestCase):
    """
    An expired access token is refreshed against the OAuth token endpoint,
    the way Claude Code does it, and the new tokens are saved.
    """

    @inlineCallbacks
    def test_expired_token_is_refreshed_and_saved(self) -> Any:
        """
        With an expired token, the first request succeeds with a freshly
        refreshed token; the refresh request is Claude Code's, and the
        credentials file holds the new tokens, keeps every other key and
        keeps its mode.
        """
        old_access, old_refresh = self.fake.access_token, self.fake.refresh_token
        self.write_credentials(
            expires_in_seconds=-3600, mode=0o640, extra={"somethingElse": {"keep": ["me", 1]}}
        )
        yield self.start_ccm()

        reply = yield self.post_message()
        self.assertEqual(reply.code, 200, reply)
        self.note_fake_tokens()
        self.assertNotEqual(self.fake.access_token, old_access)

        [token_request] = self.fake.token_requests
        grant = token_request.json()
        self.assertEqual(grant["grant_type"], "refresh_token")
        self.assertEqual(grant["refresh_token"], old_refresh)
        self.assertEqual(grant["client_id"], CLAUDE_CODE_CLIENT_ID)
        self.assertIn("user:inference", grant["scope"].split())
        [message] = [r for r in self.fake.requests if r.path == "/v1/messages"]
        self.assertEqual(message.header("authorization"), "Bearer " + self.fake.access_token)

        with open(self.credential_path) as f:
            saved = json.load(f)
        oauth = saved.pop("claudeAiOauth")
        self.assertEqual(saved, {"somethingElse": {"keep": ["me", 1]}})
        self.assertEqual(oauth["accessToken"], self.fake.access_token)
        self.assertEqual(oauth["refreshToken"], self.fake.refresh_token)
        self.assertGreater(oauth["expiresAt"], fixtures.expiry_ms(self.fake.token_expires_in - 600))
        self.assertLessEqual(oauth["expiresAt"], fixtures.expiry_ms(self.fake.token_expires_in))
        self.assertEqual(
            (oauth["subscriptionType"], oauth["rateLimitTier"], oauth["scopes"]),
            ("max", "default_claude_max_20x", ["user:inference", "user:profile"]),
        )
        self.assertEqual(stat.S_IMODE(os.stat(self.credential_path).st_mode), 0o640)
        self.assertEqual(
            sorted(os.listdir(self.directory)), [".credentials.json"], "temporary file left"
        )

    @inlineCallbacks
    def test_rejected_refresh_asks_for_login(self) -> Any:
        """
        When the token endpoint rejects the refresh token of an expired
        credential, requests get a 503 telling the operator to log in
        again with ``claude /login``, and never reach the upstream.
        """
        self.fake.token_mode = "invalid_grant"
        self.write_credentials(expires_in_seconds=-3600)
        yield self.start_ccm()

        reply = yield self.post_message()
        self.assert_unavailable(reply, "claude /login")
        # One refresh attempt, not one per request.
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertEqual(
            [r.path for r in self.fake.requests if r not in self.fake.token_requests], []
        )


class ShutdownTests(_ServiceTestCase):
    """
    Stopping ccm.
    """

    @inlineCallbacks
    def test_sigterm_stops_cleanly(self) -> Any:
        """
        After serving a request, SIGTERM makes ccm close its port and exit
        on its own (not killed), logging nothing at error level.
        """
        self.write_credentials(expires_in_seconds=86400)
        ccm = yield self.start_ccm()
        reply = yield self.post_message()
        self.assertEqual(reply.code, 200, reply)

        code = yield ccm.stop()
        self.assertEqual(code, e2e.TERMINATED_BY_SIGTERM, ccm.output())
        self.assertFalse(ccm.was_killed)
        output = ccm.output()
        self.assertIn("Server Shut Down.", output)
        self.assertIn("(TCP Port {} Closed)".format(ccm.port), output)
        self.assertIsNone(_ERROR_LEVEL_RE.search(output), output)
        self.assertNotIn("Unhandled", output)


class DefaultsTests(_ServiceTestCase):
    """
    ``twistd -n ccm`` without ``--config``, as the README's first command
    runs it.
    """

    @inlineCallbacks
    def test_starts_on_defaults(self) -> Any:
        """
        Without ``--config``, in an empty ``HOME``, ccm starts on its
        defaults, and its first log lines name the credentials file it
        uses, say that it has no users and give the URL clients set; a
        request to that URL reaches ccm, which answers that the file is
        missing.  (``--listen`` only moves it off port 8080, which another
        program may hold.)
        """
        port = e2e.free_port()
        self.addCleanup(self.check_ccm_output)
        self.ccm = yield e2e.start_twistd(
            self, ["ccm", "--listen", f"tcp:{port}:interface=127.0.0.1"]
        )
        path = os.path.join(self.ccm.home, ".claude", ".credentials.json")
        first = [line.split("] ", 1)[1] for line in self.ccm.output().splitlines()[:3]]
        self.assertEqual(
            first,
            [
                f"credential default uses {path}",
                "no users configured: requests need no token, and anyone who can connect "
                "is served",
                f"clients set ANTHROPIC_BASE_URL=http://127.0.0.1:{port}",
            ],
        )
        response = yield self.agent.request(
            b"GET", f"http://127.0.0.1:{port}/v1/models".encode()
        )
        reply = ClientReply(response.code, response.headers, (yield readBody(response)))
        self.assertEqual(reply.code, 503, reply)
        self.assertEqual(reply.header("x-should-retry"), "false")
        self.assertIn(f"credential file {path} does not exist", reply.json()["error"]["message"])
