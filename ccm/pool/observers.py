# -*- test-case-name: tests.pool.test_observers -*-
"""
Being told that a state changed: the seam through which a credential and
its window state tell the status watches (:obj:`ccm.web.watch`) that what
they show may be different now.

The owner of a state holds one :obj:`Observers` and calls
:obj:`Observers.notify` after each change it makes; anyone may subscribe.
An observer is told *that* something changed, not what: it reads the state
itself, preferably a little later (in the reactor's next turn), since one
change of the owner's may take several writes.
"""

from __future__ import annotations

from typing import Callable

from twisted.logger import Logger

#: What an observer is: a call without arguments.
Observer = Callable[[], None]


class Observers:
    """
    The observers of one state, told in the order they subscribed.  An
    observer that raises is logged and does not keep the others from being
    told, nor the owner from going on.
    """

    log = Logger()

    def __init__(self) -> None:
        # A key per subscription, so that the same callable may subscribe
        # twice and each subscription ends on its own.
        self._observers: dict[object, Observer] = {}

    def __len__(self) -> int:
        """
        How many subscriptions are open.
        """
        return len(self._observers)

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """
        Call ``observer`` after each change from now on.

        :return: what ends this subscription (calling it again is
            harmless).
        """
        key = object()
        self._observers[key] = observer
        return lambda: self._unsubscribe(key)

    def _unsubscribe(self, key: object) -> None:
        self._observers.pop(key, None)

    def notify(self) -> None:
        """
        Tell every observer that the state changed.
        """
        for observer in list(self._observers.values()):
            try:
                observer()
            except Exception:
                self.log.failure("an observer of a state change failed")
