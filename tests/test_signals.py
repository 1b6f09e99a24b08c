"""
Tests for :obj:`ccm.signals`: SIGHUP reloads, the first SIGINT or SIGTERM is
the reactor's, a second one ends the drain at once; all of the work
happens in the reactor thread.  Signals are delivered by calling the
handlers a fake ``signal`` module was given.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any, Callable, Optional, cast

from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.signals import SignalHandlers, SignalsReactor
from tests.fake_signals import FakeSignals
from tests.fixtures import logged_events


class FakeReactor:
    """
    What the handlers need of a reactor: ``callFromThread``, queued until
    :obj:`run_queued`, and system event triggers.
    """

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.triggers: list[tuple[str, str, Callable[[], Any]]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        self.queued.append((f, args))

    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[[], Any]) -> None:
        self.triggers.append((phase, event, f))

    def run_queued(self) -> None:
        queued, self.queued = self.queued, []
        for f, args in queued:
            f(*args)


class SignalHandlersTests(SynchronousTestCase):
    """
    :obj:`SignalHandlers` on top of the reactor's own handlers.
    """

    def setUp(self) -> None:
        self.events = logged_events(self)
        self.reactor = FakeReactor()
        self.reloads = 0
        self.stops = 0
        self.reactor_signals: list[int] = []
        # The handlers use only what the fake has of a reactor.
        self.handlers = SignalHandlers(
            cast(SignalsReactor, self.reactor), self.reload, self.stop_now
        )

    def reload(self) -> None:
        self.reloads += 1

    def stop_now(self) -> int:
        self.stops += 1
        return 2

    def reactor_handler(self, number: int, frame: Optional[FrameType]) -> None:
        self.reactor_signals.append(number)

    def install(self, handlers: dict[int, Any] | None = None) -> FakeSignals:
        """
        Install ccm's handlers over ``handlers``, by default the reactor's
        for SIGINT and SIGTERM.
        """
        if handlers is None:
            handlers = {signal.SIGINT: self.reactor_handler, signal.SIGTERM: self.reactor_handler}
        signals = FakeSignals(handlers)
        self.handlers.install(signals)
        return signals

    def lines(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def test_hangup_reloads_in_the_reactor_thread(self) -> None:
        """
        SIGHUP reloads, once per signal, from the reactor thread (not in
        the signal handler itself).
        """
        signals = self.install()
        signals.deliver(signal.SIGHUP)
        self.assertEqual(self.reloads, 0)
        self.reactor.run_queued()
        signals.deliver(signal.SIGHUP)
        self.reactor.run_queued()
        self.assertEqual(self.reloads, 2)
        self.assertEqual(self.lines(), ["SIGHUP received: reloading the configuration"] * 2)

    def test_first_stop_signal_is_the_reactors(self) -> None:
        """
        The first SIGTERM goes to the reactor's own handler (which logs it
        and stops the reactor), and nothing else happens.
        """
        signals = self.install()
        signals.deliver(signal.SIGTERM)
        self.reactor.run_queued()
        self.assertEqual(self.reactor_signals, [signal.SIGTERM])
        self.assertEqual(self.stops, 0)
        self.assertEqual(self.lines(), [])

    def test_second_stop_signal_stops_now(self) -> None:
        """
        A second SIGINT or SIGTERM does not reach the reactor's handler (it
        would log a ``ReactorNotRunning`` traceback): it ends the requests
        in progress from the reactor thread, with one log line.
        """
        signals = self.install()
        signals.deliver(signal.SIGTERM)
        signals.deliver(signal.SIGINT)
        self.assertEqual(self.stops, 0)
        self.reactor.run_queued()
        signals.deliver(signal.SIGTERM)
        self.reactor.run_queued()
        self.assertEqual(self.reactor_signals, [signal.SIGTERM])
        self.assertEqual(self.stops, 2)
        self.assertEqual(
            self.lines(),
            [
                "SIGINT received again: stopping now; 2 request(s) in progress ended",
                "SIGTERM received again: stopping now; 2 request(s) in progress ended",
            ],
        )

    def test_shutdown_started_otherwise(self) -> None:
        """
        Once the reactor's shutdown has begun, however it began, a stop
        signal stops now and SIGHUP no longer reloads.
        """
        signals = self.install()
        [(phase, event, trigger)] = self.reactor.triggers
        self.assertEqual((phase, event), ("before", "shutdown"))
        trigger()
        signals.deliver(signal.SIGTERM)
        signals.deliver(signal.SIGHUP)
        self.reactor.run_queued()
        self.assertEqual((self.reactor_signals, self.stops, self.reloads), ([], 1, 0))
        self.assertIn("SIGHUP received while stopping: not reloading", self.lines())

    def test_reactor_without_handlers(self) -> None:
        """
        Where the reactor installed no handler (SIGTERM's default, SIGINT's
        KeyboardInterrupt), those are left alone; SIGHUP still reloads.
        """
        signals = self.install({signal.SIGINT: signal.default_int_handler})
        self.assertIs(signals.getsignal(signal.SIGINT), signal.default_int_handler)
        self.assertIs(signals.getsignal(signal.SIGTERM), signal.SIG_DFL)
        signals.deliver(signal.SIGHUP)
        self.reactor.run_queued()
        self.assertEqual(self.reloads, 1)

    def test_hangup_before_the_reactor_runs(self) -> None:
        """
        :obj:`SignalHandlers.install_hangup` takes over SIGHUP alone (its
        default action would end the process before the reactor runs);
        the reload waits for the reactor thread.
        """
        signals = FakeSignals({signal.SIGTERM: self.reactor_handler})
        self.handlers.install_hangup(signals)
        self.assertEqual(signals.getsignal(signal.SIGTERM), self.reactor_handler)
        self.assertIs(signals.getsignal(signal.SIGINT), signal.SIG_DFL)
        signals.deliver(signal.SIGHUP)
        self.assertEqual(self.reloads, 0)
        self.reactor.run_queued()
        self.assertEqual(self.reloads, 1)
