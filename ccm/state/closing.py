# -*- test-case-name: tests.state.test_usagesaver -*-
"""
Closing the connection to the shared state last: the service stops its
background parts together, so a part that writes once more when it stops
(a usage saver's last flush) asks the store to stay open until it is done.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList


class KeptOpen:
    """
    What a store is kept open for: the last writes still under way.
    """

    def __init__(self) -> None:
        self._keep_open: list[Deferred[Any]] = []

    def keep_open_until(self, done: Deferred[Any]) -> None:
        """
        Put off closing the connections, when the store is stopped, until
        ``done`` has fired.
        """
        self._keep_open.append(done)

        def forget(result: Any) -> Any:
            if done in self._keep_open:
                self._keep_open.remove(done)
            return result

        done.addBoth(forget)

    def last_writes(self) -> Deferred[Any]:
        """
        Fires once every write the store is kept open for has ended.
        """
        return DeferredList(list(self._keep_open), consumeErrors=False)
