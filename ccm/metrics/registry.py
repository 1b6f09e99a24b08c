# -*- test-case-name: tests.metrics.test_registry -*-
"""
:obj:`ServiceMetrics`: the Prometheus metrics of one ccm service, in a
registry of its own (never prometheus_client's global one: one process may
hold several services, and the tests build many).

The counters and histograms are updated as things happen: the service's
exchanges tell it of their events (it is their
:obj:`ccm.proxy.observer.ExchangeObserver`), and its credentials of their
refreshes and usage polls (it is their
:obj:`ccm.pool.statelog.CredentialEvents`).  What ccm keeps anyway (the
credentials' state and windows, the requests in progress) is read at each
scrape instead (:obj:`ccm.metrics.credentials`), so that no state is kept
twice.  docs/operations.md lists every series.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterable, Mapping, Sequence, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from twisted.internet.interfaces import IReactorTime

from ccm.accounting.pricing import cost_usd, prices_for
from ccm.metrics.credentials import CredentialCollector
from ccm.metrics.labels import model_family
from ccm.metrics.shares import ShareCollector
from ccm.pool.member import PoolMember
from ccm.pool.statelog import (
    ADOPTED,
    POLL_FAILED,
    POLL_RATE_LIMITED,
    POLLED,
    REFRESH_FAILED,
    REFRESHED,
)
from ccm.proxy.observer import MOVED_AFTER_429, MOVED_AFTER_REJECTION, ExchangeEnd
from ccm.shares.standing import ShareFigures

#: Seconds: from a fast error to Claude Code's ten-minute wait for an answer.
LATENCY_BUCKETS_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: Who answered a 429: ccm itself (nothing in the pool could serve), or the
#: upstream, whose answer was passed through.
SOURCE_CCM, SOURCE_UPSTREAM = "ccm", "upstream"
#: The kinds of tokens counted, with the field of :obj:`TokenCounts` each is.
TOKEN_KINDS = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_read", "cache_read_input_tokens"),
    ("cache_write", "cache_creation_input_tokens"),
)


_Metric = TypeVar("_Metric", Counter, Histogram)


class _Children(Generic[_Metric]):
    """
    The labelled series of ``metric``, each looked up in prometheus_client
    once (its ``labels`` checks and locks on every call) and then kept:
    the label values ccm uses are few (configured users and credentials,
    model families, status codes), and the registry keeps them anyway.
    """

    def __init__(self, metric: _Metric) -> None:
        self._metric: _Metric = metric
        self._children: dict[tuple[str, ...], _Metric] = {}

    def __call__(self, *values: str) -> _Metric:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class ServiceMetrics:
    """
    The metrics of one service.

    :param credential_tags: the service's credentials: their series are
        there from the start, at zero.
    :param clock: the time the scrape-time gauges are read at.
    :ivar registry: what ``/metrics`` renders.
    """

    def __init__(self, credential_tags: Iterable[str], clock: IReactorTime) -> None:
        self._clock = clock
        self.registry = CollectorRegistry()
        registry = self.registry
        self._requests = Counter(
            "ccm_requests",
            "Proxied requests that are over, by the status sent to the client",
            ["user", "credential", "model", "status"],
            registry=registry,
        )
        self._tokens = Counter(
            "ccm_tokens",
            "Tokens the proxied responses used, by kind",
            ["user", "credential", "model", "kind"],
            registry=registry,
        )
        self._cost = Counter(
            "ccm_cost_usd",
            "Estimated cost of the proxied responses at list prices, in US dollars",
            ["user", "credential", "model"],
            registry=registry,
        )
        self._headers = Histogram(
            "ccm_response_headers_seconds",
            "Seconds from a request's arrival to the client getting the upstream's headers",
            ["credential"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self._duration = Histogram(
            "ccm_request_duration_seconds",
            "Seconds from a proxied request's arrival to its end",
            ["credential"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self._rate_limited = Counter(
            "ccm_rate_limited_responses",
            "429 answers sent to clients: ccm's own, or the upstream's passed through",
            ["credential", "source"],
            registry=registry,
        )
        self._retries = Counter(
            "ccm_retries",
            "Requests moved off a credential to another one of their pool",
            ["credential", "reason"],
            registry=registry,
        )
        self._refreshes = Counter(
            "ccm_token_refreshes",
            "Token refreshes by outcome",
            ["credential", "outcome"],
            registry=registry,
        )
        self._polls = Counter(
            "ccm_usage_polls", "Usage polls by outcome", ["credential", "outcome"], registry=registry
        )
        self._limit_refusals = Counter(
            "ccm_user_limit_refusals",
            "Requests refused by a user's max_concurrent or requests_per_minute",
            ["user", "limit"],
            registry=registry,
        )
        self._in_progress = Gauge(
            "ccm_requests_in_progress",
            "Proxied requests not over yet, streams included",
            registry=registry,
        )
        # The series every proxied request touches.
        self._requests_of = _Children(self._requests)
        self._tokens_of = _Children(self._tokens)
        self._cost_of = _Children(self._cost)
        self._headers_of = _Children(self._headers)
        self._duration_of = _Children(self._duration)
        for tag in credential_tags:
            for source in (SOURCE_CCM, SOURCE_UPSTREAM):
                self._rate_limited.labels(tag, source)
            for reason in (MOVED_AFTER_429, MOVED_AFTER_REJECTION):
                self._retries.labels(tag, reason)
            for outcome in (REFRESHED, ADOPTED, REFRESH_FAILED):
                self._refreshes.labels(tag, outcome)
            for outcome in (POLLED, POLL_FAILED, POLL_RATE_LIMITED):
                self._polls.labels(tag, outcome)

    def follow(self, members: Mapping[str, PoolMember], in_progress: Callable[[], int]) -> None:
        """
        Read the credentials' state and windows from ``members``, and the
        requests in progress from ``in_progress``, at each scrape.
        """
        self.registry.register(CredentialCollector(members, self._clock))
        self._in_progress.set_function(lambda: float(in_progress()))

    def follow_shares(self, by_user: Callable[[], Mapping[str, Sequence[ShareFigures]]]) -> None:
        """
        Read the users' share figures from ``by_user`` at each scrape
        (:obj:`ccm.metrics.shares`).
        """
        self.registry.register(ShareCollector(by_user))

    def follow_state(self, connected: Callable[[], bool]) -> None:
        """
        Read whether the shared state (Redis) is reachable from ``connected``
        at each scrape, as the gauge ``ccm_state_connected`` (1 or 0).
        """
        gauge = Gauge(
            "ccm_state_connected",
            "Whether this process reaches the shared state (Redis): 1 or 0",
            registry=self.registry,
        )
        gauge.set_function(lambda: 1.0 if connected() else 0.0)

    # ExchangeObserver

    def answered(self, credential: str, seconds: float) -> None:
        """
        The client got an upstream answer's headers ``seconds`` after it asked.
        """
        self._headers_of(credential).observe(seconds)

    def moved(self, credential: str, reason: str) -> None:
        """
        A request left ``credential`` for another one, for ``reason``.
        """
        self._retries.labels(credential, reason).inc()

    def ended(self, end: ExchangeEnd) -> None:
        """
        Count a proxied request that is over, and what its response used.
        """
        model = model_family(end.model)
        self._requests_of(end.user, end.credential, model, str(end.status)).inc()
        self._duration_of(end.credential).observe(end.duration)
        if end.status == 429:
            source = SOURCE_CCM if end.by_ccm else SOURCE_UPSTREAM
            self._rate_limited.labels(end.credential, source).inc()
        usage = end.usage
        if usage is None:
            return
        # The model that answered, which may be more exact than the one asked.
        model = model_family(usage.model)
        for kind, field in TOKEN_KINDS:
            count = getattr(usage.tokens, field)
            if count:
                self._tokens_of(end.user, end.credential, model, kind).inc(count)
        cost = cost_usd(prices_for(usage.model, usage.context_window), usage.tokens)
        self._cost_of(end.user, end.credential, model).inc(cost)

    # CredentialEvents

    def refresh(self, tag: str, outcome: str) -> None:
        """
        Count a refresh of ``tag``'s token that ended with ``outcome``.
        """
        self._refreshes.labels(tag, outcome).inc()

    def poll(self, tag: str, outcome: str) -> None:
        """
        Count a usage poll of ``tag`` that ended with ``outcome``.
        """
        self._polls.labels(tag, outcome).inc()

    def limit_refused(self, user: str, limit: str) -> None:
        """
        Count a request of ``user`` refused by the per-user ``limit``
        (``max_concurrent`` or ``requests_per_minute``).
        """
        self._limit_refusals.labels(user, limit).inc()
