# -*- test-case-name: tests.credentials.test_holdoff -*-
"""
What failed refreshes hold back.

After a failed refresh, the next one waits 30 seconds (requests fail fast
meanwhile, when the token has expired).  After a 429 from the token
endpoint, refreshes wait for as long as its ``Retry-After`` asks (at most
an hour), or without one for 1, 2, 4, ... minutes (at most 30) for each
429 in a row: asking again at once is what turns a limit into a storm.  A
refresh token the OAuth server rejected is never sent again.  New tokens,
from a new login or another program's refresh, clear the waits.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from ccm.credentials.oauth import RefreshError
from ccm.units import format_duration

REFRESH_RETRY_SECONDS = 30.0
RATE_LIMIT_BACKOFF_BASE_SECONDS = 60.0
RATE_LIMIT_BACKOFF_MAX_SECONDS = 1800.0
MAX_RETRY_AFTER_SECONDS = 3600.0


def rate_limit_delay(retry_after: float | None, times: int) -> float:
    """
    How long refreshes wait after the ``times``-th 429 in a row, whose
    ``Retry-After`` asked for ``retry_after`` seconds (None: not said).
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER_SECONDS)
    doubled = RATE_LIMIT_BACKOFF_BASE_SECONDS * 2.0 ** min(times - 1, 16)
    return min(doubled, RATE_LIMIT_BACKOFF_MAX_SECONDS)


class RefreshHoldoff:
    """
    One credential's memory of its failed refreshes.

    :ivar problem: why the last refresh failed, or None.
    :ivar rejected_refresh_token: a refresh token the OAuth server
        rejected: asking again with it is pointless until a new one comes.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.problem: str | None = None
        self.rejected_refresh_token: str | None = None
        self._failed_at: float | None = None
        self._blocked_until = 0.0
        self._rate_limited_times = 0

    def holding(self) -> bool:
        """
        Whether a refresh must wait now: one failed less than 30 seconds
        ago, or the token endpoint's 429 asked for more time.
        """
        if self.problem is None:
            return False
        now = self._clock.seconds()
        recent = self._failed_at is not None and now - self._failed_at < REFRESH_RETRY_SECONDS
        return recent or now < self._blocked_until

    def explains(self, refresh_token: str) -> str | None:
        """
        Why an expired token with ``refresh_token`` cannot be refreshed now,
        or None when the next request may try.
        """
        if self.problem is not None and (
            refresh_token == self.rejected_refresh_token or self.holding()
        ):
            return self.problem
        return None

    def failed(self, problem: str) -> None:
        """
        A refresh failed because of ``problem``.
        """
        self._failed_at = self._clock.seconds()
        self.problem = problem

    def rate_limited(self, retry_after: float | None) -> float:
        """
        The token endpoint answered 429: hold refreshes back.

        :return: the seconds they wait.
        """
        self._rate_limited_times += 1
        delay = rate_limit_delay(retry_after, self._rate_limited_times)
        self._blocked_until = self._clock.seconds() + delay
        return delay

    def refused(self, error: RefreshError, refresh_token: str) -> str:
        """
        The token endpoint refused to refresh ``refresh_token``: remember
        what that holds back.

        :return: why the refresh failed, with what to do about it.
        """
        if error.rate_limited:
            delay = self.rate_limited(error.retry_after)
            return (
                f"token refresh failed: {error}; ccm waits {format_duration(delay)} "
                "before refreshing again"
            )
        if error.permanent:
            self.rejected_refresh_token = refresh_token
            advice = (
                "the refresh token was rejected; log in again with `claude /login` "
                "on the ccm host"
            )
        else:
            advice = "will retry"
        return f"token refresh failed: {error} ({advice})"

    def clear(self) -> None:
        """
        A refresh succeeded, or new tokens came: no failure applies any more.
        """
        self._failed_at = None
        self.problem = None
        self._blocked_until = 0.0
        self._rate_limited_times = 0
