"""
Tests for :obj:`ccm.tap`, the twistd plugin: option parsing, configuration
errors, and the service tree it builds, run on a memory reactor.
"""

from __future__ import annotations

import gc
import json
import os
import signal
from typing import TYPE_CHECKING, Any, Iterable, cast

from twisted.application.service import IService, IServiceMaker
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent
from twisted.plugin import getPlugins
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ccm.web.auth import Caller
from ccm.config.model import AddressListener, EndpointListener, default_config
from ccm.pool.select import BalancerPool, SingleCredentialPool
from ccm.signals import SignalHandlers
from ccm.service import CcmService
from ccm.tap import Options, _ProcessReactor, makeService
from ccm.web.site import CcmSite
from tests.config.parsing import SEED_MULTIPLE_CREDENTIALS_EXAMPLE, SEED_SERVER_EXAMPLE
from tests.fake_signals import FakeSignals
from tests.fixtures import logged_events, write_credentials

ACCESS_TOKEN = "sk-ant-oat01-tap-test-access-secret"
REFRESH_TOKEN = "sk-ant-ort01-tap-test-refresh-secret"
USER_TOKEN = "ak-ccm-tap-test-user-secret"

# Far in the future: no refresh is due while the tests run.
FAR_EXPIRY_MS = 4_102_444_800_000

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


def ccm_services(parent: IService) -> list[CcmService]:
    """
    The services under the parent :obj:`makeService` built, one per
    configured service.
    """
    return list(cast("Iterable[CcmService]", parent))


class RefusingReactor(MemoryReactorClock):
    """
    A memory reactor on which every port is already taken.
    """

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


class TapTestMixin(_Base):
    """
    Temporary configuration and credential files, and options parsed from
    them.
    """

    def make_directory(self) -> str:
        directory: str = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        return directory

    def write_credentials(self, directory: str) -> str:
        return write_credentials(
            os.path.join(directory, ".credentials.json"), ACCESS_TOKEN, REFRESH_TOKEN, FAR_EXPIRY_MS
        )

    def write_config(self, document: object, name: str = "config.json") -> str:
        path = os.path.join(self.make_directory(), name)
        with open(path, "w") as handle:
            json.dump(document, handle)
        return path

    def service_document(self, **fields: Any) -> dict[str, Any]:
        """
        A valid bare service object using a credential file in a temporary
        directory, listening on 127.0.0.1:9123 unless ``fields`` say
        otherwise.
        """
        document: dict[str, Any] = {
            "listen": "127.0.0.1",
            "listen_port": 9123,
            "credential_path": self.write_credentials(self.make_directory()),
            "users": [{"name": "alice", "token": USER_TOKEN}],
        }
        document.update(fields)
        return document

    def parse(self, *arguments: str) -> Options:
        options = Options()
        options.parseOptions(list(arguments))
        return options

    def parse_fails(self, *arguments: str) -> str:
        """
        Parse ``arguments``, which must end the program with a message; return
        the message.
        """
        with self.assertRaises(SystemExit) as caught:
            self.parse(*arguments)
        code = caught.exception.code
        assert isinstance(code, str), code
        return code


class PluginTests(SynchronousTestCase):
    """
    The plugin is found by twistd.
    """

    def test_discovered(self) -> None:
        """
        twistd finds a service maker called ``ccm`` that uses :obj:`ccm.tap`.
        """
        makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
        self.assertIn("ccm", makers)
        maker = makers["ccm"]
        self.assertIs(maker.options, Options)
        self.assertIn("Claude", maker.description)


class OptionsTests(TapTestMixin, SynchronousTestCase):
    """
    :obj:`Options` loads the configuration and applies ``--listen``; any problem
    ends the program with the problem lines only.
    """

    def test_no_config(self) -> None:
        """
        Without ``--config`` the default configuration is used.
        """
        options = self.parse()
        self.assertEqual(options["ccm-config"], default_config())

    def test_config_file(self) -> None:
        """
        ``--config`` loads and validates the file.
        """
        path = self.write_config({"listen_port": 9001, "users": [{"name": "a", "token": "t"}]})
        for arguments in (("--config", path), ("-c", path), (f"--config={path}",)):
            config = self.parse(*arguments)["ccm-config"]
            self.assertEqual(config.source, "config.json")
            self.assertEqual(config.services[0].listeners, (AddressListener("127.0.0.1", 9001),))

    def test_bad_config(self) -> None:
        """
        A bad configuration ends the program with exactly its problem lines:
        no traceback, no usage text, no token.
        """
        path = self.write_config(
            {
                "services": [
                    {
                        "type": "ccm",
                        "listen_port": "x",
                        "users": [{"name": "alice", "token": USER_TOKEN, "tokn": 1}],
                        "credentials": [{"tag": "a"}, {"tag": "b", "reserve_5h": 120}],
                    }
                ]
            }
        )
        message = self.parse_fails("--config", path)
        self.assertEqual(
            message.splitlines(),
            [
                "config.json: services[0].listen_port: must be a whole number, got a string",
                "config.json: services[0].credentials[1].reserve_5h: must be between 1 and 99, got 120",
                "config.json: services[0].users[0].tokn: unknown key; did you mean 'token'?",
                (
                    "config.json: services[0].users[0].credential: user alice must specify "
                    "credential in multi-credential mode"
                ),
            ],
        )
        self.assertNotIn(USER_TOKEN, message)

    def test_usage_directory_missing(self) -> None:
        """
        A ``usages_path`` in a directory that does not exist ends the program
        at start-up with one line naming its JSON path, before anything
        listens or runs.
        """
        missing = os.path.join(self.make_directory(), "gone")
        usages = os.path.join(missing, "usages.json")
        message = self.parse_fails("--config", self.write_config(self.service_document(usages_path=usages)))
        self.assertEqual(
            message,
            f"config.json: usages_path: cannot save usage to {usages}: directory {missing} "
            "does not exist; create it (writable by the user ccm runs as) or fix the path",
        )
        self.assertFalse(os.path.exists(missing))

    def test_missing_config(self) -> None:
        """
        A configuration file that does not exist ends the program with one
        line naming it.
        """
        path = os.path.join(self.make_directory(), "missing.json")
        self.assertEqual(
            self.parse_fails("--config", path), f"{path}: cannot read: No such file or directory"
        )

    def test_empty_config_path(self) -> None:
        """
        An empty ``--config`` is a file that cannot be read, not a request
        for the defaults.
        """
        self.assertEqual(self.parse_fails("--config", ""), "--config: the file name is empty")

    def test_listen_overrides(self) -> None:
        """
        ``--listen``, repeatable, replaces the configured listeners and keeps
        everything else.
        """
        path = self.write_config(self.service_document())
        options = self.parse(
            "--config",
            path,
            "--listen",
            "tcp:7000:interface=127.0.0.1",
            "--listen",
            "tcp6:7001:interface=\\:\\:1",
        )
        [service] = options["ccm-config"].services
        self.assertEqual(
            service.listeners,
            (
                EndpointListener("tcp:7000:interface=127.0.0.1"),
                EndpointListener("tcp6:7001:interface=\\:\\:1"),
            ),
        )
        self.assertEqual([u.name for u in service.users], ["alice"])

    def test_listen_without_config(self) -> None:
        """
        ``--listen`` also overrides the default listener.
        """
        [service] = self.parse("--listen", "tcp:7002")["ccm-config"].services
        self.assertEqual(service.listeners, (EndpointListener("tcp:7002"),))

    def test_invalid_listen(self) -> None:
        """
        An endpoint string Twisted cannot parse is refused, each bad one on
        its own line.
        """
        self.assertEqual(
            self.parse_fails("--listen", "tcp:7000", "--listen", "bogus:1", "--listen", "tcp:x"),
            "--listen: invalid endpoint 'bogus:1': Unknown endpoint type: 'bogus'\n"
            "--listen: invalid endpoint 'tcp:x': invalid literal for int() with base 10: 'x'",
        )

    def test_listen_with_several_services(self) -> None:
        """
        ``--listen`` is refused when the document has several ccm services:
        which one it would apply to is ambiguous.
        """
        path = self.write_config(
            {
                "services": [
                    {"type": "ccm", "listen_port": 8001},
                    {"type": "ccm", "listen_port": 8002},
                ]
            }
        )
        self.assertEqual(
            self.parse_fails("--config", path, "--listen", "tcp:7000"),
            "--listen: the configuration has 2 ccm services; --listen needs exactly one",
        )


class MakeServiceTests(TapTestMixin, SynchronousTestCase):
    """
    :obj:`makeService` builds the configured services; started on a memory
    reactor they listen where configured and stop cleanly.
    """

    def setUp(self) -> None:
        self.events = logged_events(self)

    def make(self, options: Options, reactor: MemoryReactorClock) -> IService:
        # The memory reactor has what the services use of a process's.
        service = makeService(options, reactor=cast(_ProcessReactor, reactor))

        def stop_if_running() -> None:
            if service.running:
                service.stopService()

        self.addCleanup(stop_if_running)
        return service

    def start(self, service: IService) -> None:
        service.privilegedStartService()
        service.startService()

    def stop(self, service: IService, reactor: MemoryReactorClock) -> None:
        """
        Stop ``service`` and check it left nothing behind on ``reactor``.
        """
        self.successResultOf(service.stopService())
        self.assertEqual(reactor.getDelayedCalls(), [])
        self.assertEqual(reactor.readers, set())

    def logged_text(self) -> str:
        return "\n".join(formatEvent(event) for event in self.events)

    def test_listens_where_configured(self) -> None:
        """
        The service listens on the configured address and port, reads the
        configured credential file, talks to nothing but the upstream API
        (its usage polls), and stops without leaving timers.
        """
        options = self.parse("--config", self.write_config(self.service_document()))
        reactor = MemoryReactorClock()
        service = self.make(options, reactor)
        self.assertEqual(reactor.tcpServers, [])
        self.start(service)
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(9123, "127.0.0.1")],
        )
        [ccm_service] = ccm_services(service)
        self.assertTrue(ccm_service.credentials[0].available)
        reactor.advance(600)
        self.assertTrue(reactor.tcpClients)
        self.assertEqual({port for _, port, *rest in reactor.tcpClients}, {443})
        self.stop(service, reactor)

    def test_freezes_startup_objects_once_running(self) -> None:
        """
        Once the reactor runs, the process's start-up objects are moved out
        of the garbage collector's sight (``gc.freeze``), so a full
        collection under load does not scan them and stall open streams.
        """
        options = self.parse("--config", self.write_config(self.service_document()))
        reactor = MemoryReactorClock()
        self.make(options, reactor)
        self.assertIn((gc.freeze, (), {}), reactor.whenRunningHooks)

    def test_serves_the_resource_tree(self) -> None:
        """
        The listening factory serves ccm's resources: an unknown path gets
        ccm's JSON 404.
        """
        options = self.parse("--config", self.write_config(self.service_document()))
        reactor = MemoryReactorClock()
        service = self.make(options, reactor)
        self.start(service)
        [(_, factory, _, _)] = reactor.tcpServers
        protocol = cast(CcmSite, factory).buildProtocol(None)
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET /nowhere HTTP/1.1\r\nHost: ccm\r\nConnection: close\r\n\r\n")
        response = transport.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 404 "), response[:80])
        self.assertIn(b'"type":"error"', response.replace(b" ", b""))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.stop(service, reactor)

    def test_listen_option(self) -> None:
        """
        ``--listen`` endpoints are what the service listens on, IPv6
        included.
        """
        options = self.parse(
            "--config",
            self.write_config(self.service_document()),
            "--listen",
            "tcp:7000:interface=127.0.0.2",
            "--listen",
            "tcp6:7001:interface=\\:\\:1",
        )
        reactor = MemoryReactorClock()
        service = self.make(options, reactor)
        self.start(service)
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(7000, "127.0.0.2"), (7001, "::1")],
        )
        self.stop(service, reactor)

    def test_several_services(self) -> None:
        """
        Every ccm service of a sing-box document listens.
        """
        first = self.service_document(listen_port=8001, type="ccm")
        second = self.service_document(listen="::1", listen_port=8002, type="ccm")
        options = self.parse("--config", self.write_config({"services": [first, second]}))
        reactor = MemoryReactorClock()
        service = self.make(options, reactor)
        self.start(service)
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(8001, "127.0.0.1"), (8002, "::1")],
        )
        self.stop(service, reactor)

    def test_defaults(self) -> None:
        """
        Without ``--config`` the service listens on 127.0.0.1:8080 and uses
        the credential file in ``$CLAUDE_CONFIG_DIR``.
        """
        directory = self.make_directory()
        self.write_credentials(directory)
        previous = os.environ.get("CLAUDE_CONFIG_DIR")
        os.environ["CLAUDE_CONFIG_DIR"] = directory

        def restore() -> None:
            if previous is None:
                del os.environ["CLAUDE_CONFIG_DIR"]
            else:
                os.environ["CLAUDE_CONFIG_DIR"] = previous

        self.addCleanup(restore)
        reactor = MemoryReactorClock()
        service = self.make(self.parse(), reactor)
        self.start(service)
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(8080, "127.0.0.1")],
        )
        [ccm_service] = ccm_services(service)
        self.assertEqual(
            ccm_service.credentials[0].store.path, os.path.join(directory, ".credentials.json")
        )
        self.assertTrue(ccm_service.credentials[0].available)
        self.stop(service, reactor)

    def test_warnings_logged(self) -> None:
        """
        Configuration warnings are logged when the service is made, and no
        token appears in the log.
        """
        document = self.service_document(tcp_fast_open=True)
        document["users"][0]["credential"] = "a"
        options = self.parse("--config", self.write_config(document))
        reactor = MemoryReactorClock()
        service = self.make(options, reactor)
        self.start(service)
        text = self.logged_text()
        self.assertIn(
            "config.json: tcp_fast_open: ignored, ccm does not use this listen field", text
        )
        self.assertIn(
            "config.json: users[0].credential: ignored, there is no credentials list", text
        )
        self.stop(service, reactor)
        text = self.logged_text()
        for secret in (ACCESS_TOKEN, REFRESH_TOKEN, USER_TOKEN):
            self.assertNotIn(secret, text)

    def test_open_listener_without_users_warns(self) -> None:
        """
        With no users and a listener beyond loopback, a warning says that
        anyone who can reach ccm can use the subscription.
        """
        document = self.service_document(listen="0.0.0.0", users=[])
        reactor = MemoryReactorClock()
        service = self.make(self.parse("--config", self.write_config(document)), reactor)
        self.assertIn("no users are configured", self.logged_text())
        self.start(service)
        self.stop(service, reactor)

    def test_multi_credential_pools(self) -> None:
        """
        A credentials list builds one credential per default entry and a
        pool per balancer (with its rebalance threshold); each user is
        served by the pool their ``credential`` names, and a caller without
        users by the first entry.
        """
        directory = self.make_directory()
        a = self.write_credentials(directory)
        b_directory = self.make_directory()
        b = self.write_credentials(b_directory)
        path = self.write_config(
            {
                "services": [
                    {
                        "type": "ccm",
                        "listen": "127.0.0.1",
                        "listen_port": 9123,
                        "credentials": [
                            {"tag": "a", "credential_path": a, "reserve_5h": 20},
                            {"tag": "b", "credential_path": b},
                            {"tag": "pool", "type": "balancer", "credentials": ["a", "b"], "rebalance_threshold": 15},
                        ],
                        "users": [
                            {"name": "alice", "token": USER_TOKEN, "credential": "pool"},
                            {"name": "bob", "token": USER_TOKEN + "-bob", "credential": "a"},
                        ],
                    }
                ]
            }
        )
        reactor = MemoryReactorClock()
        service = makeService(self.parse("--config", path), reactor=cast(_ProcessReactor, reactor))
        self.start(service)
        [ccm_service] = ccm_services(service)
        self.assertEqual([c.tag for c in ccm_service.credentials], ["a", "b"])
        self.assertTrue(all(c.available for c in ccm_service.credentials))
        alice, bob = ccm_service.config.users
        alice_pool = ccm_service.user_pools.pool_for(Caller(alice))
        self.assertIsInstance(alice_pool, BalancerPool)
        assert isinstance(alice_pool, BalancerPool)
        self.assertEqual((alice_pool.strategy, alice_pool.rebalance_threshold), ("least_used", 15.0))
        bob_pool = ccm_service.user_pools.pool_for(Caller(bob))
        self.assertIsInstance(bob_pool, SingleCredentialPool)
        assert isinstance(bob_pool, SingleCredentialPool)
        self.assertEqual(bob_pool.member.cap_5h, 80)
        self.assertIs(ccm_service.user_pools.pool_for(Caller(None)), ccm_service.pools["a"])
        self.stop(service, reactor)

    def test_seed_examples_start(self) -> None:
        """
        Both server examples of the sing-box documentation start: the first
        with one subscription, the second with subscriptions ``a`` and ``b``
        and a pool (their credential files do not exist, so they are
        unavailable until they appear).  Only their file paths are moved
        into a temporary directory, so the test touches nothing outside it.
        """
        directory = self.make_directory()
        self.patch(os, "environ", dict(os.environ, CLAUDE_CONFIG_DIR=directory))
        for text, tags in (
            (SEED_SERVER_EXAMPLE, ["default"]),
            (SEED_MULTIPLE_CREDENTIALS_EXAMPLE, ["a", "b"]),
        ):
            text = (
                text.replace("/home/user/", directory + "/")
                .replace("/data/", directory + "/")
                .replace("./claude-usages.json", directory + "/claude-usages.json")
            )
            path = os.path.join(self.make_directory(), "config.json")
            with open(path, "w") as handle:
                handle.write(text)
            reactor = MemoryReactorClock()
            service = makeService(self.parse("--config", path), reactor=cast(_ProcessReactor, reactor))
            self.start(service)
            self.assertEqual(
                [(port, interface) for port, _, _, interface in reactor.tcpServers],
                [(8080, "0.0.0.0")],
            )
            [ccm_service] = ccm_services(service)
            self.assertEqual([c.tag for c in ccm_service.credentials], tags)
            self.assertFalse(any(c.available for c in ccm_service.credentials))
            self.stop(service, reactor)
        self.assertEqual(
            sorted(os.listdir(directory)), ["claude-usages.json", "usages-a.json"]
        )

    def test_detour_through_proxy_starts(self) -> None:
        """
        A detour through a proxy is accepted and the service starts; a
        sing-box ``direct`` outbound is the same as no detour and starts.
        """
        path = self.write_config(self.service_document(detour="http://127.0.0.1:3128"))
        service = makeService(
            self.parse("--config", path), reactor=cast(_ProcessReactor, MemoryReactorClock())
        )
        self.assertEqual(len(ccm_services(service)), 1)
        document = {
            "services": [dict(self.service_document(), type="ccm", detour="out")],
            "outbounds": [{"type": "direct", "tag": "out"}],
        }
        path = self.write_config(document)
        service = makeService(
            self.parse("--config", path), reactor=cast(_ProcessReactor, MemoryReactorClock())
        )
        self.assertEqual(len(ccm_services(service)), 1)

    def test_bind_failure(self) -> None:
        """
        A port that cannot be bound ends the program with one line naming
        the address and port, and nothing is left running.
        """
        options = self.parse("--config", self.write_config(self.service_document()))
        reactor = RefusingReactor()
        service = self.make(options, reactor)
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.assertEqual(
            caught.exception.code, "ccm: cannot listen on 127.0.0.1:9123: Address already in use"
        )
        self.assertFalse(service.running)
        self.assertEqual(reactor.getDelayedCalls(), [])
        self.assertEqual(reactor.readers, set())


class ThreadedMemoryReactor(MemoryReactorClock):
    """
    A memory reactor with ``callFromThread``, whose calls wait for
    :obj:`run_from_thread`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.from_thread: list[tuple[Any, tuple[Any, ...]]] = []

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.from_thread.append((f, args))

    def run_from_thread(self) -> None:
        calls, self.from_thread = self.from_thread, []
        for f, args in calls:
            f(*args)


class SignalWiringTests(TapTestMixin, SynchronousTestCase):
    """
    :obj:`makeService` installs, once the reactor runs, the handlers that make
    SIGHUP reload the configuration file and a second stop signal end the
    requests in progress.
    """

    def setUp(self) -> None:
        self.events = logged_events(self)

    def started(self, *arguments: str) -> tuple[IService, ThreadedMemoryReactor, FakeSignals]:
        """
        The services of ``twistd ccm *arguments``, started, with the signal
        handlers installed on a fake ``signal`` module.
        """
        reactor = ThreadedMemoryReactor()
        service = makeService(self.parse(*arguments), reactor=cast(_ProcessReactor, reactor))
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        [install] = [
            f for f, _, _ in reactor.whenRunningHooks if isinstance(getattr(f, "__self__", None), SignalHandlers)
        ]
        signals = FakeSignals({signal.SIGTERM: lambda number, frame: None})
        install(signals)
        return service, reactor, signals

    def logged(self) -> str:
        return "\n".join(formatEvent(event) for event in self.events)

    def test_hangup_rereads_the_file(self) -> None:
        """
        After the file gets a new token for alice, SIGHUP makes the service
        accept only the new one; the ``--listen`` override still holds, so
        the listener does not count as changed.
        """
        document = self.service_document()
        path = self.write_config(document)
        service, reactor, signals = self.started("--config", path, "--listen", "tcp:9200:interface=127.0.0.1")
        [ccm_service] = ccm_services(service)
        with open(path, "w") as handle:
            json.dump(dict(document, users=[{"name": "alice", "token": USER_TOKEN + "-new"}]), handle)
        signals.deliver(signal.SIGHUP)
        reactor.run_from_thread()
        [alice] = ccm_service.config.users
        self.assertEqual(alice.token, USER_TOKEN + "-new")
        self.assertEqual(ccm_service.config.listeners, (EndpointListener("tcp:9200:interface=127.0.0.1"),))
        self.assertNotIn("needs a restart", self.logged())
        self.assertIn("configuration reloaded from config.json: users (changed alice)", self.logged())
        self.assertNotIn(USER_TOKEN, self.logged())

    def test_second_stop_signal_ends_requests(self) -> None:
        """
        The first SIGTERM is left to the reactor; the second ends every
        service's requests in progress.
        """
        service, reactor, signals = self.started("--config", self.write_config(self.service_document()))
        [ccm_service] = ccm_services(service)
        cuts: list[int] = []

        def end_requests_now() -> int:
            cuts.append(1)
            return 3

        self.patch(ccm_service, "end_requests_now", end_requests_now)
        signals.deliver(signal.SIGTERM)
        signals.deliver(signal.SIGTERM)
        reactor.run_from_thread()
        self.assertEqual(cuts, [1])
        self.assertIn("SIGTERM received again: stopping now; 3 request(s) in progress ended", self.logged())
