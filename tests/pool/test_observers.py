"""
Tests for :obj:`ccm.pool.observers`, the seam through which a state tells
that it changed, and for the writes of :obj:`ccm.pool.windows.MemoryWindowState`
that tell it (its queries do not).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.pool.figures import WindowName
from ccm.pool.observers import Observers
from ccm.pool.plan import Plan
from ccm.pool.windows import MemoryWindowState

NOW = 1_790_000_000.0
PREFIX = "anthropic-ratelimit-unified-"


class ObserversTests(SynchronousTestCase):
    """
    :obj:`Observers` tells each subscriber, until it unsubscribes.
    """

    def test_order_and_unsubscribe(self) -> None:
        """
        Observers are told in the order they subscribed; one that
        unsubscribed is not told again, and the count follows.
        """
        observers = Observers()
        told: list[str] = []
        end_a = observers.subscribe(lambda: told.append("a"))
        observers.subscribe(lambda: told.append("b"))
        observers.notify()
        self.assertEqual(told, ["a", "b"])
        self.assertEqual(len(observers), 2)
        end_a()
        end_a()
        observers.notify()
        self.assertEqual(told, ["a", "b", "b"])
        self.assertEqual(len(observers), 1)

    def test_same_observer_twice(self) -> None:
        """
        The same callable subscribed twice is two subscriptions, each
        ended by its own unsubscribe.
        """
        observers = Observers()
        told: list[str] = []

        def observer() -> None:
            told.append("x")

        first = observers.subscribe(observer)
        observers.subscribe(observer)
        first()
        observers.notify()
        self.assertEqual(told, ["x"])

    def test_failing_observer(self) -> None:
        """
        An observer that raises is logged; the others are still told, and
        ``notify`` does not raise.
        """
        observers = Observers()
        told: list[str] = []

        def broken() -> None:
            raise RuntimeError("a bug")

        observers.subscribe(broken)
        observers.subscribe(lambda: told.append("ok"))
        observers.notify()
        self.assertEqual(told, ["ok"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_unsubscribe_while_notifying(self) -> None:
        """
        An observer may end its own subscription while being told, without
        disturbing the others of that round.
        """
        observers = Observers()
        told: list[str] = []

        def once() -> None:
            told.append("a")
            end_once()

        end_once = observers.subscribe(once)
        observers.subscribe(lambda: told.append("b"))
        observers.notify()
        observers.notify()
        self.assertEqual(told, ["a", "b", "b"])


def unified(utilization: str) -> Headers:
    """
    Response headers reporting a 5-hour ``utilization`` (a fraction).
    """
    return Headers(
        {
            PREFIX + "5h-utilization": [utilization],
            PREFIX + "5h-reset": [str(int(NOW + 3600))],
        }
    )


class WindowStateNotifiesTests(SynchronousTestCase):
    """
    :obj:`MemoryWindowState` tells its subscribers after each write, and
    only then.
    """

    def setUp(self) -> None:
        self.state = MemoryWindowState("work")
        self.told: list[int] = []
        self.unsubscribe = self.state.subscribe(lambda: self.told.append(1))

    def test_writes_notify(self) -> None:
        """
        Every write tells the subscribers, after the write: an observer
        reading the state sees the new figures.
        """
        seen: list[float] = []
        self.state.subscribe(lambda: seen.append(self.state.five_hour.utilization))
        writes = [
            lambda: self.state.observe(unified("0.10"), NOW),
            lambda: self.state.observe_success(unified("0.20"), NOW),
            lambda: self.state.observe_rejection(Headers(), NOW),
            lambda: self.state.apply_poll((30.0, NOW + 3600), None, NOW),
            lambda: self.state.apply_profile(Plan("max", "default_claude_max_20x")),
        ]
        for write in writes:
            before = len(self.told)
            write()
            self.assertGreater(len(self.told), before)
        self.assertEqual(seen[0], 10.0)
        self.assertEqual(seen[-1], 30.0)

    def test_limit_ended_by_poll(self) -> None:
        """
        A poll that ends a 429's limit tells the subscribers after the
        limit is over.
        """
        rejected = Headers(
            {
                PREFIX + "status": ["rejected"],
                PREFIX + "5h-status": ["rejected"],
                PREFIX + "5h-utilization": ["1.0"],
                PREFIX + "5h-reset": [str(int(NOW + 3600))],
                PREFIX + "representative-claim": ["five_hour"],
            }
        )
        self.state.observe_rejection(rejected, NOW)
        self.assertTrue(self.state.is_limited(NOW))
        limited: list[bool] = []
        self.state.subscribe(lambda: limited.append(self.state.is_limited(NOW + 1)))
        self.state.apply_poll((40.0, NOW + 3600), None, NOW + 1)
        self.assertEqual(limited, [False])

    def test_queries_do_not_notify(self) -> None:
        """
        Reading the state tells nobody.
        """
        state = self.state
        state.window(WindowName.FIVE_HOUR, NOW)
        state.limit(NOW)
        state.is_limited(NOW)
        state.retry_after(Headers(), NOW)
        (state.five_hour, state.weekly, state.updated_at, state.plan)
        self.assertEqual(self.told, [])

    def test_unsubscribed(self) -> None:
        """
        After unsubscribing, writes tell nobody.
        """
        self.unsubscribe()
        self.state.observe(unified("0.10"), NOW)
        self.assertEqual(self.told, [])
