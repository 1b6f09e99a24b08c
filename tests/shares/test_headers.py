"""
Tests for :obj:`ccm.shares.headers`: Claude Code's warning curve and the
unified headers a user with a share sees.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.pool.figures import WindowName
from ccm.shares.headers import elapsed_fraction, share_headers, warning_threshold
from ccm.shares.ledger import FIVE_HOUR, WEEKLY
from ccm.shares.standing import ShareFigures
from tests.fake_anthropic import client_rate_limit_headers

NOW = 1_800_000_000.0
P = "anthropic-ratelimit-unified-"


def figures(window: WindowName, used: float, share: float, resets_in: float) -> ShareFigures:
    """A user's figures in ``window``: ``used`` of a ``share`` (percent)."""
    return ShareFigures(window, share, used, 100.0, NOW + resets_in)


def upstream() -> Headers:
    """An account's answer: busy 5h and 7d, every extra header, others."""
    headers = Headers()
    for name, value in {
        P + "status": "allowed_warning",
        P + "reset": str(int(NOW) + 3600),
        P + "representative-claim": "five_hour",
        P + "5h-status": "allowed_warning",
        P + "5h-utilization": "0.95",
        P + "5h-reset": str(int(NOW) + 3600),
        P + "5h-surpassed-threshold": "0.9",
        P + "7d-status": "allowed",
        P + "7d-utilization": "0.40",
        P + "7d-reset": str(int(NOW) + 86400),
        P + "7d_oi-utilization": "0.33",
        P + "fallback-percentage": "0.5",
        "request-id": "req_011CUpstream",
        "content-type": "application/json",
        "X-Odd-Case": "  spaced  value ",
        **client_rate_limit_headers(NOW),
    }.items():
        headers.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
    headers.addRawHeader(b"x-twice", b"one")
    headers.addRawHeader(b"x-twice", b"two")
    return headers


def one(headers: Headers, name: str) -> str | None:
    """The one value of ``name`` in ``headers``, or None."""
    values = headers.getRawHeaders(name.encode("latin-1"))
    if values is None:
        return None
    assert len(values) == 1, values
    return values[0].decode("latin-1")


class CurveTests(SynchronousTestCase):
    """
    :obj:`warning_threshold`: Claude Code 2.1.332's ``utilization >= X``
    with ``elapsed <= Y`` for each threshold.
    """

    def test_five_hour(self) -> None:
        """90 % with at most 72 % of the 5 hours gone warns; less does not."""
        self.assertEqual(warning_threshold(FIVE_HOUR, 0.9, 0.72), 0.9)
        self.assertEqual(warning_threshold(FIVE_HOUR, 1.0, 0.0), 0.9)
        self.assertIsNone(warning_threshold(FIVE_HOUR, 0.89, 0.1))
        self.assertIsNone(warning_threshold(FIVE_HOUR, 0.95, 0.73))

    def test_weekly_75(self) -> None:
        """75 % of the week with at most 60 % gone."""
        self.assertEqual(warning_threshold(WEEKLY, 0.75, 0.6), 0.75)
        self.assertIsNone(warning_threshold(WEEKLY, 0.75, 0.61))

    def test_weekly_50(self) -> None:
        """50 % of the week with at most 35 % gone."""
        self.assertEqual(warning_threshold(WEEKLY, 0.5, 0.35), 0.5)
        self.assertIsNone(warning_threshold(WEEKLY, 0.5, 0.36))
        self.assertIsNone(warning_threshold(WEEKLY, 0.74, 0.36))

    def test_weekly_25(self) -> None:
        """25 % of the week with at most 15 % gone."""
        self.assertEqual(warning_threshold(WEEKLY, 0.25, 0.15), 0.25)
        self.assertIsNone(warning_threshold(WEEKLY, 0.25, 0.16))
        self.assertIsNone(warning_threshold(WEEKLY, 0.24, 0.0))

    def test_highest_first(self) -> None:
        """Early in the week 80 % names the 75 % threshold."""
        self.assertEqual(warning_threshold(WEEKLY, 0.8, 0.1), 0.75)

    def test_elapsed(self) -> None:
        """The part gone counts back one window from the reset, clamped."""
        self.assertAlmostEqual(elapsed_fraction(NOW + 3600, FIVE_HOUR, NOW), 0.8)
        self.assertEqual(elapsed_fraction(NOW + 99999, FIVE_HOUR, NOW), 0.0)
        self.assertEqual(elapsed_fraction(NOW - 1, FIVE_HOUR, NOW), 1.0)


class RewriteTests(SynchronousTestCase):
    """
    :obj:`share_headers`: the share's windows replace the account's; the
    rest stays byte for byte.
    """

    def assert_untouched(self, before: Headers, after: Headers, replaced: set[bytes]) -> None:
        """Every header of ``before`` not in ``replaced`` is in ``after`` as it was."""
        for name, values in before.getAllRawHeaders():
            if name.lower() not in replaced:
                self.assertEqual(after.getRawHeaders(name), values, name)

    def test_keeps_every_other_header(self) -> None:
        """
        All 21 ``overage-``/``slow-``/``grace-`` headers, the ``7d_oi``
        window, repeated and oddly spaced headers keep their values.
        """
        before = upstream()
        after = share_headers(before, [figures(FIVE_HOUR, 5.0, 10.0, 3600)], NOW)
        replaced = {
            (P + n).encode()
            for n in (
                "5h-status",
                "5h-utilization",
                "5h-reset",
                "5h-surpassed-threshold",
                "status",
                "reset",
                "representative-claim",
            )
        }
        self.assert_untouched(before, after, replaced)
        for name, value in client_rate_limit_headers(NOW).items():
            self.assertEqual(one(after, name), value)
        self.assertEqual(after.getRawHeaders(b"x-twice"), [b"one", b"two"])
        self.assertEqual(one(after, "x-odd-case"), "  spaced  value ")

    def test_five_hour_share(self) -> None:
        """
        Half of a 10 % share: 0.50, allowed, the share's reset, no
        surpassed threshold; the weekly window stays the account's.
        """
        after = share_headers(upstream(), [figures(FIVE_HOUR, 5.0, 10.0, 7200)], NOW)
        self.assertEqual(one(after, P + "5h-utilization"), "0.50")
        self.assertEqual(one(after, P + "5h-status"), "allowed")
        self.assertEqual(one(after, P + "5h-reset"), str(int(NOW) + 7200))
        self.assertIsNone(one(after, P + "5h-surpassed-threshold"))
        self.assertEqual(one(after, P + "7d-utilization"), "0.40")
        self.assertEqual(one(after, P + "status"), "allowed")
        self.assertEqual(one(after, P + "representative-claim"), "five_hour")
        self.assertEqual(one(after, P + "reset"), str(int(NOW) + 7200))

    def test_weekly_warning(self) -> None:
        """
        80 % of a weekly share one day in: ``allowed_warning`` with the
        75 % threshold, and the overall headers name the week.
        """
        week = 7 * 86400
        after = share_headers(
            upstream(),
            [figures(FIVE_HOUR, 1.0, 10.0, 7200), figures(WEEKLY, 8.0, 10.0, week - 86400)],
            NOW,
        )
        self.assertEqual(one(after, P + "7d-utilization"), "0.80")
        self.assertEqual(one(after, P + "7d-status"), "allowed_warning")
        self.assertEqual(one(after, P + "7d-surpassed-threshold"), "0.75")
        self.assertEqual(one(after, P + "5h-status"), "allowed")
        self.assertEqual(one(after, P + "status"), "allowed_warning")
        self.assertEqual(one(after, P + "representative-claim"), "seven_day")
        self.assertEqual(one(after, P + "reset"), str(int(NOW) + week - 86400))

    def test_exhausted(self) -> None:
        """A used-up share is ``rejected`` with a utilization of 1 or more."""
        after = share_headers(upstream(), [figures(FIVE_HOUR, 12.0, 10.0, 600)], NOW)
        self.assertEqual(one(after, P + "5h-utilization"), "1.20")
        self.assertEqual(one(after, P + "5h-status"), "rejected")
        self.assertEqual(one(after, P + "status"), "rejected")

    def test_upstream_rejected_stays(self) -> None:
        """
        An answer the account served from extra usage (overall
        ``rejected``) keeps its overall headers; the window is the share's.
        """
        before = upstream()
        before.setRawHeaders(P.encode() + b"status", [b"rejected"])
        after = share_headers(before, [figures(FIVE_HOUR, 1.0, 10.0, 600)], NOW)
        self.assertEqual(one(after, P + "status"), "rejected")
        self.assertEqual(one(after, P + "representative-claim"), "five_hour")
        self.assertEqual(one(after, P + "reset"), str(int(NOW) + 3600))
        self.assertEqual(one(after, P + "5h-utilization"), "0.10")

    def test_unknown_reset(self) -> None:
        """A share with nothing used resets one window from now."""
        after = share_headers(upstream(), [figures(WEEKLY, 0.0, 10.0, -NOW)], NOW)
        self.assertEqual(one(after, P + "7d-reset"), str(int(NOW) + 7 * 86400))
        self.assertEqual(one(after, P + "7d-utilization"), "0.00")

    def test_no_figures(self) -> None:
        """Without a share nothing changes, and the input is never changed."""
        before = upstream()
        after = share_headers(before, [], NOW)
        self.assertEqual(list(after.getAllRawHeaders()), list(upstream().getAllRawHeaders()))
        share_headers(before, [figures(FIVE_HOUR, 5.0, 10.0, 60)], NOW)
        self.assertEqual(one(before, P + "5h-utilization"), "0.95")
