# -*- test-case-name: tests.proxy.test_exchange -*-
"""
What a proxied request needs from the service around it, as one small
object: :obj:`ExchangeContext`, which :obj:`ccm.proxy.resource.ProxyResource` hands
to each :obj:`ccm.proxy.exchange.Exchange` it starts, with the :obj:`Route` of
every credential (its upstream client and its usage recorder).

The protocols below say what the proxy needs from its collaborators: a
pool of credentials, a usage recorder and a usage meter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol as TypingProtocol

from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger

from ccm.accounting.counters import UsageRecorder
from ccm.accounting.meter import TokenUsage
from ccm.proxy.observer import NO_OBSERVER, ExchangeObserver
from ccm.shares.gate import NO_SHARES, ShareGate

# Claude Code waits up to 10 minutes for an answer (API_TIMEOUT_MS), and a
# non-streaming reply only starts when the whole generation is done.
RESPONSE_HEADER_TIMEOUT_SECONDS = 600.0
# Anthropic sends ping events on long streams; this much silence means the
# upstream connection is dead.
STREAM_IDLE_TIMEOUT_SECONDS = 300.0

#: The configured ``headers``: each name with the values it is set to.
HeaderRules = tuple[tuple[str, tuple[str, ...]], ...]


class UsageMeter(TypingProtocol):
    """
    Reads the usage out of a response body while it is relayed.
    """

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> TokenUsage: ...


@dataclass(frozen=True)
class Timeouts:
    """
    How long the proxy waits for the upstream.

    :ivar response_headers: seconds from sending a request to the
        response's headers.
    :ivar stream_idle: seconds of silence in a response body after which
        the upstream connection counts as dead.
    """

    response_headers: float = RESPONSE_HEADER_TIMEOUT_SECONDS
    stream_idle: float = STREAM_IDLE_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Route:
    """
    How the requests one credential serves reach the upstream, and where
    their tokens are counted.

    :ivar http_client: the client of the credential's detour (or the direct
        one).
    :ivar recorder: where to count the usage, or ``None`` not to count it
        (no ``usages_path``).
    """

    http_client: HTTPClient
    recorder: UsageRecorder | None = None


@dataclass(frozen=True)
class ExchangeContext:
    """
    What every proxied request of a service shares.  Frozen: a reload
    replaces it, and a request keeps the one it started with.

    :ivar clock: the time of timeouts and of the per-request log line.
    :ivar log: where requests are logged.
    :ivar timeouts: how long to wait for the upstream.
    :ivar upstream_url: the API's base URL, without a trailing slash.
    :ivar extra_headers: the configured ``headers``.
    :ivar routes: the :obj:`Route` of each credential, by tag.
    :ivar cooperator: runs the producers that stream large request bodies
        from twisted.web's temporary files.
    :ivar observer: told of each request's events (the metrics).
    :ivar shares: refuses callers over their shares, and is told which
        requests ran on which credential (:obj:`ccm.shares`).
    """

    clock: IReactorTime
    log: Logger
    timeouts: Timeouts
    upstream_url: str
    extra_headers: HeaderRules
    routes: Mapping[str, Route]
    cooperator: Cooperator
    observer: ExchangeObserver = NO_OBSERVER
    shares: ShareGate = NO_SHARES
