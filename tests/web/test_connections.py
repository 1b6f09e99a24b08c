"""
Tests for :obj:`ccm.web.connections` and :obj:`ccm.web.admission`: the deadlines of a
connection (request head, body progress, keep-alive idle time), the 431 for
oversized heads, and the caps on open connections, on a real :obj:`CcmSite` fed raw HTTP over a
:obj:`StringTransport` with time on a :obj:`Clock`.

Each bad input is followed by a normal request on a new connection, which
must be served, and by a check that no token reached the log.
"""

from __future__ import annotations

from typing import Any, Callable, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseDone

from ccm.config.model import ConnectionLimits
from ccm.web.admission import (
    LINGER_SECONDS,
    LOG_INTERVAL_SECONDS,
    MAX_LINGERING_REFUSALS,
    ConnectionGate,
    DroppedConnection,
    RefusedConnection,
    address_key,
)
from ccm.web.connections import CcmChannel
from tests.proxyharness import (
    FakeUpstreamResponse,
    ProxyHarness,
    RawConnection,
    RawResponse,
    ScriptedUpstream,
    parse_raw_response,
    raw_request,
)

STATUS = raw_request("GET", "/ccm/v1/status")
EVENT = b'event: ping\ndata: {"type":"ping"}\n\n'
HOST = "192.0.2.7"


def post_head(length: int) -> bytes:
    """
    The head of a ``POST /v1/messages`` announcing ``length`` body bytes.
    """
    head = raw_request("POST", "/v1/messages", b"", {"Content-Type": "application/json"})
    return head.replace(b"Content-Length: 0\r\n", b"Content-Length: %d\r\n" % (length,))


def check_error(
    testcase: SynchronousTestCase, response: RawResponse | None, status: int, error_type: str
) -> dict[str, Any]:
    """
    Check that ``response`` is a whole error response ccm made, in the
    Anthropic shape, that closes the connection; return its ``error``.
    """
    assert response is not None
    testcase.assertEqual(response.status, status)
    testcase.assertTrue(response.complete)
    testcase.assertEqual(response.headers["content-type"], ["application/json"])
    testcase.assertEqual(response.headers["connection"], ["close"])
    [request_id] = response.headers["request-id"]
    testcase.assertTrue(request_id.startswith("ccm_"), request_id)
    document = response.json()
    testcase.assertEqual(sorted(document), ["error", "request_id", "type"])
    testcase.assertEqual((document["type"], document["request_id"]), ("error", request_id))
    testcase.assertEqual(document["error"]["type"], error_type)
    error: dict[str, Any] = document["error"]
    return error


class Scene:
    """
    A ccm site with the given connection bounds in front of a
    :obj:`ScriptedUpstream`, on the harness's clock.
    """

    def __init__(
        self, testcase: SynchronousTestCase, max_request_body: int | None = None, **limits: Any
    ) -> None:
        self.testcase = testcase
        self.upstream = ScriptedUpstream()
        self.harness = ProxyHarness(testcase, http_client=self.upstream)
        self.clock = self.harness.clock
        self.site = self.harness.site(max_request_body, ConnectionLimits(**limits))

    def connect(self, host: str = HOST, port: int = 40000) -> RawConnection:
        """
        A new client connection from ``host``.
        """
        return RawConnection(self.site, IPv4Address("TCP", host, port))

    def assert_serves(self, host: str = HOST) -> None:
        """
        A new connection from ``host`` gets its status request answered.
        """
        connection = self.connect(host, 41000)
        self.testcase.assertIsInstance(connection.channel, CcmChannel)
        connection.send(STATUS)
        response = connection.response()
        assert response is not None
        self.testcase.assertEqual(response.status, 200)
        self.testcase.assertIn("plan_weight", response.json())
        connection.close()

    def warnings(self) -> list[str]:
        """
        What the connection policy logged.
        """
        return [
            text
            for text in self.harness.log_texts(LogLevel.warn)
            if " a connection from " in text
        ]

    def finish(self, *connections: RawConnection) -> None:
        """
        Close ``connections``, then check that the next request is served,
        that no timer is left, and that no token was logged.
        """
        for connection in connections:
            connection.close()
        self.assert_serves()
        self.testcase.assertEqual(self.clock.getDelayedCalls(), [])
        self.testcase.assertEqual(self.site.connections.open, 0)
        self.harness.assert_no_secrets_logged()


class TimerWatch:
    """
    What the connections' timers on ``clock`` do from now on: the timers
    made, each move of one to a new time (as its old and new times) and
    the cancellations.  Timers of the proxy's own, for upstream calls, are
    left out.
    """

    def __init__(self, clock: Clock) -> None:
        self.made: list[IDelayedCall] = []
        self.moves: list[tuple[float, float]] = []
        self.cancelled = 0
        make = clock.callLater

        def spy(delay: float, function: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
            call = make(delay, function, *args, **kwargs)
            if isinstance(getattr(function, "__self__", None), CcmChannel):
                self._watch(clock, call)
            return call

        clock.callLater = spy  # type: ignore[method-assign, assignment]

    def _watch(self, clock: Clock, call: Any) -> None:
        self.made.append(call)
        reset, cancel = call.reset, call.cancel

        def moved(seconds: float) -> None:
            self.moves.append((call.getTime(), clock.seconds() + seconds))
            reset(seconds)

        def cancelled() -> None:
            self.cancelled += 1
            cancel()

        call.reset, call.cancel = moved, cancelled

    def sooner(self) -> list[tuple[float, float]]:
        """
        The moves to a sooner time, which cost a reactor a search of all
        its timers.
        """
        return [(old, new) for old, new in self.moves if new < old]


class HeadDeadlineTests(SynchronousTestCase):
    """
    A request head must arrive within ``request_head_timeout`` of the
    connection, or of its first byte after an idle time; bytes do not
    extend it.
    """

    def test_one_byte_a_second(self) -> None:
        """
        A head sent one byte a second is answered with a 408 at 30 seconds,
        although every second brought a byte; the connection then discards
        what still comes and closes.
        """
        scene = Scene(self)
        connection = scene.connect()
        for index in range(30):
            connection.send(STATUS[index : index + 1])
            self.assertEqual(connection.transport.value(), b"")
            scene.clock.advance(1)
        error = check_error(self, connection.response(), 408, "timeout_error")
        self.assertEqual(
            error["message"],
            "the request head did not arrive within 30s (request_head_timeout)",
        )
        self.assertEqual(
            scene.warnings(),
            [
                "closed a connection from 192.0.2.7: the request head did not "
                "arrive within 30s (request_head_timeout)"
            ],
        )
        answered = connection.transport.value()
        connection.send(STATUS[30:])
        self.assertEqual(connection.transport.value(), answered)
        self.assertFalse(connection.transport.disconnecting)
        scene.clock.advance(LINGER_SECONDS)
        self.assertTrue(connection.transport.disconnecting)
        scene.finish(connection)

    def test_silent_connection(self) -> None:
        """
        A connection that sends nothing is closed at the deadline without
        an answer.
        """
        scene = Scene(self)
        connection = scene.connect()
        scene.clock.advance(29.5)
        self.assertFalse(connection.transport.disconnecting)
        scene.clock.advance(0.5)
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(connection.transport.value(), b"")
        self.assertEqual(
            scene.warnings(), ["closed a connection from 192.0.2.7: no request within 30s"]
        )
        scene.finish(connection)

    def test_head_in_time(self) -> None:
        """
        A head whose last byte arrives just before the deadline is served.
        """
        scene = Scene(self)
        connection = scene.connect()
        connection.send(STATUS[:10])
        scene.clock.advance(29.9)
        connection.send(STATUS[10:])
        response = connection.response()
        assert response is not None
        self.assertEqual(response.status, 200)
        self.assertEqual(scene.warnings(), [])
        scene.finish(connection)

    def test_deadline_counts_from_first_byte_after_idle(self) -> None:
        """
        On a kept-alive connection the idle time does not count against the
        next head: its deadline starts with its first byte.
        """
        scene = Scene(self)
        connection = scene.connect()
        connection.send(STATUS)
        scene.clock.advance(50)
        connection.send(STATUS[:1])
        scene.clock.advance(29)
        connection.send(STATUS[1:])
        self.assertEqual(connection.transport.value().count(b"HTTP/1.1 200 "), 2)
        connection.send(STATUS[:1])
        scene.clock.advance(30)
        self.assertIn(b"HTTP/1.1 408 ", connection.transport.value())
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(connection)

    def test_deadline_stops_while_ccm_stops_reading(self) -> None:
        """
        While ccm does not read from the client (because the client does
        not read what ccm sends), the head deadline stops, and afterwards
        it goes on where it stopped.
        """
        scene = Scene(self)
        connection = scene.connect()
        connection.send(STATUS[:5])
        scene.clock.advance(10)
        assert connection.transport.producer is not None
        connection.transport.producer.pauseProducing()
        scene.clock.advance(3600)
        self.assertEqual(connection.transport.value(), b"")
        connection.transport.producer.resumeProducing()
        scene.clock.advance(19.5)
        self.assertEqual(connection.transport.value(), b"")
        scene.clock.advance(0.5)
        check_error(self, connection.response(), 408, "timeout_error")
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(connection)

    def test_configured_deadline(self) -> None:
        """
        ``request_head_timeout`` sets the deadline.
        """
        scene = Scene(self, request_head_timeout=5.0)
        connection = scene.connect()
        connection.send(STATUS[:5])
        scene.clock.advance(4.9)
        self.assertEqual(connection.transport.value(), b"")
        scene.clock.advance(0.1)
        error = check_error(self, connection.response(), 408, "timeout_error")
        self.assertIn("within 5s", error["message"])
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(connection)

    def test_turned_off(self) -> None:
        """
        With ``request_head_timeout`` at zero no timer waits for a head.
        """
        scene = Scene(self, request_head_timeout=0.0)
        connection = scene.connect()
        connection.send(STATUS[:5])
        self.assertEqual(scene.clock.getDelayedCalls(), [])
        scene.clock.advance(3600)
        connection.send(STATUS[5:])
        response = connection.response()
        assert response is not None
        self.assertEqual(response.status, 200)
        scene.finish(connection)


class KeepAliveTests(SynchronousTestCase):
    """
    An idle kept-alive connection closes after ``keep_alive_timeout``; a
    response being written, to a slow reader too, is not idle time.
    """

    def stream(self, scene: Scene) -> tuple[RawConnection, FakeUpstreamResponse]:
        """
        Start a streamed response on a new connection.
        """
        connection = scene.connect()
        connection.send(
            raw_request(
                "POST", "/v1/messages", b'{"stream": true}', {"Content-Type": "application/json"}
            )
        )
        self.assertEqual(len(scene.upstream.calls), 1)
        response = FakeUpstreamResponse()
        scene.upstream.calls[0].result.callback(response)
        return connection, response

    def test_idle_connection_closed(self) -> None:
        """
        After its response a connection may stay idle for 60 seconds, then
        it is closed without a word and without a warning.
        """
        scene = Scene(self)
        connection = scene.connect()
        connection.send(STATUS)
        answered = connection.transport.value()
        scene.clock.advance(59.9)
        self.assertFalse(connection.transport.disconnecting)
        scene.clock.advance(0.1)
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(connection.transport.value(), answered)
        self.assertEqual(scene.warnings(), [])
        scene.finish(connection)

    def test_configured_idle_bound(self) -> None:
        """
        ``keep_alive_timeout`` sets how long an idle connection stays.
        """
        scene = Scene(self, keep_alive_timeout=600.0)
        connection = scene.connect()
        connection.send(STATUS)
        scene.clock.advance(599)
        self.assertFalse(connection.transport.disconnecting)
        scene.clock.advance(1)
        self.assertTrue(connection.transport.disconnecting)
        scene.finish(connection)

    def test_long_stream_not_cut(self) -> None:
        """
        A response that streams for two hours is not cut by any deadline of
        the connection, and the idle bound starts when it ends.
        """
        scene = Scene(self)
        connection, upstream = self.stream(scene)
        for _ in range(72):
            scene.clock.advance(100)
            upstream.protocol.dataReceived(EVENT)
        self.assertFalse(connection.transport.disconnecting)
        upstream.protocol.connectionLost(Failure(ResponseDone()))
        response = connection.response()
        assert response is not None
        self.assertTrue(response.complete)
        self.assertEqual(response.body, EVENT * 72)
        scene.clock.advance(59)
        self.assertFalse(connection.transport.disconnecting)
        scene.clock.advance(1)
        self.assertTrue(connection.transport.disconnecting)
        scene.finish(connection)

    def test_slow_reader_not_idle(self) -> None:
        """
        A client that reads slowly, so that the response's end is still
        waiting to be sent, is not idle: the idle bound starts only once
        everything is sent.
        """
        scene = Scene(self)
        connection, upstream = self.stream(scene)
        upstream.protocol.dataReceived(EVENT)
        assert connection.transport.producer is not None
        connection.transport.producer.pauseProducing()
        upstream.protocol.connectionLost(Failure(ResponseDone()))
        scene.clock.advance(3600)
        self.assertFalse(connection.transport.disconnecting)
        connection.transport.producer.resumeProducing()
        scene.clock.advance(59)
        self.assertFalse(connection.transport.disconnecting)
        scene.clock.advance(1)
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(scene.warnings(), [])
        scene.finish(connection)

    def test_pipelined_requests(self) -> None:
        """
        Requests sent together are answered in turn; the idle bound follows
        the last answer.
        """
        scene = Scene(self)
        connection = scene.connect()
        connection.send(STATUS * 3)
        self.assertEqual(connection.transport.value().count(b"HTTP/1.1 200 "), 3)
        scene.clock.advance(60)
        self.assertTrue(connection.transport.disconnecting)
        scene.finish(connection)


class BodyRateTests(SynchronousTestCase):
    """
    A request body gets ``request_body_grace`` plus one second for every
    ``request_body_min_rate`` bytes it has sent; one that falls behind is
    answered with a 408.
    """

    def test_stalled_body(self) -> None:
        """
        A body that sends a few bytes and stops is answered with a 408 once
        the grace period is over (within the one-second recheck), and
        nothing goes upstream.
        """
        scene = Scene(self)
        connection = scene.connect()
        connection.send(post_head(100_000) + b"x" * 10)
        scene.clock.advance(30)
        self.assertEqual(connection.transport.value(), b"")
        scene.clock.advance(1)
        error = check_error(self, connection.response(), 408, "timeout_error")
        self.assertEqual(
            error["message"],
            "the request body arrived slower than 1024 bytes per second (request_body_min_rate)",
        )
        self.assertEqual(scene.upstream.calls, [])
        self.assertEqual(len(scene.warnings()), 1)
        connection.send(b"x" * 1000)
        scene.clock.advance(LINGER_SECONDS)
        self.assertTrue(connection.transport.disconnecting)
        scene.finish(connection)

    def test_credit_runs_out(self) -> None:
        """
        Bytes sent early earn time: 10 KiB at once keep a stalled body for
        30 + 10 seconds, not a moment longer.
        """
        scene = Scene(self)
        connection = scene.connect()
        connection.send(post_head(100_000) + b"x" * 10240)
        scene.clock.advance(39)
        self.assertEqual(connection.transport.value(), b"")
        scene.clock.advance(1)
        check_error(self, connection.response(), 408, "timeout_error")
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(connection)

    def test_slow_link_served(self) -> None:
        """
        A 60 KiB body sent at 1100 bytes a second, with a 20-second stall
        in the middle, is never cut and reaches the upstream whole.
        """
        scene = Scene(self)
        connection = scene.connect()
        body = b"y" * (60 * 1024)
        connection.send(post_head(len(body)))
        sent = 0
        while sent < len(body):
            if sent == 1100 * 30:
                scene.clock.advance(20)
            connection.send(body[sent : sent + 1100])
            sent += 1100
            scene.clock.advance(1)
        self.assertEqual(connection.transport.value(), b"")
        [call] = scene.upstream.calls
        self.assertEqual(call.kwargs["data"], body)
        self.assertEqual(scene.warnings(), [])
        scene.finish(connection)

    def test_chunked_body(self) -> None:
        """
        A chunked body is held to the same rate.
        """
        scene = Scene(self)
        connection = scene.connect()
        connection.send(
            raw_request(
                "POST",
                "/v1/messages",
                b"a\r\n0123456789\r\n",
                {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            )
        )
        scene.clock.advance(31)
        check_error(self, connection.response(), 408, "timeout_error")
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(connection)

    def test_configured_rate_and_grace(self) -> None:
        """
        ``request_body_min_rate`` and ``request_body_grace`` set the rule:
        with 100 bytes a second after 5 seconds, 300 bytes last 8 seconds.
        """
        scene = Scene(self, request_body_min_rate=100, request_body_grace=5.0)
        connection = scene.connect()
        connection.send(post_head(1000) + b"z" * 300)
        scene.clock.advance(7)
        self.assertEqual(connection.transport.value(), b"")
        scene.clock.advance(1)
        error = check_error(self, connection.response(), 408, "timeout_error")
        self.assertIn("100 bytes per second", error["message"])
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(connection)

    def test_turned_off(self) -> None:
        """
        With ``request_body_min_rate`` at zero a body may stall for as long
        as it likes.
        """
        scene = Scene(self, request_body_min_rate=0)
        connection = scene.connect()
        connection.send(post_head(4) + b"{}")
        self.assertEqual(scene.clock.getDelayedCalls(), [])
        scene.clock.advance(3600)
        connection.send(b"{}")
        self.assertEqual(len(scene.upstream.calls), 1)
        scene.finish(connection)

    def test_oversized_body_still_413(self) -> None:
        """
        A body over ``max_request_body`` still gets its 413, and the rate
        rule does not get in the way of a body sent in time.
        """
        scene = Scene(self, max_request_body=40)
        connection = scene.connect()
        connection.send(post_head(100) + b"x" * 100)
        response = connection.response()
        assert response is not None
        self.assertEqual(response.status, 413)
        self.assertEqual(response.json()["error"]["type"], "request_too_large")
        self.assertEqual(scene.upstream.calls, [])
        scene.finish(connection)


class TimerTests(SynchronousTestCase):
    """
    One timer checks a connection's deadlines.  It may fire early and arm
    a new one, but it is never moved sooner; a kept-alive connection makes
    one timer every 30 seconds (its shortest bound), not one per request,
    and its deadlines still fall at their exact times.
    """

    def test_kept_alive_requests(self) -> None:
        """
        A hundred requests in 25 seconds on one connection make one timer,
        move none and cancel none; the connection still closes exactly 60
        seconds after its last answer.
        """
        scene = Scene(self)
        watch = TimerWatch(scene.clock)
        connection = scene.connect()
        for _ in range(100):
            connection.send(STATUS)
            scene.clock.advance(0.25)
        self.assertEqual(connection.transport.value().count(b"HTTP/1.1 200 "), 100)
        self.assertEqual((len(watch.made), watch.moves, watch.cancelled), (1, [], 0))
        scene.clock.advance(59.5)
        self.assertFalse(connection.transport.disconnecting)
        scene.clock.advance(0.25)
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(watch.sooner(), [])
        scene.finish(connection)

    def test_every_phase(self) -> None:
        """
        Twenty requests whose head and body come in pieces, every other
        one streamed for 40 seconds, with idle times between, never move
        or cancel the timer.  They make 11 timers: one with the connection
        and one after each stream, which outlasts the timer and leaves it
        spent; the requests answered at once make none.
        """
        scene = Scene(self)
        watch = TimerWatch(scene.clock)
        connection = scene.connect()
        body = b'{"stream": true, "pad": "' + b"p" * 2000 + b'"}'
        head = post_head(len(body))
        for index in range(20):
            connection.send(head[:20])
            scene.clock.advance(2)
            connection.send(head[20:] + body[:1000])
            scene.clock.advance(2)
            connection.send(body[1000:])
            response = FakeUpstreamResponse()
            scene.upstream.calls[index].result.callback(response)
            for _ in range(4 if index % 2 else 0):
                scene.clock.advance(10)
                response.protocol.dataReceived(EVENT)
            response.protocol.connectionLost(Failure(ResponseDone()))
            scene.clock.advance(1 + index % 5)
        self.assertEqual(connection.transport.value().count(b"HTTP/1.1 200 "), 20)
        self.assertEqual((watch.moves, watch.cancelled), ([], 0))
        self.assertEqual(len(watch.made), 1 + 10)
        self.assertEqual(scene.warnings(), [])
        scene.finish(connection)

    def test_head_deadline_after_early_timer(self) -> None:
        """
        A head begun 10 seconds into an idle time keeps the timer the
        connection had, due 20 seconds into the head; that timer fires
        early and arms a new one, and the 408 comes exactly 30 seconds
        after the head's first byte, neither then nor at the idle bound.
        """
        scene = Scene(self)
        watch = TimerWatch(scene.clock)
        connection = scene.connect()
        connection.send(STATUS)
        scene.clock.advance(10)
        connection.send(STATUS[:1])
        scene.clock.advance(20)
        self.assertEqual(len(watch.made), 2)
        scene.clock.advance(9.5)
        self.assertEqual(connection.transport.value().count(b"HTTP/1.1 408 "), 0)
        scene.clock.advance(0.5)
        self.assertEqual(connection.transport.value().count(b"HTTP/1.1 408 "), 1)
        self.assertEqual((watch.moves, watch.cancelled), ([], 0))
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(connection)

    def test_linger_after_431(self) -> None:
        """
        Lingering after a 431 is the one bound shorter than the timer
        armed: the timer is cancelled for a new one rather than moved, and
        the connection closes exactly :obj:`LINGER_SECONDS` after its 431.
        """
        scene = Scene(self)
        watch = TimerWatch(scene.clock)
        connection = scene.connect()
        connection.send(STATUS)
        scene.clock.advance(2)
        connection.send(raw_request("GET", "/ccm/v1/status", headers={"X-Big": "a" * 65536}))
        self.assertIn(b"HTTP/1.1 431 ", connection.transport.value())
        scene.clock.advance(LINGER_SECONDS - 0.5)
        self.assertFalse(connection.transport.disconnecting)
        scene.clock.advance(0.5)
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(watch.moves, [])
        self.assertEqual(watch.cancelled, 1)
        scene.finish(connection)

    def test_pauses_make_no_timer(self) -> None:
        """
        ccm stopping and resuming reading, twice for five seconds, makes no
        timer: the one armed stays, fires early, and the head's 408 comes
        exactly 10 seconds late.
        """
        scene = Scene(self)
        watch = TimerWatch(scene.clock)
        connection = scene.connect()
        connection.send(STATUS[:5])
        for _ in range(2):
            scene.clock.advance(5)
            assert connection.transport.producer is not None
            connection.transport.producer.pauseProducing()
            scene.clock.advance(5)
            connection.transport.producer.resumeProducing()
        self.assertEqual(len(watch.made), 1)
        scene.clock.advance(19.5)
        self.assertEqual(connection.transport.value(), b"")
        scene.clock.advance(0.5)
        check_error(self, connection.response(), 408, "timeout_error")
        self.assertEqual((watch.moves, watch.cancelled), ([], 0))
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(connection)


class HeadSizeTests(SynchronousTestCase):
    """
    A request head over ``max_request_head`` gets a 431 in the Anthropic
    shape instead of a closed connection.
    """

    def assert_431(self, scene: Scene, connection: RawConnection, limit: int = 32768) -> None:
        """
        ``connection`` was answered with the 431 for ``limit``, discards
        what follows and closes after lingering.
        """
        response = connection.response()
        error = check_error(self, response, 431, "request_too_large")
        assert response is not None
        self.assertEqual(
            error["message"],
            f"the request line and headers exceed ccm's limit of {limit} bytes "
            "(max_request_head)",
        )
        self.assertEqual(response.headers["x-should-retry"], ["false"])
        self.assertTrue(
            connection.transport.value().startswith(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            )
        )
        answered = connection.transport.value()
        connection.send(b"X-More: " + b"m" * 1000 + b"\r\n\r\n")
        self.assertEqual(connection.transport.value(), answered)
        self.assertFalse(connection.transport.disconnecting)
        scene.clock.advance(LINGER_SECONDS)
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(len(scene.warnings()), 1)
        scene.finish(connection)

    def test_64k_header_at_once(self) -> None:
        """
        A 64 KiB header sent at once is answered with a 431.
        """
        scene = Scene(self)
        connection = scene.connect()
        connection.send(raw_request("GET", "/ccm/v1/status", headers={"X-Big": "a" * 65536}))
        self.assert_431(scene, connection)

    def test_64k_header_in_pieces(self) -> None:
        """
        The same header sent a kilobyte at a time is answered as soon as
        the limit is passed.
        """
        scene = Scene(self)
        connection = scene.connect()
        head = raw_request("GET", "/ccm/v1/status", headers={"X-Big": "a" * 65536})
        for start in range(0, 34 * 1024, 1024):
            connection.send(head[start : start + 1024])
        self.assert_431(scene, connection)

    def test_many_headers(self) -> None:
        """
        Many headers that are each small but add up past the limit get the
        431 too.
        """
        scene = Scene(self)
        connection = scene.connect()
        headers = {f"X-H{index}": "h" * 1000 for index in range(40)}
        connection.send(raw_request("GET", "/ccm/v1/status", headers=headers))
        self.assert_431(scene, connection)

    def test_long_request_line(self) -> None:
        """
        A request line past the limit gets the 431.
        """
        scene = Scene(self)
        connection = scene.connect()
        connection.send(raw_request("GET", "/v1/" + "a" * 40000))
        self.assert_431(scene, connection)
        self.assertEqual(scene.upstream.calls, [])

    def test_just_under_the_limit(self) -> None:
        """
        A head just under the limit is served.
        """
        scene = Scene(self)
        connection = scene.connect()
        head = raw_request("GET", "/ccm/v1/status", headers={"X-Pad": "p" * 32000})
        self.assertLess(len(head), 32768)
        connection.send(head)
        response = connection.response()
        assert response is not None
        self.assertEqual(response.status, 200)
        scene.finish(connection)

    def test_configured_limit(self) -> None:
        """
        ``max_request_head`` sets the limit.
        """
        scene = Scene(self, max_request_head=2048)
        connection = scene.connect()
        connection.send(raw_request("GET", "/ccm/v1/status", headers={"X-Pad": "p" * 3000}))
        self.assert_431(scene, connection, 2048)


class ConnectionCapTests(SynchronousTestCase):
    """
    Connections over ``max_connections`` or ``max_connections_per_address``
    are refused with a 503 that tells clients to retry.
    """

    def assert_refused(self, connection: RawConnection, setting: str) -> None:
        """
        ``connection`` was refused: it answers its request with the 503
        naming ``setting``.
        """
        self.assertIsInstance(connection.channel, RefusedConnection)
        self.assertEqual(connection.transport.value(), b"")
        connection.send(STATUS)
        response = connection.response()
        error = check_error(self, response, 503, "overloaded_error")
        assert response is not None
        self.assertIn(f"({setting} is ", error["message"])
        self.assertEqual(response.headers["x-should-retry"], ["true"])
        self.assertEqual(response.headers["retry-after"], ["2"])
        answered = connection.transport.value()
        connection.send(STATUS)
        self.assertEqual(connection.transport.value(), answered)
        self.assertFalse(connection.transport.disconnecting)

    def test_total_cap(self) -> None:
        """
        With ``max_connections`` open, the next connection is refused; once
        one closes, a new one is served.
        """
        scene = Scene(self, max_connections=2, max_connections_per_address=0)
        first = scene.connect("192.0.2.1")
        second = scene.connect("192.0.2.2")
        refused = scene.connect("192.0.2.3")
        self.assert_refused(refused, "max_connections")
        self.assertEqual(
            scene.warnings(),
            [
                "refused a connection from 192.0.2.3: ccm has too many open connections "
                "(max_connections is 2); retry shortly"
            ],
        )
        first.close()
        scene.finish(second, refused)

    def test_per_address_cap(self) -> None:
        """
        With ``max_connections_per_address`` open from one address, the next
        from there is refused while other addresses are served.
        """
        scene = Scene(self, max_connections_per_address=2)
        first = scene.connect(HOST, 1)
        second = scene.connect(HOST, 2)
        refused = scene.connect(HOST, 3)
        self.assert_refused(refused, "max_connections_per_address")
        other = scene.connect("192.0.2.8")
        self.assertIsInstance(other.channel, CcmChannel)
        second.close()
        again = scene.connect(HOST, 4)
        self.assertIsInstance(again.channel, CcmChannel)
        scene.finish(first, other, again, refused)

    def test_ipv6_counted_by_prefix(self) -> None:
        """
        IPv6 clients are counted by /64, so one host's many addresses share
        a cap.
        """
        scene = Scene(self, max_connections_per_address=1)
        first = RawConnection(scene.site, IPv6Address("TCP", "2001:db8:1:2::5", 1))
        same = RawConnection(scene.site, IPv6Address("TCP", "2001:db8:1:2:ffff::9", 1))
        self.assertIsInstance(same.channel, RefusedConnection)
        other = RawConnection(scene.site, IPv6Address("TCP", "2001:db8:1:3::5", 1))
        self.assertIsInstance(other.channel, CcmChannel)
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(first, same, other)

    def test_unix_clients_not_counted_by_address(self) -> None:
        """
        Clients on a UNIX socket have no address to count: only the total
        cap applies to them.
        """
        scene = Scene(self, max_connections=3, max_connections_per_address=1)
        connections = [RawConnection(scene.site, UNIXAddress(None)) for _ in range(3)]
        for connection in connections:
            self.assertIsInstance(connection.channel, CcmChannel)
        self.assertIsInstance(
            RawConnection(scene.site, UNIXAddress(None)).channel, RefusedConnection
        )
        scene.clock.advance(LINGER_SECONDS)
        self.assertEqual(scene.warnings(), ["refused a connection from a local client: "
                                            "ccm has too many open connections "
                                            "(max_connections is 3); retry shortly"])
        scene.finish(*connections)

    def test_refusal_lingers_then_closes(self) -> None:
        """
        A refused connection that was answered closes after lingering, and
        is aborted if it has not closed a while later; one that never sent
        anything is aborted without an answer.
        """
        scene = Scene(self, max_connections=1, max_connections_per_address=0)
        first = scene.connect("192.0.2.1")
        answered = scene.connect("192.0.2.2")
        self.assert_refused(answered, "max_connections")
        silent = scene.connect("192.0.2.3")
        scene.clock.advance(LINGER_SECONDS)
        self.assertTrue(answered.transport.disconnecting)
        self.assertFalse(answered.transport.disconnected)
        self.assertTrue(silent.transport.disconnected)
        self.assertEqual(silent.transport.value(), b"")
        scene.clock.advance(LINGER_SECONDS)
        self.assertTrue(answered.transport.disconnected)
        scene.finish(first, answered, silent)
        self.assertEqual(scene.site.connections.lingering_refusals, 0)

    def test_lingering_refusals_bounded(self) -> None:
        """
        Past :obj:`MAX_LINGERING_REFUSALS` lingering refusals, a refused
        connection is dropped at once without an answer.
        """
        scene = Scene(self, max_connections=1, max_connections_per_address=0)
        first = scene.connect("192.0.2.1")
        lingering = [scene.connect("198.51.100.1", port) for port in range(MAX_LINGERING_REFUSALS)]
        for connection in lingering:
            self.assertIsInstance(connection.channel, RefusedConnection)
        dropped = scene.connect("198.51.100.2")
        self.assertIsInstance(dropped.channel, DroppedConnection)
        self.assertTrue(dropped.transport.disconnected)
        dropped.close()
        lingering.pop().close()
        self.assertIsInstance(scene.connect("198.51.100.3").channel, RefusedConnection)
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(first, *lingering)

    def test_log_throttled(self) -> None:
        """
        Refusals are logged at most once in ten seconds; the next line says
        how many were left out.
        """
        scene = Scene(self, max_connections=1, max_connections_per_address=0)
        first = scene.connect("192.0.2.1")
        refused = [scene.connect("192.0.2.2", port) for port in range(5)]
        self.assertEqual(len(scene.warnings()), 1)
        scene.clock.advance(LOG_INTERVAL_SECONDS)
        refused.append(scene.connect("192.0.2.2", 99))
        lines = scene.warnings()
        self.assertEqual(len(lines), 2)
        self.assertTrue(
            lines[1].endswith("retry shortly (4 more since the last such line)"), lines[1]
        )
        scene.clock.advance(LINGER_SECONDS)
        scene.finish(first, *refused)

    def test_new_limits_for_new_connections(self) -> None:
        """
        Replacing the site's ``connection_limits`` changes the bounds of new
        connections, while open ones keep theirs.
        """
        scene = Scene(self)
        old = scene.connect("192.0.2.1")
        scene.site.connection_limits = ConnectionLimits(request_head_timeout=5.0)
        new = scene.connect("192.0.2.2")
        scene.clock.advance(5)
        self.assertTrue(new.transport.disconnecting)
        self.assertFalse(old.transport.disconnecting)
        scene.clock.advance(25)
        self.assertTrue(old.transport.disconnecting)
        scene.finish(old, new)

    def test_closed_connections_uncounted(self) -> None:
        """
        Closed connections no longer count, whatever closed them; refused
        ones never did.
        """
        scene = Scene(self, max_connections=2, max_connections_per_address=0)
        connections = [scene.connect(f"192.0.2.{n}") for n in range(1, 4)]
        self.assertEqual(scene.site.connections.open, 2)
        self.assertEqual(
            scene.site.connections.by_address, {"192.0.2.1": 1, "192.0.2.2": 1}
        )
        scene.clock.advance(30)
        for connection in connections:
            connection.close()
        self.assertEqual(scene.site.connections.open, 0)
        self.assertEqual(scene.site.connections.by_address, {})
        scene.finish()


class ConnectionGateTests(SynchronousTestCase):
    """
    :obj:`ConnectionGate` counting, without a site.
    """

    def test_release_once(self) -> None:
        """
        Releasing a connection twice uncounts it once.
        """
        gate = ConnectionGate(Clock())
        release = gate.opened("192.0.2.1")
        gate.opened("192.0.2.1")
        release()
        release()
        self.assertEqual((gate.open, gate.by_address), (1, {"192.0.2.1": 1}))

    def test_no_caps(self) -> None:
        """
        With both caps at zero nothing is refused.
        """
        gate = ConnectionGate(Clock())
        limits = ConnectionLimits(max_connections=0, max_connections_per_address=0)
        for _ in range(5000):
            gate.opened("192.0.2.1")
        self.assertIsNone(gate.refusal(limits, "192.0.2.1"))


class AddressKeyTests(SynchronousTestCase):
    """
    :obj:`address_key`: what the per-address cap counts.
    """

    def test_keys(self) -> None:
        """
        IPv4 addresses count as they are, IPv4-mapped IPv6 addresses as
        their IPv4 address, other IPv6 addresses by /64 (scope ignored);
        an address without an IP host has no key.
        """
        for address, key in (
            (IPv4Address("TCP", "203.0.113.9", 1), "203.0.113.9"),
            (IPv6Address("TCP", "2001:db8::1", 1), "2001:db8::/64"),
            (IPv6Address("TCP", "2001:db8:0:0:abcd::1", 1), "2001:db8::/64"),
            (IPv6Address("TCP", "::ffff:203.0.113.9", 1), "203.0.113.9"),
            (IPv6Address("TCP", "fe80::1%eth0", 1), "fe80::/64"),
            (UNIXAddress(b"/run/ccm.sock"), None),
            (None, None),
        ):
            self.assertEqual(address_key(address), key, address)


class Collector(Protocol):
    """
    A raw HTTP client connection: it collects what the server sends, fires
    ``answered`` with the first whole response (or ``None`` if the connection
    closes without one), and ``closed`` with all the bytes once the
    connection is gone.
    """

    def __init__(self) -> None:
        self.data = b""
        self.answered: Deferred[RawResponse | None] = Deferred()
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        response = parse_raw_response(self.data)
        if response is not None and response.complete and not self.answered.called:
            self.answered.callback(response)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.answered.called:
            self.answered.callback(None)
        self.closed.callback(self.data)


async def until(condition: Callable[[], bool], what: str) -> None:
    """
    Wait on the real reactor, for at most five seconds, until ``condition``
    holds.
    """
    for _ in range(500):
        if condition():
            return
        await deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"timed out waiting until {what}")


class LoopbackTests(TestCase):
    """
    The same site listening on a real loopback port, where what a client
    reads depends on how the connection is closed.  Deadlines still run on
    the harness's clock.
    """

    def listen(self, **limits: Any) -> Scene:
        """
        A scene whose site listens on a free loopback port.
        """
        scene = Scene(self, **limits)
        self.channels: list[Any] = []
        build = scene.site.buildProtocol

        def spy(address: Any) -> Any:
            protocol = build(address)
            self.channels.append(protocol)
            return protocol

        scene.site.buildProtocol = spy  # type: ignore[method-assign, assignment]
        port = reactor.listenTCP(0, cast(ServerFactory, scene.site), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.port = cast(IPv4Address, port.getHost()).port
        return scene

    async def connect(self) -> Collector:
        """
        A new raw client connection to the site.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        collector: Collector = await connectProtocol(endpoint, Collector())
        self.addCleanup(self.close, collector)
        return collector

    async def close(self, collector: Collector) -> None:
        """
        Close ``collector``'s connection, if it is open, and wait for it.
        """
        if not collector.closed.called:
            collector.transport.loseConnection()  # type: ignore[union-attr]
        await collector.closed

    async def served(self, scene: Scene) -> None:
        """
        A new connection gets its status request answered, and every
        connection is closed on the server side too.
        """
        collector = await self.connect()
        collector.transport.write(  # type: ignore[union-attr]
            raw_request("GET", "/ccm/v1/status", headers={"Connection": "close"})
        )
        response = await collector.answered
        assert response is not None
        self.assertEqual(response.status, 200)
        self.assertIn("plan_weight", response.json())
        await collector.closed
        await until(lambda: scene.site.connections.open == 0, "every connection is closed")
        scene.harness.assert_no_secrets_logged()

    async def test_64k_header(self) -> None:
        """
        A client sending a 64 KiB header reads a whole 431 and the server's
        close, not a reset.
        """
        scene = self.listen()
        collector = await self.connect()
        collector.transport.write(  # type: ignore[union-attr]
            raw_request("GET", "/ccm/v1/status", headers={"X-Big": "a" * 65536})
        )
        response = await collector.answered
        check_error(self, response, 431, "request_too_large")
        await self.close(collector)
        await self.served(scene)

    async def test_cut_body_while_client_sends(self) -> None:
        """
        A body cut for its pace is answered with a 408 that the client
        reads in full, although it keeps sending after the cut.
        """
        scene = self.listen()
        collector = await self.connect()
        transport = collector.transport
        assert transport is not None
        transport.write(post_head(60_000) + b"x" * 100)
        await until(
            lambda: any(r.content.tell() == 100 for c in self.channels for r in c.requests),
            "the server has read the start of the body",
        )
        scene.clock.advance(31)
        transport.write(b"x" * 512 * 1024)
        response = await collector.answered
        check_error(self, response, 408, "timeout_error")
        await self.close(collector)
        await self.served(scene)

    async def test_refused_connection(self) -> None:
        """
        Over ``max_connections``, a client reads a whole 503 telling it to
        retry; once a connection closes, the next one is served.
        """
        scene = self.listen(max_connections=1, max_connections_per_address=0)
        first = await self.connect()
        await until(lambda: scene.site.connections.open == 1, "the first connection is accepted")
        refused = await self.connect()
        refused.transport.write(STATUS + b"x" * 256 * 1024)  # type: ignore[union-attr]
        response = await refused.answered
        check_error(self, response, 503, "overloaded_error")
        assert response is not None
        self.assertEqual(response.headers["x-should-retry"], ["true"])
        await self.close(refused)
        await self.close(first)
        await until(lambda: scene.site.connections.open == 0, "the first connection is closed")
        await self.served(scene)
