"""
A stand-in for the :obj:`signal` module, for the tests of the signal handlers
and of the service tree that installs them.
"""

from __future__ import annotations

import signal
from typing import Any

from ccm.signals import SignalHandler


class FakeSignals:
    """
    The parts of the :obj:`signal` module the handlers use, with the handlers
    kept in a dict.
    """

    SIGINT = signal.SIGINT
    SIGTERM = signal.SIGTERM
    SIGHUP = signal.SIGHUP
    SIG_DFL = signal.SIG_DFL
    default_int_handler: SignalHandler = signal.default_int_handler

    def __init__(self, handlers: dict[int, Any]) -> None:
        self.handlers = handlers

    def getsignal(self, number: int) -> Any:
        return self.handlers.get(number, self.SIG_DFL)

    def signal(self, number: int, handler: Any) -> Any:
        previous = self.getsignal(number)
        self.handlers[number] = handler
        return previous

    def deliver(self, number: int) -> None:
        """
        Deliver signal ``number`` to its handler.
        """
        self.handlers[number](number, None)
