"""
Tests for :obj:`ccm.web.watch` and the ``watch`` and ``session`` parameters
of :obj:`ccm.web.status`: a status answer that stays open and sends a line
each time it changes.

The watches run on a real :obj:`CcmSite` fed raw HTTP over a
:obj:`StringTransport`, with time on a :obj:`Clock`, in front of real pools of
real credentials (files in a temporary directory); each credential's
``subscribe`` is wrapped so that the tests see every subscription a watch
holds.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.config.model import ConnectionLimits, UserConfig
from ccm.credentials.credential import Credential
from ccm.credentials.file import CredentialFile
from ccm.pool.member import PoolMember
from ccm.pool.select import BalancerPool, Pool, SingleCredentialPool
from ccm.pool.users import UserPools
from ccm.web.auth import Authenticator
from ccm.web.connections import CcmChannel
from ccm.web.site import CcmSite
from ccm.web.status import StatusResource
from ccm.web.tree import NotFoundResource, build_root
from ccm.web.watch import KEEPALIVE_SECONDS, StatusWatches
from tests.fixtures import expiry_ms, write_credentials
from tests.proxyharness import RawConnection, parse_raw_response, raw_request

NOW = 1_790_000_000.0
HOUR = 3600.0
ALICE = "ccm-token-watch-alice"
BOB = "ccm-token-watch-bob"
CAROL = "ccm-token-watch-carol"
USERS = (
    UserConfig("alice", ALICE, "pool"),
    UserConfig("bob", BOB, "other"),
    UserConfig("carol", CAROL, "a"),
)
SESSION = "33333333-3333-4333-8333-333333333333"
PREFIX = "anthropic-ratelimit-unified-"


def five_hour(utilization: str, resets_at: float) -> Headers:
    """
    Response headers reporting the 5-hour window.
    """
    return Headers(
        {PREFIX + "5h-utilization": [utilization], PREFIX + "5h-reset": [str(int(resets_at))]}
    )


def chunks(data: bytes) -> tuple[int, dict[str, str], list[bytes], bool]:
    """
    The status, headers, chunks and completeness of the first response in
    ``data``, a chunked one.
    """
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    found = []
    complete = False
    while rest:
        size_line, _, after = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            complete = True
            break
        found.append(after[:size])
        rest = after[size + 2 :]
    return int(lines[0].split(" ")[1]), headers, found, complete


class Connection(RawConnection):
    """
    A client connection that knows whether it was closed.
    """

    closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            super().close()


class WatchCase(SynchronousTestCase):
    """
    Credentials ``a`` and ``b``; alice uses the balancer ``pool`` over both,
    bob the balancer ``other`` over both, carol ``a`` alone.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.credentials: dict[str, Credential] = {}
        self.subscriptions: dict[str, int] = {}
        for tag in ("a", "b"):
            path = write_credentials(
                os.path.join(directory, tag + ".json"),
                f"sk-ant-oat01-{tag}",
                f"sk-ant-ort01-{tag}",
                expiry_ms(30 * 86400, now=NOW),
                subscription_type="max",
                rate_limit_tier="default_claude_max_20x",
            )
            credential = Credential(
                tag, CredentialFile(path), lambda token: Deferred(), self.clock
            )
            credential.reload()
            self.count_subscriptions(credential)
            self.credentials[tag] = credential
        self.members = {tag: PoolMember(c) for tag, c in self.credentials.items()}
        a, b = self.members["a"], self.members["b"]
        self.pools: dict[str, Pool] = {
            "a": SingleCredentialPool(a, self.clock),
            "b": SingleCredentialPool(b, self.clock),
            "pool": BalancerPool("pool", [a, b], "round_robin", self.clock),
            "other": BalancerPool("other", [a, b], "round_robin", self.clock),
        }
        self.authenticator = Authenticator(USERS)
        self.user_pools = UserPools(self.pools, self.pools["pool"], True, USERS)
        self.watches = StatusWatches(self.clock)
        self.status = StatusResource(
            self.authenticator, self.user_pools.pool_for, self.clock, self.watches
        )
        self.site = self.make_site()
        self.connections: list[Connection] = []

    def make_site(self, limits: ConnectionLimits = ConnectionLimits()) -> CcmSite:
        """
        A site serving the status endpoint, with ``limits``.
        """
        root = build_root(NotFoundResource(), self.status)
        return CcmSite(root, 1024, reactor=self.clock, connection_limits=limits)

    def count_subscriptions(self, credential: Credential) -> None:
        """
        Count the open subscriptions to ``credential`` in
        :obj:`subscriptions`.
        """
        subscribe = credential.subscribe
        tag = credential.tag
        self.subscriptions[tag] = 0

        def counting(observer: Callable[[], None]) -> Callable[[], None]:
            unsubscribe = subscribe(observer)
            self.subscriptions[tag] += 1
            ended: list[bool] = []

            def end() -> None:
                if not ended:
                    ended.append(True)
                    self.subscriptions[tag] -= 1
                unsubscribe()

            return end

        credential.subscribe = counting  # type: ignore[method-assign]

    def open(
        self, query: str = "watch=true", token: str | None = ALICE, site: CcmSite | None = None
    ) -> Connection:
        """
        A connection that asked for ``/ccm/v1/status?<query>``.
        """
        connection = self.connect(site)
        connection.send(raw_request("GET", "/ccm/v1/status?" + query, token=token))
        return connection

    def connect(self, site: CcmSite | None = None) -> Connection:
        """
        A new client connection, closed by :obj:`assert_clean` once its
        answer is complete.
        """
        connection = Connection(site or self.site)
        self.connections.append(connection)
        return connection

    def lines(self, connection: RawConnection) -> list[Any]:
        """
        What a watch sent so far: each JSON line parsed, and ``"\\n"`` for
        an empty keep-alive line.
        """
        _, _, found, _ = chunks(connection.transport.value())
        return ["\n" if c == b"\n" else json.loads(c) for c in found]

    def documents(self, connection: RawConnection) -> list[dict[str, Any]]:
        """
        The JSON lines a watch sent so far, keep-alives left out.
        """
        return [line for line in self.lines(connection) if line != "\n"]

    def plain(self, query: str = "", token: str = ALICE) -> dict[str, Any]:
        """
        The answer to a plain status request.
        """
        connection = self.open(query, token)
        response = connection.response()
        assert response is not None
        self.assertEqual(response.status, 200)
        connection.close()
        document: dict[str, Any] = response.json()
        return document

    def assert_clean(self) -> None:
        """
        No watch is open, holds a subscription or a timer.  Connections
        whose answer is complete are closed first, so that their own
        keep-alive timers go, not those of a watch that failed to stop.
        """
        for connection in self.connections:
            response = connection.response()
            if response is not None and response.complete:
                connection.close()
        self.assertEqual(len(self.watches), 0)
        self.assertEqual(self.subscriptions, {"a": 0, "b": 0})
        self.assertEqual(self.clock.getDelayedCalls(), [])


class WatchTests(WatchCase):
    """
    A watch's lines: at once, on every change, and never twice the same.
    """

    def test_first_line_at_once(self) -> None:
        """
        The first line is the answer a plain request gets, sent at once as
        newline-delimited JSON, chunked, uncached and marked for proxies
        not to buffer; the watch subscribes to every credential of the
        caller's pool.
        """
        plain = self.plain()
        connection = self.open()
        status, headers, found, complete = chunks(connection.transport.value())
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/x-ndjson")
        self.assertEqual(headers["cache-control"], "no-store")
        self.assertEqual(headers["x-accel-buffering"], "no")
        self.assertEqual(headers["transfer-encoding"], "chunked")
        self.assertFalse(complete)
        self.assertEqual([json.loads(line) for line in found], [plain])
        self.assertTrue(found[0].endswith(b"}\n"))
        self.assertEqual(self.subscriptions, {"a": 1, "b": 1})
        connection.close()
        self.assert_clean()

    def test_line_on_window_change(self) -> None:
        """
        A change to a credential's windows sends the new answer in the
        reactor's next turn.
        """
        connection = self.open()
        self.credentials["a"].rate_limits.observe(five_hour("0.50", NOW + HOUR), NOW)
        self.assertEqual(len(self.documents(connection)), 1)
        self.clock.advance(0)
        first, second = self.documents(connection)
        self.assertEqual(second, self.plain())
        self.assertNotEqual(first, second)
        connection.close()

    def test_burst_gives_one_line(self) -> None:
        """
        Several writes in one turn give one line, with the last answer.
        """
        connection = self.open()
        limits = self.credentials["a"].rate_limits
        limits.observe(five_hour("0.20", NOW + HOUR), NOW)
        limits.observe(five_hour("0.30", NOW + HOUR), NOW)
        self.credentials["b"].rate_limits.observe(five_hour("0.40", NOW + HOUR), NOW)
        self.clock.advance(0)
        documents = self.documents(connection)
        self.assertEqual(len(documents), 2)
        self.assertEqual(documents[-1], self.plain())
        connection.close()

    def test_no_duplicate_lines(self) -> None:
        """
        A write that leaves the answer as it was sends nothing.
        """
        connection = self.open()
        limits = self.credentials["a"].rate_limits
        limits.apply_poll((20.0, NOW + HOUR), None, NOW)
        self.clock.advance(0)
        limits.apply_poll((20.0, NOW + HOUR), None, NOW)
        limits.observe(Headers(), NOW)
        self.clock.advance(0)
        self.assertEqual(len(self.documents(connection)), 2)
        connection.close()

    def test_reset_passing(self) -> None:
        """
        A reset passing changes the answer with no write at all: the line
        comes at the reset, not before.
        """
        self.credentials["a"].rate_limits.apply_poll((100.0, NOW + 100), None, NOW)
        connection = self.open()
        [paused] = self.documents(connection)
        self.assertEqual(paused["five_hour_reset"], int(NOW + 100))
        self.clock.advance(99)
        self.assertEqual(len(self.documents(connection)), 1)
        self.clock.advance(1)
        documents = self.documents(connection)
        self.assertEqual(len(documents), 2)
        self.assertEqual(documents[1], self.plain())
        self.assertEqual(documents[1]["five_hour_reset"], 0)
        connection.close()
        self.assert_clean()

    def test_end_of_rate_limit(self) -> None:
        """
        The end of a 429's limit sends a line at that moment.
        """
        self.credentials["a"].rate_limits.observe_rejection(
            Headers({PREFIX + "status": ["rejected"], "retry-after": ["60"]}), NOW
        )
        connection = self.open("watch=true", token=CAROL)
        [limited] = self.documents(connection)
        self.assertEqual(limited["plan_weight"], 0.0)
        self.clock.advance(60)
        documents = self.documents(connection)
        self.assertEqual(documents[-1]["plan_weight"], 10.0)
        self.assertEqual(len(documents), 2)
        connection.close()

    def test_credential_lost(self) -> None:
        """
        A credential whose file disappears is a change, pushed at once.
        """
        connection = self.open("watch=true", token=CAROL)
        os.remove(self.credentials["a"].store.path)
        self.credentials["a"].reload()
        self.clock.advance(0)
        documents = self.documents(connection)
        self.assertEqual([d["plan_weight"] for d in documents], [10.0, 0.0])
        connection.close()

    def test_keepalive(self) -> None:
        """
        A watch silent for :obj:`KEEPALIVE_SECONDS` sends an empty line; a
        line with news counts as one, so the next empty line comes that
        long after it.
        """
        connection = self.open()
        self.clock.advance(KEEPALIVE_SECONDS - 1)
        self.assertEqual(len(self.lines(connection)), 1)
        self.clock.advance(1)
        self.assertEqual(self.lines(connection)[1:], ["\n"])
        self.clock.advance(10)
        self.credentials["a"].rate_limits.observe(five_hour("0.50", NOW + HOUR), NOW)
        self.clock.advance(0)
        self.assertEqual(len(self.lines(connection)), 3)
        self.clock.advance(KEEPALIVE_SECONDS - 1)
        self.assertEqual(len(self.lines(connection)), 3)
        self.clock.advance(1)
        self.assertEqual(self.lines(connection)[3:], ["\n"])
        connection.close()
        self.assert_clean()

    def test_disconnect_cleanup(self) -> None:
        """
        A client that goes away ends its watch: no subscription, timer or
        registry entry is left, and later changes write nothing.
        """
        connection = self.open()
        second = self.open(token=BOB)
        self.assertEqual(self.subscriptions, {"a": 2, "b": 2})
        connection.close()
        self.assertEqual(self.subscriptions, {"a": 1, "b": 1})
        self.assertEqual(len(self.watches), 1)
        second.close()
        self.assert_clean()
        connection.transport.clear()
        self.credentials["a"].rate_limits.observe(five_hour("0.50", NOW + HOUR), NOW)
        self.clock.advance(KEEPALIVE_SECONDS)
        self.assertEqual(connection.transport.value(), b"")

    def test_disconnect_with_change_pending(self) -> None:
        """
        A client gone between a change and its line leaves no timer.
        """
        connection = self.open()
        self.credentials["a"].rate_limits.observe(five_hour("0.50", NOW + HOUR), NOW)
        connection.close()
        self.assert_clean()

    def test_client_not_reading(self) -> None:
        """
        While the client does not read, nothing is written, not even an
        empty line; when it reads again, it gets the latest answer, once.
        """
        connection = self.open()
        assert isinstance(connection.channel, CcmChannel)
        connection.channel.pauseProducing()
        limits = self.credentials["a"].rate_limits
        limits.observe(five_hour("0.20", NOW + HOUR), NOW)
        self.clock.advance(0)
        limits.observe(five_hour("0.30", NOW + HOUR), NOW)
        self.clock.advance(KEEPALIVE_SECONDS * 3)
        self.assertEqual(len(self.lines(connection)), 1)
        connection.channel.resumeProducing()
        lines = self.lines(connection)
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[1], self.plain())
        connection.close()
        self.assert_clean()

    def test_connection_deadlines_do_not_cut(self) -> None:
        """
        A watch outlives the connection deadlines (request head, keep-alive
        idle time): an hour later it is open and still sending.
        """
        site = self.make_site(ConnectionLimits(request_head_timeout=5.0, keep_alive_timeout=5.0))
        connection = self.open(site=site)
        for _ in range(120):
            self.clock.advance(KEEPALIVE_SECONDS)
        self.assertFalse(connection.transport.disconnecting)
        self.assertEqual(len(self.lines(connection)), 121)
        self.assertEqual(len(self.watches), 1)
        connection.close()


class SessionWatchTests(WatchCase):
    """
    ``?session=``, in a plain answer and in a watch.
    """

    def test_session_placed_later(self) -> None:
        """
        A session watched before its first request is on none; once a
        request placed it and its credential's windows changed, the line
        names that credential.
        """
        connection = self.open(f"watch=true&session={SESSION}")
        [first] = self.documents(connection)
        self.assertEqual(first["session"], {"credential": None})
        self.assertEqual(self.pools["pool"].select(SESSION).tag, "a")
        self.credentials["a"].rate_limits.observe(five_hour("0.25", NOW + HOUR), NOW)
        self.clock.advance(0)
        session = self.documents(connection)[-1]["session"]
        self.assertEqual(
            (session["credential"], session["five_hour_utilization"]), ("a", 25.0)
        )
        self.assertEqual(self.documents(connection)[-1], self.plain(f"session={SESSION}"))
        connection.close()

    def test_session_of_another_pool(self) -> None:
        """
        A session placed in another user's pool is unknown in the caller's:
        nothing is said of pools the caller does not use.
        """
        self.pools["other"].select(SESSION)
        query = f"session={SESSION}"
        self.assertEqual(self.plain(query, token=BOB)["session"]["credential"], "a")
        self.assertEqual(self.plain(query, token=ALICE)["session"], {"credential": None})

    def test_single_credential(self) -> None:
        """
        A caller of a single credential has every session on it.
        """
        session = self.plain("session=anything", token=CAROL)["session"]
        self.assertEqual((session["credential"], session["state"]), ("a", "usable"))


class RefusedWatchTests(WatchCase):
    """
    Watches that are not opened, or are ended by ccm.
    """

    def error(self, connection: RawConnection) -> tuple[int, dict[str, str], Any]:
        """
        The status, headers and JSON body of an error answer.
        """
        response = parse_raw_response(connection.transport.value())
        assert response is not None
        headers = {name: values[-1] for name, values in response.headers.items()}
        return response.status, headers, response.json()

    def test_authentication(self) -> None:
        """
        A watch without a valid token is a 401, and opens nothing.
        """
        for token in ("not-a-user", None):
            status, _, body = self.error(self.open(token=token))
            self.assertEqual((status, body["error"]["type"]), (401, "authentication_error"))
        self.assert_clean()

    def test_bad_watch(self) -> None:
        """
        A malformed ``watch`` is a 400 and opens nothing.
        """
        status, _, body = self.error(self.open("watch=1"))
        self.assertEqual((status, body["error"]["type"]), (400, "invalid_request_error"))
        self.assert_clean()

    def test_bound_per_caller(self) -> None:
        """
        Past its bound, a caller's next watch is a 429 that says not to
        retry; other callers are not concerned, and a closed watch makes
        room again.
        """
        self.watches = StatusWatches(self.clock, max_per_caller=2)
        self.status = StatusResource(
            self.authenticator, self.user_pools.pool_for, self.clock, self.watches
        )
        self.site = self.make_site()
        first, second = self.open(), self.open()
        status, headers, body = self.error(self.open())
        self.assertEqual((status, body["error"]["type"]), (429, "rate_limit_error"))
        self.assertEqual(headers["x-should-retry"], "false")
        self.assertIn("at most 2", body["error"]["message"])
        bob = self.open(token=BOB)
        self.assertEqual(len(self.documents(bob)), 1)
        first.close()
        third = self.open()
        self.assertEqual(len(self.documents(third)), 1)
        for connection in (second, bob, third):
            connection.close()
        self.assert_clean()

    def test_shutdown(self) -> None:
        """
        :obj:`StatusWatches.end_all` ends every watch properly (each
        response is complete) and opens no new one: a new watch is a 503
        that says to retry, while plain answers still come.
        """
        watches = [self.open(), self.open(token=BOB)]
        self.assertEqual(self.watches.end_all(), 2)
        for connection in watches:
            status, _, found, complete = chunks(connection.transport.value())
            self.assertEqual((status, len(found), complete), (200, 1, True))
        self.assert_clean()
        status, headers, body = self.error(self.open())
        self.assertEqual((status, body["error"]["type"]), (503, "api_error"))
        self.assertEqual(headers["x-should-retry"], "true")
        self.assertIn("plan_weight", self.plain())

    def test_user_removed_by_reload(self) -> None:
        """
        A reload that removes a user ends that user's watches at the next
        change; the others go on.
        """
        alice, bob = self.open(), self.open(token=BOB)
        remaining = [u for u in USERS if u.name != "alice"]
        self.authenticator.set_users(remaining)
        self.user_pools.set_users(remaining)
        self.credentials["a"].rate_limits.observe(five_hour("0.50", NOW + HOUR), NOW)
        self.clock.advance(0)
        _, _, found, complete = chunks(alice.transport.value())
        self.assertEqual((len(found), complete), (1, True))
        _, _, found, complete = chunks(bob.transport.value())
        self.assertEqual((len(found), complete), (2, False))
        bob.close()
        self.assert_clean()

    def test_members_changed_by_reload(self) -> None:
        """
        When a reload takes a credential out of the caller's pool, the next
        tick follows the new members: the watch lets go of the old one and
        no longer hears of it.
        """
        connection = self.open()
        pool = self.pools["pool"]
        assert isinstance(pool, BalancerPool)
        pool.reconfigure([self.members["b"]], "round_robin", 0.0)
        self.clock.advance(KEEPALIVE_SECONDS)
        self.assertEqual(self.subscriptions, {"a": 0, "b": 1})
        count = len(self.lines(connection))
        self.credentials["a"].rate_limits.observe(five_hour("0.50", NOW + HOUR), NOW)
        self.clock.advance(0)
        self.assertEqual(len(self.lines(connection)), count)
        connection.close()
        self.assert_clean()

    def test_told_of_a_reload(self) -> None:
        """
        :obj:`StatusWatches.changed`, which a reload calls, makes every
        watch look again in the next turn: a removed user's watch ends, a
        changed threshold is a new line.
        """
        alice, carol = self.open(), self.open(token=CAROL)
        remaining = [u for u in USERS if u.name != "alice"]
        self.authenticator.set_users(remaining)
        self.user_pools.set_users(remaining)
        self.members["a"].cap_5h = 50.0
        self.watches.changed()
        self.clock.advance(0)
        _, _, found, complete = chunks(alice.transport.value())
        self.assertEqual((len(found), complete), (1, True))
        documents = self.documents(carol)
        self.assertEqual([d["five_hour_utilization"] for d in documents], [1.0, 50.0])
        carol.close()
        self.assert_clean()

    def test_bug_ends_watch(self) -> None:
        """
        A bug computing the answer is logged and ends the watch properly,
        leaving nothing behind.
        """
        connection = self.open("watch=true", token=CAROL)
        pool = self.pools["a"]

        def broken() -> dict[str, float]:
            raise RuntimeError("a bug")

        pool.status = broken  # type: ignore[method-assign]
        self.credentials["a"].rate_limits.observe(five_hour("0.50", NOW + HOUR), NOW)
        self.clock.advance(0)
        _, _, found, complete = chunks(connection.transport.value())
        self.assertEqual((len(found), complete), (1, True))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assert_clean()
