"""
Credentials over real files in a temporary directory, on a clock, for the
tests of pools and their members.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.credentials.credential import Credential
from ccm.credentials.file import CredentialFile
from ccm.pool.member import PoolMember
from tests.fixtures import expiry_ms, logged_events, write_credentials


NOW = 1_790_000_000.0
HOUR = 3600.0


def headers(**values: str) -> Headers:
    """
    Unified rate-limit headers, named by their suffix with ``_`` for ``-``.
    """
    result = Headers()
    for name, value in values.items():
        suffix = name.replace("_", "-")
        if name == "retry_after":
            result.addRawHeader("retry-after", value)
        else:
            result.addRawHeader("anthropic-ratelimit-unified-" + suffix, value)
    return result


class PoolTestCase(SynchronousTestCase):
    """
    Credentials over real files in a temporary directory, on a clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.events = logged_events(self)

    def credential(self, tag: str, plan: str = "max", tier: str = "default_claude_max_20x") -> Credential:
        """
        A loaded credential named ``tag`` with a token valid for a day.
        """
        path = write_credentials(
            os.path.join(self.directory, tag + ".json"),
            f"sk-ant-oat01-{tag}",
            f"sk-ant-ort01-{tag}",
            expiry_ms(86400, now=NOW),
            subscription_type=plan,
            rate_limit_tier=tier,
        )
        credential = Credential(tag, CredentialFile(path), lambda token: Deferred(), self.clock)
        credential.reload()
        return credential

    def members(self, *tags: str) -> list[PoolMember]:
        """
        Pool members for credentials named ``tags``, with default caps.
        """
        return [PoolMember(self.credential(tag)) for tag in tags]

    def logged(self) -> list[str]:
        """
        The formatted log messages so far.
        """
        return [formatEvent(e) for e in self.events]
