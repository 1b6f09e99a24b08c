# -*- test-case-name: tests.test_e2e_harness -*-
"""
Helpers for end-to-end tests that run real processes on the real reactor.

Everything here is meant to be used from a :obj:`twisted.trial.unittest.TestCase`
(not ``SynchronousTestCase``): processes are started with
``reactor.spawnProcess`` and observed with :obj:`ProcessProtocol` instances, nothing
blocks, and every process started through these helpers is killed (if still
running) and reaped in the test's cleanup, so a test that fails or times out
leaves neither a dirty reactor nor stray processes behind.

The main entry points:

  - :obj:`start_ccm`: run ``twistd -n ccm --config ...`` from the source tree and
    wait until it listens; :obj:`run_ccm_expecting_exit` for start-up failures.
  - :obj:`run_claude`: run the real Claude Code CLI (``claude -p ...``) in an
    isolated environment against a base URL (see anthropic-wire.md section 7).
  - :obj:`run_python_script`: run a Python snippet in a separate interpreter, e.g.
    to drive the real ``anthropic`` SDK.
  - :obj:`claude_bin` and :obj:`skip_or_fail_without`: locate the CLI, and skip when
    it is missing (or fail under ``CI=true``).
  - :obj:`RealClaudeCode`: the mixin that runs a class of real-CLI tests once per
    pinned Claude Code version (:obj:`CLAUDE_CODES`, read from ``scripts/test``).
  - :obj:`serve_fake_anthropic` (built on :obj:`serve_resource`): the fake upstream
    of :obj:`tests.fake_anthropic` on a free loopback port, cleaned up with the
    test; :obj:`ccm_config` to point a ccm process at it, with a credentials
    file from :obj:`tests.fixtures.write_credentials`.

Child processes do not inherit proxy variables (``http_proxy`` and friends) nor
``ANTHROPIC_*`` / ``CLAUDE_*`` variables from the environment running the tests;
tests that need them pass them explicitly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterable,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    Union,
    cast,
)

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IProtocolFactory
from twisted.internet.protocol import ProcessProtocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.resource import IResource
from twisted.web.server import Site

from tests.fake_anthropic import FakeAnthropic

#: The repository root (the directory holding ``ccm/`` and ``tests/``).
REPO_ROOT: str = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: How long :obj:`start_ccm` waits for the "starting on <port>" log line.
CCM_START_TIMEOUT_SECONDS: float = 20.0

#: How long :obj:`run_ccm_expecting_exit` waits for ccm to exit by itself.
CCM_EXIT_TIMEOUT_SECONDS: float = 30.0

#: How long a stop waits after SIGTERM before sending SIGKILL.
KILL_AFTER_SECONDS: float = 10.0

#: What :obj:`CcmProcess.stop` returns after a clean SIGTERM shutdown: twistd
#: (like ``twist``) re-raises the signal it stopped on, so it dies "by
#: SIGTERM" even when everything went fine.
TERMINATED_BY_SIGTERM: int = -signal.SIGTERM

#: How long to wait for the reactor to notice a SIGKILLed process.
REAP_GRACE_SECONDS: float = 5.0

_PORT_RE = re.compile(rb"starting on (\d+)")

#: Environment variables never passed down from the test runner's environment.
_SCRUBBED_PREFIXES = ("ANTHROPIC_", "CLAUDE_")
_SCRUBBED_NAMES = frozenset(
    {
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "ftp_proxy",
    }
)

EnvOverrides = Optional[Mapping[str, Optional[str]]]


def _reactor() -> Any:
    """
    The global reactor (the one trial runs), imported late on purpose.
    """
    from twisted.internet import reactor

    return reactor


def _base_env() -> dict[str, str]:
    """
    The test runner's environment minus proxy and Anthropic/Claude variables.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in _SCRUBBED_NAMES and not k.startswith(_SCRUBBED_PREFIXES)
    }


def _apply_overrides(env: dict[str, str], overrides: EnvOverrides) -> dict[str, str]:
    """
    Apply ``overrides`` to ``env`` in place: a ``None`` value removes the name.
    """
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _fresh_dir(testcase: unittest.TestCase) -> str:
    """
    Create and return an absolute, empty directory unique to ``testcase``.
    """
    path = os.path.abspath(cast(str, testcase.mktemp()))
    os.makedirs(path)
    return path


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _exit_code(reason: Failure) -> int:
    """
    Turn the reason given to ``processEnded`` into a return code; like
    :obj:`subprocess`, death by signal N is reported as ``-N``.
    """
    value = reason.value
    if isinstance(value, ProcessDone):
        return 0
    if isinstance(value, ProcessTerminated):
        if value.exitCode is not None:
            return int(value.exitCode)
        if value.signal is not None:
            return -int(value.signal)
    return -1


def find_twistd() -> str:
    """
    Return the ``twistd`` script installed next to the running interpreter.

    :raises RuntimeError: when there is none; that is an installation error,
        not a reason to skip.
    """
    path = os.path.join(os.path.dirname(sys.executable), "twistd")
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            "no twistd next to {}; run the tests from the virtualenv (./scripts/test)".format(
                sys.executable
            )
        )
    return path


def free_port() -> int:
    """
    Return a TCP port on 127.0.0.1 that was free a moment ago.

    Racy by nature; prefer ``tcp:0:interface=127.0.0.1`` and reading the port
    back (as :obj:`start_ccm` does).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Collector(ProcessProtocol):
    """
    Collect a child's stdout and stderr and report its end.

    :ivar ended: fires with the exit code (see :obj:`_exit_code`) once the process
        has exited and its pipes are closed.
    """

    def __init__(self, on_output: Optional[Callable[[], None]] = None) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exit_code: Optional[int] = None
        self.ended: Deferred[int] = Deferred()
        self._on_output = on_output

    def connectionMade(self) -> None:
        # Our children read nothing from us: give them EOF on stdin at once.
        assert self.transport is not None
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        if self._on_output is not None:
            self._on_output()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        if self._on_output is not None:
            self._on_output()

    def processEnded(self, reason: Failure) -> None:
        self.exit_code = _exit_code(reason)
        self.ended.callback(self.exit_code)


class _Child:
    """
    A spawned process plus the machinery to kill and reap it.
    """

    def __init__(
        self,
        testcase: unittest.TestCase,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        on_output: Optional[Callable[[], None]] = None,
    ) -> None:
        self.argv = list(argv)
        self.protocol = _Collector(on_output)
        #: Whether this harness had to SIGKILL the process.
        self.was_killed = False
        self._waiters: list[Deferred[int]] = []
        self.protocol.ended.addCallback(self._fire_waiters)
        self.transport = _reactor().spawnProcess(
            self.protocol, self.argv[0], self.argv, env=dict(env), path=cwd
        )
        self.pid: int = self.transport.pid
        testcase.addCleanup(self.stop)

    def _fire_waiters(self, code: int) -> int:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(code)
        return code

    @property
    def running(self) -> bool:
        return self.protocol.exit_code is None

    def wait(self) -> Deferred[int]:
        """
        A new Deferred that fires with the exit code when the process ends.
        """
        if self.protocol.exit_code is not None:
            return succeed(self.protocol.exit_code)
        d: Deferred[int] = Deferred()
        self._waiters.append(d)
        return d

    def output(self) -> str:
        """
        Everything written so far, stdout then stderr, as text.
        """
        text = _decode(bytes(self.protocol.stdout))
        err = _decode(bytes(self.protocol.stderr))
        if err:
            text += ("" if not text or text.endswith("\n") else "\n") + err
        return text

    def _signal(self, name: str) -> None:
        try:
            self.transport.signalProcess(name)
        except (ProcessExitedAlready, OSError):
            pass

    def kill(self) -> Deferred[int]:
        """
        SIGKILL the process now, drop our ends of its pipes (in case a
        grandchild still holds them) and wait for it to be reaped.
        """
        if not self.running:
            return succeed(self.protocol.exit_code)  # type: ignore[arg-type]
        self.was_killed = True
        self._signal("KILL")
        # If a grandchild inherited the pipes, processEnded would wait for it
        # to close them; do not wait for that.
        return _with_timeout(self.wait(), REAP_GRACE_SECONDS, self._drop_pipes)

    def _drop_pipes(self) -> None:
        if self.running:
            self.transport.loseConnection()

    def stop(self, kill_after: float = KILL_AFTER_SECONDS) -> Deferred[int]:
        """
        SIGTERM the process, SIGKILL it after ``kill_after`` seconds, and
        return a Deferred firing with its exit code once it is reaped.
        Safe to call more than once, and after the process ended.
        """
        if not self.running:
            return succeed(self.protocol.exit_code)  # type: ignore[arg-type]
        self._signal("TERM")
        done = self.wait()
        killer = _reactor().callLater(kill_after, self.kill)

        def cancel_killer(code: int) -> int:
            if killer.active():
                killer.cancel()
            return code

        return done.addBoth(cancel_killer)


def _with_timeout(
    d: Deferred[Any],
    seconds: float,
    on_timeout: Callable[[], Any],
) -> Deferred[Any]:
    """
    Run ``on_timeout`` if ``d`` has not fired after ``seconds``; the timer is
    cancelled when ``d`` fires first.
    """
    timer: IDelayedCall = _reactor().callLater(seconds, on_timeout)

    def cancel(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        return result

    return d.addBoth(cancel)


# ---------------------------------------------------------------------------
# ccm under twistd


def _write_config(
    testcase: unittest.TestCase, config: Union[Mapping[str, Any], str]
) -> tuple[str, str]:
    """
    Write ``config`` (a mapping, dumped as JSON, or raw text) to ``config.json``
    in a fresh directory and return ``(directory, path)``.
    """
    directory = _fresh_dir(testcase)
    path = os.path.join(directory, "config.json")
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return directory, path


def _twistd_argv(plugin_args: Iterable[str]) -> list[str]:
    return [find_twistd(), "-n", "--pidfile=", *plugin_args]


def _ccm_args(path: str, extra_args: Iterable[str]) -> list[str]:
    return ["ccm", "--config", path, *extra_args]


def _twistd_env(directory: str, env: EnvOverrides) -> dict[str, str]:
    """
    The environment for twistd: ``PYTHONPATH`` starts with the repository
    root so the source tree's ``ccm`` and ``twisted/plugins/ccm_plugin.py``
    win over any installed copy; ``HOME`` is an empty ``home`` directory under
    ``directory`` and the ``XDG_*`` base directories are unset, so ccm never
    sees (let alone refreshes) the real ``~/.claude/.credentials.json`` or
    keyring of whoever runs the tests.
    """
    home = os.path.join(directory, "home")
    os.makedirs(home, exist_ok=True)
    base = {k: v for k, v in _base_env().items() if not k.startswith("XDG_")}
    base["HOME"] = home
    pythonpath = base.get("PYTHONPATH")
    base["PYTHONPATH"] = REPO_ROOT + (os.pathsep + pythonpath if pythonpath else "")
    base["PYTHONUNBUFFERED"] = "1"
    return _apply_overrides(base, env)


class CcmProcess:
    """
    A running ``twistd -n`` process (normally ccm) started by :obj:`start_ccm` or
    :obj:`start_twistd`.

    :ivar port: the TCP port it listens on (read from its log).
    :ivar url: ``http://127.0.0.1:<port>``.
    :ivar directory: the process's working directory (holding ``config.json``
        when started by :obj:`start_ccm`, and ``home/``, its ``HOME``).
    :ivar home: its ``HOME`` directory (unless ``env`` overrode it).
    :ivar config_path: absolute path of the config file, or ``None``.
    :ivar pid: the process id.
    """

    port: int
    url: str

    def __init__(
        self,
        testcase: unittest.TestCase,
        plugin_args: Sequence[str],
        *,
        directory: str,
        config_path: Optional[str] = None,
        env: EnvOverrides = None,
        name: str = "ccm",
    ) -> None:
        self.directory = directory
        self.config_path = config_path
        self.home = os.path.join(directory, "home")
        self._name = name
        self._port_found: Deferred[int] = Deferred()
        self._child = _Child(
            testcase,
            _twistd_argv(plugin_args),
            env=_twistd_env(directory, env),
            cwd=directory,
            on_output=self._look_for_port,
        )
        self.pid = self._child.pid
        self._child.protocol.ended.addCallback(self._ended_before_port)

    def _look_for_port(self) -> None:
        if self._port_found.called:
            return
        match = _PORT_RE.search(self._child.protocol.stdout) or _PORT_RE.search(
            self._child.protocol.stderr
        )
        if match is not None:
            self.port = int(match.group(1))
            self.url = "http://127.0.0.1:{}".format(self.port)
            self._port_found.callback(self.port)

    def _ended_before_port(self, code: int) -> int:
        if not self._port_found.called:
            self._port_found.errback(
                Failure(
                    AssertionError(
                        "{} exited with code {} before listening; output:\n{}".format(
                            self._name, code, self.output()
                        )
                    )
                )
            )
        return code

    def _wait_for_port(self, timeout: float) -> Deferred[CcmProcess]:
        def timed_out() -> None:
            if not self._port_found.called:
                self._port_found.errback(
                    Failure(
                        AssertionError(
                            "{} did not log 'starting on <port>' within {}s; output:\n{}".format(
                                self._name, timeout, self.output()
                            )
                        )
                    )
                )

        d = _with_timeout(self._port_found, timeout, timed_out)
        return d.addCallback(lambda _: self)

    @property
    def exited(self) -> Deferred[int]:
        """
        A new Deferred firing with the exit code when the process ends
        (``-N`` when killed by signal N).
        """
        return self._child.wait()

    @property
    def running(self) -> bool:
        """
        Whether the process is still running.
        """
        return self._child.running

    @property
    def was_killed(self) -> bool:
        """
        Whether :obj:`stop` had to resort to SIGKILL.
        """
        return self._child.was_killed

    def output(self) -> str:
        """
        All text the process wrote so far (stdout, then stderr).
        """
        return self._child.output()

    def stdout(self) -> str:
        """
        Everything written to stdout so far.
        """
        return _decode(bytes(self._child.protocol.stdout))

    def stderr(self) -> str:
        """
        Everything written to stderr so far.
        """
        return _decode(bytes(self._child.protocol.stderr))

    def signal(self, name: str) -> None:
        """
        Send signal ``name`` (e.g. ``"HUP"``) to the process.
        """
        self._child.transport.signalProcess(name)

    def stop(self) -> Deferred[int]:
        """
        SIGTERM the process, SIGKILL it after :obj:`KILL_AFTER_SECONDS`, and fire
        with its exit code once it has been reaped. Idempotent; also
        registered as a cleanup of the test that started it.

        A clean shutdown of twistd gives :obj:`TERMINATED_BY_SIGTERM` (``-15``),
        not 0 (see there); a forced one gives ``-9`` and sets :obj:`was_killed`.
        """
        return self._child.stop()


def start_twistd(
    testcase: unittest.TestCase,
    plugin_args: Sequence[str],
    *,
    env: EnvOverrides = None,
    timeout: float = CCM_START_TIMEOUT_SECONDS,
) -> Deferred[CcmProcess]:
    """
    Start ``twistd -n --pidfile= *plugin_args`` in a fresh directory and wait
    until it logs ``starting on <port>``. :obj:`start_ccm` is this with the ccm
    plugin; the harness's own tests use Twisted's ``web`` plugin.

    :return: fires with the :obj:`CcmProcess`, or fails with an ``AssertionError``
        carrying the output if the process exits or times out first.
    """
    proc = CcmProcess(
        testcase,
        plugin_args,
        directory=_fresh_dir(testcase),
        env=env,
        name=plugin_args[0] if plugin_args else "twistd",
    )
    return proc._wait_for_port(timeout)


def start_ccm(
    testcase: unittest.TestCase,
    config: Union[Mapping[str, Any], str],
    *,
    extra_args: Sequence[str] = (),
    env: EnvOverrides = None,
    timeout: float = CCM_START_TIMEOUT_SECONDS,
) -> Deferred[CcmProcess]:
    """
    Start ``twistd -n --pidfile= ccm --config <file> *extra_args`` from the
    source tree and wait until it logs ``starting on <port>``.

    The config should listen on ``tcp:0:interface=127.0.0.1`` so the OS picks
    the port. The process is stopped in ``testcase``'s cleanup.

    :param config: the configuration; a mapping is written as JSON, a string
        is written as is, to ``config.json`` in a fresh directory, which is
        also the working directory.
    :param extra_args: more arguments after ``--config <file>``.
    :param env: changes to the child's environment (``None`` values remove a
        variable); by default ``PYTHONPATH`` starts with the repository root
        and ``HOME`` is ``<directory>/home``, empty (see :obj:`_twistd_env`).
    :param timeout: seconds to wait for the port before failing.
    :return: fires with the :obj:`CcmProcess`, or fails with an ``AssertionError``
        carrying ccm's output if it exits or times out first.
    """
    directory, path = _write_config(testcase, config)
    proc = CcmProcess(
        testcase,
        _ccm_args(path, extra_args),
        directory=directory,
        config_path=path,
        env=env,
    )
    return proc._wait_for_port(timeout)


def run_twistd_expecting_exit(
    testcase: unittest.TestCase,
    plugin_args: Sequence[str],
    *,
    cwd: Optional[str] = None,
    env: EnvOverrides = None,
    timeout: float = CCM_EXIT_TIMEOUT_SECONDS,
) -> Deferred[tuple[int, str, str]]:
    """
    Run ``twistd -n --pidfile= *plugin_args`` and wait for it to exit by
    itself.

    :return: fires with ``(exit_code, stdout, stderr)``; fails with
        :obj:`ProcessTimeout` (after killing it) if it is still running after
        ``timeout`` seconds.
    """
    if cwd is None:
        cwd = _fresh_dir(testcase)
    child = _Child(testcase, _twistd_argv(plugin_args), env=_twistd_env(cwd, env), cwd=cwd)
    return _run_to_completion(child, timeout, plugin_args[0] if plugin_args else "twistd")


def run_ccm_expecting_exit(
    testcase: unittest.TestCase,
    config_or_raw_text: Union[Mapping[str, Any], str],
    extra_args: Sequence[str] = (),
    *,
    env: EnvOverrides = None,
    timeout: float = CCM_EXIT_TIMEOUT_SECONDS,
) -> Deferred[tuple[int, str, str]]:
    """
    Run ccm with a configuration it is expected to reject (a mapping is
    written as JSON, a string as is), and wait for it to exit by itself.

    :return: fires with ``(exit_code, stdout, stderr)``; fails with
        :obj:`ProcessTimeout` (after killing it) if ccm is still running after
        ``timeout`` seconds.
    """
    directory, path = _write_config(testcase, config_or_raw_text)
    return run_twistd_expecting_exit(
        testcase, _ccm_args(path, extra_args), cwd=directory, env=env, timeout=timeout
    )


# ---------------------------------------------------------------------------
# Other processes


@dataclass(frozen=True)
class ClaudeResult:
    """
    The outcome of one :obj:`run_claude` call.
    """

    rc: int
    stdout: str
    stderr: str
    #: The ``HOME`` and working directory the CLI ran with (pass them back to
    #: :obj:`run_claude` to continue a conversation).
    home: str = ""
    cwd: str = ""


class ProcessTimeout(AssertionError):
    """
    A helper process ran longer than its allowed time and was killed.
    """


def _run_to_completion(child: _Child, timeout: float, what: str) -> Deferred[tuple[int, str, str]]:
    """
    Wait for ``child`` to end; after ``timeout`` seconds kill it and fail with
    :obj:`ProcessTimeout` carrying its output.
    """
    result: Deferred[tuple[int, str, str]] = Deferred()
    state = {"timed_out": False}

    def on_timeout() -> None:
        state["timed_out"] = True
        child.kill()

    def ended(code: int) -> None:
        out = _decode(bytes(child.protocol.stdout))
        err = _decode(bytes(child.protocol.stderr))
        if state["timed_out"]:
            result.errback(
                Failure(
                    ProcessTimeout(
                        "{} ({}) did not finish within {}s and was killed; "
                        "stdout:\n{}\nstderr:\n{}".format(
                            what, " ".join(child.argv[:3]), timeout, out, err
                        )
                    )
                )
            )
        else:
            result.callback((code, out, err))

    _with_timeout(child.wait(), timeout, on_timeout).addCallback(ended)
    return result


def claude_bin() -> Optional[str]:
    """
    Locate the newest pinned Claude Code CLI: ``$CCM_CLAUDE_BIN``, else the
    copy ``./scripts/test`` installs in ``.cache/claude``, else ``None``
    (:obj:`ClaudeCode.find` of :obj:`NEWEST_CLAUDE_CODE`).
    """
    return NEWEST_CLAUDE_CODE.find()


#: How the tests get the Claude Code CLI, for skip messages.
SCRIPTS_TEST_INSTALLS_IT = "./scripts/test installs it"


def debian_package(package: str) -> str:
    """
    How to get a tool that comes from a Debian package, for skip messages:
    ``.ci/run`` installs the package, ``./scripts/test`` does not.
    """
    return f"install the Debian package {package} (bash .ci/run does; ./scripts/test does not)"


def skip_or_fail_without(
    tool_path: Optional[str], name: str, how_to_get: str = SCRIPTS_TEST_INSTALLS_IT
) -> str:
    """
    Make sure an external tool is available.

    :param tool_path: where the tool should be (``None`` when not found).
    :param name: a human name for messages.
    :param how_to_get: the end of the message: how to install the tool.
    :return: ``tool_path`` when it is an executable file.
    @raise unittest.SkipTest: when it is missing, unless the environment has
        ``CI=true``.
    @raise unittest.FailTest: when it is missing and ``CI=true``: CI must never
        silently skip real-client tests.
    """
    if tool_path and os.path.isfile(tool_path) and os.access(tool_path, os.X_OK):
        return tool_path
    if tool_path:
        why = "{} not available ({} is not an executable file); {}".format(name, tool_path, how_to_get)
    else:
        why = "{} not found; {}".format(name, how_to_get)
    skip_or_fail(why)


def skip_or_fail(why: str) -> NoReturn:
    """
    Skip the test for a missing tool, or fail it under ``CI=true``.

    @raise unittest.SkipTest: normally, with ``why``.
    @raise unittest.FailTest: when the environment has ``CI=true``: CI must
        never silently skip real-client tests.
    """
    if os.environ.get("CI", "").lower() == "true":
        raise unittest.FailTest("CI=true but " + why)
    raise unittest.SkipTest(why)


#: Environment for the real CLI (anthropic-wire.md section 7.2), before the
#: per-call variables.
CLAUDE_BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/bin:/bin",
    "TERM": "dumb",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
}


def run_claude(
    testcase: unittest.TestCase,
    base_url: str,
    token: Optional[str],
    prompt: str,
    *,
    args: Sequence[str] = (),
    extra_env: EnvOverrides = None,
    timeout: float = 120,
    home: Optional[str] = None,
    cwd: Optional[str] = None,
    binary: Optional[str] = None,
) -> Deferred[ClaudeResult]:
    """
    Run ``claude -p <prompt> *args`` against ``base_url`` in a clean,
    isolated environment: nothing inherited, a fresh ``HOME`` (kept under
    ``_trial_temp`` for post-mortems), stdin at EOF, and a fresh empty working
    directory outside the repository (removed afterwards).

    Skips (or fails under ``CI=true``) when the CLI is not installed.
    Tests of a :obj:`RealClaudeCode` class call :obj:`RealClaudeCode.run_claude`
    instead, which passes the binary of the class's version.

    :param token: sent as ``ANTHROPIC_AUTH_TOKEN`` (``Authorization: Bearer``);
        ``None`` sets nothing (e.g. to pass ``CLAUDE_CODE_OAUTH_TOKEN`` or
        ``ANTHROPIC_API_KEY`` through ``extra_env`` instead).
    :param extra_env: added to / overriding the environment; a ``None`` value
        removes a variable.
    :param timeout: seconds before the CLI is killed and the call fails with
        :obj:`ProcessTimeout`.
    :param home: reuse this ``HOME`` (e.g. ``previous.home``) instead of a fresh
        one; with ``cwd=previous.cwd`` too, ``--continue`` / ``--resume`` work
        (the CLI files sessions by home and working directory).
    :param cwd: run in this directory instead of a fresh one.
    :param binary: the CLI to run; by default :obj:`claude_bin`'s.
    :return: fires with a :obj:`ClaudeResult`; a non-zero exit is not an error.
    """
    if binary is None:
        binary = skip_or_fail_without(claude_bin(), "Claude Code CLI")
    if home is None:
        home = _fresh_dir(testcase)
    if cwd is None:
        # The CLI treats the enclosing git repository as its project (reads
        # its CLAUDE.md files, keeps per-project state), and _trial_temp is
        # inside ours: run it from an empty directory outside the repository.
        cwd = tempfile.mkdtemp(prefix="ccm-e2e-claude-")
        testcase.addCleanup(shutil.rmtree, cwd, ignore_errors=True)
    env = dict(CLAUDE_BASE_ENV)
    env["HOME"] = home
    env["ANTHROPIC_BASE_URL"] = base_url
    if token is not None:
        env["ANTHROPIC_AUTH_TOKEN"] = token
    _apply_overrides(env, extra_env)
    child = _Child(testcase, [binary, "-p", prompt, *args], env=env, cwd=cwd)
    d = _run_to_completion(child, timeout, "claude")
    return d.addCallback(
        lambda r: ClaudeResult(rc=r[0], stdout=r[1], stderr=r[2], home=home, cwd=cwd)
    )


# ---------------------------------------------------------------------------
# Claude Code versions: every real-CLI test runs against each pinned one

#: The test command, which pins the Claude Code versions the tests run.
SCRIPTS_TEST: str = os.path.join(REPO_ROOT, "scripts", "test")

#: How long ``claude --version`` may take.
CLAUDE_VERSION_TIMEOUT_SECONDS: float = 60.0


def pinned_claude_code_version(variable: str, script: str = SCRIPTS_TEST) -> str:
    """
    The version a ``VARIABLE=version`` line of ``scripts/test`` pins, so
    that a bump there is the only change a new Claude Code needs.

    :raises RuntimeError: when the script has no such line.
    """
    with open(script, encoding="utf-8") as handle:
        text = handle.read()
    match = re.search(r"^{}=([0-9][0-9A-Za-z.+-]*)[ \t]*$".format(re.escape(variable)), text, re.M)
    if match is None:
        raise RuntimeError("{} pins no {}".format(script, variable))
    return match.group(1)


@dataclass(frozen=True)
class ClaudeCode:
    """
    One pinned Claude Code version the real-client tests run against.

    :ivar role: ``"newest"`` (the newest tested) or ``"oldest"`` (the oldest
        ccm supports).
    :ivar version: the version ``scripts/test`` pins, e.g. ``"2.1.332"``.
    :ivar env_var: the variable that may name its binary.
    :ivar cache_dir: where ``./scripts/test`` installs it, relative to the
        repository.
    """

    role: str
    version: str
    env_var: str
    cache_dir: str

    @property
    def newest(self) -> bool:
        """
        Whether this is the newest pinned version.
        """
        return self.role == "newest"

    @property
    def label(self) -> str:
        """
        The version as a Python name part, for test class names: ``2_1_332``.
        """
        return re.sub(r"[^0-9A-Za-z]", "_", self.version)

    def find(self) -> Optional[str]:
        """
        Locate the binary: ``$<env_var>``, else the copy ``./scripts/test``
        installs under :obj:`cache_dir`, else ``None``.
        """
        configured = os.environ.get(self.env_var)
        if configured:
            return configured
        cached = os.path.join(REPO_ROOT, self.cache_dir, "node_modules", ".bin", "claude")
        if os.access(cached, os.X_OK):
            return cached
        return None

    def __str__(self) -> str:
        return "Claude Code {} (the {} version)".format(self.version, self.role)


#: The newest Claude Code the tests run, ``$CCM_CLAUDE_BIN``.
NEWEST_CLAUDE_CODE = ClaudeCode(
    "newest", pinned_claude_code_version("CLAUDE_CODE_VERSION"), "CCM_CLAUDE_BIN", ".cache/claude"
)
#: The oldest Claude Code ccm supports, ``$CCM_CLAUDE_BIN_OLDEST``.
OLDEST_CLAUDE_CODE = ClaudeCode(
    "oldest",
    pinned_claude_code_version("CLAUDE_CODE_OLDEST"),
    "CCM_CLAUDE_BIN_OLDEST",
    ".cache/claude-oldest",
)
#: Every version a :obj:`RealClaudeCode` class runs against, newest first.
CLAUDE_CODES: tuple[ClaudeCode, ...] = (NEWEST_CLAUDE_CODE, OLDEST_CLAUDE_CODE)

#: What each binary reported as its version, asked once per test run.
_reported_versions: dict[str, str] = {}


def claude_code_binary(testcase: unittest.TestCase, claude_code: ClaudeCode) -> Deferred[str]:
    """
    The binary of ``claude_code``, once it reported the pinned version.

    A binary of another version would run the tests under a wrong name, so
    it is treated as a missing one: skipped, or failed under ``CI=true``.
    ``claude --version`` runs once per binary and test run.

    :return: fires with the binary's path, or fails with ``SkipTest`` or
        ``FailTest``.
    """
    how = "set ${} or run ./scripts/test, which installs it".format(claude_code.env_var)
    try:
        binary = skip_or_fail_without(claude_code.find(), str(claude_code), how)
    except (unittest.SkipTest, unittest.FailTest):
        return fail()

    def check(reported: str) -> str:
        _reported_versions[binary] = reported
        if reported != claude_code.version:
            skip_or_fail(
                "{} reports version {!r}, but the tests of {} need {} (pinned in "
                "scripts/test); {}".format(binary, reported, claude_code, claude_code.version, how)
            )
        return binary

    if binary in _reported_versions:
        return succeed(_reported_versions[binary]).addCallback(check)
    directory = _fresh_dir(testcase)
    env = dict(CLAUDE_BASE_ENV, HOME=directory)
    child = _Child(testcase, [binary, "--version"], env=env, cwd=directory)
    d = _run_to_completion(child, CLAUDE_VERSION_TIMEOUT_SECONDS, "claude --version")
    return d.addCallback(lambda result: (result[1].split() or [""])[0]).addCallback(check)


if TYPE_CHECKING:
    _RealClaudeCodeBase = unittest.TestCase
else:
    _RealClaudeCodeBase = object


class RealClaudeCode(_RealClaudeCodeBase):
    """
    A mixin for a class of tests that run the real Claude Code CLI, so that
    they run against every pinned version.

    The class mixing it in holds the tests and is no test case itself;
    :obj:`make_test_case_classes` makes one test case per version, named
    after the class and the version (``ClaudeCodeTestsMixin`` gives
    ``ClaudeCodeTests_2_1_332`` and ``ClaudeCodeTests_2_1_197``), and the
    test module adds them to its namespace, as Twisted's own
    ``ReactorBuilder.makeTestCaseClasses`` is used::

        class ClaudeCodeTestsMixin(e2e.RealClaudeCode):
            def test_hi(self):
                return self.run_claude(url, token, "say hi")...

        globals().update(ClaudeCodeTestsMixin.make_test_case_classes(_Base))

    A test that needs what one version does differently reads
    :obj:`claude_code`.

    :ivar claude_code: the version this test case runs (set on each class
        :obj:`make_test_case_classes` makes).
    :ivar claude_codes: the versions to make classes for; a class of heavy
        scenarios may run only ``(NEWEST_CLAUDE_CODE,)``.
    """

    claude_code: ClaudeCode
    claude_codes: Sequence[ClaudeCode] = CLAUDE_CODES

    def run_claude(
        self, base_url: str, token: Optional[str], prompt: str, **kwargs: Any
    ) -> Deferred[ClaudeResult]:
        """
        :obj:`run_claude` with this test case's Claude Code version; skips
        (or fails under ``CI=true``) when that version is not installed.

        :param kwargs: :obj:`run_claude`'s keyword arguments.
        """
        testcase = self
        assert isinstance(testcase, unittest.TestCase)
        found = claude_code_binary(testcase, self.claude_code)
        return found.addCallback(
            lambda binary: run_claude(testcase, base_url, token, prompt, binary=binary, **kwargs)
        )

    @classmethod
    def make_test_case_classes(
        cls, base: type[unittest.TestCase] = unittest.TestCase
    ) -> dict[str, type[unittest.TestCase]]:
        """
        One test case class per version of :obj:`claude_codes`: this class's
        tests on ``base`` (a ``TestCase`` holding their fixtures).

        :return: the classes by name, for the module's ``globals()``.
        """
        stem = cls.__name__.removesuffix("Mixin")
        classes: dict[str, type[unittest.TestCase]] = {}
        for claude_code in cls.claude_codes:
            name = "{}_{}".format(stem, claude_code.label)
            classes[name] = type(
                name,
                (cls, base),
                {
                    "claude_code": claude_code,
                    "__module__": cls.__module__,
                    "__qualname__": name,
                    "__doc__": "{}\n\n    With {}.\n    ".format(
                        (cls.__doc__ or "").rstrip(), claude_code
                    ),
                },
            )
        return classes


def run_python_script(
    testcase: unittest.TestCase,
    source: str,
    *,
    env: EnvOverrides = None,
    timeout: float = 60,
) -> Deferred[tuple[int, str, str]]:
    """
    Run ``sys.executable -c source`` in a fresh working directory, e.g. to
    drive the real ``anthropic`` SDK in a separate process.

    :param env: changes to the inherited environment (which has no proxy or
        ``ANTHROPIC_*``/``CLAUDE_*`` variables); ``None`` values remove.
    :return: fires with ``(rc, stdout, stderr)``; fails with :obj:`ProcessTimeout`
        (after killing it) if it runs longer than ``timeout`` seconds.
    """
    full_env = _base_env()
    full_env["PYTHONUNBUFFERED"] = "1"
    _apply_overrides(full_env, env)
    child = _Child(
        testcase,
        [sys.executable, "-c", source],
        env=full_env,
        cwd=_fresh_dir(testcase),
    )
    return _run_to_completion(child, timeout, "python script")


# ---------------------------------------------------------------------------
# Servers in the test process, and ccm wired to the fake upstream


class _TrackingFactory(WrappingFactory):
    """
    A factory wrapper that remembers open connections, so that a test's
    cleanup can close them and wait until the reactor has let go of them
    (an open connection, or its idle timer, would make the reactor dirty).
    """

    def __init__(self, wrapped: IProtocolFactory) -> None:
        super().__init__(wrapped)
        self._lost: dict[ProtocolWrapper, Deferred[None]] = {}

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        super().registerProtocol(p)
        self._lost[p] = Deferred()

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        d = self._lost.pop(p, None)
        if d is not None:
            d.callback(None)

    def close_all(self) -> Deferred[Any]:
        """
        Abort every open connection; fire once all of them are gone.
        """
        waiting = list(self._lost.items())
        for p, _ in waiting:
            transport = p.transport
            if transport is not None and hasattr(transport, "abortConnection"):
                transport.abortConnection()
            elif transport is not None:
                transport.loseConnection()
        return DeferredList([d for _, d in waiting])


def serve_resource(testcase: unittest.TestCase, resource: IResource) -> str:
    """
    Serve ``resource`` on a free port of 127.0.0.1 on the real reactor for
    the rest of ``testcase``; its cleanup stops listening and closes every
    connection (waiting until they are gone).

    :return: the base URL, ``http://127.0.0.1:<port>``.
    """
    site = Site(resource)
    site.noisy = False
    factory = _TrackingFactory(site)
    port = _reactor().listenTCP(0, factory, interface="127.0.0.1")
    testcase.addCleanup(factory.close_all)
    testcase.addCleanup(port.stopListening)
    return "http://127.0.0.1:{}".format(port.getHost().port)


def serve_fake_anthropic(testcase: unittest.TestCase) -> tuple[FakeAnthropic, str]:
    """
    Run a :obj:`FakeAnthropic` (timed by the real reactor) on a free loopback
    port for the rest of ``testcase``; open replies are aborted in cleanup.

    :return: the fake and its base URL.
    """
    fake = FakeAnthropic(_reactor())
    url = serve_resource(testcase, fake.resource())
    # Cleanups run last-in first-out: abort the replies before the
    # connections are closed.
    testcase.addCleanup(fake.abort_all)
    return fake, url


def ccm_config(
    upstream_url: str, credential_path: str, users: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """
    A ccm configuration listening on a free loopback port, with the fake at
    ``upstream_url`` as both the API and the OAuth token endpoint.
    """
    return {
        "endpoint": "tcp:0:interface=127.0.0.1",
        "upstream_url": upstream_url,
        "oauth_token_url": upstream_url + "/v1/oauth/token",
        "credential_path": credential_path,
        "users": [dict(u) for u in users],
    }


__all__ = [
    "REPO_ROOT",
    "TERMINATED_BY_SIGTERM",
    "CcmProcess",
    "CLAUDE_CODES",
    "NEWEST_CLAUDE_CODE",
    "OLDEST_CLAUDE_CODE",
    "ClaudeCode",
    "ClaudeResult",
    "ProcessTimeout",
    "RealClaudeCode",
    "ccm_config",
    "claude_bin",
    "claude_code_binary",
    "debian_package",
    "find_twistd",
    "free_port",
    "run_ccm_expecting_exit",
    "run_claude",
    "run_python_script",
    "pinned_claude_code_version",
    "run_twistd_expecting_exit",
    "serve_fake_anthropic",
    "serve_resource",
    "skip_or_fail",
    "skip_or_fail_without",
    "start_ccm",
    "start_twistd",
]
