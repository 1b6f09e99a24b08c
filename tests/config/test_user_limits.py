"""
Tests for the per-user limits of the ``users`` entries (``max_concurrent``,
``requests_per_minute``): their defaults, their bounds with JSON paths, and
their reload in place.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.changes import plan_reload
from ccm.config.load import parse_config
from tests.config.parsing import ProblemsTestMixin, service_of

TOKEN = "ak-limits-alice-secret"


def with_alice(**limits: object) -> dict[str, object]:
    """
    A bare service document with one user, alice, having ``limits``.
    """
    return {"users": [{"name": "alice", "token": TOKEN, **limits}]}


class UserLimitsConfigTests(SynchronousTestCase, ProblemsTestMixin):
    """
    Both limits are optional positive whole numbers; bad values fail
    start-up naming their path.
    """

    def test_unlimited_by_default(self) -> None:
        """
        A user without the keys (or with ``null``) has no limit (0).
        """
        for document in (with_alice(), with_alice(max_concurrent=None, requests_per_minute=None)):
            [user] = service_of(document).users
            self.assertEqual((user.max_concurrent, user.requests_per_minute), (0, 0))

    def test_values(self) -> None:
        """
        Values within the bounds are kept.
        """
        [user] = service_of(with_alice(max_concurrent=4, requests_per_minute=30)).users
        self.assertEqual((user.max_concurrent, user.requests_per_minute), (4, 30))
        [user] = service_of(with_alice(max_concurrent=1000, requests_per_minute=100000)).users
        self.assertEqual((user.max_concurrent, user.requests_per_minute), (1000, 100000))

    def test_bounds(self) -> None:
        """
        Zero, negative and too large values are refused, one line each.
        """
        self.assert_problems(
            with_alice(max_concurrent=0, requests_per_minute=100001),
            [
                "config.json: users[0].max_concurrent: must be between 1 and 1000, got 0",
                "config.json: users[0].requests_per_minute: must be between 1 and 100000, "
                "got 100001",
            ],
        )
        self.assert_problem(
            with_alice(requests_per_minute=-5),
            "config.json: users[0].requests_per_minute: must be between 1 and 100000, got -5",
        )

    def test_types(self) -> None:
        """
        Strings, fractions and booleans are refused as not whole numbers.
        """
        self.assert_problems(
            with_alice(max_concurrent="4", requests_per_minute=2.5),
            [
                "config.json: users[0].max_concurrent: must be a whole number, got a string",
                "config.json: users[0].requests_per_minute: must be a whole number, got 2.5",
            ],
        )
        self.assert_problem(
            with_alice(max_concurrent=True),
            "config.json: users[0].max_concurrent: must be a whole number, got a boolean",
        )

    def test_reload_applies(self) -> None:
        """
        A changed limit applies in place, named as a change of the user.
        """
        running = parse_config(with_alice(max_concurrent=4), source="config.json")
        loaded = parse_config(with_alice(max_concurrent=2, requests_per_minute=10), source="config.json")
        plan = plan_reload(running.services, loaded)
        self.assertEqual(plan.restart, ())
        [(index, service)] = plan.services
        [user] = service.users
        self.assertEqual((user.max_concurrent, user.requests_per_minute), (2, 10))
        self.assertEqual(plan.applied, ("users (changed alice)",))
