"""
Tests for :obj:`ccm.service.CcmService`, built by :obj:`ccm.build.build_service`: how
a configured service is assembled, and reconfigured by a reload.
"""

from __future__ import annotations

import os
from typing import Any, cast

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ccm.web.auth import Caller
from ccm.config.model import ConnectionLimits, ServiceConfig
from ccm.config.load import parse_config
from ccm.web.connections import CcmChannel
from ccm.credentials.keychain import KeychainStore, keychain_service_name
from ccm.pool.select import BalancerPool
from ccm.config.changes import plan_reload
from ccm.build import ServiceReactor, build_service
from ccm.service import CLIENT_CLOSE_TIMEOUT_SECONDS, CcmService
from ccm.credentials.watch import FileWatcher
from tests.credentials.fake_keyring import DictKeyring
from tests.fixtures import credentials_json, logged_events, write_credentials
from tests.proxyharness import StubClient

ALICE_TOKEN = "ak-service-alice-1"
ALICE_NEW_TOKEN = "ak-service-alice-2"
BOB_TOKEN = "ak-service-bob"
CAROL_TOKEN = "ak-service-carol"
FAR_EXPIRY_MS = 4_102_444_800_000


def started_with_a_client(
    testcase: SynchronousTestCase,
) -> tuple[MemoryReactorClock, CcmService, Any, StringTransport]:
    """
    A started service of the default configuration, built by
    :obj:`build_service` on a memory reactor, and one client connection
    to its site: the reactor, the service, the channel and its transport.
    """
    home = os.path.abspath(testcase.mktemp())
    os.makedirs(home)
    reactor = MemoryReactorClock()
    service = build_service(
        ServiceConfig(where=""),
        reactor=cast(ServiceReactor, reactor),
        http_client=object(),  # type: ignore[arg-type]  # never asked anything
        environ={},
        home=home,
        watch_with_inotify=False,
        platform="linux",
    )
    service.startService()
    channel = service.site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
    assert channel is not None
    transport = StringTransport()
    channel.makeConnection(transport)
    return reactor, service, channel, transport


class KeychainWiringTests(SynchronousTestCase):
    """
    On macOS, a credential without ``credential_path`` comes from the
    keychain when Claude Code keeps it there.
    """

    def build(self, backend: DictKeyring, platform: str) -> CcmService:
        """
        A service with the default credential, as on ``platform``.
        """
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        self.home = home
        return build_service(
            ServiceConfig(where=""),
            reactor=cast(ServiceReactor, MemoryReactorClock()),
            http_client=object(),  # type: ignore[arg-type]  # never asked anything
            environ={"USER": "alice"},
            home=home,
            watch_with_inotify=False,
            platform=platform,
            keyring_backend=backend,
        )

    def watchers(self, service: CcmService) -> list[IService]:
        """
        The file watchers among the service's children.
        """
        return [child for child in service if isinstance(child, FileWatcher)]

    def test_keychain_on_macos(self) -> None:
        """
        With the item in the keychain, the credential reads it, becomes
        available, and no file is watched.
        """
        backend = DictKeyring()
        service_name = keychain_service_name({}, "/nowhere")
        backend.items[(service_name, "alice")] = credentials_json()
        service = self.build(backend, "darwin")
        [credential] = service.credentials
        self.assertIsInstance(credential.store, KeychainStore)
        credential.reload()
        self.assertTrue(credential.available)
        self.assertEqual(self.watchers(service), [])

    def test_file_elsewhere(self) -> None:
        """
        On Linux the keychain is never asked: the default file is used and
        watched.
        """
        backend = DictKeyring()
        service = self.build(backend, "linux")
        [credential] = service.credentials
        self.assertEqual(
            credential.store.path, os.path.join(self.home, ".claude", ".credentials.json")
        )
        self.assertEqual(backend.calls, [])
        self.assertEqual(len(self.watchers(service)), 1)

    def test_file_when_no_item(self) -> None:
        """
        On macOS without a keychain item, the default file is used, as
        sing-box falls back to it.
        """
        backend = DictKeyring()
        service = self.build(backend, "darwin")
        [credential] = service.credentials
        directory = os.path.join(self.home, ".claude")
        os.makedirs(directory)
        write_credentials(os.path.join(directory, ".credentials.json"))
        credential.reload()
        self.assertTrue(credential.available)
        self.assertEqual(len(self.watchers(service)), 1)
        self.assertEqual(
            [call[0] for call in backend.calls], ["get"]
        )


class ReconfigureTests(SynchronousTestCase):
    """
    :obj:`CcmService.reconfigure` swaps in what a reloaded configuration
    changes in place, without rebuilding credentials, listeners or usage
    savers.
    """

    def setUp(self) -> None:
        self.events = logged_events(self)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.paths = {}
        for tag in ("a", "b"):
            path = os.path.join(directory, f"{tag}.json")
            write_credentials(path, f"access-{tag}", f"refresh-{tag}", FAR_EXPIRY_MS)
            self.paths[tag] = path
        self.document: dict[str, Any] = {
            "endpoint": "tcp:8080:interface=127.0.0.1",
            "credentials": [
                {"tag": "a", "credential_path": self.paths["a"]},
                {"tag": "b", "credential_path": self.paths["b"]},
                {"tag": "pool", "type": "balancer", "credentials": ["a", "b"]},
            ],
            "users": [
                {"name": "alice", "token": ALICE_TOKEN, "credential": "pool"},
                {"name": "bob", "token": BOB_TOKEN, "credential": "a"},
            ],
        }
        self.home = directory

    def start(self, document: dict[str, Any]) -> None:
        """
        Build and start the service ``document`` describes, on a memory
        reactor, and a client in front of its resources.
        """
        self.service = build_service(
            self.load(document),
            reactor=cast(ServiceReactor, MemoryReactorClock()),
            http_client=object(),  # type: ignore[arg-type]  # never asked anything
            environ={},
            home=self.home,
            watch_with_inotify=False,
        )
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.client = StubClient(self.service.site.resource)

    def load(self, document: dict[str, Any]) -> ServiceConfig:
        return parse_config(document, source="config.json").services[0]

    def reload(self, document: dict[str, Any]) -> None:
        """
        Reconfigure the service as a reload of ``document`` would.
        """
        plan = plan_reload([self.service.config], parse_config(document, source="config.json"))
        self.assertEqual(plan.restart, ())
        [(_, config)] = plan.services
        self.service.reconfigure(config)

    def status_code(self, token: str) -> int:
        """
        The status of ``GET /ccm/v1/status`` with ``token``.
        """
        response = self.successResultOf(
            self.client.get(
                "http://ccm.test/ccm/v1/status", headers={"authorization": f"Bearer {token}"}
            )
        )
        self.successResultOf(response.content())
        code: int = response.code
        return code

    def test_users_and_tokens(self) -> None:
        """
        After a reload, a changed token works and the old one gets 401, a
        removed user gets 401, and a new user is served by the pool they
        name; the same credential objects serve.
        """
        self.start(self.document)
        credentials = list(self.service.credentials)
        self.assertEqual((self.status_code(ALICE_TOKEN), self.status_code(CAROL_TOKEN)), (200, 401))
        document = dict(
            self.document,
            users=[
                {"name": "alice", "token": ALICE_NEW_TOKEN, "credential": "pool"},
                {"name": "carol", "token": CAROL_TOKEN, "credential": "b"},
            ],
        )
        self.reload(document)
        self.assertEqual(
            [self.status_code(t) for t in (ALICE_TOKEN, ALICE_NEW_TOKEN, BOB_TOKEN, CAROL_TOKEN)],
            [401, 200, 401, 200],
        )
        [_, carol] = self.service.config.users
        self.assertIs(self.service.user_pools.pool_for(Caller(carol)), self.service.pools["b"])
        self.assertEqual(self.service.credentials, credentials)

    def test_pools_limits_and_headers(self) -> None:
        """
        Reserves become the members' caps, a balancer's strategy,
        threshold and members change in place, and the proxy and site use
        the new headers, body limit and connection bounds.
        """
        self.start(self.document)
        pool = self.service.pools["pool"]
        assert isinstance(pool, BalancerPool)
        document = dict(
            self.document,
            credentials=[
                {"tag": "a", "credential_path": self.paths["a"], "reserve_5h": 25, "limit_weekly": 70},
                {"tag": "b", "credential_path": self.paths["b"]},
                {
                    "tag": "pool",
                    "type": "balancer",
                    "credentials": ["b"],
                    "strategy": "round_robin",
                    "rebalance_threshold": 5,
                },
            ],
            headers={"x-team": "blue"},
            max_request_body="1MiB",
            shutdown_grace="2s",
            max_connections=10,
        )
        self.reload(document)
        self.assertIs(self.service.pools["pool"], pool)
        self.assertEqual(
            ([m.tag for m in pool.members], pool.strategy, pool.rebalance_threshold),
            (["b"], "round_robin", 5.0),
        )
        member_a = self.service.pools["a"].members[0]
        self.assertEqual((member_a.cap_5h, member_a.cap_weekly), (75, 70))
        self.assertEqual(self.service.proxy.context.extra_headers, (("x-team", ("blue",)),))
        self.assertEqual(self.service.proxy.max_request_body, 1024 * 1024)
        self.assertEqual(self.service.site.max_request_body, 1024 * 1024)
        self.assertEqual(self.service.config.shutdown_grace, 2.0)
        self.assertEqual(self.service.site.connection_limits.max_connections, 10)

    def test_watches_see_a_reload(self) -> None:
        """
        A reload tells the open status watches at once: a new reserve
        sends a line with the new figures, and a removed user's watch ends.
        """
        self.start(self.document)
        reactor = cast(MemoryReactorClock, self.service.site.reactor)
        watches = {}
        for name, token in (("alice", ALICE_TOKEN), ("bob", BOB_TOKEN)):
            channel = self.service.site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
            assert channel is not None
            transport = StringTransport()
            channel.makeConnection(transport)
            self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
            channel.dataReceived(
                b"GET /ccm/v1/status?watch=true HTTP/1.1\r\nHost: ccm\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
            )
            watches[name] = transport
        document = dict(
            self.document,
            credentials=[
                {"tag": "a", "credential_path": self.paths["a"], "reserve_5h": 25},
                *self.document["credentials"][1:],
            ],
            users=[self.document["users"][0]],
        )
        self.reload(document)
        reactor.advance(0)
        alice = watches["alice"].value()
        self.assertIn(b'"five_hour_utilization": 13.0', alice)
        self.assertFalse(alice.endswith(b"0\r\n\r\n"))
        self.assertTrue(watches["bob"].value().endswith(b"0\r\n\r\n"))

    def test_open_service_warns_again(self) -> None:
        """
        Removing every user from a service that listens beyond this machine
        logs the same warning as at start-up, once: a later reload of the
        still open service does not repeat it.
        """
        document = dict(self.document, endpoint="tcp:8080")
        self.start(document)
        self.assertEqual(self.status_code("anything"), 401)
        warnings = [e for e in self.events if "no users are configured" in formatEvent(e)]
        self.assertEqual(warnings, [])
        self.reload(dict(document, users=[]))
        self.assertEqual(self.status_code("anything"), 200)
        warnings = [e for e in self.events if "no users are configured" in formatEvent(e)]
        self.assertEqual(len(warnings), 1)
        self.reload(dict(document, users=[], headers={"x-team": "blue"}))
        warnings = [e for e in self.events if "no users are configured" in formatEvent(e)]
        self.assertEqual(len(warnings), 1)

    def test_first_admin_warns(self) -> None:
        """
        A reload that makes the first admin of a service served over plain
        HTTP beyond this machine logs start-up's warning about the
        dashboard, once: a later reload does not repeat it.
        """
        document = dict(self.document, endpoint="tcp:8080")
        self.start(document)

        def warnings() -> list[str]:
            return [formatEvent(e) for e in self.events if "plain HTTP" in formatEvent(e)]

        self.assertEqual(warnings(), [])
        users = [dict(self.document["users"][0], admin=True), self.document["users"][1]]
        self.reload(dict(document, users=users))
        [warning] = warnings()
        self.assertIn("the dashboard (/ccm/) is reachable over plain HTTP beyond this machine", warning)
        self.reload(dict(document, users=users, headers={"x-team": "blue"}))
        self.assertEqual(len(warnings()), 1)

    def test_extra_usage(self) -> None:
        """
        ``extra_usage`` reaches each credential's pool member at start-up
        and changes there on a reload, in both directions.
        """
        allowed = dict(
            self.document,
            credentials=[
                {"tag": "a", "credential_path": self.paths["a"], "extra_usage": "allow"},
                *self.document["credentials"][1:],
            ],
        )
        self.start(allowed)
        member_a = self.service.pools["a"].members[0]
        member_b = self.service.pools["pool"].members[1]
        self.assertEqual((member_a.allow_extra_usage, member_b.allow_extra_usage), (True, False))
        self.reload(self.document)
        self.assertIs(self.service.pools["a"].members[0], member_a)
        self.assertFalse(member_a.allow_extra_usage)
        self.reload(allowed)
        self.assertTrue(member_a.allow_extra_usage)


class ConnectionLimitsWiringTests(SynchronousTestCase):
    """
    The service's site takes its connection bounds from the configuration.
    """

    def test_site_limits(self) -> None:
        """
        The site holds the configured :obj:`ConnectionLimits` and gives them to
        each new connection.
        """
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        limits = ConnectionLimits(max_connections=7, max_connections_per_address=3)
        service = build_service(
            ServiceConfig(where="", connection_limits=limits),
            reactor=cast(ServiceReactor, MemoryReactorClock()),
            http_client=object(),  # type: ignore[arg-type]  # never asked anything
            environ={},
            home=home,
            watch_with_inotify=False,
            platform="linux",
        )
        self.assertIs(service.site.connection_limits, limits)
        channel = service.site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
        self.assertIsInstance(channel, CcmChannel)
        assert isinstance(channel, CcmChannel)
        self.assertIs(channel.limits, limits)
        assert channel.release is not None
        channel.release()


class _Part(Service):
    """
    A child service that notes when it starts and stops.
    """

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self._events = events

    def startService(self) -> None:
        super().startService()
        self._events.append(f"start {self.name}")

    def stopService(self) -> None:
        super().stopService()
        self._events.append(f"stop {self.name}")


class _Credential:
    """
    Stands in for a credential; notes its loads.
    """

    def __init__(self, events: list[str]) -> None:
        self._events = events

    def reload(self) -> None:
        self._events.append("load credential")


class _Proxy:
    """
    Stands in for the proxy: its drain waits until the test fires it.
    """

    def __init__(self, events: list[str]) -> None:
        self._events = events
        self.drained: Deferred[None] = Deferred()

    def drain(self, grace: float) -> Deferred[None]:
        self._events.append(f"drain {grace:g}s")
        return self.drained

    def cut(self) -> int:
        self._events.append("cut")
        return 2


class _Site:
    """
    Stands in for the site: closing its client connections waits until the
    test fires it.
    """

    def __init__(self, events: list[str]) -> None:
        self._events = events
        self.closed: Deferred[None] = Deferred()

    def close_connections(self, timeout: float) -> Deferred[None]:
        self._events.append(f"close clients {timeout:g}s")
        return self.closed


class StartStopTests(SynchronousTestCase):
    """
    :obj:`CcmService` orders the start and the stop of its parts.
    """

    def setUp(self) -> None:
        self.events: list[str] = []
        self.proxy = _Proxy(self.events)
        self.site = _Site(self.events)
        self.service = CcmService(
            ServiceConfig(where="", shutdown_grace=7.0),
            credentials=[_Credential(self.events)],  # type: ignore[list-item]
            members={},
            user_pools=None,  # type: ignore[arg-type]
            authenticator=None,  # type: ignore[arg-type]
            proxy=self.proxy,  # type: ignore[arg-type]
            site=self.site,  # type: ignore[arg-type]
            background=[_Part("saver", self.events), _Part("poller", self.events)],
            listeners=[_Part("listener", self.events)],  # type: ignore[list-item]
            close_upstream=[lambda: self.events.append("close pools")],
        )

    def test_start(self) -> None:
        """
        Credentials are loaded once, before the parts start in order.
        """
        self.service.privilegedStartService()
        self.service.startService()
        self.assertEqual(
            self.events, ["load credential", "start saver", "start poller", "start listener"]
        )

    def test_stop(self) -> None:
        """
        Stopping stops listening, waits for the drain of the requests in
        progress for the shutdown grace, then for the client connections
        to close (bounded by :obj:`CLIENT_CLOSE_TIMEOUT_SECONDS`), then stops
        the background parts in reverse order, so that the usage saver
        stops last, and closes the upstream connection pools.
        """
        self.service.startService()
        del self.events[:]
        stopped = self.service.stopService()
        self.assertEqual(self.events, ["stop listener", "drain 7s"])
        self.assertNoResult(stopped)
        self.proxy.drained.callback(None)
        close = f"close clients {CLIENT_CLOSE_TIMEOUT_SECONDS:g}s"
        self.assertEqual(self.events, ["stop listener", "drain 7s", close])
        self.assertNoResult(stopped)
        self.site.closed.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(
            self.events,
            [
                "stop listener",
                "drain 7s",
                close,
                "stop poller",
                "stop saver",
                "close pools",
            ],
        )

    def test_stop_after_failed_close(self) -> None:
        """
        Should closing the client connections fail, the failure is logged
        and the stop goes on: the usage saver still saves, and the
        upstream pools are closed.
        """
        self.service.startService()
        del self.events[:]
        stopped = self.service.stopService()
        self.proxy.drained.callback(None)
        self.site.closed.errback(RuntimeError("a bug"))
        self.successResultOf(stopped)
        self.assertEqual(
            self.events[-3:], ["stop poller", "stop saver", "close pools"]
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_built_service_closes_clients(self) -> None:
        """
        A service made by :obj:`build_service` closes its site's client
        connections when it stops, and its stop is over once they are
        closed.
        """
        reactor, service, channel, transport = started_with_a_client(self)
        stopped = service.stopService()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(stopped)
        channel.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stopped)
        self.assertFalse(transport.disconnected)  # Closed, not aborted.
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_end_requests_now(self) -> None:
        """
        A second stop signal cuts the requests in progress.
        """
        self.assertEqual(self.service.end_requests_now(), 2)
        self.assertEqual(self.events, ["cut"])


class _Watches:
    """
    Stands in for the status watches: ending them is recorded.
    """

    def __init__(self, events: list[str]) -> None:
        self._events = events

    def end_all(self) -> int:
        self._events.append("end watches")
        return 1


class WatchShutdownTests(SynchronousTestCase):
    """
    A stopping service ends its status watches, which would otherwise
    never end, before the drain of the requests in progress.
    """

    def test_order(self) -> None:
        """
        The watches end once listening stopped, before the drain, so that
        they do not wait for the drain nor it for them.
        """
        events: list[str] = []
        service = CcmService(
            ServiceConfig(where="", shutdown_grace=7.0),
            credentials=[],
            members={},
            user_pools=None,  # type: ignore[arg-type]
            authenticator=None,  # type: ignore[arg-type]
            proxy=_Proxy(events),  # type: ignore[arg-type]
            site=_Site(events),  # type: ignore[arg-type]
            watches=_Watches(events),  # type: ignore[arg-type]
            background=[],
            listeners=[_Part("listener", events)],  # type: ignore[list-item]
            close_upstream=[],
        )
        service.startService()
        del events[:]
        service.stopService()
        self.assertEqual(events, ["stop listener", "end watches", "drain 7s"])

    def test_built_service_ends_watch(self) -> None:
        """
        A service made by :obj:`build_service` ends an open watch properly
        when it stops (the client sees a complete answer), and its stop
        does not wait for the watch: it is over once the idle connection
        closed, leaving no timer.
        """
        reactor, service, channel, transport = started_with_a_client(self)
        channel.dataReceived(b"GET /ccm/v1/status?watch=true HTTP/1.1\r\nHost: ccm\r\n\r\n")
        self.assertIn(b"application/x-ndjson", transport.value())
        self.assertFalse(transport.value().endswith(b"0\r\n\r\n"))
        stopped = service.stopService()
        self.assertTrue(transport.value().endswith(b"0\r\n\r\n"))
        self.assertTrue(transport.disconnecting)
        channel.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stopped)
        self.assertEqual(reactor.getDelayedCalls(), [])
