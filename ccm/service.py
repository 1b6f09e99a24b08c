# -*- test-case-name: tests.test_service -*-
"""
One running ccm service: the order in which its parts start and stop, and
what a reload changes in place.  :obj:`ccm.build.build_service` makes the
parts and hands them over.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from ccm.config.exposure import exposure_warnings
from ccm.config.model import BalancerCredentialConfig, DefaultCredentialConfig, ServiceConfig
from ccm.credentials.credential import Credential
from ccm.metrics.registry import ServiceMetrics
from ccm.pool.select import BalancerPool, PoolMember
from ccm.pool.select import Pool
from ccm.proxy.resource import ProxyResource
from ccm.pool.users import UserPools
from ccm.web.auth import Authenticator
from ccm.web.listening import ListeningService
from ccm.web.site import CcmSite
from ccm.web.watch import StatusWatches

#: How long a shutdown waits for client connections to send what they
#: hold and close, before it aborts those whose clients do not read.
CLIENT_CLOSE_TIMEOUT_SECONDS = 2.0


def _stop_all(services: Iterable[IService]) -> Deferred[Any]:
    """
    Stop ``services`` together, as :obj:`MultiService` stops its children.
    """
    return DeferredList([maybeDeferred(s.stopService) for s in services], consumeErrors=True)


class CcmService(MultiService):
    """
    A running ccm service.

    :param credentials: its credentials, loaded when it starts.
    :param members: each credential's place in the pools, by tag.
    :param user_pools: the pool of each caller.
    :param authenticator: who may call.
    :param site: the site, whose client connections are closed after the
        drain.
    :param watches: the open status watches, ended before the drain.
    :param metrics: its metrics.
    :param background: the services that work behind the requests (usage
        savers, file watchers, the token refresher, usage pollers), started
        in this order and stopped in the reverse one, after the drain.
    :param listeners: where it listens, stopped first.
    :param close_upstream: close the upstream connection pools, last.
    """

    log = Logger()

    def __init__(
        self,
        config: ServiceConfig,
        *,
        credentials: Sequence[Credential],
        members: Mapping[str, PoolMember],
        user_pools: UserPools,
        authenticator: Authenticator,
        proxy: ProxyResource,
        site: CcmSite,
        watches: StatusWatches | None = None,
        metrics: ServiceMetrics | None = None,
        background: Sequence[IService],
        listeners: Sequence[ListeningService],
        close_upstream: Sequence[Callable[[], object]],
    ) -> None:
        super().__init__()
        self.config = config
        self.credentials = list(credentials)
        self._members = members
        self.user_pools = user_pools
        self._authenticator = authenticator
        self.proxy = proxy
        self.site = site
        self.watches = watches
        self.metrics = metrics
        self.listeners = list(listeners)
        self._close_upstream = close_upstream
        self._credentials_loaded = False
        for child in (*background, *listeners):
            child.setServiceParent(self)

    @property
    def pools(self) -> Mapping[str, Pool]:
        """
        Every pool of the service, by tag.
        """
        return self.user_pools.pools

    def warn_of_exposure(self) -> None:
        """
        Log, at start-up, each warning of what the configuration leaves
        open beyond this machine (:obj:`ccm.config.exposure`), the ones
        ``ccm check`` prints.
        """
        self._warn(exposure_warnings(self.config))

    def _warn(self, warnings: Iterable[str]) -> None:
        for warning in warnings:
            # Not "warning=": that key marks Python warnings for legacy observers.
            self.log.warn("{problem}", problem=warning)

    def reconfigure(self, config: ServiceConfig) -> None:
        """
        Run with ``config`` from now on, for what can change in place (see
        :obj:`ccm.reload`, which also decides what ``config`` holds): users and
        the pools they use, headers and the body limit, the credentials'
        pause thresholds and extra usage, the balancers' members and
        strategies, the connection bounds of new connections, and the
        shutdown grace.
        Requests in progress keep what they started with.

        :param config: this service's configuration with only in-place
            changes: the same credentials, files, listeners and URLs.
        """
        for credential_config in config.credentials:
            if isinstance(credential_config, DefaultCredentialConfig):
                member = self._members[credential_config.tag]
                member.cap_5h = credential_config.cap_5h
                member.cap_weekly = credential_config.cap_weekly
                member.allow_extra_usage = credential_config.allows_extra_usage
            elif isinstance(credential_config, BalancerCredentialConfig):
                balancer = self.pools[credential_config.tag]
                assert isinstance(balancer, BalancerPool)
                balancer.reconfigure(
                    [self._members[tag] for tag in credential_config.credentials],
                    credential_config.strategy,
                    credential_config.rebalance_threshold,
                )
        warned = set(exposure_warnings(self.config))
        self.user_pools.set_users(config.users)
        self._authenticator.set_users(config.users)
        self.proxy.limits.set_users(config.users)
        self.proxy.reconfigure(
            extra_headers=config.headers, max_request_body=config.max_request_body
        )
        self.site.max_request_body = config.max_request_body
        self.site.connection_limits = config.connection_limits
        self.config = config
        if self.watches is not None:
            # Their answers may differ now, and their users may be gone.
            self.watches.changed()
        # A reload that removes the last user, or adds the first admin, opens
        # something start-up did not warn of; what it did warn of is not
        # said again.
        self._warn(warning for warning in exposure_warnings(config) if warning not in warned)

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
        Stop in order:

          1. stop listening, so no connection comes in any more, and end
             the status watches (:obj:`StatusWatches.end_all`): they would
             never end by themselves, and are not worth waiting for;
          2. give the requests in progress up to ``shutdown_grace`` to
             finish, then end those still running (:obj:`ProxyResource.drain`):
             each one's last bytes are then written to its connection and
             its usage is recorded;
          3. close the client connections (:obj:`CcmSite.close_connections`):
             each sends what it still holds, then closes, within
             :obj:`CLIENT_CLOSE_TIMEOUT_SECONDS`.  Left to the reactor, which
             drops connections without sending what they hold when it
             stops, the end of the last responses could be lost;
          4. stop the background services in reverse order, the usage
             savers last: their final save writes what every request used;
          5. close the upstream connections.

        The clients' connections are closed after the drain, so that the
        ended requests' last bytes are written before the close flushes
        them, and before the usage savers stop, not while they do, so that
        whatever a closing connection still ends (a request the drain does
        not follow, one whose abort was pending) is over before their
        final save.  The upstream connections go last, when no request
        can use them.
        """
        Service.stopService(self)
        background = [child for child in reversed(list(self)) if child not in self.listeners]
        stopped = _stop_all(self.listeners)
        stopped.addCallback(lambda _: self._end_watches())
        stopped.addCallback(lambda _: self.proxy.drain(self.config.shutdown_grace))
        stopped.addCallback(lambda _: self.site.close_connections(CLIENT_CLOSE_TIMEOUT_SECONDS))
        # Neither fails, unless by a bug; the usage savers must save anyway.
        stopped.addErrback(
            lambda failure: self.log.failure("ending the client connections failed", failure)
        )
        stopped.addCallback(lambda _: _stop_all(background))
        stopped.addBoth(lambda _: self._close_all())
        return stopped

    def _end_watches(self) -> None:
        if self.watches is not None:
            ended = self.watches.end_all()
            if ended:
                self.log.info("ended {count} status watch(es)", count=ended)

    def end_requests_now(self) -> int:
        """
        End the requests in progress now (a second stop signal), so that a
        shutdown's wait for them is over; see :obj:`ProxyResource.cut`.

        :return: how many were ended.
        """
        return self.proxy.cut()

    def _close_all(self) -> Deferred[Any]:
        closing = [close() for close in self._close_upstream]
        return DeferredList([d for d in closing if isinstance(d, Deferred)], consumeErrors=True)
