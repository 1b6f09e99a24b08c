"""
Tests for :obj:`ccm.accounting.week`: the weekly cycle a response is counted in.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.accounting.week import WEEK_SECONDS, week_start_from_headers
from tests.fixtures import WEEK_1, WEEK_2


def reset_headers(*values: bytes) -> Headers:
    """
    Response headers with the given weekly reset values.
    """
    return Headers({b"anthropic-ratelimit-unified-7d-reset": list(values)})


class WeekStartFromHeadersTests(SynchronousTestCase):
    """
    :obj:`week_start_from_headers` tags a response with its weekly cycle.
    """

    def test_valid(self) -> None:
        """
        The cycle starts a week before the weekly reset.
        """
        self.assertEqual(week_start_from_headers(reset_headers(str(WEEK_2).encode())), WEEK_1)

    def test_rounded_to_nearest_hour(self) -> None:
        """
        A reset that jitters by up to half an hour either way gives the same
        cycle; exactly half an hour late rounds up to the next hour.
        """
        for jitter in (-1800, -1, 1, 1799):
            value = str(WEEK_2 + jitter).encode()
            self.assertEqual(week_start_from_headers(reset_headers(value)), WEEK_1, jitter)
        value = str(WEEK_2 + 1800).encode()
        self.assertEqual(week_start_from_headers(reset_headers(value)), WEEK_1 + 3600)

    def test_surrounding_whitespace(self) -> None:
        """
        Whitespace around the number is tolerated.
        """
        value = b" " + str(WEEK_2).encode() + b"\t"
        self.assertEqual(week_start_from_headers(reset_headers(value)), WEEK_1)

    def test_absent(self) -> None:
        """
        Without the header the response is untagged (0).
        """
        self.assertEqual(week_start_from_headers(Headers()), 0)
        self.assertEqual(
            week_start_from_headers(Headers({b"anthropic-ratelimit-unified-5h-reset": [b"1773619200"]})),
            0,
        )

    def test_malformed(self) -> None:
        """
        Anything but a positive decimal integer of a writable time gives 0
        and never raises: words, signs, zero, exponents, fractions, digit
        separators, non-ASCII digits, a reset less than a week after the
        epoch, a time past year 9999 and an enormous number.
        """
        for value in (
            b"",
            b"abc",
            b"-5",
            b"0",
            b"+1773619200",
            b"1e9",
            b"1773619200.5",
            b"1_773_619_200",
            "\u0661\u0662".encode("utf-8"),
            b"\xff\xfe",
            b"100",
            b"99999999999999",
            b"9" * 5000,
        ):
            self.assertEqual(week_start_from_headers(reset_headers(value)), 0, value[:20])

    def test_first_value_counts(self) -> None:
        """
        When the header is repeated, the first value is used.
        """
        headers = reset_headers(str(WEEK_2).encode(), str(WEEK_2 + WEEK_SECONDS).encode())
        self.assertEqual(week_start_from_headers(headers), WEEK_1)
