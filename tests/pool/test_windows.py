"""
Tests for :obj:`ccm.pool.windows`: a subscription's window state, fed with
unified rate-limit headers read defensively, 429s and polls.
"""

from __future__ import annotations

import dataclasses

from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.pool.figures import WindowName
from ccm.pool.plan import Plan
from ccm.pool.windows import MemoryWindowState, Window
from tests.fixtures import logged_events


PREFIX = "anthropic-ratelimit-unified-"
NOW = 1_790_000_000.0
FIVE_HOUR_RESET = 1_790_010_000
WEEKLY_RESET = 1_790_500_000


def unified(**values: str) -> Headers:
    """
    Build response headers holding unified rate-limit headers: the keyword
    ``h5_utilization`` stands for ``anthropic-ratelimit-unified-5h-utilization``,
    ``d7_reset`` for ``...-7d-reset``, and so on.
    """
    headers = Headers()
    for key, value in values.items():
        window, _, field = key.partition("_")
        suffix = {"h5": "5h", "d7": "7d"}[window] + "-" + field
        headers.addRawHeader(PREFIX + suffix, value)
    return headers


class ObserveTests(SynchronousTestCase):
    """
    :obj:`MemoryWindowState.observe` turns header fractions into percentages that
    only grow within a window and ignores anything malformed.
    """

    def setUp(self) -> None:
        self.state = MemoryWindowState("work")
        self.events = logged_events(self)

    def warnings(self) -> list[str]:
        """
        The text of every warning logged so far.
        """
        return [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.warn]

    def test_fraction_becomes_percent(self) -> None:
        """
        A utilization fraction is stored as a percentage, and the reset
        time as given; both windows are read and ``updated_at`` is set.
        """
        seen = self.state.observe(
            unified(
                h5_utilization="0.42",
                h5_reset=str(FIVE_HOUR_RESET),
                d7_utilization="0.07",
                d7_reset=str(WEEKLY_RESET),
            ),
            NOW,
        )
        self.assertTrue(seen)
        self.assertEqual(self.state.five_hour, Window(42.0, FIVE_HOUR_RESET))
        self.assertEqual(self.state.weekly, Window(7.0, WEEKLY_RESET))
        self.assertEqual(self.state.updated_at, NOW)
        self.assertEqual(self.warnings(), [])

    def test_percent_rounds_up(self) -> None:
        """
        Percentages are rounded up, as the reference does: 0.9801 is 99 and
        0.001 is 1, while an exact 0.42 stays 42 despite float error.
        """
        for fraction, percent in [("0.9801", 99.0), ("0.001", 1.0), ("0.42", 42.0), ("0", 0.0)]:
            state = MemoryWindowState("work")
            state.observe(unified(h5_utilization=fraction), NOW)
            self.assertEqual(state.five_hour.utilization, percent, fraction)

    def test_monotonic_within_window(self) -> None:
        """
        Within one window (same reset time, or none given) a lower
        utilization never replaces a higher one; a higher one does.
        """
        reset = str(FIVE_HOUR_RESET)
        self.state.observe(unified(h5_utilization="0.50", h5_reset=reset), NOW)
        self.state.observe(unified(h5_utilization="0.30", h5_reset=reset), NOW + 1)
        self.assertEqual(self.state.five_hour.utilization, 50.0)
        self.state.observe(unified(h5_utilization="0.20"), NOW + 2)
        self.assertEqual(self.state.five_hour.utilization, 50.0)
        self.state.observe(unified(h5_utilization="0.61", h5_reset=reset), NOW + 3)
        self.assertEqual(self.state.five_hour.utilization, 61.0)

    def test_new_window_resets_utilization(self) -> None:
        """
        A later reset time starts a new window: its (lower) utilization
        replaces the old one, and the new reset time is kept.
        """
        self.state.observe(
            unified(d7_utilization="0.95", d7_reset=str(WEEKLY_RESET)), NOW
        )
        self.state.observe(
            unified(d7_utilization="0.02", d7_reset=str(WEEKLY_RESET + 604800)),
            WEEKLY_RESET + 10,
        )
        self.assertEqual(self.state.weekly, Window(2.0, WEEKLY_RESET + 604800))

    def test_earlier_reset_is_not_a_new_window(self) -> None:
        """
        A reset time earlier than the stored one (a stale response) neither
        moves the reset back nor lowers the utilization.
        """
        self.state.observe(
            unified(h5_utilization="0.80", h5_reset=str(FIVE_HOUR_RESET)), NOW
        )
        self.state.observe(
            unified(h5_utilization="0.10", h5_reset=str(FIVE_HOUR_RESET - 18000)), NOW + 1
        )
        self.assertEqual(self.state.five_hour, Window(80.0, FIVE_HOUR_RESET))

    def test_malformed_values_ignored_with_warning(self) -> None:
        """
        Non-numeric, negative, NaN and infinite utilizations and resets, and
        a zero reset, are ignored with a warning naming the header (the
        first time in an hour; repeats at debug level); the state keeps its
        earlier values and nothing raises.
        """
        self.state.observe(
            unified(h5_utilization="0.30", h5_reset=str(FIVE_HOUR_RESET)), NOW
        )
        bad_values = ["abc", "-0.5", "nan", "NaN", "inf", "-inf", "", "1e999"]
        for bad in bad_values:
            seen = self.state.observe(unified(h5_utilization=bad, h5_reset=bad), NOW + 1)
            self.assertFalse(seen, bad)
        seen = self.state.observe(unified(h5_reset="0"), NOW + 1)
        self.assertFalse(seen)
        self.assertEqual(self.state.five_hour, Window(30.0, FIVE_HOUR_RESET))
        self.assertEqual(self.state.updated_at, NOW)
        warnings = self.warnings()
        self.assertEqual(len(warnings), 2)
        self.assertIn(PREFIX + "5h-utilization", warnings[0])
        self.assertIn("'abc'", warnings[0])
        self.assertIn("work", warnings[0])
        self.assertIn(PREFIX + "5h-reset", warnings[1])
        repeats = [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.debug]
        # Two headers per bad value, plus the zero reset, less the warnings.
        self.assertEqual(len(repeats), 2 * len(bad_values) + 1 - 2)
        self.assertIn("'0'", repeats[-1])

    def test_zero_utilization_is_valid(self) -> None:
        """
        A zero utilization is a real value (an unused window), not a
        malformed one.
        """
        self.assertTrue(self.state.observe(unified(d7_utilization="0"), NOW))
        self.assertEqual(self.state.weekly.utilization, 0.0)
        self.assertEqual(self.warnings(), [])

    def test_one_good_header_among_bad_counts(self) -> None:
        """
        A malformed reset does not stop a valid utilization of the same
        window from being used.
        """
        seen = self.state.observe(unified(h5_utilization="0.25", h5_reset="soon"), NOW)
        self.assertTrue(seen)
        self.assertEqual(self.state.five_hour, Window(25.0, 0.0))
        self.assertEqual(len(self.warnings()), 1)

    def test_malformed_value_truncated_in_warning(self) -> None:
        """
        A huge malformed header value is cut short in the warning, so a
        hostile upstream cannot flood the log.
        """
        self.state.observe(unified(h5_utilization="x" * 5000), NOW)
        [warning] = self.warnings()
        self.assertNotIn("x" * 41, warning)
        self.assertIn("x" * 40, warning)

    def test_absent_headers(self) -> None:
        """
        A response without unified headers (or with unrelated ones)
        changes nothing and reports False.
        """
        headers = Headers({b"content-type": [b"application/json"]})
        headers.addRawHeader(PREFIX + "status", "allowed")
        self.assertFalse(self.state.observe(headers, NOW))
        self.assertEqual(self.state.five_hour, Window())
        self.assertEqual(self.state.weekly, Window())
        self.assertEqual(self.state.updated_at, 0.0)

    def test_surrounding_whitespace_accepted(self) -> None:
        """
        Values with surrounding blanks are still read.
        """
        self.state.observe(unified(h5_utilization=" 0.5 "), NOW)
        self.assertEqual(self.state.five_hour.utilization, 50.0)


class OwnerTests(SynchronousTestCase):
    """
    :obj:`MemoryWindowState` owns its state: it changes only through its
    methods, and its queries change nothing.
    """

    def setUp(self) -> None:
        self.state = MemoryWindowState("work")

    def test_queries_do_not_clear(self) -> None:
        """
        A limit whose time has passed reads as over, without the read
        clearing it: asked about an earlier time, the state still knows it.
        """
        until = self.state.observe_rejection(rejection(claim="5h", retry_after="60"), NOW)
        self.assertEqual(until, NOW + 60)
        self.assertFalse(self.state.is_limited(NOW + 60))
        self.assertIsNone(self.state.limit(NOW + 60))
        self.assertTrue(self.state.is_limited(NOW + 59))
        limit = self.state.limit(NOW)
        assert limit is not None
        self.assertEqual((limit.until, limit.window), (NOW + 60, WindowName.FIVE_HOUR))

    def test_new_limit_after_an_old_one(self) -> None:
        """
        A 429 after an earlier limit ended sets a limit of its own; one
        while a longer limit holds keeps the longer end, with the window it
        names.
        """
        self.state.observe_rejection(rejection(claim="5h", retry_after="600"), NOW)
        self.assertEqual(
            self.state.observe_rejection(rejection(claim="7d", retry_after="60"), NOW + 1),
            NOW + 600,
        )
        limit = self.state.limit(NOW + 1)
        assert limit is not None
        self.assertEqual(limit.window, WindowName.WEEKLY)
        self.assertEqual(
            self.state.observe_rejection(rejection(retry_after="30"), NOW + 700), NOW + 730
        )

    def test_allowed_ends_limit(self) -> None:
        """
        A response whose status allows again ends a limit before its time;
        a poll started before the 429 does not.
        """
        self.state.observe_rejection(rejection(claim="5h", retry_after="600"), NOW)
        self.state.apply_poll((0.0, 0.0), (0.0, 0.0), NOW + 1, started=NOW - 1)
        self.assertTrue(self.state.is_limited(NOW + 1))
        allowed = Headers({PREFIX + "status": ["allowed_warning"]})
        self.state.observe(allowed, NOW + 2)
        self.assertFalse(self.state.is_limited(NOW + 2))

    def test_windows_are_values(self) -> None:
        """
        The windows a query gives are values: changing one is refused, and
        the state keeps its own.
        """
        self.state.apply_poll((10.0, NOW + 60), None, NOW)
        window = self.state.five_hour
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, window, "utilization", 0.0)
        self.assertEqual(self.state.five_hour, Window(10.0, NOW + 60))

    def test_plan(self) -> None:
        """
        The plan is unknown until the profile reports one.
        """
        self.assertEqual(self.state.plan, Plan())
        self.state.apply_profile(Plan("team", "default_claude_max_5x"))
        self.assertEqual(self.state.plan, Plan("team", "default_claude_max_5x"))


def rejection(**values: str) -> Headers:
    """
    The headers of a 429 out of quota: unified status ``rejected`` and
    whatever ``values`` add, where ``retry_after`` and ``retry_after_ms``
    stand for ``retry-after`` and ``retry-after-ms``, and any other keyword
    for a unified header (``h5_reset`` for ``...-5h-reset``, ``reset`` for
    ``...-reset``, ``claim`` for ``...-representative-claim``).
    """
    headers = Headers()
    headers.addRawHeader(PREFIX + "status", "rejected")
    for key, value in values.items():
        if key.startswith("retry_after"):
            headers.addRawHeader(key.replace("_", "-"), value)
        elif key == "claim":
            headers.addRawHeader(PREFIX + "representative-claim", value)
        elif key == "reset":
            headers.addRawHeader(PREFIX + "reset", value)
        else:
            window, _, field = key.partition("_")
            headers.addRawHeader(PREFIX + {"h5": "5h", "d7": "7d"}[window] + "-" + field, value)
    return headers


class AbsurdNumberTests(SynchronousTestCase):
    """
    Numbers outside what the API can mean (utilization beyond 1000 %,
    resets more than a day in the past or ten days ahead, delays beyond
    ten days) are never stored: they are ignored with a warning, and
    nothing raises.
    """

    def setUp(self) -> None:
        self.state = MemoryWindowState("work")
        self.events = logged_events(self)

    def warnings(self) -> list[str]:
        """
        The text of every warning logged so far.
        """
        return [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.warn]

    def test_huge_utilization(self) -> None:
        """
        A utilization of ``1e308`` (or anything above 10, that is 1000 %) is
        ignored with a warning; the window keeps its earlier figure.
        """
        self.state.observe(unified(h5_utilization="0.30"), NOW)
        for value in ("1e308", "10.01", "1" + "0" * 400):
            self.assertFalse(self.state.observe(unified(h5_utilization=value), NOW + 1), value)
            self.assertEqual(self.state.five_hour.utilization, 30.0)
        [warning] = self.warnings()
        self.assertIn(PREFIX + "5h-utilization", warning)
        self.assertIn("'1e308'", warning)
        self.assertIn("work", warning)

    def test_utilization_over_full_clamped(self) -> None:
        """
        A utilization a little over 1 (the API sends ``1.01`` at times) is
        real: it counts as a full window, 100 %, without a warning.
        """
        self.state.observe(unified(d7_utilization="1.01"), NOW)
        self.assertEqual(self.state.weekly.utilization, 100.0)
        self.state.observe(unified(d7_utilization="10"), NOW)
        self.assertEqual(self.state.weekly.utilization, 100.0)
        self.assertEqual(self.warnings(), [])

    def test_reset_out_of_range(self) -> None:
        """
        A reset time more than ten days ahead (``1e308``, a year away) or
        more than a day in the past is ignored with a warning; one within
        those bounds is kept.
        """
        self.state.observe(unified(h5_reset=str(FIVE_HOUR_RESET)), NOW)
        for value in ("1e308", str(int(NOW + 366 * 86400)), str(int(NOW - 2 * 86400))):
            self.assertFalse(self.state.observe(unified(h5_reset=value), NOW), value)
            self.assertEqual(self.state.five_hour.resets_at, FIVE_HOUR_RESET)
        ten_days = str(int(NOW + 10 * 86400))
        self.assertTrue(self.state.observe(unified(d7_reset=ten_days), NOW))
        self.assertEqual(self.state.weekly.resets_at, NOW + 10 * 86400)
        self.assertEqual(len(self.warnings()), 1)

    def test_huge_reset_in_rejection(self) -> None:
        """
        A 429 whose claimed window and overall reset are ``1e308`` falls
        back to ``retry-after``, so the limit ends at a real time, which
        can be written down.
        """
        until = self.state.observe_rejection(
            rejection(claim="five_hour", h5_reset="1e308", reset="1e308", retry_after="120"),
            NOW,
        )
        self.assertEqual(until, NOW + 120)
        limit = self.state.limit(NOW)
        assert limit is not None
        self.assertEqual(limit.until, NOW + 120)
        self.assertEqual(self.state.five_hour.resets_at, 0.0)
        self.assertTrue(self.state.is_limited(NOW + 119))
        self.assertFalse(self.state.is_limited(NOW + 120))

    def test_huge_retry_after(self) -> None:
        """
        A ``retry-after`` of 400 digits (or more than ten days) is ignored
        with a warning: the limit lasts the default minute.
        """
        for digits in ("9" * 400, "9" * 5000, str(11 * 86400)):
            state = MemoryWindowState("work")
            self.assertEqual(
                state.observe_rejection(rejection(claim="five_hour", retry_after=digits), NOW),
                NOW + 60,
            )
        self.assertEqual(len(self.warnings()), 3)
        self.assertIn("retry-after", self.warnings()[0])

    def test_retry_after_ms(self) -> None:
        """
        ``retry-after-ms``, which the SDKs prefer, is read before
        ``retry-after``; an absurd one is ignored with a warning and
        ``retry-after`` is used instead.
        """
        self.assertEqual(
            self.state.observe_rejection(
                rejection(claim="5h", retry_after_ms="1500", retry_after="9"), NOW
            ),
            NOW + 1.5,
        )
        state = MemoryWindowState("work")
        self.assertEqual(
            state.observe_rejection(
                rejection(claim="5h", retry_after_ms="1e308", retry_after="9"), NOW
            ),
            NOW + 9,
        )
        [warning] = self.warnings()
        self.assertIn("retry-after-ms", warning)

    def test_retry_after_http_date(self) -> None:
        """
        ``retry-after`` may be an HTTP date, as HTTP allows; a date within
        ten days is used.
        """
        # NOW is 2026-09-21T14:13:20Z.
        until = self.state.observe_rejection(
            rejection(claim="5h", retry_after="Mon, 21 Sep 2026 15:13:20 GMT"), NOW
        )
        self.assertEqual(until, NOW + 3600)
        self.assertEqual(self.warnings(), [])

    def test_poll_figures_bounded(self) -> None:
        """
        A usage poll's figures obey the same bounds: a percentage above
        1000 or below 0, or not finite, and a reset out of range are
        ignored with a warning, while the other figures apply; a percentage
        a little over 100 counts as 100.
        """
        self.state.apply_poll((30.0, NOW + 3600), (40.0, NOW + 86400), NOW)
        for bad in (1e308, -1.0, float("nan"), float("inf")):
            self.state.apply_poll((bad, NOW + 7200), (bad, 1e308), NOW + 1)
            self.assertEqual(self.state.five_hour.utilization, 30.0)
            self.assertEqual(self.state.five_hour.resets_at, NOW + 7200)
            self.assertEqual(self.state.weekly.utilization, 40.0)
            self.assertEqual(self.state.weekly.resets_at, NOW + 86400)
        self.state.apply_poll((101.0, NOW + 7200), None, NOW + 2)
        self.assertEqual(self.state.five_hour.utilization, 100.0)
        warned = " ".join(self.warnings())
        self.assertIn("five_hour.utilization", warned)
        self.assertIn("seven_day.utilization", warned)
        self.assertIn("seven_day.resets_at", warned)

    def test_one_warning_per_value_per_hour(self) -> None:
        """
        A flood of bad values warns once per header and credential in an
        hour; the repeats are logged at debug level, and after an hour a
        bad value warns again.
        """
        for second in range(100):
            self.state.observe(unified(h5_utilization="1e308", h5_reset="1e308"), NOW + second)
        self.assertEqual(len(self.warnings()), 2)
        debug = [e for e in self.events if e.get("log_level") == LogLevel.debug]
        self.assertEqual(len(debug), 198)
        other = MemoryWindowState("other")
        other.observe(unified(h5_utilization="1e308"), NOW + 100)
        self.assertEqual(len(self.warnings()), 3)
        self.state.observe(unified(h5_utilization="1e308"), NOW + 3600)
        self.assertEqual(len(self.warnings()), 4)


class HealingTests(SynchronousTestCase):
    """
    A cooldown or pause heals as soon as any signal says the window is open
    again: its reset time passing, a successful response, a poll that finds
    the window open.  A ``retry-after`` is held to the window it names.
    """

    def setUp(self) -> None:
        self.state = MemoryWindowState("work")

    def test_passed_reset_reads_as_a_new_window(self) -> None:
        """
        Once a window's reset time has passed, :obj:`MemoryWindowState.window`
        reads it as a new, empty window, with no poll or header needed; the
        read changes nothing, so an earlier time still reads as before.
        """
        self.state.observe(unified(h5_utilization="1.0", h5_reset=str(FIVE_HOUR_RESET)), NOW)
        full = Window(100.0, FIVE_HOUR_RESET)
        self.assertEqual(self.state.window(WindowName.FIVE_HOUR, FIVE_HOUR_RESET - 1), full)
        self.assertEqual(self.state.window(WindowName.FIVE_HOUR, FIVE_HOUR_RESET), Window())
        self.assertEqual(self.state.window(WindowName.FIVE_HOUR, FIVE_HOUR_RESET - 1), full)
        self.assertEqual(self.state.five_hour, full)

    def test_unknown_reset_never_passes(self) -> None:
        """
        A window whose reset time is unknown keeps its figures.
        """
        self.state.observe(unified(d7_utilization="0.5"), NOW)
        self.assertEqual(self.state.window(WindowName.WEEKLY, NOW + 30 * 86400), Window(50.0))

    def test_retry_after_clamped_to_the_window_length(self) -> None:
        """
        A 429 whose claim names a window but whose only time is a
        ``retry-after`` longer than that window is limited for the window's
        length at most: 5 hours for ``five_hour``, 7 days for ``seven_day``.
        """
        until = self.state.observe_rejection(
            rejection(claim="five_hour", retry_after=str(3 * 86400)), NOW
        )
        self.assertEqual(until, NOW + 5 * 3600)
        state = MemoryWindowState("other")
        until = state.observe_rejection(rejection(claim="seven_day", retry_after=str(9 * 86400)), NOW)
        self.assertEqual(until, NOW + 7 * 86400)

    def test_retry_after_clamped_to_the_known_reset(self) -> None:
        """
        A ``retry-after`` beyond the reset time already known for the window
        the claim names ends at that reset.
        """
        self.state.observe(unified(h5_utilization="0.9", h5_reset=str(FIVE_HOUR_RESET)), NOW)
        until = self.state.observe_rejection(
            rejection(claim="five_hour", retry_after="17000"), NOW + 1
        )
        self.assertEqual(until, FIVE_HOUR_RESET)
        self.assertFalse(self.state.is_limited(FIVE_HOUR_RESET))

    def test_retry_after_without_a_claim_is_not_clamped(self) -> None:
        """
        A 429 that names no window keeps the delay it asks for.
        """
        until = self.state.observe_rejection(rejection(retry_after=str(2 * 86400)), NOW)
        self.assertEqual(until, NOW + 2 * 86400)

    def test_success_ends_a_limit(self) -> None:
        """
        A successful response on the credential ends a 429's limit, even
        without unified headers: it was served.
        """
        self.state.observe_rejection(rejection(claim="5h", retry_after="600"), NOW)
        self.assertFalse(self.state.observe_success(Headers(), NOW + 1))
        self.assertFalse(self.state.is_limited(NOW + 1))

    def test_other_responses_keep_a_limit(self) -> None:
        """
        A response that is not a success and says nothing of the status
        keeps the limit.
        """
        self.state.observe_rejection(rejection(claim="5h", retry_after="600"), NOW)
        self.state.observe(Headers(), NOW + 1)
        self.assertTrue(self.state.is_limited(NOW + 1))

    def test_open_poll_ends_a_limit(self) -> None:
        """
        A poll started after the 429 that finds the limit's window under
        100% ends the limit.
        """
        self.state.observe_rejection(rejection(claim="5h", retry_after="600"), NOW)
        self.state.apply_poll((40.0, 0.0), None, NOW + 2, started=NOW + 1)
        self.assertFalse(self.state.is_limited(NOW + 2))

    def test_stale_or_full_poll_keeps_a_limit(self) -> None:
        """
        A poll started before the 429, one that finds the window full, and
        one that does not report the window, all keep the limit.
        """
        self.state.observe_rejection(rejection(claim="5h", retry_after="600"), NOW)
        self.state.apply_poll((40.0, 0.0), None, NOW + 2, started=NOW - 1)
        self.assertTrue(self.state.is_limited(NOW + 2))
        self.state.apply_poll((100.0, 0.0), (10.0, 0.0), NOW + 3, started=NOW + 2)
        self.assertTrue(self.state.is_limited(NOW + 3))
        self.state.apply_poll(None, (10.0, 0.0), NOW + 4, started=NOW + 3)
        self.assertTrue(self.state.is_limited(NOW + 4))

    def test_open_poll_ends_a_limit_naming_no_window(self) -> None:
        """
        A limit that names no window ends when a later poll finds every
        window it reports open.
        """
        self.state.observe_rejection(rejection(retry_after="600"), NOW)
        self.state.apply_poll((100.0, 0.0), (10.0, 0.0), NOW + 2, started=NOW + 1)
        self.assertTrue(self.state.is_limited(NOW + 2))
        self.state.apply_poll((99.0, 0.0), (10.0, 0.0), NOW + 3, started=NOW + 2)
        self.assertFalse(self.state.is_limited(NOW + 3))

    def test_bare_429_does_not_mark(self) -> None:
        """
        A 429 without unified headers sets no limit, whatever delay it asks
        for, and changes no window.
        """
        self.assertIsNone(
            self.state.observe_rejection(Headers({"retry-after": ["86400"]}), NOW)
        )
        self.assertFalse(self.state.is_limited(NOW))
        self.assertEqual(self.state.window(WindowName.FIVE_HOUR, NOW), Window())


class ClearCooldownTests(SynchronousTestCase):
    """
    :obj:`MemoryWindowState.clear_cooldown`, an admin's action.
    """

    def test_ends_limit_and_extra_usage_pauses(self) -> None:
        """
        Clearing ends a 429's limit and both extra-usage pauses, tells the
        observers, and keeps the windows as reported.
        """
        state = MemoryWindowState("a")
        rejected = unified(h5_utilization="1.0", h5_reset=str(FIVE_HOUR_RESET), h5_status="rejected")
        rejected.addRawHeader(PREFIX + "status", "rejected")
        rejected.addRawHeader(PREFIX + "representative-claim", "five_hour")
        self.assertIsNotNone(state.observe_rejection(rejected, NOW))
        state.observe_extra_usage_refusal(NOW)
        told: list[None] = []
        state.subscribe(lambda: told.append(None))
        self.assertTrue(state.clear_cooldown(NOW))
        self.assertIsNone(state.limit(NOW))
        self.assertIsNone(state.extra_usage.pause(NOW))
        self.assertEqual(state.five_hour, Window(100.0, FIVE_HOUR_RESET))
        self.assertEqual(len(told), 1)

    def test_nothing_to_clear(self) -> None:
        """
        Without a limit or a pause, clearing says there was none.
        """
        self.assertFalse(MemoryWindowState("a").clear_cooldown(NOW))
