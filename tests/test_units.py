"""
Tests for :obj:`ccm.units`: Go-style durations, byte sizes, and the coarse
durations ccm writes in messages.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.units import format_duration, parse_duration, parse_size, whole_seconds_until


class ParseDurationTests(SynchronousTestCase):
    """
    :obj:`parse_duration` reads durations the way Go's ``time.ParseDuration``
    does, in seconds.
    """

    def test_milliseconds(self) -> None:
        """
        ``"500ms"`` is half a second.
        """
        self.assertEqual(parse_duration("500ms"), 0.5)

    def test_seconds(self) -> None:
        """
        ``"60s"`` is sixty seconds.
        """
        self.assertEqual(parse_duration("60s"), 60.0)

    def test_minutes_and_hours(self) -> None:
        """
        ``"5m"`` and ``"1h"`` are 300 and 3600 seconds.
        """
        self.assertEqual(parse_duration("5m"), 300.0)
        self.assertEqual(parse_duration("1h"), 3600.0)

    def test_compound(self) -> None:
        """
        Several number-and-unit parts add up: ``"1h30m"`` is 5400 seconds and
        ``"1h2m3s4ms"`` is 3723.004 seconds.
        """
        self.assertEqual(parse_duration("1h30m"), 5400.0)
        self.assertAlmostEqual(parse_duration("1h2m3s4ms"), 3723.004)

    def test_fraction(self) -> None:
        """
        Fractional numbers are accepted, with or without a leading digit:
        ``"1.5h"`` is 5400 seconds and ``".5s"`` is half a second.
        """
        self.assertEqual(parse_duration("1.5h"), 5400.0)
        self.assertEqual(parse_duration(".5s"), 0.5)

    def test_zero_without_unit(self) -> None:
        """
        A bare ``"0"`` is the one number Go accepts without a unit.
        """
        self.assertEqual(parse_duration("0"), 0.0)
        self.assertEqual(parse_duration("0s"), 0.0)

    def test_signs(self) -> None:
        """
        A leading ``-`` negates the duration and a leading ``+`` is allowed.
        """
        self.assertEqual(parse_duration("-1s"), -1.0)
        self.assertEqual(parse_duration("-1h30m"), -5400.0)
        self.assertEqual(parse_duration("+2m"), 120.0)

    def test_micro_and_nanoseconds(self) -> None:
        """
        Microseconds are spelled ``us``, with the micro sign or with the Greek
        letter mu, as Go allows; nanoseconds are ``ns``.
        """
        self.assertAlmostEqual(parse_duration("3us"), 3e-6)
        self.assertAlmostEqual(parse_duration("3\u00b5s"), 3e-6)
        self.assertAlmostEqual(parse_duration("3\u03bcs"), 3e-6)
        self.assertAlmostEqual(parse_duration("7ns"), 7e-9)

    def test_missing_unit(self) -> None:
        """
        A number other than zero without a unit is refused, and the message
        says what is expected.
        """
        with self.assertRaises(ValueError) as caught:
            parse_duration("60")
        message = str(caught.exception)
        self.assertIn("'60'", message)
        self.assertIn('"60s"', message)

    def test_garbage(self) -> None:
        """
        Text that is not a duration is refused, naming the text.
        """
        for text in ("soon", "1 h", "1e3s", "1m-1s", "h", "1d", "-", ""):
            with self.assertRaises(ValueError, msg=text) as caught:
                parse_duration(text)
            self.assertIn(repr(text), str(caught.exception))


class ParseSizeTests(SynchronousTestCase):
    """
    :obj:`parse_size` reads byte counts given as numbers or with a unit.
    """

    def test_integer(self) -> None:
        """
        An integer is a byte count as it is.
        """
        self.assertEqual(parse_size(1024), 1024)
        self.assertEqual(parse_size(0), 0)

    def test_negative_integer(self) -> None:
        """
        A negative byte count is refused.
        """
        with self.assertRaises(ValueError) as caught:
            parse_size(-5)
        self.assertIn("-5", str(caught.exception))

    def test_binary_units(self) -> None:
        """
        ``KiB``, ``MiB`` and ``GiB`` are powers of 1024, in any case.
        """
        self.assertEqual(parse_size("64MiB"), 64 * 1024 * 1024)
        self.assertEqual(parse_size("64mib"), 64 * 1024 * 1024)
        self.assertEqual(parse_size("2KiB"), 2048)
        self.assertEqual(parse_size("1.5GiB"), 1536 * 1024 * 1024)

    def test_decimal_units(self) -> None:
        """
        ``kB``, ``MB`` and ``GB`` (and the bare letters) are powers of 1000.
        """
        self.assertEqual(parse_size("10MB"), 10_000_000)
        self.assertEqual(parse_size("1k"), 1000)
        self.assertEqual(parse_size("3G"), 3_000_000_000)

    def test_plain_number_string(self) -> None:
        """
        A string of digits, with or without ``B``, is a byte count; blanks
        around the number and the unit are allowed.
        """
        self.assertEqual(parse_size("4096"), 4096)
        self.assertEqual(parse_size("12B"), 12)
        self.assertEqual(parse_size(" 10 MB "), 10_000_000)

    def test_garbage(self) -> None:
        """
        Anything else is refused with a message naming the value and showing
        the expected form.
        """
        for text in ("lots", "", "-1", "1TB", "MiB", "1.2.3MB"):
            with self.assertRaises(ValueError, msg=text) as caught:
                parse_size(text)
            self.assertIn(repr(text), str(caught.exception))
            self.assertIn('"64MiB"', str(caught.exception))


class FormatDurationTests(SynchronousTestCase):
    """
    :obj:`format_duration` writes durations coarsely for people, switching unit
    at each boundary.
    """

    def test_below_one_second(self) -> None:
        """
        Below one second the duration is whole milliseconds, rounded down.
        """
        self.assertEqual(format_duration(0), "0ms")
        self.assertEqual(format_duration(0.0005), "0ms")
        self.assertEqual(format_duration(0.95), "950ms")
        self.assertEqual(format_duration(0.9999), "999ms")

    def test_negative_is_zero(self) -> None:
        """
        A negative duration (a reset already past) is written as ``0ms``.
        """
        self.assertEqual(format_duration(-5), "0ms")

    def test_seconds(self) -> None:
        """
        From one second to just under a minute, whole seconds.
        """
        self.assertEqual(format_duration(1), "1s")
        self.assertEqual(format_duration(42.7), "42s")
        self.assertEqual(format_duration(59.99), "59s")

    def test_minutes(self) -> None:
        """
        From one minute to just under an hour, minutes and seconds.
        """
        self.assertEqual(format_duration(60), "1m0s")
        self.assertEqual(format_duration(200), "3m20s")
        self.assertEqual(format_duration(3599), "59m59s")

    def test_hours(self) -> None:
        """
        From one hour to just under a day, hours and minutes.
        """
        self.assertEqual(format_duration(3600), "1h0m")
        self.assertEqual(format_duration(2 * 3600 + 13 * 60 + 59), "2h13m")
        self.assertEqual(format_duration(86399), "23h59m")

    def test_days(self) -> None:
        """
        From one day on, days and hours.
        """
        self.assertEqual(format_duration(86400), "1d0h")
        self.assertEqual(format_duration(3 * 86400 + 4 * 3600 + 59 * 60), "3d4h")
        self.assertEqual(format_duration(10 * 86400), "10d0h")


class WholeSecondsUntilTests(SynchronousTestCase):
    """
    :obj:`whole_seconds_until`: the ``retry-after`` of a moment.
    """

    def test_rounded_up(self) -> None:
        """
        A moment part of a second away counts as the next whole second; a
        whole number of seconds stays as it is.
        """
        self.assertEqual(whole_seconds_until(102.5, 100.0), 3)
        self.assertEqual(whole_seconds_until(160.0, 100.0), 60)

    def test_at_least_one(self) -> None:
        """
        A moment now or already past still asks for one second.
        """
        self.assertEqual(whole_seconds_until(100.0, 100.0), 1)
        self.assertEqual(whole_seconds_until(90.0, 100.0), 1)
