"""
Tests for :obj:`ccm.metrics.credentials`: the credentials' gauges, read at
scrape time from the running credentials.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from ccm.pool import standing
from ccm.pool.serving import Unusable
from ccm.pool.standing import STATES
from tests.fake_anthropic import FIVE_HOUR_SECONDS, SEVEN_DAY_SECONDS, error_reply
from tests.metrics.test_registry import value
from tests.proxy.messages import MESSAGE_BODY
from tests.proxyharness import MAIN, START_TIME, ProxyHarness


def states(harness: ProxyHarness, credential: str = MAIN) -> dict[str, float]:
    """
    The ``ccm_credential_state`` series of ``credential``, by state.
    """
    return {
        name: value(harness, "ccm_credential_state", credential=credential, state=name)
        for name in STATES
    }


class CredentialGaugeTests(SynchronousTestCase):
    """
    One credential, whose windows the fake's headers report.
    """

    def test_state_one_hot(self) -> None:
        """
        Every state has a series; the current one is 1, the others 0: a
        loaded credential is usable, and a 429 out of quota makes it
        rate-limited at once, with no copy of the state to update.
        """
        harness = ProxyHarness(self)
        self.assertEqual(
            set(STATES), {"usable", "rate_limited", "paused", "quarantined", "unavailable"}
        )
        self.assertEqual(states(harness), {name: float(name == "usable") for name in STATES})
        harness.fake.enqueue(error_reply(429, "rate_limit_error", "Used up."))
        harness.messages(MESSAGE_BODY)
        self.assertEqual(
            states(harness), {name: float(name == "rate_limited") for name in STATES}
        )

    def test_unavailable(self) -> None:
        """
        A credential whose file is gone is unavailable, and has no token
        expiry.
        """
        harness = ProxyHarness(self)
        os.remove(harness.credential_path)
        harness.credential.reload()
        self.assertEqual(states(harness)["unavailable"], 1.0)
        self.assertIsNone(
            value(harness, "ccm_credential_token_expiry_timestamp_seconds", credential=MAIN)
        )

    def test_unknown_reason(self) -> None:
        """
        A reason the state names do not know reads as unavailable rather
        than failing the scrape.
        """
        harness = ProxyHarness(self)
        names = dict(standing.STATE_NAMES)
        del names[Unusable.UNAVAILABLE]
        self.patch(standing, "STATE_NAMES", names)
        os.remove(harness.credential_path)
        harness.credential.reload()
        self.assertEqual(states(harness)["unavailable"], 1.0)

    def test_windows_and_expiry(self) -> None:
        """
        After an answer whose headers report 10% of the 5-hour window and
        20% of the week, the gauges say so (as ratios) with both reset
        times; the token expiry is the file's.  Once the 5-hour reset has
        passed, that window reads as empty and its reset as unknown.
        """
        harness = ProxyHarness(self)
        harness.body_of(harness.messages(MESSAGE_BODY))
        gauges = {
            window: (
                value(harness, "ccm_credential_utilization_ratio", credential=MAIN, window=window),
                value(
                    harness,
                    "ccm_credential_reset_timestamp_seconds",
                    credential=MAIN,
                    window=window,
                ),
            )
            for window in ("5h", "weekly")
        }
        self.assertEqual(
            gauges,
            {
                "5h": (0.1, START_TIME + FIVE_HOUR_SECONDS),
                "weekly": (0.2, START_TIME + SEVEN_DAY_SECONDS),
            },
        )
        self.assertEqual(
            value(harness, "ccm_credential_token_expiry_timestamp_seconds", credential=MAIN),
            START_TIME + 86400,
        )
        harness.clock.advance(FIVE_HOUR_SECONDS)
        self.assertEqual(
            value(harness, "ccm_credential_utilization_ratio", credential=MAIN, window="5h"), 0.0
        )
        self.assertIsNone(
            value(harness, "ccm_credential_reset_timestamp_seconds", credential=MAIN, window="5h")
        )
