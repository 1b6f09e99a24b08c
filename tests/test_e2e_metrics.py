"""
End-to-end test of the metrics with a real Prometheus server (the Debian
package ``prometheus``): it scrapes a real ``twistd -n ccm`` through the
``metrics_listen`` listener, and through ``/metrics`` on the main listener
with an admin's bearer token, and this test reads ccm's series back from
Prometheus's HTTP API after a few proxied requests.

Prometheus runs on a free loopback port with a generated configuration
(scrapes every second) and a data directory of the test's own; both it and
ccm are stopped in the cleanup.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any
from urllib.parse import urlencode

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests import e2e
from tests.fake_anthropic import text_reply
from tests.fixtures import expiry_ms, write_credentials

ALICE = "ak-ccm-metrics-alice-5c2e"
ADMIN = "ak-ccm-metrics-admin-91d7"
#: How long Prometheus gets to show the expected values.
WAIT_SECONDS = 60.0
MESSAGE = {
    "model": "claude-haiku-4-5-20251001",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


class _Prometheus(ProcessProtocol):
    """
    The Prometheus process: its output, and when it ended.
    """

    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        reason.trap(ProcessDone, ProcessTerminated)
        self.ended.callback(None)


def scrape_config(metrics_port: int, ccm_port: int) -> str:
    """
    A Prometheus configuration scraping ccm every second: its metrics
    listener, and its main listener with the admin's token.  (JSON is
    YAML.)
    """
    return json.dumps(
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "ccm",
                    "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                },
                {
                    "job_name": "ccm-admin",
                    "authorization": {"credentials": ADMIN},
                    "static_configs": [{"targets": [f"127.0.0.1:{ccm_port}"]}],
                },
            ],
        }
    )


class PrometheusTests(unittest.TestCase):
    """
    ccm with one credential, a user and an admin, scraped by Prometheus.
    """

    timeout = 180

    def start_prometheus(self, metrics_port: int, ccm_port: int) -> str:
        """
        Start Prometheus on a free loopback port; stop it and remove its
        directory in the cleanup.

        :return: its base URL.
        """
        binary = e2e.skip_or_fail_without(
            shutil.which("prometheus"), "prometheus", e2e.debian_package("prometheus")
        )
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = os.path.join(directory, "prometheus.yml")
        with open(config, "w") as handle:
            handle.write(scrape_config(metrics_port, ccm_port))
        port = e2e.free_port()
        process = _Prometheus()
        transport = reactor.spawnProcess(
            process,
            binary,
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={os.path.join(directory, 'data')}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            env={"PATH": "/usr/bin:/bin", "HOME": directory},
            path=directory,
        )

        def stop() -> Deferred[None]:
            if not process.ended.called:
                transport.signalProcess("TERM")
            return process.ended.addCallback(lambda _: shutil.rmtree(directory, True))

        self.addCleanup(stop)
        self.prometheus = process
        return f"http://127.0.0.1:{port}"

    @inlineCallbacks
    def query(self, base: str, expression: str) -> Any:
        """
        The result of an instant query, or None while Prometheus does not
        answer yet.
        """
        url = f"{base}/api/v1/query?{urlencode({'query': expression})}"
        try:
            response = yield treq.get(url, persistent=False)
            document = yield response.json()
        except Exception:
            return None
        return document["data"]["result"] if document.get("status") == "success" else None

    @inlineCallbacks
    def wait_for(self, base: str, expression: str, expected: float) -> Any:
        """
        Wait until ``expression`` has one series whose value is ``expected``.
        """
        deadline = time.monotonic() + WAIT_SECONDS
        result = None
        while time.monotonic() < deadline:
            result = yield self.query(base, expression)
            if result and len(result) == 1 and float(result[0]["value"][1]) == expected:
                return result[0]["metric"]
            yield deferLater(reactor, 0.5, lambda: None)
        output = self.prometheus.output.decode("utf-8", "replace")[-3000:]
        self.fail(f"{expression}: {result!r}, not {expected}; prometheus said:\n{output}")

    @inlineCallbacks
    def test_prometheus_scrapes_ccm(self) -> Any:
        """
        After two answered requests, Prometheus has ccm's series with their
        values: the requests and tokens by user, credential and model
        family, the credential's state and utilization, and both scrape
        targets are up.
        """
        fake, fake_url = e2e.serve_fake_anthropic(self)
        fake.default_reply = text_reply("Hi.", usage={"input_tokens": 11, "output_tokens": 7})
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, ".credentials.json")
        write_credentials(path, fake.access_token, fake.refresh_token, expiry_ms(30 * 86400))
        metrics_port = e2e.free_port()
        config = e2e.ccm_config(
            fake_url,
            path,
            [{"name": "alice", "token": ALICE}, {"name": "root", "token": ADMIN, "admin": True}],
        )
        config["metrics_listen"] = f"tcp:{metrics_port}:interface=127.0.0.1"
        ccm = yield e2e.start_ccm(self, config)
        headers: dict[bytes | str, bytes | str] = {
            "authorization": f"Bearer {ALICE}",
            "content-type": "application/json",
        }
        for _ in range(2):
            response = yield treq.post(
                f"{ccm.url}/v1/messages",
                json.dumps(MESSAGE).encode(),
                headers=headers,
                persistent=False,
            )
            self.assertEqual(response.code, 200)
            yield response.content()
        base = self.start_prometheus(metrics_port, ccm.port)

        yield self.wait_for(base, 'up{job="ccm"}', 1)
        yield self.wait_for(base, 'up{job="ccm-admin"}', 1)
        labels = yield self.wait_for(
            base, 'ccm_requests_total{job="ccm",user="alice",status="200"}', 2
        )
        self.assertEqual((labels["credential"], labels["model"]), ("default", "haiku"))
        yield self.wait_for(
            base, 'ccm_tokens_total{job="ccm",user="alice",kind="output",model="haiku"}', 14
        )
        yield self.wait_for(base, 'ccm_tokens_total{job="ccm-admin",kind="input"}', 22)
        yield self.wait_for(
            base, 'ccm_credential_state{job="ccm",credential="default",state="usable"}', 1
        )
        # The fake's headers report 10% of the 5-hour window.
        yield self.wait_for(
            base, 'ccm_credential_utilization_ratio{job="ccm",window="5h"}', 0.1
        )
        yield self.wait_for(base, 'ccm_request_duration_seconds_count{job="ccm"}', 2)
        yield self.wait_for(base, 'ccm_requests_in_progress{job="ccm"}', 0)
        output = ccm.output()
        self.assertNotIn("Traceback", output)
        for secret in (ALICE, ADMIN, fake.access_token, fake.refresh_token):
            self.assertNotIn(secret, output)
