"""
Tests for :obj:`ccm.build.build_service`: what it reads while building, and
how it wires the parts of a service, on a memory reactor.
"""

from __future__ import annotations

import json
import os
from typing import Any, cast

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ccm.shares.files import ShareSaverService, shares_path
from ccm.shares.gate import ShareKeeper
from ccm.accounting.recent import RecentUsage, RecordingTee
from ccm.accounting.usagefile import UsageSaverService
from ccm.build import ServiceReactor, build_service
from ccm.config.model import (
    BalancerCredentialConfig,
    DefaultCredentialConfig,
    EndpointListener,
    ServiceConfig,
    UserConfig,
)
from ccm.credentials.credential import CredentialUnavailable
from ccm.credentials.oauth import REFRESH_TIMEOUT_SECONDS
from ccm.credentials.refresher import TokenRefreshService
from ccm.credentials.watch import FileWatcher
from ccm.pool.poller import UsagePoller
from ccm.service import CcmService
from ccm.web.listening import ListeningService
from ccm.web.problems import RecentProblems
from ccm.web.site import CcmSite
from tests.fake_anthropic import FakeAnthropic
from tests.fixtures import write_credentials
from tests.proxyharness import StubClient

FAR_EXPIRY_MS = 4_102_444_800_000


class BuildTests(SynchronousTestCase):
    """
    A service of two credentials, one of which counts its usage, and a
    balancer over both.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.usages = os.path.join(self.directory, "usages-a.json")
        self.paths = {}
        for tag in ("a", "b"):
            self.paths[tag] = os.path.join(self.directory, f"{tag}.json")
            write_credentials(self.paths[tag], f"access-{tag}", f"refresh-{tag}", FAR_EXPIRY_MS)

    def build(
        self, poll_interval: float = 60.0, http_client: Any = None, **changes: Any
    ) -> CcmService:
        """
        Build the service on a memory reactor.
        """
        config = ServiceConfig(
            where="config.json",
            listeners=(EndpointListener("tcp:0:interface=127.0.0.1"),),
            credentials=(
                DefaultCredentialConfig("a", self.paths["a"], usages_path=self.usages),
                DefaultCredentialConfig("b", self.paths["b"]),
                BalancerCredentialConfig("pool", ("a", "b"), poll_interval=poll_interval),
            ),
            **changes,
        )
        self.client = object() if http_client is None else http_client
        self.reactor = MemoryReactorClock()
        return build_service(
            config,
            reactor=cast(ServiceReactor, self.reactor),
            http_client=self.client,  # type: ignore[arg-type]
            environ={},
            home=self.directory,
            watch_with_inotify=False,
            platform="linux",
        )

    def test_children_in_order(self) -> None:
        """
        The usage savers and the share saver come first (so that they stop
        last), then a file
        watcher per credentials file, the token refresher, the usage
        poller, the dashboard's ring of recent problems, and the listeners.
        """
        service = self.build()
        self.assertEqual(
            [type(child) for child in service],
            [
                UsageSaverService,
                ShareSaverService,
                FileWatcher,
                FileWatcher,
                TokenRefreshService,
                UsagePoller,
                RecentProblems,
                ListeningService,
            ],
        )
        self.assertEqual(service.listeners, [list(service)[-1]])

    def test_usage_file_read_while_building(self) -> None:
        """
        A usage file is read when the service is built, before it starts:
        one that cannot be read is moved aside then.
        """
        with open(self.usages, "w") as handle:
            handle.write("not json")
        service = self.build()
        self.assertFalse(service.running)
        self.assertFalse(os.path.exists(self.usages))
        [aside] = [name for name in os.listdir(self.directory) if ".corrupt-" in name]
        self.assertTrue(aside.startswith("usages-a.json.corrupt-"), aside)

    def test_routes(self) -> None:
        """
        Each credential's route has the direct client, and the usage saver
        of its file as its recorder (with the dashboard's recent usage
        beside it), or none.
        """
        service = self.build()
        routes = service.proxy.context.routes
        [saver] = [child for child in service if isinstance(child, UsageSaverService)]
        recorder = routes["a"].recorder
        assert isinstance(recorder, RecordingTee)
        self.assertIs(recorder.recorders[0], saver)
        self.assertIsInstance(recorder.recorders[1], RecentUsage)
        self.assertIsNone(routes["b"].recorder)
        self.assertIs(routes["a"].http_client, self.client)
        self.assertIs(routes["b"].http_client, self.client)

    def test_poll_interval_of_the_most_eager_balancer(self) -> None:
        """
        The usage poller polls as often as the balancer with the shortest
        ``poll_interval`` asks.
        """
        [poller] = [c for c in self.build(poll_interval=25.0) if isinstance(c, UsagePoller)]
        self.assertEqual(poller.step, 25.0)

    def test_pools_and_users(self) -> None:
        """
        There is a pool per credential and per balancer; anonymous callers
        are served by the first entry of the credentials list.
        """
        service = self.build()
        self.assertEqual(sorted(service.pools), ["a", "b", "pool"])
        self.assertIs(service.user_pools.default, service.pools["a"])
        self.assertEqual([c.tag for c in service.credentials], ["a", "b"])

    def test_share_file_records_users(self) -> None:
        """
        The share file of ``a`` records the users whose pool holds it, with
        their shares and that pool's capacity: alice, behind the balancer
        over ``a`` and ``b`` (two unknown plans of weight 1, 200 units),
        and bob, on ``a`` alone (100 units).
        """
        users = (
            UserConfig(name="alice", token="ccm-token-alice-0123456789", credential="pool", share_5h=40.0),
            UserConfig(name="bob", token="ccm-token-bob-0123456789ab", credential="a"),
        )
        service = self.build(users=users)
        shares = service.proxy.context.shares
        assert isinstance(shares, ShareKeeper)
        shares.book.observe("a", {}, 1.0, 0)
        [saver] = [child for child in service if isinstance(child, ShareSaverService)]
        saver.save()
        with open(shares_path(self.usages)) as handle:
            recorded = json.load(handle)["users"]
        self.assertEqual(
            recorded,
            {
                "alice": {"capacity": 200.0, "share": {"5-hour": 40.0}},
                "bob": {"capacity": 100.0, "share": {}},
            },
        )

    def test_refresh_under_claude_codes_lock(self) -> None:
        """
        A credential refreshes holding Claude Code's lock on the directory
        of its file, and lets go of it when the refresh is over.
        """
        fake = FakeAnthropic(MemoryReactorClock())
        fake.token_mode = "hang"
        write_credentials(self.paths["a"], "access-a", "refresh-a", 1000)
        client = StubClient(fake.resource())
        service = self.build(http_client=client)
        [credential, _] = service.credentials
        credential.reload()
        refreshing = credential.refresh()
        client.flush()
        self.assertEqual(len(fake.token_requests), 1)
        self.assertTrue(os.path.isdir(os.path.join(self.directory, ".oauth_refresh.lock")))
        self.assertTrue(os.path.isdir(self.directory + ".lock"))
        self.reactor.advance(REFRESH_TIMEOUT_SECONDS)
        client.flush()
        self.failureResultOf(refreshing, CredentialUnavailable)
        self.assertFalse(os.path.exists(os.path.join(self.directory, ".oauth_refresh.lock")))
        self.assertFalse(os.path.exists(self.directory + ".lock"))


class MetricsListenerTests(SynchronousTestCase):
    """
    A ``metrics_listen`` endpoint: a listener of its own, serving the
    metrics and the health answer without a token, and nothing else.
    """

    def test_open_metrics_listener_warns(self) -> None:
        """
        A metrics listener beyond this machine is warned about at build
        time, since it asks for no token; a loopback one is not.
        """
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for endpoint in ("tcp:9464:interface=127.0.0.1", "tcp:9465"):
            build_service(
                ServiceConfig(where="config.json", metrics_listen=(EndpointListener(endpoint),)),
                reactor=cast(ServiceReactor, MemoryReactorClock()),
                http_client=object(),  # type: ignore[arg-type]
                environ={},
                home=directory,
                watch_with_inotify=False,
                platform="linux",
            )
        warnings = [formatEvent(e) for e in events if "reachable beyond" in formatEvent(e)]
        self.assertEqual(len(warnings), 1)
        self.assertIn("metrics_listen tcp:9465 is reachable beyond this machine", warnings[0])

    def test_metrics_listener(self) -> None:
        """
        The listener binds with the others, on its own site: ``/metrics``
        answers without a token, ``/ccm/v1/health`` too, ``/v1/...`` is a 404.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "a.json")
        write_credentials(path, "access-a", "refresh-a", FAR_EXPIRY_MS)
        reactor = MemoryReactorClock()
        service = build_service(
            ServiceConfig(
                where="config.json",
                listeners=(EndpointListener("tcp:8080:interface=127.0.0.1"),),
                credentials=(DefaultCredentialConfig("a", path),),
                users=(UserConfig(name="alice", token="ccm-token-alice-metrics", credential="a"),),
                metrics_listen=(EndpointListener("tcp:9464:interface=127.0.0.1"),),
            ),
            reactor=cast(ServiceReactor, reactor),
            http_client=object(),  # type: ignore[arg-type]
            environ={},
            home=directory,
            watch_with_inotify=False,
            platform="linux",
        )
        self.assertEqual(len(service.listeners), 2)
        service.startService()
        self.addCleanup(service.stopService)
        ports = {port: factory for port, factory, _, _ in reactor.tcpServers}
        self.assertEqual(sorted(ports), [8080, 9464])
        self.assertIsNot(ports[9464], ports[8080])
        client = StubClient(cast(CcmSite, ports[9464]).resource)
        metrics = self.successResultOf(client.get("http://127.0.0.1:9464/metrics"))
        self.assertEqual(metrics.code, 200)
        body = self.successResultOf(metrics.content()).decode()
        self.assertIn('ccm_credential_state{credential="a",state="usable"} 1.0', body)
        health = self.successResultOf(client.get("http://127.0.0.1:9464/ccm/v1/health"))
        self.assertEqual(health.code, 200)
        proxied = self.successResultOf(client.post("http://127.0.0.1:9464/v1/messages", b"{}"))
        self.assertEqual(proxied.code, 404)
