"""
Tests for :obj:`tests.e2e`, the end-to-end harness itself.

None of these need ccm: they check that the helpers run processes on the real
reactor, report output and exit codes, enforce timeouts, clean up after
themselves, and that the real Claude Code CLI can be driven against a tiny
in-test Anthropic-like server.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any, cast

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.trial.runner import TestLoader
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.resource import Resource
from twisted.web.server import Request

from tests import e2e

PONG_SSE_EVENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_harness",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 1},
            },
        },
    ),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "pong"},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 1},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]

PONG_MESSAGE: dict[str, Any] = {
    "id": "msg_harness",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "pong"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 1},
}


class _Root(Resource):
    """
    ``/``: answers ``GET`` and ``HEAD`` (the CLI's connectivity probe).
    """

    def __init__(self, seen: list[tuple[str, str, dict[str, str]]]) -> None:
        super().__init__()
        self._seen = seen

    def render_GET(self, request: Request) -> bytes:
        self._seen.append(_describe(request))
        request.setHeader(b"content-type", b"text/plain")
        return b"ok"


class _Messages(Resource):
    """
    ``POST /v1/messages``: always answers "pong", as SSE when the body asks
    for ``"stream": true`` and as one JSON message otherwise.
    """

    isLeaf = True

    def __init__(self, seen: list[tuple[str, str, dict[str, str]]], bodies: list[Any]) -> None:
        super().__init__()
        self._seen = seen
        self._bodies = bodies

    def render_POST(self, request: Request) -> bytes:
        self._seen.append(_describe(request))
        content = cast(IO[bytes], request.content)
        body = json.loads(content.read() or b"{}")
        self._bodies.append(body)
        if body.get("stream"):
            request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
            return b"".join(
                "event: {}\ndata: {}\n\n".format(name, json.dumps(data)).encode()
                for name, data in PONG_SSE_EVENTS
            )
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(PONG_MESSAGE).encode()


def _describe(request: Request) -> tuple[str, str, dict[str, str]]:
    headers = {
        k.decode().lower(): v[-1].decode() for k, v in request.requestHeaders.getAllRawHeaders()
    }
    return request.method.decode(), request.uri.decode(), headers


class HarnessTests(unittest.TestCase):
    """
    The process helpers of :obj:`tests.e2e`, on the real reactor.
    """

    @inlineCallbacks
    def test_python_script_output_and_exit_code(self) -> Any:
        """
        :obj:`e2e.run_python_script` runs ``source`` with the current interpreter
        and fires with its exit code, stdout and stderr.
        """
        rc, out, err = yield e2e.run_python_script(
            self,
            "import sys; print('hello out'); print('hello err', file=sys.stderr); sys.exit(3)",
        )
        self.assertEqual((rc, out, err), (3, "hello out\n", "hello err\n"))

    @inlineCallbacks
    def test_python_script_environment(self) -> Any:
        """
        :obj:`e2e.run_python_script` does not pass down proxy or ``ANTHROPIC_*``
        variables, applies ``env``, and gives the script EOF on stdin.
        """
        self.patch(os, "environ", dict(os.environ))
        os.environ["HTTPS_PROXY"] = "http://127.0.0.1:9"
        os.environ["ANTHROPIC_API_KEY"] = "leaked"
        rc, out, err = yield e2e.run_python_script(
            self,
            "import json, os, sys; print(json.dumps([sys.stdin.read(), "
            "os.environ.get('HTTPS_PROXY'), os.environ.get('ANTHROPIC_API_KEY'), "
            "os.environ.get('E2E_MARK')]))",
            env={"E2E_MARK": "set"},
        )
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(json.loads(out), ["", None, None, "set"])

    @inlineCallbacks
    def test_python_script_timeout(self) -> Any:
        """
        A script running longer than ``timeout`` is killed and the call fails
        with :obj:`e2e.ProcessTimeout` carrying what it printed.
        """
        d = e2e.run_python_script(
            self,
            "import time; print('started', flush=True); time.sleep(60)",
            timeout=1,
        )
        error = yield self.assertFailure(d, e2e.ProcessTimeout)
        self.assertIn("started", str(error))

    @inlineCallbacks
    def test_stop_kills_stubborn_process(self) -> Any:
        """
        A process that ignores SIGTERM is SIGKILLed after the grace period
        and reaped; the exit code says so.
        """
        child = e2e._Child(
            self,
            [
                sys.executable,
                "-c",
                "import signal, sys, time; "
                "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)",
            ],
            env=e2e._base_env(),
            cwd=os.path.abspath("."),
        )
        # Wait until the handler is installed before signalling.
        while b"ready" not in child.protocol.stdout:
            yield deferLater(reactor, 0.05)
        code = yield child.stop(kill_after=0.5)
        self.assertEqual(code, -9)
        self.assertTrue(child.was_killed)
        self.assertFalse(child.running)

    def test_find_twistd(self) -> None:
        """
        :obj:`e2e.find_twistd` finds the ``twistd`` script of this interpreter's
        environment.
        """
        path = e2e.find_twistd()
        self.assertEqual(os.path.dirname(path), os.path.dirname(sys.executable))
        self.assertTrue(os.access(path, os.X_OK))

    def test_skip_or_fail_without(self) -> None:
        """
        A missing tool means a skip, except under ``CI=true``, where it is a
        failure; a present tool's path is returned.
        """
        self.patch(os, "environ", dict(os.environ))
        os.environ.pop("CI", None)
        skipped = self.assertRaises(unittest.SkipTest, e2e.skip_or_fail_without, None, "nothing")
        self.assertEqual(str(skipped), "nothing not found; ./scripts/test installs it")
        skipped = self.assertRaises(
            unittest.SkipTest,
            e2e.skip_or_fail_without,
            "/nonexistent/tool",
            "nothing",
            e2e.debian_package("nothing-pkg"),
        )
        self.assertEqual(
            str(skipped),
            "nothing not available (/nonexistent/tool is not an executable file); install "
            "the Debian package nothing-pkg (bash .ci/run does; ./scripts/test does not)",
        )
        os.environ["CI"] = "true"
        failed = self.assertRaises(unittest.FailTest, e2e.skip_or_fail_without, None, "nothing")
        self.assertEqual(str(failed), "CI=true but nothing not found; ./scripts/test installs it")
        self.assertEqual(e2e.skip_or_fail_without(sys.executable, "python"), sys.executable)


class ClaudeCodeVersionTests(unittest.TestCase):
    """
    The pinned Claude Code versions of :obj:`tests.e2e` and the classes that
    run real-CLI tests once per version.
    """

    def fake_claude(self, version_line: str) -> str:
        """
        A stand-in CLI whose ``--version`` prints ``version_line``.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "claude")
        with open(path, "w") as handle:
            handle.write('#!/bin/sh\necho "{}"\n'.format(version_line))
        os.chmod(path, 0o755)
        return path

    def test_pinned_versions_read_from_the_script(self) -> None:
        """
        A version is read from its ``VARIABLE=version`` line (not from one
        that only mentions it); a variable the script does not set is an
        error naming both.  The two pinned versions are scripts/test's.
        """
        script = os.path.abspath(self.mktemp())
        with open(script, "w") as handle:
            handle.write(
                "# CLAUDE_CODE_VERSION=0.0.1 in a comment\n"
                "CLAUDE_CODE_VERSION=2.1.400\n"
                'echo "$CLAUDE_CODE_VERSION"\n'
                "CLAUDE_CODE_OLDEST=2.1.197  \n"
            )
        self.assertEqual(e2e.pinned_claude_code_version("CLAUDE_CODE_VERSION", script), "2.1.400")
        self.assertEqual(e2e.pinned_claude_code_version("CLAUDE_CODE_OLDEST", script), "2.1.197")
        error = self.assertRaises(
            RuntimeError, e2e.pinned_claude_code_version, "CLAUDE_CODE_NONE", script
        )
        self.assertEqual(str(error), f"{script} pins no CLAUDE_CODE_NONE")
        self.assertEqual(
            [(c.role, c.version, c.env_var) for c in e2e.CLAUDE_CODES],
            [
                ("newest", e2e.pinned_claude_code_version("CLAUDE_CODE_VERSION"), "CCM_CLAUDE_BIN"),
                (
                    "oldest",
                    e2e.pinned_claude_code_version("CLAUDE_CODE_OLDEST"),
                    "CCM_CLAUDE_BIN_OLDEST",
                ),
            ],
        )
        self.assertNotEqual(e2e.NEWEST_CLAUDE_CODE.version, e2e.OLDEST_CLAUDE_CODE.version)

    def test_find(self) -> None:
        """
        A version's binary is its variable's value, else the copy under its
        cache directory when that is executable, else ``None``.
        """
        self.patch(os, "environ", dict(os.environ))
        claude = e2e.ClaudeCode("newest", "9.9.9", "CCM_TEST_CLAUDE", ".cache/ccm-test-none")
        os.environ.pop("CCM_TEST_CLAUDE", None)
        self.assertIsNone(claude.find())
        os.environ["CCM_TEST_CLAUDE"] = "/somewhere/claude"
        self.assertEqual(claude.find(), "/somewhere/claude")
        self.assertEqual(claude.label, "9_9_9")
        self.assertEqual(str(claude), "Claude Code 9.9.9 (the newest version)")

    @inlineCallbacks
    def test_binary_must_report_its_version(self) -> Any:
        """
        :obj:`e2e.claude_code_binary` fires with a binary that reports the
        pinned version; one reporting another version is skipped like a
        missing one, and fails under ``CI=true``.
        """
        self.patch(os, "environ", dict(os.environ))
        os.environ.pop("CI", None)
        claude = e2e.ClaudeCode("oldest", "9.9.9", "CCM_TEST_CLAUDE", ".cache/ccm-test-none")
        right = self.fake_claude("9.9.9 (Claude Code)")
        os.environ["CCM_TEST_CLAUDE"] = right
        found = yield e2e.claude_code_binary(self, claude)
        self.assertEqual(found, right)
        again = yield e2e.claude_code_binary(self, claude)
        self.assertEqual(again, right)

        os.environ["CCM_TEST_CLAUDE"] = wrong = self.fake_claude("9.9.8 (Claude Code)")
        skipped = yield self.assertFailure(e2e.claude_code_binary(self, claude), unittest.SkipTest)
        self.assertEqual(
            str(skipped),
            f"{wrong} reports version '9.9.8', but the tests of Claude Code 9.9.9 (the oldest "
            "version) need 9.9.9 (pinned in scripts/test); set $CCM_TEST_CLAUDE or run "
            "./scripts/test, which installs it",
        )
        os.environ["CI"] = "true"
        failed = yield self.assertFailure(e2e.claude_code_binary(self, claude), unittest.FailTest)
        self.assertTrue(str(failed).startswith("CI=true but " + wrong), failed)
        os.environ["CCM_TEST_CLAUDE"] = "/nonexistent/claude"
        yield self.assertFailure(e2e.claude_code_binary(self, claude), unittest.FailTest)

    def test_one_class_per_version(self) -> None:
        """
        :obj:`e2e.RealClaudeCode.make_test_case_classes` makes one test case
        per version, named after the mixin and the version, holding the
        mixin's tests on the given base; ``claude_codes`` limits them.
        """

        class ExampleTestsMixin(e2e.RealClaudeCode):
            """
            Example tests.
            """

            def test_it(self) -> None:
                """
                Nothing.
                """

        classes = ExampleTestsMixin.make_test_case_classes(unittest.TestCase)
        self.assertEqual(
            sorted(classes),
            sorted(f"ExampleTests_{c.label}" for c in e2e.CLAUDE_CODES),
        )
        for claude in e2e.CLAUDE_CODES:
            made = classes[f"ExampleTests_{claude.label}"]
            self.assertIs(made.claude_code, claude)  # type: ignore[attr-defined]
            self.assertTrue(issubclass(made, ExampleTestsMixin))
            self.assertTrue(issubclass(made, unittest.TestCase))
            self.assertEqual(made.__module__, __name__)
            self.assertIn(str(claude), made.__doc__ or "")
            self.assertEqual(
                [test.id() for test in TestLoader().loadClass(made)],
                [f"{__name__}.ExampleTests_{claude.label}.test_it"],
            )

        class NewestOnlyTestsMixin(ExampleTestsMixin):
            claude_codes = (e2e.NEWEST_CLAUDE_CODE,)

        self.assertEqual(
            list(NewestOnlyTestsMixin.make_test_case_classes()),
            [f"NewestOnlyTests_{e2e.NEWEST_CLAUDE_CODE.label}"],
        )


class TwistdTests(unittest.TestCase):
    """
    :obj:`e2e.start_twistd` and :obj:`e2e.run_twistd_expecting_exit` (the machinery
    behind :obj:`e2e.start_ccm` and :obj:`e2e.run_ccm_expecting_exit`), exercised
    with Twisted's own ``web`` plugin so that no ccm code is needed.
    """

    @inlineCallbacks
    def test_start_serve_stop(self) -> Any:
        """
        The port is read from the "starting on" log line, the server answers
        there, and ``stop`` ends it cleanly with SIGTERM: twistd re-raises the
        signal, so the code is :obj:`e2e.TERMINATED_BY_SIGTERM`, and ``exited``
        fires with it too.
        """
        docroot = os.path.abspath(self.mktemp())
        os.makedirs(docroot)
        with open(os.path.join(docroot, "hello.txt"), "w") as f:
            f.write("hello from twistd")
        proc = yield e2e.start_twistd(
            self,
            ["web", "--listen", "tcp:0:interface=127.0.0.1", "--path", docroot],
        )
        self.assertEqual(proc.url, "http://127.0.0.1:{}".format(proc.port))
        self.assertTrue(os.path.isdir(proc.home))
        self.assertEqual(os.listdir(proc.home), [])
        self.assertIn("starting on {}".format(proc.port), proc.output())

        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        response = yield Agent(reactor, pool=pool).request(
            b"GET", (proc.url + "/hello.txt").encode()
        )
        body = yield readBody(response)
        self.assertEqual((response.code, body), (200, b"hello from twistd"))

        exited = proc.exited
        code = yield proc.stop()
        self.assertEqual(code, e2e.TERMINATED_BY_SIGTERM, proc.output())
        self.assertFalse(proc.was_killed)
        self.assertIn("Server Shut Down.", proc.output())
        self.assertEqual(self.successResultOf(exited), code)
        self.assertFalse(proc.running)
        # Stopping again is harmless and reports the same code.
        self.assertEqual(self.successResultOf(proc.stop()), code)
        # And the port is really closed.
        yield self.assertFailure(
            Agent(reactor, pool=pool).request(b"GET", proc.url.encode()),
            ConnectionRefusedError,
        )

    @inlineCallbacks
    def test_exit_before_listening(self) -> Any:
        """
        When twistd exits before logging a port, :obj:`e2e.start_twistd` fails at
        once with its output instead of waiting for the timeout.
        """
        d = e2e.start_twistd(self, ["web", "--listen", "tcp:notaport"])
        error = yield self.assertFailure(d, AssertionError)
        self.assertIn("before listening", str(error))
        self.assertIn("notaport", str(error))

    @inlineCallbacks
    def test_expecting_exit(self) -> Any:
        """
        :obj:`e2e.run_twistd_expecting_exit` reports a usage error's non-zero
        exit code and the message.
        """
        rc, out, err = yield e2e.run_twistd_expecting_exit(self, ["web", "--no-such-option"])
        self.assertNotEqual(rc, 0)
        self.assertIn("no-such-option", out + err)


class RealClaudeTestsMixin(e2e.RealClaudeCode):
    """
    The real Claude Code CLI, driven by :obj:`e2e.run_claude`, against a tiny
    server on the real reactor.
    """

    def setUp(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        root = _Root(self.seen)
        v1 = Resource()
        root.putChild(b"v1", v1)
        self.bodies: list[Any] = []
        v1.putChild(b"messages", _Messages(self.seen, self.bodies))
        self.base_url = e2e.serve_resource(self, root)

    @inlineCallbacks
    def test_pong(self) -> Any:
        """
        ``claude -p`` prints the streamed text and exits 0; it only talks to
        the base URL, with the token as a bearer credential.
        """
        result = yield self.run_claude(self.base_url, "harness-token", "ping")
        self.assertEqual(
            (result.rc, result.stdout.strip()),
            (0, "pong"),
            "stderr:\n" + result.stderr,
        )
        posts = [s for s in self.seen if s[0] == "POST"]
        self.assertTrue(posts, self.seen)
        for _, uri, headers in posts:
            self.assertTrue(uri.startswith("/v1/messages"), uri)
            self.assertEqual(headers.get("authorization"), "Bearer harness-token")
        self.assertEqual({m for m, _, _ in self.seen} - {"GET", "HEAD", "POST"}, set())

    @inlineCallbacks
    def test_json_output(self) -> Any:
        """
        Extra ``args`` reach the CLI: ``--output-format json`` yields one JSON
        result object holding the text.
        """
        result = yield self.run_claude(
            self.base_url,
            "harness-token",
            "ping",
            args=["--output-format", "json"],
        )
        self.assertEqual(result.rc, 0, "stderr:\n" + result.stderr)
        parsed = json.loads(result.stdout)
        self.assertEqual((parsed["is_error"], parsed["result"]), (False, "pong"))

    @inlineCallbacks
    def test_continue_in_same_home(self) -> Any:
        """
        Passing a result's ``home`` and ``cwd`` back lets ``--continue`` find
        the earlier conversation: the second request carries the first turn
        and the same session id.
        """
        first = yield self.run_claude(self.base_url, "harness-token", "ping")
        self.assertEqual(first.rc, 0, first.stderr)
        second = yield self.run_claude(
            self.base_url,
            "harness-token",
            "again",
            args=["--continue"],
            home=first.home,
            cwd=first.cwd,
        )
        self.assertEqual((second.rc, second.stdout.strip()), (0, "pong"), second.stderr)
        posts = [h for m, _, h in self.seen if m == "POST"]
        self.assertEqual(len(posts), 2, self.seen)
        self.assertEqual(posts[0]["x-claude-code-session-id"], posts[1]["x-claude-code-session-id"])
        self.assertIn("ping", json.dumps(self.bodies[1]["messages"]))
        self.assertIn("pong", json.dumps(self.bodies[1]["messages"]))

    @inlineCallbacks
    def test_api_error_exit_code(self) -> Any:
        """
        An unreachable base URL makes the CLI exit non-zero (no retries, since
        ``CLAUDE_CODE_MAX_RETRIES=0``) well within the timeout.
        """
        port = e2e.free_port()
        result = yield self.run_claude("http://127.0.0.1:{}".format(port), "harness-token", "ping")
        self.assertNotEqual(result.rc, 0)


globals().update(RealClaudeTestsMixin.make_test_case_classes())
