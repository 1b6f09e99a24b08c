# -*- test-case-name: tests.test_build -*-
"""
The one place that builds a ccm service from its configuration: it reads
what must be read at start-up (keychain logins, usage files, TLS keys and
certificates) and wires the parts together, in named steps.
:obj:`build_service` is called by :obj:`ccm.tap.makeService` and, with fakes, by
the tests.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Mapping, Sequence, TypeVar

from keyring.backend import KeyringBackend
from treq.client import HTTPClient
from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IReactorSSL,
    IReactorThreads,
    IReactorTime,
)
from twisted.internet.threads import deferToThreadPool
from twisted.logger import LogPublisher, globalLogPublisher

from ccm.accounting.recent import RecentUsage, recording_also
from ccm.accounting.usagefile import UsageFile, UsageSaverService
from ccm.banner import log_startup
from ccm.config.model import (
    BalancerCredentialConfig,
    DefaultCredentialConfig,
    Detour,
    ServiceConfig,
)
from ccm.credentials.credential import Credential
from ccm.credentials.refresher import TokenRefreshService
from ccm.credentials.keychain import RunInThread
from ccm.credentials.lock import RefreshLock
from ccm.credentials.store import credential_store_for, lock_directory_for
from ccm.credentials.oauth import TokenEndpoint
from ccm.pool.select import BalancerPool, PoolMember, SingleCredentialPool
from ccm.pool.select import Pool
from ccm.pool.sessions import SessionTable
from ccm.accounting.counters import UsageRecorder
from ccm.proxy.context import Route, Timeouts
from ccm.shares.files import ShareSaverService, load_shares, shares_path
from ccm.shares.gate import ShareKeeper
from ccm.shares.standing import Entitlement
from ccm.shares.view import ShareView
from ccm.service import CcmService
from ccm.sites import ListeningReactor, build_proxy, build_site, metrics_listeners
from ccm.upstream.client import MakeClient, clients_per_detour, make_http_client, proxy_detour
from ccm.upstream.identity import ClientIdentity
from ccm.pool.users import UserPools
from ccm.web.auth import Authenticator
from ccm.web.listening import ListeningService, endpoint_for
from ccm.web.watch import StatusWatches
from ccm.web.health import HealthResource
from ccm.metrics.registry import ServiceMetrics
from ccm.pool.statelog import CredentialEvents
from ccm.web.admins import AdminSessions
from ccm.web.dashboard import DashboardResource
from ccm.web.overview import Sources
from ccm.web.problems import RecentProblems
from ccm.workers import WatchingReactor, file_watchers, usage_pollers
from ccm.state.redis import RedisStore
from ccm.state.shared import SharedState


_Result = TypeVar("_Result")


class ServiceReactor(ListeningReactor, IReactorSSL, IReactorThreads, WatchingReactor):
    """
    What a service needs of the reactor, for type checking only (as treq's
    ``_ITreqReactor``): time, TCP and TLS connections and listeners, the
    thread pool of keychain calls, and file descriptors for inotify.  The
    reactors Twisted installs provide all of it.
    """


def build_service(
    config: ServiceConfig,
    *,
    reactor: ServiceReactor,
    http_client: HTTPClient,
    close_http: Callable[[], Deferred[None] | None] | None = None,
    environ: Mapping[str, str] = os.environ,
    home: str | None = None,
    watch_with_inotify: bool = True,
    make_client: MakeClient = make_http_client,
    platform: str = sys.platform,
    keyring_backend: KeyringBackend | None = None,
    timeouts: Timeouts = Timeouts(),
    usage_recorders: Mapping[str, UsageRecorder] | None = None,
    log_publisher: LogPublisher = globalLogPublisher,
) -> CcmService:
    """
    Build the service ``config`` describes, ready to start.

    :param reactor: the reactor: its time, its network and its threads.
    :param http_client: the client of upstream requests without a detour.
    :param close_http: closes that client's connections at shutdown.
    :param environ: the environment, for the default credentials file.
    :param home: the home directory, for the same (``~`` by default).
    :param watch_with_inotify: whether credentials files are watched with
        inotify (Linux) rather than polled.
    :param make_client: builds the client of a proxy detour, one per
        distinct detour; its pool is closed at shutdown.
    :param platform: the operating system (``sys.platform``); on macOS a
        credential without ``credential_path`` is read from the keychain
        first, through ``keyring_backend`` (the system's by default).
    :param timeouts: how long the proxy waits for the upstream.
    :param usage_recorders: where to count the usage of some credentials,
        by tag, instead of their ``usages_path`` files (tests).
    :param log_publisher: whose warnings and errors the dashboard shows
        (the global log publisher, while the service runs).
    """
    credential_configs = config.default_credentials()
    detours = {c.tag: proxy_detour(c.detour) for c in credential_configs}
    clients, detour_pools = clients_per_detour(
        detours.values(), http_client, reactor, make_client
    )
    home = home or os.path.expanduser("~")
    # Which Claude Code ccm's own calls claim to be: proxied requests say.
    identity = ClientIdentity()
    # Shared with the other processes of the same state, when there is one.
    state = SharedState(
        RedisStore(config.state, reactor) if config.state is not None else None, reactor
    )
    metrics = ServiceMetrics([c.tag for c in credential_configs], reactor)
    credentials = _credentials(
        config, detours, clients, reactor, environ, home, platform, keyring_backend, identity,
        metrics, state,
    )
    state.follow_credentials(credentials)
    savers = _usage_savers(credential_configs, reactor, state)
    # The share files record each user's shares from the view built below.
    shares, share_saver = _shares(
        credential_configs, reactor, state, lambda: share_view.entitlements()
    )
    limits = state.user_limits(config.users, metrics.limit_refused)
    log_startup(CcmService.log, config, [(c.tag, c.store.path) for c in credentials])
    members = {
        c.tag: PoolMember(credential, c.cap_5h, c.cap_weekly, c.allows_extra_usage)
        for c, credential in zip(credential_configs, credentials)
    }
    session_tables: dict[str, SessionTable] = {}
    pools = _pools(config, members, reactor, session_tables, state)
    problems = RecentProblems(log_publisher)
    background: list[IService] = [
        # Before everything that writes to it, so that it stops last.
        *state.services,
        # First, so that they stop last and their final save sees every
        # request the other services let finish.
        *savers.values(),
        share_saver,
        *file_watchers(credentials, reactor, watch_with_inotify),
        TokenRefreshService(credentials, reactor),
        *usage_pollers(config, credentials, detours, clients, reactor, identity, state.polls()),
        problems,
    ]
    recorders: dict[str, UsageRecorder] = {**savers, **(usage_recorders or {})}
    # Usage is metered only where it is counted: the dashboard's 5-hour
    # figures too.
    recent = {tag: RecentUsage(reactor) for tag in recorders}
    routes = {
        c.tag: Route(clients[detours[c.tag]], recording_also(recorders.get(c.tag), recent.get(c.tag)))
        for c in credentials
    }
    default = pools[config.credentials[0].tag] if config.credentials else pools["default"]
    user_pools = UserPools(pools, default, config.multi_credential, config.users)
    authenticator = Authenticator(config.users)
    watches = StatusWatches(reactor)
    health = HealthResource(members, reactor, state.connected)
    if state.shared:
        metrics.follow_state(lambda: bool(state.connected()))
    proxy = build_proxy(
        config, authenticator, user_pools, routes, reactor, timeouts, identity, metrics, shares,
        limits,
    )
    metrics.follow(members, lambda: proxy.in_progress)
    share_view = ShareView(shares, lambda: service.config.users, user_pools)
    metrics.follow_shares(share_view.by_user)
    sources = Sources(
        members=members,
        session_tables=session_tables,
        counters={tag: saver.counters for tag, saver in savers.items()},
        recent=recent,
        user_names=lambda: [user.name for user in service.config.users],
        in_flight=proxy.in_flight,
        problems=problems,
        shares=share_view.by_user,
    )
    dashboard = DashboardResource(
        AdminSessions(authenticator, reactor), sources, lambda: members, reactor
    )
    site = build_site(
        config, authenticator, user_pools, reactor, watches, proxy, dashboard, metrics, health,
        shares,
    )
    listeners = [
        ListeningService(endpoint_for(reactor, listener), site)
        for listener in config.listeners
    ] + metrics_listeners(config, metrics, health, reactor)
    service = CcmService(
        config,
        credentials=credentials,
        members=members,
        user_pools=user_pools,
        authenticator=authenticator,
        proxy=proxy,
        site=site,
        watches=watches,
        metrics=metrics,
        background=background,
        listeners=listeners,
        close_upstream=[
            *([close_http] if close_http is not None else []),
            *(pool.closeCachedConnections for pool in detour_pools),
        ],
    )
    service.warn_of_exposure()
    return service


def _in_threads_of(reactor: IReactorThreads) -> RunInThread:
    """
    Run blocking calls (the keychain's) in ``reactor``'s thread pool.
    """

    def in_thread(work: Callable[[], _Result]) -> Deferred[_Result]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), work)

    return in_thread


def _credentials(
    config: ServiceConfig,
    detours: Mapping[str, Detour | None],
    clients: Mapping[Detour | None, HTTPClient],
    reactor: ServiceReactor,
    environ: Mapping[str, str],
    home: str,
    platform: str,
    keyring_backend: KeyringBackend | None,
    identity: ClientIdentity,
    events: CredentialEvents,
    state: SharedState,
) -> list[Credential]:
    """
    The service's credentials, each with its store (a file, or on macOS
    the keychain, which is asked here, later in the reactor's threads),
    Claude Code's lock on the directory of its credentials, and a token
    endpoint reached through its detour, telling ``events`` how its
    refreshes and polls went, its window state from ``state``.
    """
    token_endpoints = {
        detour: TokenEndpoint(client, reactor, config.oauth_token_url, identity=identity)
        for detour, client in clients.items()
    }
    in_thread = _in_threads_of(reactor)
    credentials = []
    for credential_config in config.default_credentials():
        store = credential_store_for(
            credential_config.credential_path,
            environ,
            home,
            platform,
            keyring_backend,
            run_in_thread=in_thread,
        )
        detour = detours[credential_config.tag]
        lock = RefreshLock(lock_directory_for(store, environ, home), reactor)
        kept_in, locked_by = state.credential_store(credential_config.tag, store, lock)
        credentials.append(
            Credential(
                credential_config.tag,
                kept_in,
                token_endpoints[detour].refresh,
                reactor,
                lock=locked_by,
                events=events,
                rate_limits=state.window_state(credential_config.tag),
            )
        )
    return credentials


def _usage_savers(
    credential_configs: Sequence[DefaultCredentialConfig], clock: IReactorTime, state: SharedState
) -> dict[str, UsageSaverService]:
    """
    A saver of its usage file for each credential with a ``usages_path``;
    each file is loaded here (and moved aside when it cannot be read).
    """
    savers = {}
    for credential_config in credential_configs:
        if credential_config.usages_path:
            usage_file = UsageFile(credential_config.usages_path, clock)
            savers[credential_config.tag] = state.usage_saver(credential_config.tag, usage_file)
    return savers


def _shares(
    credential_configs: Sequence[DefaultCredentialConfig],
    clock: IReactorTime,
    state: SharedState,
    entitlements: Callable[[], Mapping[str, Mapping[str, Entitlement]]],
) -> tuple[ShareKeeper, ShareSaverService]:
    """
    The users' shares: one book for the service, its charges loaded from
    the share file beside each credential's usage file, and their saver,
    which records ``entitlements`` (the users' shares, by credential) too.
    """
    paths = {
        c.tag: shares_path(c.usages_path) for c in credential_configs if c.usages_path
    }
    book = state.share_book([c.tag for c in credential_configs])
    load_shares(book, paths, clock.seconds(), CcmService.log)
    saver = ShareSaverService(book, paths, clock, state.writes_share_files(), entitlements)
    return ShareKeeper(book, clock), saver




def _pools(
    config: ServiceConfig,
    members: Mapping[str, PoolMember],
    clock: IReactorTime,
    session_tables: dict[str, SessionTable],
    state: SharedState,
) -> dict[str, Pool]:
    """
    A pool per credential, serving it alone, and one per balancer, whose
    session table goes into ``session_tables`` (for the dashboard).
    """
    pools: dict[str, Pool] = {
        tag: SingleCredentialPool(member, clock) for tag, member in members.items()
    }
    for pool_config in config.credentials:
        if isinstance(pool_config, BalancerCredentialConfig):
            pools[pool_config.tag] = BalancerPool(
                pool_config.tag,
                [members[tag] for tag in pool_config.credentials],
                pool_config.strategy,
                clock,
                rebalance_threshold=pool_config.rebalance_threshold,
                sessions=session_tables.setdefault(
                    pool_config.tag, state.session_table(pool_config.tag)
                ),
                affinity=state.affinity_table(pool_config.tag),
            )
    return pools

