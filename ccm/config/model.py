# -*- test-case-name: tests.config.test_model -*-
"""
The configuration model: frozen, typed objects describing one or more ccm
services.  :obj:`ccm.config.load` builds them from JSON and validates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ccm.config.state import StateConfig

DEFAULT_UPSTREAM_URL = "https://api.anthropic.com"
DEFAULT_OAUTH_TOKEN_URL = "https://platform.claude.com/v1/oauth/token"
DEFAULT_MAX_REQUEST_BODY_BYTES = 64 * 1024 * 1024
# How long a shutdown waits for requests in progress (a stream can run for
# minutes; systemd's default stop timeout is 90 s).
DEFAULT_SHUTDOWN_GRACE_SECONDS = 30.0
DEFAULT_POLL_INTERVAL_SECONDS = 60.0
# Connection bounds (docs/configuration.md#connections explains each).
DEFAULT_REQUEST_HEAD_TIMEOUT_SECONDS = 30.0
DEFAULT_REQUEST_BODY_MIN_RATE_BYTES = 1024
DEFAULT_REQUEST_BODY_GRACE_SECONDS = 30.0
DEFAULT_KEEP_ALIVE_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256
DEFAULT_MAX_REQUEST_HEAD_BYTES = 32 * 1024
DEFAULT_LISTEN_ADDRESS = "127.0.0.1"
DEFAULT_LISTEN_PORT = 8080
DEFAULT_ENDPOINT = f"tcp:{DEFAULT_LISTEN_PORT}:interface={DEFAULT_LISTEN_ADDRESS}"
#: The one ALPN protocol ccm serves; a ``tls.alpn`` list must include it.
SERVED_ALPN_PROTOCOL = "http/1.1"

STRATEGIES = ("least_used", "round_robin", "random", "fallback")
# A default credential's ``extra_usage``: whether it may serve from paid
# extra usage beyond its plan (docs/configuration.md#extra-usage).
EXTRA_USAGE_NEVER = "never"
EXTRA_USAGE_ALLOW = "allow"
EXTRA_USAGE_VALUES = (EXTRA_USAGE_NEVER, EXTRA_USAGE_ALLOW)


class ConfigError(Exception):
    """
    The configuration cannot be used; ``problems`` holds one line per problem.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Detour:
    """
    How to reach the upstream: directly, or through an HTTP CONNECT or SOCKS5
    proxy.
    """

    kind: str  # "direct", "http" or "socks5"
    host: str = ""
    port: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    name: str = ""  # the outbound tag or a password-free URL, for messages

    def __str__(self) -> str:
        return self.name or self.kind


@dataclass(frozen=True)
class TLSConfig:
    """
    The sing-box inbound ``tls`` object, reduced to what ccm serves: a
    certificate chain and its key, from files or inline PEM text.
    """

    certificate_path: str = ""
    key_path: str = ""
    certificate_pem: str = ""
    key_pem: str = field(default="", repr=False)
    min_version: str = ""
    max_version: str = ""
    #: Empty, or a list holding :obj:`SERVED_ALPN_PROTOCOL`.
    alpn: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndpointListener:
    """
    A Twisted server endpoint string such as ``tcp:8080:interface=127.0.0.1``.
    """

    description: str


@dataclass(frozen=True)
class AddressListener:
    """
    The sing-box listen fields: an address, a port and optional TLS.
    """

    address: str
    port: int
    tls: TLSConfig | None = None


Listener = Union[EndpointListener, AddressListener]


@dataclass(frozen=True)
class UserConfig:
    """
    A person allowed to use the service with ``token``.
    """

    name: str
    token: str = field(repr=False)
    credential: str = ""
    #: May use ccm's operator pages (the dashboard, its actions, metrics).
    admin: bool = False
    #: The most generations in flight at once; 0 for no limit.
    max_concurrent: int = 0
    #: The most generations started in any 60 seconds; 0 for no limit.
    requests_per_minute: int = 0
    #: The percent of the pool's 5-hour and weekly window capacity this
    #: user may use (:obj:`ccm.shares`); 0 is no cap.
    share_5h: float = 0.0
    share_weekly: float = 0.0
    #: Whether the unified 5h/7d headers of this user's successes describe
    #: their share instead of the account (only with a share).
    per_user_headers: bool = True


@dataclass(frozen=True)
class DefaultCredentialConfig:
    """
    One subscription: a Claude Code OAuth credentials file.
    """

    tag: str
    credential_path: str = ""
    usages_path: str = ""
    detour: Detour | None = None
    reserve_5h: int = 0
    reserve_weekly: int = 0
    limit_5h: int = 0
    limit_weekly: int = 0
    extra_usage: str = EXTRA_USAGE_NEVER

    @property
    def allows_extra_usage(self) -> bool:
        """
        Whether this credential may serve from paid extra usage.
        """
        return self.extra_usage == EXTRA_USAGE_ALLOW

    @property
    def _margin(self) -> int:
        """
        The reserve a credential keeps when none is set: 1% before the
        plan's end, where the upstream would refuse, except when extra usage
        is allowed to serve on past it.
        """
        return 0 if self.allows_extra_usage else 1

    @property
    def cap_5h(self) -> int:
        """
        The 5-hour utilization, in percent, at which this credential pauses.
        """
        if self.limit_5h > 0:
            return self.limit_5h
        return 100 - max(self.reserve_5h, self._margin)

    @property
    def cap_weekly(self) -> int:
        """
        The weekly utilization, in percent, at which this credential pauses.
        """
        if self.limit_weekly > 0:
            return self.limit_weekly
        return 100 - max(self.reserve_weekly, self._margin)


@dataclass(frozen=True)
class BalancerCredentialConfig:
    """
    A pool of default credentials and the strategy that spreads sessions over
    them (the sing-box ``fallback`` type is a balancer with the ``fallback``
    strategy).
    """

    tag: str
    credentials: tuple[str, ...]
    strategy: str = "least_used"
    poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS
    rebalance_threshold: float = 0.0


CredentialConfig = Union[DefaultCredentialConfig, BalancerCredentialConfig]


@dataclass(frozen=True)
class ConnectionLimits:
    """
    How long and how many connections a service keeps: the bounds that
    stop slow or greedy clients from holding descriptors.  Zero turns a
    bound off, except for ``keep_alive_timeout`` and ``max_request_head``,
    which the configuration keeps positive.

    :ivar request_head_timeout: seconds for a request's line and headers
        to arrive, counted from the connection or from the first byte
        after a kept-alive connection's idle time.
    :ivar request_body_min_rate: bytes per second a body must average
        after ``request_body_grace``.
    :ivar request_body_grace: seconds a body gets before its rate counts.
    :ivar keep_alive_timeout: seconds an idle kept-alive connection stays
        open after its last response.
    :ivar max_connections: open connections of the service.
    :ivar max_connections_per_address: open connections from one IPv4
        address or one IPv6 /64.
    :ivar max_request_head: bytes of request line and headers.
    """

    request_head_timeout: float = DEFAULT_REQUEST_HEAD_TIMEOUT_SECONDS
    request_body_min_rate: int = DEFAULT_REQUEST_BODY_MIN_RATE_BYTES
    request_body_grace: float = DEFAULT_REQUEST_BODY_GRACE_SECONDS
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    max_request_head: int = DEFAULT_MAX_REQUEST_HEAD_BYTES


@dataclass(frozen=True)
class ServiceConfig:
    """
    One ccm service: where it listens, whom it serves and with what.
    """

    where: str
    tag: str = ""
    listeners: tuple[Listener, ...] = (EndpointListener(DEFAULT_ENDPOINT),)
    credential_path: str = ""
    usages_path: str = ""
    detour: Detour | None = None
    credentials: tuple[CredentialConfig, ...] = ()
    users: tuple[UserConfig, ...] = ()
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    upstream_url: str = DEFAULT_UPSTREAM_URL
    oauth_token_url: str = DEFAULT_OAUTH_TOKEN_URL
    max_request_body: int = DEFAULT_MAX_REQUEST_BODY_BYTES
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE_SECONDS
    connection_limits: ConnectionLimits = ConnectionLimits()
    #: Where the metrics are served without authentication (``metrics_listen``).
    metrics_listen: tuple[EndpointListener, ...] = ()
    #: Where several ccm processes share their state (``state``); None
    #: keeps it all in this process.
    state: StateConfig | None = None

    @property
    def multi_credential(self) -> bool:
        """
        Whether the ``credentials`` list is in use.
        """
        return bool(self.credentials)

    def default_credentials(self) -> tuple[DefaultCredentialConfig, ...]:
        """
        The subscriptions this service holds: the ``credentials`` entries of
        the default type, or the single legacy credential tagged ``default``.
        """
        if not self.credentials:
            return (
                DefaultCredentialConfig(
                    tag="default",
                    credential_path=self.credential_path,
                    usages_path=self.usages_path,
                    detour=self.detour,
                ),
            )
        return tuple(
            c for c in self.credentials if isinstance(c, DefaultCredentialConfig)
        )


@dataclass(frozen=True)
class Config:
    """
    Everything ccm serves, and the warnings found while reading it.
    """

    source: str
    services: tuple[ServiceConfig, ...]
    warnings: tuple[str, ...] = ()


def default_config() -> Config:
    """
    The configuration used without ``--config``: one service on loopback port
    8080 with the default credential file, no users and no usage file.
    """
    return Config(source="(defaults)", services=(ServiceConfig(where=""),))
