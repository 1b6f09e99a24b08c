# -*- test-case-name: tests.test_pools -*-
"""
Which subscription serves a caller.

A pool chooses, for each request, the credential that serves it.  With one
subscription (the legacy single-credential mode) the pool holds just that
credential; multi-credential pools build on the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccm.credentials import Credential
from ccm.errors import APIError


@dataclass(frozen=True)
class PoolMember:
    """
    A credential in a pool, with the utilization caps (percent) at which it
    pauses.
    """

    credential: Credential
    cap_5h: float = 99.0
    cap_weekly: float = 99.0


class SingleCredentialPool:
    """
    A pool of one credential: it serves whenever that credential can.
    """

    def __init__(self, member: PoolMember) -> None:
        self.member = member

    @property
    def members(self) -> tuple[PoolMember, ...]:
        """
        The credentials of this pool.
        """
        return (self.member,)

    def select(self, session_id: str) -> Credential:
        """
        The credential to serve a request of session C{session_id}.

        :raises APIError: 503 when the credential cannot serve.
        """
        credential = self.member.credential
        reason = credential.unavailable_reason
        if reason is not None:
            raise credential.unavailable_error(reason)
        return credential

    def status(self) -> dict[str, float]:
        """
        The caller's view of the pool: utilization of each window relative
        to the caps, averaged by plan weight over the credentials that can
        serve, and the total plan weight.
        """
        return pool_status(self.members)


def pool_status(members: tuple[PoolMember, ...]) -> dict[str, float]:
    """
    Combine the members' windows as the reference's status endpoint does:
    each member contributes its remaining headroom below its caps, weighted
    by its plan weight; a pool with nothing to serve reports 100% used.
    """
    total_weight = 0.0
    remaining_5h = 0.0
    remaining_weekly = 0.0
    for member in members:
        credential = member.credential
        if credential.tokens is None or credential.problem is not None:
            continue
        weight = credential.plan_weight
        limits = credential.rate_limits
        remaining_5h += max(0.0, member.cap_5h - limits.five_hour.utilization) * weight
        remaining_weekly += max(0.0, member.cap_weekly - limits.weekly.utilization) * weight
        total_weight += weight
    if total_weight == 0:
        return {"five_hour_utilization": 100.0, "weekly_utilization": 100.0, "plan_weight": 0.0}
    return {
        "five_hour_utilization": 100.0 - remaining_5h / total_weight,
        "weekly_utilization": 100.0 - remaining_weekly / total_weight,
        "plan_weight": total_weight,
    }


NO_POOL = APIError(500, "api_error", "no credential is configured for this user")
