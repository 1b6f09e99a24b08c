# -*- test-case-name: tests.test_signals -*-
"""
What ccm does on signals, on top of what the reactor does.

  - SIGHUP reloads the configuration (:obj:`ccm.reload`) instead of killing
    the process.
  - The first SIGINT or SIGTERM is the reactor's: it logs the signal and
    stops the reactor, and the services drain (``shutdown_grace``).
  - A second one ends the drain at once: the requests still in progress
    are ended properly and their usage saved, with one log line.  Without
    this, the reactor's handler would try to stop the reactor again and
    log a ``ReactorNotRunning`` traceback, while the drain went on.

Signal handlers run between two Python instructions of the reactor
thread, possibly in the middle of its work, so they only hand the work to
the reactor with ``callFromThread``, as the reactor's own handlers do.
"""

from __future__ import annotations

import signal as signal_module
from types import FrameType
from typing import Callable, Optional, Protocol

from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.logger import Logger

# What the signal module calls; its result is ignored.
SignalHandler = Callable[[int, Optional[FrameType]], object]


class SignalsReactor(IReactorCore, IReactorFromThreads):
    """
    What the handlers need of the reactor, for type checking only (as
    treq's ``_ITreqReactor``): its system events and ``callFromThread``.
    """


class SignalModule(Protocol):
    """
    The parts of the :obj:`signal` module the handlers use.
    """

    @property
    def SIGINT(self) -> int: ...

    @property
    def SIGTERM(self) -> int: ...

    @property
    def SIGHUP(self) -> int: ...

    @property
    def default_int_handler(self) -> SignalHandler: ...

    def getsignal(self, signalnum: int, /) -> object: ...

    def signal(self, signalnum: int, handler: SignalHandler, /) -> object: ...


class SignalHandlers:
    """
    ccm's handlers for SIGHUP, and for SIGINT and SIGTERM after the first.

    :param reactor: the reactor whose thread does the work
        (``callFromThread``).
    :param reload: re-reads the configuration.
    :param stop_now: ends the requests in progress now, so the shutdown's
        wait for them is over; returns how many there were.
    """

    log = Logger()

    def __init__(
        self, reactor: SignalsReactor, reload: Callable[[], None], stop_now: Callable[[], int]
    ) -> None:
        self._reactor = reactor
        self._reload = reload
        self._stop_now = stop_now
        self._stopping = False

    def install(self, signals: SignalModule = signal_module) -> None:
        """
        Install the handlers; call once the reactor runs, after it installed
        its own.  SIGINT and SIGTERM are only taken over where the reactor
        handles them (not under ``installSignalHandlers=False``, nor for a
        SIGINT that a debugger owns).

        :param signals: the :obj:`signal` module, or a fake in tests.
        """
        for number, name in ((signals.SIGINT, "SIGINT"), (signals.SIGTERM, "SIGTERM")):
            previous = signals.getsignal(number)
            if callable(previous) and previous is not signals.default_int_handler:
                signals.signal(number, self._stop_handler(previous, name))
        self.install_hangup(signals)
        # However the shutdown began, a stop signal during it is a second one.
        self._reactor.addSystemEventTrigger("before", "shutdown", self._shutting_down)

    def install_hangup(self, signals: SignalModule = signal_module) -> None:
        """
        Make SIGHUP reload.  This may be done before the reactor runs, as
        the work waits in ``callFromThread``'s queue until it does; it
        should, as SIGHUP's default action ends the process.

        :param signals: the :obj:`signal` module, or a fake in tests.
        """
        signals.signal(signals.SIGHUP, self._hangup)

    def _shutting_down(self) -> None:
        self._stopping = True

    def _stop_handler(self, previous: SignalHandler, name: str) -> SignalHandler:
        def handle(number: int, frame: Optional[FrameType]) -> None:
            if not self._stopping:
                self._stopping = True
                previous(number, frame)
            else:
                self._reactor.callFromThread(self._again, name)

        return handle

    def _again(self, name: str) -> None:
        count = self._stop_now()
        self.log.warn(
            "{signal} received again: stopping now; {count} request(s) in progress ended",
            signal=name,
            count=count,
        )

    def _hangup(self, number: int, frame: Optional[FrameType]) -> None:
        self._reactor.callFromThread(self._reload_unless_stopping)

    def _reload_unless_stopping(self) -> None:
        if self._stopping:
            self.log.info("SIGHUP received while stopping: not reloading")
            return
        self.log.info("SIGHUP received: reloading the configuration")
        self._reload()
