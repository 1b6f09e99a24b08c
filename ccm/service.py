# -*- test-case-name: tests.test_service -*-
"""
One configured ccm service, assembled: its credentials and their watchers,
the background token refresher, the resource tree, and its listeners.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from typing import Any, Callable, Iterable, Mapping

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from ccm.web.auth import Authenticator, Caller
from ccm.banner import log_startup
from ccm.config.model import (
    DEFAULT_POLL_INTERVAL_SECONDS,
    AddressListener,
    BalancerCredentialConfig,
    DefaultCredentialConfig,
    Detour,
    Listener,
    ServiceConfig,
)
from ccm.credentials.file import CredentialFile
from ccm.credentials.store import credential_store_for
from ccm.credentials.credential import Credential, TokenRefreshService
from ccm.web.listening import ListeningService, endpoint_for
from ccm.credentials.oauth import TokenEndpoint
from ccm.pool.poller import UsagePoller
from ccm.pool.select import BalancerPool, PoolMember, SingleCredentialPool
from ccm.proxy.resource import Pool, ProxyResource
from ccm.web.site import CcmSite, build_root
from ccm.web.status import StatusResource
from ccm.upstream.client import make_http_client
from ccm.accounting.usagefile import UsageFile, UsageSaverService
from ccm.credentials.watch import FileWatcher


def _stop_all(services: Iterable[IService]) -> Deferred[Any]:
    """
    Stop C{services} together, as L{MultiService} stops its children.
    """
    return DeferredList([maybeDeferred(s.stopService) for s in services], consumeErrors=True)


def _is_loopback(listener: Listener) -> bool:
    """
    Whether a listener only accepts connections from this machine.
    """
    if isinstance(listener, AddressListener):
        return ipaddress.ip_address(listener.address).is_loopback
    kind, _, rest = listener.description.partition(":")
    if kind == "unix":
        return True
    for option in re.split(r"(?<!\\):", rest):
        name, _, value = option.partition("=")
        if name == "interface":
            try:
                return ipaddress.ip_address(value.replace("\\", "")).is_loopback
            except ValueError:
                return False
    return False


def _usage_saver(path: str, reactor: Any, parent: MultiService) -> UsageSaverService:
    usage_file = UsageFile(path, reactor)
    saver = UsageSaverService(usage_file, usage_file.load(), reactor)
    saver.setServiceParent(parent)
    return saver


class CcmService(MultiService):
    """
    A running ccm service.

    :param http_client: the treq-style client for upstream requests of
        credentials without a proxy detour.
    :param close_http: closes that client's connections at shutdown.
    :param make_client: builds the client and connection pool for a proxy
        detour; one is made per distinct detour, and its pool is closed at
        shutdown.
    """

    log = Logger()

    def __init__(
        self,
        config: ServiceConfig,
        *,
        reactor: Any,
        http_client: Any,
        close_http: Callable[[], Deferred[Any] | None] = lambda: None,
        environ: Mapping[str, str] = os.environ,
        home: str = os.path.expanduser("~"),
        watch_with_inotify: bool = True,
        make_client: Callable[[Any, Detour], tuple[Any, Any]] = make_http_client,
        platform: str = sys.platform,
        keyring_backend: Any = None,
    ) -> None:
        """
        :param platform: the operating system (C{sys.platform}); on macOS a
            credential without C{credential_path} is read from the keychain
            first, through C{keyring_backend} (the system's by default).
        """
        super().__init__()
        self.config = config
        self._close_http = close_http
        self._detour_pools: list[Any] = []
        self._credentials_loaded = False
        # One client, token endpoint and poller per distinct detour (None:
        # direct), so every upstream call of a credential takes its detour.
        clients: dict[Detour | None, Any] = {None: http_client}
        token_endpoints: dict[Detour | None, TokenEndpoint] = {}
        detour_of: dict[str, Detour | None] = {}
        members: dict[str, PoolMember] = {}
        recorders: dict[str, UsageSaverService] = {}
        for credential_config in config.default_credentials():
            detour = credential_config.detour
            if detour is not None and detour.kind == "direct":
                detour = None
            if detour not in clients:
                client, pool = make_client(reactor, detour)
                clients[detour] = client
                self._detour_pools.append(pool)
            if detour not in token_endpoints:
                token_endpoints[detour] = TokenEndpoint(
                    clients[detour], reactor, config.oauth_token_url
                )
            store = credential_store_for(
                credential_config.credential_path,
                environ,
                home,
                platform,
                keyring_backend,
                run_in_thread=lambda work: deferToThreadPool(
                    reactor, reactor.getThreadPool(), work
                ),
            )
            credential = Credential(
                credential_config.tag, store, token_endpoints[detour].refresh, reactor
            )
            detour_of[credential.tag] = detour
            if credential_config.usages_path:
                # Added first, so that it stops last and its final save sees
                # every request the other services let finish.
                recorders[credential.tag] = _usage_saver(
                    credential_config.usages_path, reactor, self
                )
            members[credential.tag] = PoolMember(
                credential, credential_config.cap_5h, credential_config.cap_weekly
            )
        self.credentials = [m.credential for m in members.values()]
        log_startup(self.log, config, [(c.tag, c.store.path) for c in self.credentials])
        for credential in self.credentials:
            if not isinstance(credential.store, CredentialFile):
                continue  # The keychain is not watched, as in sing-box.
            FileWatcher(
                credential.store.path,
                credential.reload,
                clock=reactor,
                reactor=reactor if watch_with_inotify else None,
            ).setServiceParent(self)
        TokenRefreshService(self.credentials, reactor).setServiceParent(self)
        pools: dict[str, Pool] = {
            tag: SingleCredentialPool(member, reactor) for tag, member in members.items()
        }
        poll_interval = DEFAULT_POLL_INTERVAL_SECONDS
        for pool_config in config.credentials:
            if isinstance(pool_config, BalancerCredentialConfig):
                pools[pool_config.tag] = BalancerPool(
                    pool_config.tag,
                    [members[tag] for tag in pool_config.credentials],
                    pool_config.strategy,
                    reactor,
                    rebalance_threshold=pool_config.rebalance_threshold,
                )
                poll_interval = min(poll_interval, pool_config.poll_interval)
        for detour, client in clients.items():
            polled = [c for c in self.credentials if detour_of[c.tag] == detour]
            if polled or detour is None:
                UsagePoller(
                    polled, client, reactor, config.upstream_url, poll_interval
                ).setServiceParent(self)
        self._members = members
        self.pools = pools
        self._default_pool = pools[config.credentials[0].tag] if config.credentials else pools["default"]
        self._user_pools = self._pools_of_users(config)
        authenticator = Authenticator(config.users)
        self._authenticator = authenticator

        proxy = ProxyResource(
            authenticator=authenticator,
            pool_for=self.pool_for,
            http_client=http_client,
            clock=reactor,
            upstream_url=config.upstream_url,
            extra_headers=config.headers,
            max_request_body=config.max_request_body,
            usage_for=lambda credential: recorders.get(credential.tag),
            http_client_for=lambda credential: clients[detour_of[credential.tag]],
        )
        self.proxy = proxy
        self.site = CcmSite(
            build_root(proxy, StatusResource(authenticator, self.pool_for)),
            config.max_request_body,
            reactor=reactor,
            connection_limits=config.connection_limits,
        )
        self.listeners = []
        for listener in config.listeners:
            listening = ListeningService(endpoint_for(reactor, listener), self.site)
            listening.setServiceParent(self)
            self.listeners.append(listening)
        self._warn_if_open()

    def _warn_if_open(self) -> None:
        if self._authenticator.anonymous and not all(
            _is_loopback(l) for l in self.config.listeners
        ):
            self.log.warn(
                "no users are configured and ccm listens beyond this machine: "
                "anyone who can reach it can use the subscription; add users "
                "with tokens"
            )

    def _pools_of_users(self, config: ServiceConfig) -> dict[str, Pool]:
        """
        The pool serving each user: the one its C{credential} names, or the
        only one without a credentials list.
        """
        return {
            user.name: self.pools[user.credential] if config.credentials else self._default_pool
            for user in config.users
        }

    def pool_for(self, caller: Caller) -> Pool:
        """
        The pool that serves C{caller}.
        """
        if caller.user is None:
            return self._default_pool
        return self._user_pools[caller.user.name]

    def reconfigure(self, config: ServiceConfig) -> None:
        """
        Run with C{config} from now on, for what can change in place (see
        L{ccm.reload}, which also decides what C{config} holds): users and
        the pools they use, headers and the body limit, the credentials'
        pause thresholds, the balancers' members and strategies, the
        connection bounds of new connections, and the shutdown grace.
        Requests in progress keep what they started with.

        :param config: this service's configuration with only in-place
            changes: the same credentials, files, listeners and URLs.
        """
        for credential_config in config.credentials:
            if isinstance(credential_config, DefaultCredentialConfig):
                member = self._members[credential_config.tag]
                member.cap_5h = credential_config.cap_5h
                member.cap_weekly = credential_config.cap_weekly
            elif isinstance(credential_config, BalancerCredentialConfig):
                balancer = self.pools[credential_config.tag]
                assert isinstance(balancer, BalancerPool)
                balancer.reconfigure(
                    [self._members[tag] for tag in credential_config.credentials],
                    credential_config.strategy,
                    credential_config.rebalance_threshold,
                )
        was_anonymous = self._authenticator.anonymous
        self._user_pools = self._pools_of_users(config)
        self._authenticator.set_users(config.users)
        self.proxy.reconfigure(
            extra_headers=config.headers, max_request_body=config.max_request_body
        )
        self.site.max_request_body = config.max_request_body
        self.site.connection_limits = config.connection_limits
        self.config = config
        if not was_anonymous:
            self._warn_if_open()

    def privilegedStartService(self) -> None:
        # twistd binds here, before dropping privileges.
        self._load_credentials()
        self._bind(super().privilegedStartService)

    def startService(self) -> None:
        # The twist runner skips privilegedStartService and binds here.
        self._load_credentials()
        self._bind(super().startService)

    def _load_credentials(self) -> None:
        if not self._credentials_loaded:
            self._credentials_loaded = True
            for credential in self.credentials:
                credential.reload()

    def _bind(self, start: Callable[[], None]) -> None:
        try:
            start()
        except CannotListenError as error:
            for listening in self.listeners:
                listening.abandon()
            reason = error.socketError
            detail = getattr(reason, "strerror", None) or str(reason)
            raise SystemExit(
                f"ccm: cannot listen on {error.interface or '*'}:{error.port}: {detail}"
            ) from None

    def stopService(self) -> Deferred[Any]:
        """
        Stop in order: stop listening, give the requests in progress up to
        C{shutdown_grace} to finish, then stop the background services (the
        usage savers save what those requests used) and close upstream
        connections.
        """
        Service.stopService(self)
        background = [child for child in reversed(list(self)) if child not in self.listeners]
        stopped = _stop_all(self.listeners)
        stopped.addCallback(lambda _: self.proxy.drain(self.config.shutdown_grace))
        stopped.addCallback(lambda _: _stop_all(background))
        stopped.addBoth(lambda _: self._close_connections())
        return stopped

    def end_requests_now(self) -> int:
        """
        End the requests in progress now (a second stop signal), so that a
        shutdown's wait for them is over; see L{ProxyResource.cut}.

        :return: how many were ended.
        """
        return self.proxy.cut()

    def _close_connections(self) -> Deferred[Any]:
        closing = [self._close_http()] + [
            pool.closeCachedConnections() for pool in self._detour_pools
        ]
        return DeferredList([d for d in closing if isinstance(d, Deferred)], consumeErrors=True)
