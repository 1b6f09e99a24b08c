# -*- test-case-name: tests.test_build -*-
"""
The web side of the builder (:obj:`ccm.build`): the proxy of ``/v1/``,
the site of the main listeners (the proxy, the status endpoint, the
health answer, the admins' metrics and the dashboard), and the site of the
metrics listeners.
"""

from __future__ import annotations

from typing import Mapping

from twisted.internet.interfaces import IReactorTCP, IReactorTime

from ccm.config.model import ServiceConfig
from ccm.metrics.registry import ServiceMetrics
from ccm.limits.gate import UserLimits
from ccm.pool.users import UserPools
from ccm.proxy.context import Route, Timeouts
from ccm.proxy.resource import ProxyResource
from ccm.shares.gate import NO_SHARES, ShareKeeper
from ccm.upstream.identity import ClientIdentity
from ccm.web.auth import Authenticator
from ccm.web.dashboard import DashboardResource
from ccm.web.health import HealthResource
from ccm.web.listening import ListeningService, endpoint_for
from ccm.web.metrics import MetricsResource, metrics_root
from ccm.web.site import CcmSite
from ccm.web.status import StatusResource
from ccm.web.tree import build_root
from ccm.web.watch import StatusWatches


class ListeningReactor(IReactorTime, IReactorTCP):
    """
    What a site's listeners need of the reactor, for type checking only:
    time for the site, TCP (and the endpoints built on it) for listening.
    """


def build_proxy(
    config: ServiceConfig,
    authenticator: Authenticator,
    user_pools: UserPools,
    routes: Mapping[str, Route],
    clock: IReactorTime,
    timeouts: Timeouts,
    identity: ClientIdentity,
    metrics: ServiceMetrics,
    shares: ShareKeeper | None = None,
    limits: UserLimits | None = None,
) -> ProxyResource:
    """
    The proxy of ``/v1/``, telling ``metrics`` of its requests, and
    ``shares`` (when given) which requests ran where; ``limits`` are the
    users' limits (this process's own when not given).
    """
    return ProxyResource(
        authenticator=authenticator,
        pool_for=user_pools.pool_for,
        routes=routes,
        clock=clock,
        upstream_url=config.upstream_url,
        extra_headers=config.headers,
        max_request_body=config.max_request_body,
        timeouts=timeouts,
        identity=identity,
        observer=metrics,
        limits=limits or UserLimits(clock, config.users, on_refusal=metrics.limit_refused),
        shares=shares if shares is not None else NO_SHARES,
    )


def build_site(
    config: ServiceConfig,
    authenticator: Authenticator,
    user_pools: UserPools,
    clock: IReactorTime,
    watches: StatusWatches,
    proxy: ProxyResource,
    dashboard: DashboardResource,
    metrics: ServiceMetrics,
    health: HealthResource,
    shares: ShareKeeper | None = None,
) -> CcmSite:
    """
    The site serving the resource tree: the proxy, the status endpoint
    (keeping its watches in ``watches``), the health answer, the admins'
    metrics and the dashboard.
    """
    status = StatusResource(
        authenticator,
        user_pools.pool_for,
        clock,
        watches,
        share_status=shares.status if shares is not None else None,
    )
    return CcmSite(
        build_root(
            proxy,
            status,
            health=health,
            metrics=MetricsResource(metrics.registry, authenticator),
            dashboard=dashboard,
        ),
        config.max_request_body,
        reactor=clock,
        connection_limits=config.connection_limits,
    )


def metrics_listeners(
    config: ServiceConfig, metrics: ServiceMetrics, health: HealthResource, reactor: ListeningReactor,
) -> list[ListeningService]:
    """
    A listener for each ``metrics_listen`` endpoint, on a site of its own
    serving the metrics without authentication, and the health answer.
    """
    root = metrics_root(MetricsResource(metrics.registry, None), health)
    site = CcmSite(root, 0, reactor=reactor, connection_limits=config.connection_limits)
    return [ListeningService(endpoint_for(reactor, l), site) for l in config.metrics_listen]
