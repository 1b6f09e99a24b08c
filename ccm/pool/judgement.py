# -*- test-case-name: tests.pool.test_judgement -*-
"""
What ccm's own calls to the account API (the usage poll, the profile) do
about an answer that judges the subscription: a token Anthropic rejects
makes the credential need a new login, a ban or a plan downgraded to no
paid plan quarantines it (see :obj:`ccm.credentials.standing`).  The
request path acts on the same verdicts in :obj:`ccm.proxy.rejections`.
"""

from __future__ import annotations

from ccm.credentials.credential import Credential
from ccm.upstream.verdicts import Reading, Verdict, plan_downgraded

# The answers that may be a verdict on the subscription.
JUDGED_STATUSES = frozenset({400, 401, 403})


def act_on_rejection(credential: Credential, reading: Reading, token: str = "") -> bool:
    """
    Act on an answer that rejects ``token`` (when given: the usage poll,
    after its recovery) or bans the subscription.

    :return: whether it did.
    """
    if token and reading.verdict is Verdict.TOKEN_REJECTED:
        credential.standing.reject_login(token, reading.describe())
        return True
    if reading.verdict.quarantines:
        credential.standing.enter_quarantine(reading.ban)
        return True
    return False


def act_on_profile(credential: Credential, plan: tuple[str, str] | None) -> bool:
    """
    Quarantine ``credential`` when the profile's ``plan`` (as
    :obj:`ccm.upstream.anthropic_api.parse_profile` reads it) is no paid
    plan where the credential had one, from its file or an earlier profile.

    :return: whether it did.
    """
    tokens = credential.tokens
    known = (tokens.subscription_type if tokens is not None else "") or (
        credential.rate_limits.plan.subscription_type
    )
    if not plan_downgraded(known, plan):
        return False
    reported = plan[0] if plan is not None and plan[0] else "no plan"
    credential.standing.enter_quarantine(
        f"its profile reports {reported} where it had a paid {known} plan "
        "(a downgrade, as before a ban)"
    )
    return True
