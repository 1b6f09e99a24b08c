"""
The shares of a simulated team, kept and enforced by ccm's own share code.

With shares, every user is a :obj:`ccm.config.model.UserConfig` with a
``share_5h`` and a ``share_weekly``, calling as the
:obj:`ccm.web.auth.Caller` ccm's authenticator would make of them, and the
gate is :obj:`ccm.shares.gate.ShareKeeper` over a fresh
:obj:`ccm.shares.ledger.ShareBook` on the simulation's clock, as
``ccm.build`` makes it (without the share file, which only carries the
book across restarts).  Without shares the gate is ccm's own
:obj:`ccm.shares.gate.NO_SHARES`.  :func:`bench.simulator.ccmside.forward`
calls the gate where the exchange does.

The default scenario gives every user the same share of both windows, twice
a fair part: ``2 * 100 / users`` percent (20 % for ten users), so the shares
add up to twice the pool and a user alone may still use a fifth of it.

A request's cost (the simulator's cost units) reaches ``ended`` as a
:obj:`ccm.accounting.counters.UsageRecord` of :data:`MODEL` output tokens,
:data:`TOKENS_PER_UNIT` per cost unit, so ccm prices it at list price as it
does any answer; only the ratios of costs matter to the book.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from ccm.accounting.counters import UsageRecord
from ccm.accounting.tokens import TokenCounts
from ccm.config.model import UserConfig
from ccm.shares.gate import NO_SHARES, ShareGate, ShareKeeper
from ccm.shares.ledger import ShareBook
from ccm.web.auth import Caller

#: How many times the pool the equal shares of the default scenario add up to.
DEFAULT_OVERBOOK = 2.0
#: The model whose list price turns a request's tokens into dollars.
MODEL = "claude-sonnet-4-5"
#: Output tokens per cost unit (a Pro 5-hour window is 15 units).
TOKENS_PER_UNIT = 1_000_000


def equal_share(users: int, overbook: float = DEFAULT_OVERBOOK) -> float:
    """
    The share, percent, that gives ``users`` equal shares adding up to
    ``overbook`` times the pool (at most 100).
    """
    return min(100.0, overbook * 100.0 / users)


def callers(users: list[str], share_5h: float, share_weekly: float) -> dict[str, Caller]:
    """
    Each user as ccm sees them: a configured user with these shares (0: no
    share in that window).
    """
    return {
        name: Caller(
            UserConfig(name, f"ak-ccm-sim-{name}", share_5h=share_5h, share_weekly=share_weekly)
        )
        for name in users
    }


def gate(with_shares: bool, clock: IReactorTime) -> ShareGate:
    """
    The run's share gate: ccm's keeper over a new book, or no shares.
    """
    return ShareKeeper(ShareBook(), clock) if with_shares else NO_SHARES


def usage(user: str, cost: float) -> UsageRecord:
    """
    What a served request of ``cost`` units used, as the proxy records it.
    """
    tokens = TokenCounts(output_tokens=round(cost * TOKENS_PER_UNIT))
    return UsageRecord(MODEL, 200_000, 0, user, tokens, 1)
