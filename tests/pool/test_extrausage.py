"""
Tests for :obj:`ccm.pool.extrausage`: the ``overage-*`` headers read
defensively, and what a subscription's window state keeps of them: the
last word on extra usage, and the pauses it starts, on a :obj:`Clock`.
"""

from __future__ import annotations


from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.pool.extrausage import (
    EXTRA_USAGE_PAUSE_SECONDS,
    ExtraUsage,
    ExtraUsagePause,
    ExtraUsageReading,
    PauseCause,
    claim_window,
    read_extra_usage,
)
from ccm.pool.figures import FigureReader, WindowName
from ccm.pool.windows import MemoryWindowState
from tests.fake_anthropic import allowed_unified_headers
from tests.fixtures import logged_events


PREFIX = "anthropic-ratelimit-unified-"
NOW = 1_790_000_000.0
HOUR = 3600.0
DAY = 86400.0


def unified(**values: str) -> Headers:
    """
    Response headers with each unified rate-limit header named by its
    suffix, ``_`` for ``-`` (``overage_in_use`` is ``...-overage-in-use``).
    """
    headers = Headers()
    for name, value in values.items():
        headers.addRawHeader(PREFIX + name.replace("_", "-"), value)
    return headers


def drawing_headers(now: float, five_hour_reset: float, **more: str) -> Headers:
    """
    What an answer served from extra usage carries: the 5-hour window
    used up and rejected, extra usage allowed and in use.
    """
    return unified(
        status="rejected",
        representative_claim="five_hour",
        overage_status="allowed",
        overage_in_use="true",
        **{"5h_status": "rejected", "5h_utilization": "1.0", "5h_reset": str(int(five_hour_reset))},
        **more,
    )


class ClockTestCase(SynchronousTestCase):
    """
    A clock at :obj:`NOW`, and the warnings logged.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.events = logged_events(self)

    def now(self) -> float:
        return self.clock.seconds()

    def warnings(self) -> list[str]:
        """
        The text of every warning logged so far.
        """
        return [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.warn]


class ReadExtraUsageTests(ClockTestCase):
    """
    :obj:`read_extra_usage`: the ``overage-*`` headers in, plain values out,
    anything implausible ignored with a warning.
    """

    def read(self, headers: Headers) -> ExtraUsageReading | None:
        return read_extra_usage(FigureReader("work"), headers, self.now())

    def test_nothing_said(self) -> None:
        """
        Without any ``overage-*`` header there is no reading, even on a
        rejected answer.
        """
        self.assertIsNone(self.read(unified(status="rejected", **{"5h_status": "rejected"})))
        self.assertIsNone(self.read(Headers()))

    def test_disabled(self) -> None:
        """
        The headers every subscription without extra usage gets (as the
        fake sends them): rejected, with the reason, not drawing.
        """
        headers = Headers()
        for name, value in allowed_unified_headers(self.now()).items():
            headers.addRawHeader(name, value)
        self.assertEqual(
            self.read(headers),
            ExtraUsageReading(status="rejected", disabled_reason="org_level_disabled"),
        )

    def test_in_use(self) -> None:
        """
        ``overage-in-use: true`` says the answer was served from extra
        usage, whatever the plan's status; the spend period's reset and
        utilization are read (a fraction, as a rounded-up percentage).
        """
        reset = self.now() + 20 * DAY
        reading = self.read(
            unified(
                status="allowed",
                overage_status="allowed_warning",
                overage_in_use="true",
                overage_reset=str(int(reset)),
                overage_utilization="0.815",
            )
        )
        self.assertEqual(
            reading,
            ExtraUsageReading(
                status="allowed_warning",
                in_use=True,
                resets_at=reset,
                utilization=82.0,
                drawing=True,
            ),
        )

    def test_plan_rejected_while_allowed(self) -> None:
        """
        The plan rejected (``status: rejected``) while extra usage is
        allowed means drawing on it, as Claude Code reads it; the windows
        called rejected, and the claim's, are the ones used up.
        """
        for overage in ("allowed", "allowed_warning"):
            reading = self.read(
                unified(
                    status="rejected",
                    representative_claim="seven_day",
                    overage_status=overage,
                    **{"5h_status": "rejected"},
                )
            )
            assert reading is not None
            self.assertTrue(reading.drawing, overage)
            self.assertIsNone(reading.in_use)
            self.assertEqual(reading.used_up, (WindowName.FIVE_HOUR, WindowName.WEEKLY))

    def test_not_drawing(self) -> None:
        """
        A rejected plan with extra usage rejected too, extra usage allowed
        on an allowed plan, and ``overage-in-use: false`` are not drawing.
        """
        for headers in (
            unified(status="rejected", overage_status="rejected"),
            unified(status="allowed", overage_status="allowed"),
            unified(status="allowed_warning", overage_status="allowed", overage_in_use="false"),
        ):
            reading = self.read(headers)
            assert reading is not None
            self.assertFalse(reading.drawing, headers)
        reading = self.read(unified(overage_in_use="false"))
        self.assertEqual(reading, ExtraUsageReading(in_use=False))

    def test_words_in_any_case(self) -> None:
        """
        Words are compared without regard to case or surrounding space.
        """
        reading = self.read(unified(overage_status=" Allowed ", overage_in_use="TRUE"))
        self.assertEqual(
            reading, ExtraUsageReading(status="allowed", in_use=True, drawing=True)
        )

    def test_implausible_values_ignored(self) -> None:
        """
        An unknown status or flag, a reason that is no code word, a reset
        beyond a month ahead and a negative utilization are each ignored
        with a warning naming the header; the reading is what is left.
        """
        reading = self.read(
            unified(
                overage_status="maybe",
                overage_in_use="yes",
                overage_disabled_reason="Out of credits!",
                overage_reset=str(int(self.now() + 40 * DAY)),
                overage_utilization="-0.5",
            )
        )
        self.assertIsNone(reading)
        warnings = self.warnings()
        self.assertEqual(len(warnings), 5, warnings)
        for suffix in ("status", "in-use", "disabled-reason", "reset", "utilization"):
            self.assertTrue(
                any(f"{PREFIX}overage-{suffix}=" in w for w in warnings), (suffix, warnings)
            )
        reading = self.read(
            unified(overage_status="maybe", overage_disabled_reason="out_of_credits")
        )
        self.assertEqual(reading, ExtraUsageReading(disabled_reason="out_of_credits"))

    def test_claim_window(self) -> None:
        """
        The claims naming plan windows map to them; ``overage`` names none.
        """
        self.assertIs(claim_window("five_hour"), WindowName.FIVE_HOUR)
        self.assertIs(claim_window("5h"), WindowName.FIVE_HOUR)
        self.assertIs(claim_window("seven_day_opus"), WindowName.WEEKLY)
        self.assertIs(claim_window("7d"), WindowName.WEEKLY)
        self.assertIsNone(claim_window("overage"))
        self.assertIsNone(claim_window(""))


class DrawingPauseTests(ClockTestCase):
    """
    :obj:`MemoryWindowState.observe` keeps what the ``overage-*`` headers
    say, and an answer served from extra usage starts a pause that lasts
    until the used-up plan window resets.
    """

    def setUp(self) -> None:
        super().setUp()
        self.state = MemoryWindowState("work")

    def test_until_the_window_resets(self) -> None:
        """
        Drawing with the 5-hour window used up pauses until that window's
        reset, and the pause ends at that time by itself.
        """
        reset = self.now() + 2 * HOUR
        self.state.observe(drawing_headers(self.now(), reset), self.now())
        extra = self.state.extra_usage
        self.assertEqual((extra.status, extra.in_use, extra.drawing_until), ("allowed", True, reset))
        self.assertEqual(
            extra.pause(self.now()), ExtraUsagePause(reset, PauseCause.DRAWING)
        )
        self.clock.advance(2 * HOUR - 1)
        self.assertIsNotNone(self.state.extra_usage.pause(self.now()))
        self.clock.advance(1)
        self.assertIsNone(self.state.extra_usage.pause(self.now()))

    def test_latest_of_the_used_up_windows(self) -> None:
        """
        With both windows used up, the plan serves again only when both
        have reset: the pause lasts until the later reset.
        """
        weekly_reset = self.now() + 3 * DAY
        headers = drawing_headers(
            self.now(),
            self.now() + HOUR,
            **{"7d_status": "rejected", "7d_reset": str(int(weekly_reset))},
        )
        self.state.observe(headers, self.now())
        self.assertEqual(self.state.extra_usage.drawing_until, weekly_reset)

    def test_window_full_from_earlier_answers(self) -> None:
        """
        A window the state holds as full counts as used up, when the
        drawing answer names no window.
        """
        reset = self.now() + 3 * HOUR
        self.state.observe(
            unified(**{"5h_utilization": "1.02", "5h_reset": str(int(reset))}), self.now()
        )
        self.clock.advance(60)
        self.state.observe(unified(overage_in_use="true"), self.now())
        self.assertEqual(self.state.extra_usage.drawing_until, reset)

    def test_clamped_to_the_window_length(self) -> None:
        """
        A 5-hour reset further ahead than five hours (but within the bounds
        of a reset) pauses for five hours.
        """
        self.state.observe(drawing_headers(self.now(), self.now() + 2 * DAY), self.now())
        self.assertEqual(self.state.extra_usage.drawing_until, self.now() + 5 * HOUR)

    def test_unknown_reset(self) -> None:
        """
        Drawing when no used-up window with a known reset is known pauses
        for :obj:`EXTRA_USAGE_PAUSE_SECONDS`, an hour.
        """
        self.assertEqual(EXTRA_USAGE_PAUSE_SECONDS, HOUR)
        self.state.observe(unified(overage_in_use="true"), self.now())
        self.assertEqual(self.state.extra_usage.drawing_until, self.now() + HOUR)

    def test_passed_reset_is_unknown(self) -> None:
        """
        A window whose reset has passed is a new one: it is not used up,
        and its old reset does not end a new pause in the past.
        """
        reset = self.now() + HOUR
        self.state.observe(
            unified(**{"5h_utilization": "1.0", "5h_reset": str(int(reset))}), self.now()
        )
        self.clock.advance(HOUR)
        self.state.observe(unified(overage_in_use="true"), self.now())
        self.assertEqual(self.state.extra_usage.drawing_until, self.now() + HOUR)

    def test_only_time_ends_it(self) -> None:
        """
        A later successful answer served from the plan, and a poll finding
        the windows open, leave the pause in force; a shorter pause does
        not shorten it.
        """
        reset = self.now() + 2 * HOUR
        self.state.observe(drawing_headers(self.now(), reset), self.now())
        self.state.observe_success(
            unified(status="allowed", overage_status="allowed", **{"5h_status": "allowed"}),
            self.now(),
        )
        self.assertFalse(self.state.extra_usage.in_use)
        self.state.apply_poll((10.0, reset), (20.0, self.now() + DAY), self.now())
        self.assertEqual(self.state.extra_usage.drawing_until, reset)
        self.state.observe(unified(overage_in_use="true"), self.now())
        self.assertEqual(self.state.extra_usage.drawing_until, reset)

    def test_last_word_kept(self) -> None:
        """
        Each figure stays as last said until a response says it again; the
        in-use flag is each answer's own; a status without a reason clears
        the old reason.
        """
        self.state.observe(
            unified(
                overage_status="rejected",
                overage_disabled_reason="out_of_credits",
                overage_reset=str(int(self.now() + 9 * DAY)),
                overage_utilization="1.0",
            ),
            self.now(),
        )
        self.state.observe(unified(overage_utilization="0.5"), self.now())
        self.assertEqual(
            self.state.extra_usage,
            ExtraUsage(
                status="rejected",
                disabled_reason="out_of_credits",
                resets_at=self.now() + 9 * DAY,
                utilization=50.0,
            ),
        )
        self.assertFalse(self.state.extra_usage.available)
        self.state.observe(unified(overage_status="allowed"), self.now())
        self.assertEqual(self.state.extra_usage.disabled_reason, "")
        self.assertTrue(self.state.extra_usage.available)
        self.state.observe(unified(status="allowed"), self.now())
        self.assertTrue(self.state.extra_usage.available)

    def test_rejection_reads_them_too(self) -> None:
        """
        The ``overage-*`` headers of a 429 are read as well.
        """
        headers = unified(
            status="rejected", overage_status="rejected", overage_disabled_reason="out_of_credits"
        )
        self.state.observe_rejection(headers, self.now())
        self.assertEqual(self.state.extra_usage.disabled_reason, "out_of_credits")


class RefusalTests(ClockTestCase):
    """
    :obj:`MemoryWindowState.observe_extra_usage_refusal`: the upstream
    refused a request as third-party traffic that draws on extra usage.
    """

    def setUp(self) -> None:
        super().setUp()
        self.state = MemoryWindowState("work")

    def test_until_the_five_hour_reset(self) -> None:
        """
        The refusal pause lasts until the known 5-hour reset, and that
        time is returned.
        """
        reset = self.now() + 90 * 60
        self.state.observe(unified(**{"5h_reset": str(int(reset))}), self.now())
        self.assertEqual(self.state.observe_extra_usage_refusal(self.now()), reset)
        self.assertEqual(
            self.state.extra_usage.pause(self.now()),
            ExtraUsagePause(reset, PauseCause.THIRD_PARTY),
        )
        self.clock.advance(90 * 60)
        self.assertIsNone(self.state.extra_usage.pause(self.now()))

    def test_unknown_or_passed_reset(self) -> None:
        """
        Without a known 5-hour reset, or after it passed, the pause lasts
        an hour.
        """
        self.assertEqual(self.state.observe_extra_usage_refusal(self.now()), self.now() + HOUR)
        state = MemoryWindowState("other")
        state.observe(unified(**{"5h_reset": str(int(self.now() + 60))}), self.now())
        self.clock.advance(60)
        self.assertEqual(state.observe_extra_usage_refusal(self.now()), self.now() + HOUR)

    def test_clamped_and_never_shortened(self) -> None:
        """
        A 5-hour reset beyond five hours is clamped to five; a later
        refusal keeps the end of a longer pause in force.
        """
        self.state.observe(unified(**{"5h_reset": str(int(self.now() + 3 * DAY))}), self.now())
        until = self.state.observe_extra_usage_refusal(self.now())
        self.assertEqual(until, self.now() + 5 * HOUR)
        self.clock.advance(HOUR)
        self.assertEqual(self.state.observe_extra_usage_refusal(self.now()), until + HOUR)
        self.assertEqual(self.state.extra_usage.refused_until, until + HOUR)

    def test_the_later_pause_counts(self) -> None:
        """
        With a drawing pause and a refusal pause in force, the pause is the
        one ending later; after the shorter one ended, the other stays.
        """
        record = ExtraUsage(drawing_until=NOW + HOUR, refused_until=NOW + 2 * HOUR)
        self.assertEqual(
            record.pause(NOW), ExtraUsagePause(NOW + 2 * HOUR, PauseCause.THIRD_PARTY)
        )
        record = ExtraUsage(drawing_until=NOW + 2 * HOUR, refused_until=NOW + HOUR)
        self.assertEqual(record.pause(NOW), ExtraUsagePause(NOW + 2 * HOUR, PauseCause.DRAWING))
        self.assertEqual(
            record.pause(NOW + HOUR), ExtraUsagePause(NOW + 2 * HOUR, PauseCause.DRAWING)
        )
        self.assertIsNone(record.pause(NOW + 2 * HOUR))

    def test_queries_change_nothing(self) -> None:
        """
        Reading the record and its pause, long after, writes nothing.
        """
        self.state.observe_extra_usage_refusal(self.now())
        before = self.state.extra_usage
        self.assertIsNone(before.pause(self.now() + DAY))
        self.assertEqual(self.state.extra_usage, before)
