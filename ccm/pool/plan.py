# -*- test-case-name: tests.pool.test_plan -*-
"""
A subscription's plan, as the OAuth profile reports it, and the capacity
it weighs relative to Pro when pools compare credentials.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """
    A subscription's plan as the OAuth profile reports it: its type
    (``max``, ``pro``, ...) and rate-limit tier, empty when unknown.
    """

    subscription_type: str = ""
    rate_limit_tier: str = ""


def plan_weight(subscription_type: str, rate_limit_tier: str) -> float:
    """
    How much capacity a plan has relative to Pro: Max 20x is 10, Max 5x 5,
    Team with the 5x tier 5, everything else 1.
    """
    if subscription_type == "max":
        return 10.0 if rate_limit_tier == "default_claude_max_20x" else 5.0
    if subscription_type == "team" and rate_limit_tier == "default_claude_max_5x":
        return 5.0
    return 1.0
