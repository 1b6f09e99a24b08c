"""
ccm's side of the simulation: real credentials, pool members and balancer
pools, and the request loop of :obj:`ccm.proxy.exchange.Exchange`.

What is ccm's own code here: :obj:`ccm.credentials.credential.Credential`
(over an in-memory store, tokens that never expire and a refresh that is
never called), its :obj:`ccm.pool.windows.MemoryWindowState` fed the
simulated upstream's headers, :obj:`ccm.pool.member.PoolMember` with its
pause thresholds, :obj:`ccm.pool.select.BalancerPool` with its session and
affinity tables, and the share gate of :obj:`ccm.shares.gate` (see
:obj:`bench.simulator.shares`).  What is copied: :func:`forward` repeats the
steps of the exchange (``_attempt``, ``_retry_after_429``, ``_got_response``,
``_log``) that decide which credential serves, what a 429 does and what the
shares are told, without HTTP.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.web.http_headers import Headers

from ccm.accounting.counters import UsageRecord
from ccm.credentials.credential import Credential
from ccm.credentials.file import OAuthTokens
from ccm.credentials.oauth import TokenGrant
from ccm.pool.affinity import Call
from ccm.pool.member import PoolMember
from ccm.pool.select import BalancerPool
from ccm.shares.gate import NO_SHARES, ShareGate
from ccm.web.auth import ANONYMOUS, Caller
from ccm.web.errors import APIError

#: The plans of the simulator, as credentials files name them.
PLANS = {
    "pro": ("pro", "default_claude_pro"),
    "max5": ("max", "default_claude_max_5x"),
    "max20": ("max", "default_claude_max_20x"),
}


class MemoryStore:
    """
    A credential store holding tokens in memory (a
    :obj:`ccm.credentials.store.CredentialStore`).
    """

    def __init__(self, tag: str, tokens: OAuthTokens) -> None:
        self.path = f"<simulated {tag}>"
        self._tokens = tokens

    def read(self) -> OAuthTokens:
        """
        The tokens.
        """
        return self._tokens

    def catch_up(self) -> Deferred[None]:
        """
        Nothing else writes here.
        """
        return succeed(None)

    def check_writable(self) -> None:
        """
        Always writable.
        """

    def write_tokens(self, tokens: OAuthTokens) -> None:
        """
        Keep refreshed tokens (never happens: they never expire).
        """
        self._tokens = tokens


def _no_refresh(refresh_token: str) -> Deferred[TokenGrant]:
    raise AssertionError("the simulated tokens never expire")


def credential(tag: str, plan: str, clock: IReactorTime) -> Credential:
    """
    A loaded credential ``tag`` on ``plan`` (a key of :obj:`PLANS`).
    """
    subscription, tier = PLANS[plan]
    tokens = OAuthTokens(
        access_token=f"sk-ant-oat01-sim-{tag}",
        refresh_token=f"sk-ant-ort01-sim-{tag}",
        expires_at_ms=0,
        subscription_type=subscription,
        rate_limit_tier=tier,
    )
    result = Credential(tag, MemoryStore(tag, tokens), _no_refresh, clock)
    result.reload()
    return result


def pool(
    strategy: str,
    members: list[PoolMember],
    clock: IReactorTime,
    rng: random.Random,
    rebalance_threshold: float,
) -> BalancerPool:
    """
    ccm's balancer over ``members``, as ccm.build makes it.
    """
    return BalancerPool("sim", members, strategy, clock, rng=rng, rebalance_threshold=rebalance_threshold)


@dataclass(frozen=True)
class Outcome:
    """
    What became of one request: the credential that served it (empty when
    refused), the status the client saw, how many upstream 429s ccm
    absorbed on the way, and whether a share refused it.
    """

    tag: str
    status: int
    absorbed: int
    by_share: bool = False


Upstream = Callable[[str, float], tuple[int, Headers]]


def forward(
    balancer: BalancerPool,
    call: Call,
    cost: float,
    upstream: Upstream,
    now: float,
    caller: Caller = ANONYMOUS,
    shares: ShareGate = NO_SHARES,
    usage: UsageRecord | None = None,
) -> Outcome:
    """
    Serve ``call`` as the exchange does: ask the shares, place it, send it,
    and after a 429 read the rejection and try another credential not tried
    yet; when none is left, the client gets ccm's 429 (or, for a 429 that
    set no limit, the upstream's).  An answer is told to ``shares`` once its
    headers are observed, and its end with ``usage`` (the request takes no
    simulated time, so it ends as it starts).

    :param upstream: answers (tag, cost) with a status and headers.
    """
    tried: list[str] = []
    absorbed = 0
    chosen: Credential | None = None
    while True:
        try:
            # The exchange asks the shares before each attempt.
            shares.check(caller, balancer)
        except APIError as error:
            return Outcome("", error.status, absorbed, by_share=True)
        if chosen is None:
            try:
                chosen = balancer.place(call, exclude=tried)
            except APIError as error:
                return Outcome("", error.status, absorbed)
        status, headers = upstream(chosen.tag, cost)
        if status == 429:
            limited_until = chosen.rate_limits.observe_rejection(headers, now)
            tried.append(chosen.tag)
            try:
                # As the exchange: the pool is asked once for the retry's
                # credential, and that answer is the one used.
                chosen = balancer.place(call, exclude=tried)
            except APIError as error:
                return Outcome("", 429 if limited_until is None else error.status, absorbed)
            absorbed += 1
            continue
        balancer.served(call, chosen.tag, status, headers)
        chosen.rate_limits.observe_success(headers, now)
        keys = [shares.started(caller, chosen)]
        shares.ended(keys, usage)
        return Outcome(chosen.tag, status, absorbed)
