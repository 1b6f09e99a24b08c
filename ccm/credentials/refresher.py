# -*- test-case-name: tests.credentials.test_refresher -*-
"""
The background refresher: tokens renewed before they expire, so requests
rarely wait for a refresh.
"""

from __future__ import annotations

from typing import Iterable

from twisted.application.internet import TimerService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ccm.credentials.credential import Credential, CredentialUnavailable

# The background refresher renews tokens this close to expiry, so requests
# rarely wait for a refresh.
PROACTIVE_MARGIN_SECONDS = 300.0
REFRESH_CHECK_INTERVAL_SECONDS = 60.0


class TokenRefreshService(TimerService):
    """
    Refresh, in the background, every credential whose token expires within
    five minutes, so requests rarely wait for a refresh.
    """

    log = Logger()

    def __init__(
        self,
        credentials: Iterable[Credential],
        clock: IReactorTime,
        interval: float = REFRESH_CHECK_INTERVAL_SECONDS,
    ) -> None:
        super().__init__(interval, self.check)
        self.clock = clock
        self._clock = clock
        self._credentials = list(credentials)

    def check(self) -> None:
        """
        Start a refresh for each credential that needs one; failures are
        logged by the credential and never stop this loop.  A credential
        waiting for a new login reads its store again instead; a
        quarantined one is never refreshed.
        """
        now = self._clock.seconds()
        for credential in self._credentials:
            if credential.standing.waits_for_login:
                credential.look_for_login().addErrback(self._ignore, credential.tag)
            if credential.quarantine is not None:
                continue
            tokens = credential.tokens
            if tokens is None or not tokens.expires_within(now, PROACTIVE_MARGIN_SECONDS):
                continue
            credential.refresh().addErrback(self._ignore, credential.tag)

    def _ignore(self, failure: Failure, tag: str) -> None:
        if not failure.check(CredentialUnavailable):
            self.log.failure("background refresh of {tag} failed", failure=failure, tag=tag)
