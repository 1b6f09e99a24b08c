# -*- test-case-name: tests.metrics.test_registry -*-
"""
What a proxied request tells whoever watches the proxy (the metrics of
:obj:`ccm.metrics.registry`): when its client got response headers, when
it moved to another credential, and how it ended.  The exchange knows
nothing of what is done with it; :obj:`NO_OBSERVER` does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ccm.accounting.counters import UsageRecord

#: Why a request moved off a credential to another one.
MOVED_AFTER_429 = "rate_limited"
MOVED_AFTER_REJECTION = "rejected"


@dataclass(frozen=True)
class ExchangeEnd:
    """
    A proxied request that is over.

    :ivar user: the caller's name, empty for an anonymous one.
    :ivar model: the model asked for, or empty.
    :ivar credential: the tag of the credential that served last, or empty.
    :ivar status: the status sent to the client; 0 when none was.
    :ivar duration: seconds from arrival to the end.
    :ivar usage: what the response used, when it was metered.
    :ivar by_ccm: whether ccm answered itself (its own error, a 429 of
        its own included) rather than relaying an upstream answer.
    """

    user: str
    model: str
    credential: str
    status: int
    duration: float
    usage: UsageRecord | None
    by_ccm: bool


class ExchangeObserver(Protocol):
    """
    Told of the events of each proxied request.
    """

    def answered(self, credential: str, seconds: float) -> None:
        """
        The client got the status and headers of an upstream answer from
        ``credential``, ``seconds`` after its request arrived.
        """

    def moved(self, credential: str, reason: str) -> None:
        """
        A request left ``credential`` for another one of its pool, before
        any byte reached the client; ``reason`` is :obj:`MOVED_AFTER_429` or
        :obj:`MOVED_AFTER_REJECTION`.
        """

    def ended(self, end: ExchangeEnd) -> None:
        """
        A proxied request is over, however it ended.
        """


class _NoObserver:
    """
    An :obj:`ExchangeObserver` that does nothing.
    """

    def answered(self, credential: str, seconds: float) -> None:
        pass

    def moved(self, credential: str, reason: str) -> None:
        pass

    def ended(self, end: ExchangeEnd) -> None:
        pass


NO_OBSERVER: ExchangeObserver = _NoObserver()
