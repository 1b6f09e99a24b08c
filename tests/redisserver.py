"""
A real ``redis-server`` (the Debian package) for the tests of the shared
state: started on a free loopback port in a directory of the test's own,
with nothing saved to disk, and stopped in the test's cleanup.  It can be
stopped and started again on the same port, for the tests of what ccm does
while Redis is away.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Optional

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests import e2e

READY_LINE = b"Ready to accept connections"
START_TIMEOUT_SECONDS = 20.0


def redis_server_binary() -> str:
    """
    The ``redis-server`` program; skips the test without it (fails it
    under ``CI=true``).
    """
    return e2e.skip_or_fail_without(
        shutil.which("redis-server"), "redis-server", e2e.debian_package("redis-server")
    )


class RedisServer:
    """
    One ``redis-server`` process at ``127.0.0.1:port``.
    """

    def __init__(
        self,
        testcase: unittest.TestCase,
        password: str = "",
        tls_files: Optional[tuple[str, str, str]] = None,
    ) -> None:
        self._testcase = testcase
        self.binary = redis_server_binary()
        self.directory = os.path.abspath(testcase.mktemp())
        os.makedirs(self.directory)
        self.port = e2e.free_port()
        self.password = password
        #: (certificate, key, CA) files: then the port speaks TLS only.
        self.tls_files = tls_files
        self._child: Optional[e2e._Child] = None

    @property
    def url(self) -> str:
        """
        The ``state.url`` that reaches this server (without its password).
        """
        scheme = "rediss" if self.tls_files else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [
            self.binary,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.directory,
            "--protected-mode", "no",
        ]
        if self.tls_files:
            certificate, key, ca = self.tls_files
            argv += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", certificate,
                "--tls-key-file", key,
                "--tls-ca-cert-file", ca,
                "--tls-auth-clients", "no",
            ]
        else:
            argv += ["--port", str(self.port)]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    @inlineCallbacks
    def start(self) -> Any:
        """
        Start the server (again, on the same port) and wait until it
        accepts connections.
        """
        child = e2e._Child(self._testcase, self._argv(), env={"PATH": "/usr/bin:/bin"}, cwd=self.directory)
        self._child = child
        waited = 0.0
        while READY_LINE not in bytes(child.protocol.stdout):
            if not child.running:
                raise AssertionError(f"redis-server exited:\n{child.output()}")
            if waited > START_TIMEOUT_SECONDS:
                raise AssertionError(f"redis-server did not start:\n{child.output()}")
            yield deferLater(e2e._reactor(), 0.05, lambda: None)
            waited += 0.05
        return self

    def stop(self) -> Deferred[int]:
        """
        Stop the server (SIGTERM); its data goes with it.
        """
        assert self._child is not None, "redis-server was never started"
        return self._child.stop()

    def kill(self) -> Deferred[int]:
        """
        SIGKILL the server.
        """
        assert self._child is not None, "redis-server was never started"
        return self._child.kill()

    def output(self) -> str:
        """
        What the server has logged.
        """
        return self._child.output() if self._child is not None else ""


def start_redis(
    testcase: unittest.TestCase,
    password: str = "",
    tls_files: Optional[tuple[str, str, str]] = None,
) -> Deferred[RedisServer]:
    """
    A new, started :obj:`RedisServer`, stopped in ``testcase``'s cleanup.
    """
    return RedisServer(testcase, password, tls_files).start()
