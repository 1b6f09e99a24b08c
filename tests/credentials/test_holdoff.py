"""
Tests for :obj:`ccm.credentials.holdoff`: how long failed refreshes, and the
token endpoint's 429s, hold the next refresh back.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ccm.credentials.oauth import RefreshError
from ccm.credentials.holdoff import (
    MAX_RETRY_AFTER_SECONDS,
    RATE_LIMIT_BACKOFF_MAX_SECONDS,
    REFRESH_RETRY_SECONDS,
    RefreshHoldoff,
    rate_limit_delay,
)


class RateLimitDelayTests(SynchronousTestCase):
    """
    :obj:`rate_limit_delay`: the wait after a 429.
    """

    def test_retry_after(self) -> None:
        """
        A ``Retry-After`` is waited for, within 0 and an hour.
        """
        self.assertEqual(rate_limit_delay(120.0, 1), 120.0)
        self.assertEqual(rate_limit_delay(120.0, 5), 120.0)
        self.assertEqual(rate_limit_delay(-5.0, 1), 0.0)
        self.assertEqual(rate_limit_delay(86400.0, 1), MAX_RETRY_AFTER_SECONDS)

    def test_without_retry_after(self) -> None:
        """
        Without one, the wait doubles from a minute with each 429 in a row,
        up to 30 minutes.
        """
        delays = [rate_limit_delay(None, times) for times in range(1, 8)]
        self.assertEqual(delays, [60.0, 120.0, 240.0, 480.0, 960.0, 1800.0, 1800.0])
        self.assertEqual(rate_limit_delay(None, 1000), RATE_LIMIT_BACKOFF_MAX_SECONDS)


class RefreshHoldoffTests(SynchronousTestCase):
    """
    :obj:`RefreshHoldoff` remembers failures on a clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.holdoff = RefreshHoldoff(self.clock)

    def test_nothing_failed(self) -> None:
        """
        At first nothing holds refreshes back or explains anything.
        """
        self.assertFalse(self.holdoff.holding())
        self.assertIsNone(self.holdoff.explains("r"))

    def test_failure_holds_thirty_seconds(self) -> None:
        """
        A failure holds the next refresh back for 30 seconds and explains
        why an expired token cannot be refreshed meanwhile.
        """
        self.holdoff.failed("token endpoint unreachable")
        self.assertTrue(self.holdoff.holding())
        self.assertEqual(self.holdoff.explains("r"), "token endpoint unreachable")
        self.clock.advance(REFRESH_RETRY_SECONDS)
        self.assertFalse(self.holdoff.holding())
        self.assertIsNone(self.holdoff.explains("r"))

    def test_rejected_token_always_explains(self) -> None:
        """
        A rejected refresh token stays explained after the 30 seconds; a
        different refresh token does not.
        """
        self.holdoff.failed("rejected")
        self.holdoff.rejected_refresh_token = "r"
        self.clock.advance(REFRESH_RETRY_SECONDS * 10)
        self.assertEqual(self.holdoff.explains("r"), "rejected")
        self.assertIsNone(self.holdoff.explains("other"))

    def test_rate_limited(self) -> None:
        """
        A 429 holds refreshes back for its delay, which grows with each 429
        in a row without a ``Retry-After``.
        """
        self.assertEqual(self.holdoff.rate_limited(None), 60.0)
        self.holdoff.failed("429")
        self.clock.advance(59)
        self.assertTrue(self.holdoff.holding())
        self.clock.advance(1)
        self.assertFalse(self.holdoff.holding())
        self.assertEqual(self.holdoff.rate_limited(None), 120.0)
        self.assertEqual(self.holdoff.rate_limited(300.0), 300.0)
        self.holdoff.failed("429")
        self.clock.advance(299)
        self.assertTrue(self.holdoff.holding())

    def test_clear(self) -> None:
        """
        Clearing (a success or new tokens) ends every wait and starts the
        429 count again.
        """
        self.holdoff.rate_limited(None)
        self.holdoff.rate_limited(None)
        self.holdoff.failed("429")
        self.holdoff.clear()
        self.assertFalse(self.holdoff.holding())
        self.assertIsNone(self.holdoff.problem)
        self.assertEqual(self.holdoff.rate_limited(None), 60.0)

    def test_refused_rate_limited(self) -> None:
        """
        A 429 refusal holds refreshes back for its delay and says how long.
        """
        error = RefreshError("token endpoint answered HTTP 429", rate_limited=True, retry_after=90)
        problem = self.holdoff.refused(error, "r")
        self.assertEqual(
            problem,
            "token refresh failed: token endpoint answered HTTP 429; "
            "ccm waits 1m30s before refreshing again",
        )
        self.holdoff.failed(problem)
        self.clock.advance(89)
        self.assertTrue(self.holdoff.holding())
        self.assertIsNone(self.holdoff.rejected_refresh_token)

    def test_refused_permanently(self) -> None:
        """
        A rejected refresh token is remembered, and the problem says to log
        in again.
        """
        problem = self.holdoff.refused(RefreshError("invalid_grant", permanent=True), "r")
        self.assertIn("log in again with `claude /login`", problem)
        self.assertEqual(self.holdoff.rejected_refresh_token, "r")

    def test_refused_for_now(self) -> None:
        """
        Any other refusal is retried, and remembers no token.
        """
        problem = self.holdoff.refused(RefreshError("token endpoint answered HTTP 502"), "r")
        self.assertEqual(problem, "token refresh failed: token endpoint answered HTTP 502 (will retry)")
        self.assertIsNone(self.holdoff.rejected_refresh_token)
