"""
Tests for :obj:`ccm.limits.gate` and :obj:`ccm.limits.refusals`: which
requests count, the order of the two limits, and each refusal's shape.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ccm.config.model import UserConfig
from ccm.limits.gate import QUEUE_WAIT_SECONDS, Ticket, UserLimits, counts_against_limits
from ccm.limits.refusals import queue_full_refusal, queue_timeout_refusal, rate_refusal
from ccm.web.errors import APIError

ALICE = UserConfig("alice", "t-alice", max_concurrent=1, requests_per_minute=3)
BOB = UserConfig("bob", "t-bob")


class CountsTests(SynchronousTestCase):
    """
    Only generations count.
    """

    def test_counted_paths(self) -> None:
        """
        ``POST /v1/messages`` counts; count_tokens, cache_touch, models and
        other methods do not.
        """
        self.assertTrue(counts_against_limits(b"POST", b"/v1/messages"))
        for method, path in [
            (b"POST", b"/v1/messages/count_tokens"),
            (b"POST", b"/v1/messages/cache_touch"),
            (b"GET", b"/v1/models"),
            (b"GET", b"/v1/messages"),
        ]:
            self.assertFalse(counts_against_limits(method, path), path)


class RefusalShapeTests(SynchronousTestCase):
    """
    Each refusal is a 429 ``rate_limit_error`` naming ccm, the user, the
    limit, its numbers and when to retry.
    """

    def test_rate(self) -> None:
        """
        The RPM refusal says when, in whole seconds rounded up, and tells
        clients not to retry on their own.
        """
        error = rate_refusal("alice", 20, 16.2)
        self.assertEqual((error.status, error.error_type), (429, "rate_limit_error"))
        self.assertEqual(
            error.message,
            "ccm: user alice reached the requests_per_minute limit of 20 "
            "(requests started in the last 60 s); retry in 17 s",
        )
        self.assertEqual(dict(error.headers), {"retry-after": "17", "x-should-retry": "false"})

    def test_queue_full(self) -> None:
        """
        The full-queue refusal names the slots and the queue, and lets
        clients retry soon.
        """
        error = queue_full_refusal("alice", 4, 4)
        self.assertEqual((error.status, error.error_type), (429, "rate_limit_error"))
        self.assertEqual(
            error.message,
            "ccm: user alice reached the max_concurrent limit: 4 requests in flight and "
            "4 more waiting, the most the queue holds; retry in 5 s",
        )
        self.assertEqual(dict(error.headers), {"retry-after": "5", "x-should-retry": "true"})

    def test_queue_timeout(self) -> None:
        """
        The timeout refusal says how long the request waited.
        """
        error = queue_timeout_refusal("alice", 2, 30.0)
        self.assertEqual(
            error.message,
            "ccm: user alice reached the max_concurrent limit: 2 requests in flight, "
            "none ended within 30 s of waiting; retry in 5 s",
        )
        self.assertEqual(dict(error.headers), {"retry-after": "5", "x-should-retry": "true"})


class UserLimitsTests(SynchronousTestCase):
    """
    The gate applies each user's own limits, RPM before the queue.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(5000)
        self.refusals: list[tuple[str, str]] = []
        self.limits = UserLimits(
            self.clock, [ALICE, BOB], on_refusal=lambda u, l: self.refusals.append((u, l))
        )

    def admit(self, user: str = "alice") -> Ticket:
        """
        Admit a request that must be let in at once.
        """
        return self.successResultOf(self.limits.admit(user))

    def refusal(self, user: str = "alice") -> APIError:
        """
        A request that must be refused at once: its error.
        """
        error = self.failureResultOf(self.limits.admit(user), APIError).value
        assert isinstance(error, APIError)
        return error

    def test_unlimited_and_anonymous(self) -> None:
        """
        A user without limits, and a caller without a name, always pass.
        """
        for _ in range(100):
            self.admit("bob")
            self.admit("")
        self.assertEqual(self.refusals, [])

    def test_queue_full_gives_rpm_back(self) -> None:
        """
        With the one slot taken and one waiting, the third is refused for
        the full queue; it does not count against the minute, so after the
        first two end a third may still start within the minute.
        """
        first = self.admit()
        waiting = self.limits.admit("alice")
        self.assertNoResult(waiting)
        error = self.refusal()
        self.assertIn("max_concurrent", error.message)
        self.assertEqual(self.refusals, [("alice", "max_concurrent")])
        first.release()
        self.successResultOf(waiting).release()
        self.admit().release()
        self.assertIn("requests_per_minute", self.refusal().message)
        self.assertEqual(self.refusals[-1], ("alice", "requests_per_minute"))

    def test_rpm_before_queue(self) -> None:
        """
        Over the minute's limit a request is refused at once, even when a
        slot is free; the wait is exact.
        """
        for _ in range(3):
            self.admit().release()
            self.clock.advance(5)
        error = self.refusal()
        self.assertEqual(dict(error.headers)["retry-after"], "45")
        self.assertEqual(self.limits.slots_of("alice").waiting, 0)  # type: ignore[union-attr]

    def test_queue_timeout(self) -> None:
        """
        A request that waited :obj:`QUEUE_WAIT_SECONDS` is refused, counted,
        and gives its RPM slot back.
        """
        first = self.admit()
        waiting = self.limits.admit("alice")
        self.clock.advance(QUEUE_WAIT_SECONDS)
        error = self.failureResultOf(waiting, APIError).value
        self.assertIn("none ended within 30 s", str(error))
        self.assertEqual(self.refusals, [("alice", "max_concurrent")])
        first.release()
        self.admit().release()
        self.admit().release()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_client_leaving(self) -> None:
        """
        A cancelled wait leaves the queue without a refusal being counted,
        and gives its RPM slot back.
        """
        first = self.admit()
        waiting = self.limits.admit("alice")
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(self.refusals, [])
        first.release()
        self.admit().release()
        self.admit().release()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_isolation(self) -> None:
        """
        One user's full slots and minute do not touch another's.
        """
        carol = UserConfig("carol", "t-carol", max_concurrent=1, requests_per_minute=3)
        self.limits.set_users([ALICE, BOB, carol])
        self.admit()
        self.assertNoResult(self.limits.admit("alice"))
        ticket = self.admit("carol")
        ticket.release()
        self.admit("carol").release()

    def test_release_once(self) -> None:
        """
        Releasing a ticket twice frees one slot only.
        """
        ticket = self.admit()
        ticket.release()
        ticket.release()
        self.assertEqual(self.limits.slots_of("alice").in_flight, 0)  # type: ignore[union-attr]

    def test_reload(self) -> None:
        """
        A reload that raises ``max_concurrent`` admits the waiting request;
        one that removes ``requests_per_minute`` lets the next one in; a
        limit set on a user already running counts their requests in
        flight.
        """
        self.admit()
        waiting = self.limits.admit("alice")
        self.limits.set_users([UserConfig("alice", "t", max_concurrent=2, requests_per_minute=3), BOB])
        self.successResultOf(waiting)
        third = self.limits.admit("alice")
        self.assertNoResult(third)
        self.limits.set_users([UserConfig("alice", "t", max_concurrent=5), BOB])
        self.successResultOf(third)
        for _ in range(2):
            self.admit()
        bob = [self.admit("bob") for _ in range(2)]
        self.limits.set_users([ALICE, UserConfig("bob", "t-bob", max_concurrent=2)])
        self.assertNoResult(self.limits.admit("bob"))
        bob[0].release()
        self.assertEqual(self.limits.slots_of("bob").in_flight, 2)  # type: ignore[union-attr]

    def test_close(self) -> None:
        """
        Closing answers queued requests with the error given.
        """
        self.admit()
        waiting = self.limits.admit("alice")
        shutdown = APIError(503, "api_error", "restarting")
        self.limits.close(shutdown)
        self.assertIs(self.failureResultOf(waiting, APIError).value, shutdown)
        self.assertEqual(self.clock.getDelayedCalls(), [])
