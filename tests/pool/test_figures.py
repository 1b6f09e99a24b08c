"""
Tests for :obj:`ccm.pool.figures`: reading rate-limit figures defensively,
without changing any state.  How they change a subscription's windows is
tested in :obj:`tests.pool.test_windows`.
"""

from __future__ import annotations


from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.pool.figures import (
    DEFAULT_LIMIT_SECONDS,
    FigureReader,
    Limit,
    WindowName,
    WindowReading,
    percent_of,
)
from tests.fixtures import logged_events


PREFIX = "anthropic-ratelimit-unified-"
NOW = 1_790_000_000.0


def response_headers(**values: str) -> Headers:
    """
    Headers with each unified rate-limit header named by its suffix, ``_``
    for ``-``; ``retry_after`` stands for ``retry-after``.
    """
    headers = Headers()
    for name, value in values.items():
        if name == "retry_after":
            headers.addRawHeader("retry-after", value)
        else:
            headers.addRawHeader(PREFIX + name.replace("_", "-"), value)
    return headers


class FigureReaderTests(SynchronousTestCase):
    """
    :obj:`FigureReader`: figures in, plain values out.
    """

    def setUp(self) -> None:
        self.events = logged_events(self)
        self.reader = FigureReader("work")

    def test_window(self) -> None:
        """
        A window's fraction is read as a percentage rounded up and its reset
        as given; a window the headers do not mention reads as None.
        """
        headers = response_headers(
            **{"5h_utilization": "0.421", "5h_reset": str(int(NOW + 600))}
        )
        self.assertEqual(
            self.reader.window(headers, WindowName.FIVE_HOUR, NOW),
            WindowReading(43.0, NOW + 600),
        )
        self.assertIsNone(self.reader.window(headers, WindowName.WEEKLY, NOW))

    def test_rejection(self) -> None:
        """
        A 429 with the unified headers is a limit until the claimed
        window's reset, naming that window; one without them is a passing
        throttle.
        """
        rejected = response_headers(
            status="rejected",
            representative_claim="seven_day",
            **{"7d_reset": str(int(NOW + 3600))},
        )
        self.assertEqual(
            self.reader.rejection(rejected, NOW), Limit(NOW + 3600, WindowName.WEEKLY)
        )
        self.assertEqual(
            self.reader.rejection(response_headers(status="rejected"), NOW),
            Limit(NOW + DEFAULT_LIMIT_SECONDS, None),
        )
        self.assertIsNone(self.reader.rejection(response_headers(retry_after="5"), NOW))

    def test_allowed_status_is_no_limit(self) -> None:
        """
        A 429 whose status still allows and that claims no window sets no
        limit.
        """
        self.assertIsNone(self.reader.rejection(response_headers(status="allowed"), NOW))
        self.assertEqual(self.reader.status(response_headers(status=" allowed ")), "allowed")

    def test_retry_after(self) -> None:
        """
        ``retry-after`` in seconds is read; a bad one is None, with a
        warning.
        """
        self.assertEqual(self.reader.retry_after(response_headers(retry_after="42"), NOW), 42.0)
        self.assertIsNone(self.reader.retry_after(response_headers(retry_after="soon"), NOW))
        [warning] = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertEqual(warning["name"], "retry-after")

    def test_poll_window(self) -> None:
        """
        A poll's figures within bounds come back as they are (a percentage
        a little over 100 as 100, no reset as None); one out of bounds is
        None with a warning, and the other figure still counts.
        """
        self.assertEqual(
            self.reader.poll_window(WindowName.WEEKLY, (101.0, 0.0), NOW),
            WindowReading(100.0, None),
        )
        self.assertEqual(
            self.reader.poll_window(WindowName.FIVE_HOUR, (-1.0, NOW + 60), NOW),
            WindowReading(None, NOW + 60),
        )
        self.assertIsNone(self.reader.poll_window(WindowName.FIVE_HOUR, None, NOW))
        [warning] = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertEqual(warning["name"], "usage five_hour.utilization")


class PercentOfTests(SynchronousTestCase):
    """
    :obj:`percent_of`: a header's utilization fraction as whole percent.
    """

    def test_rounded_up_and_capped(self) -> None:
        """
        Any part of a percent counts as the next one, float noise in a
        two-decimal fraction does not, and more than all of a window reads
        as 100.
        """
        self.assertEqual(percent_of(0.0101), 2.0)
        self.assertEqual(percent_of(0.29), 29.0)
        self.assertEqual(percent_of(-0.0), 0.0)
        self.assertEqual(percent_of(1.01), 100.0)
