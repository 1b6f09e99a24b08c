"""
Tests for :obj:`ccm.pool.statelog`: each change of a credential's state logged
once, in the documented words, with its figures as fields.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ccm.pool.serving import MemberState, Unusable
from ccm.pool.statelog import CredentialStateLog
from tests.fixtures import logged_events


NOW = 1_790_000_000.0


class CredentialStateLogTests(SynchronousTestCase):
    """
    :obj:`CredentialStateLog`: what it logs, and what it does not repeat.
    """

    def setUp(self) -> None:
        self.events = logged_events(self)
        self.log = CredentialStateLog("work")

    def lines(self, level: LogLevel | None = None) -> list[str]:
        """
        The text of what was logged, at ``level`` or any.
        """
        return [
            formatEvent(e) for e in self.events if level is None or e["log_level"] == level
        ]

    def last(self) -> dict[str, Any]:
        """
        The last event logged.
        """
        return dict(self.events[-1])

    def test_unavailable_once(self) -> None:
        """
        A credential found unavailable for the same reason by its file and
        then by a request is logged once; another reason is news.
        """
        self.log.unavailable("file gone")
        self.log.serving(MemberState(Unusable.UNAVAILABLE, problem="file gone", at=NOW))
        self.log.unavailable("file broken")
        self.assertEqual(
            self.lines(LogLevel.warn),
            ["credential work is unavailable: file gone", "credential work is unavailable: file broken"],
        )

    def test_available_is_news_of_its_own(self) -> None:
        """
        Once the file is back, the line saying so is enough: a request then
        finding the credential usable logs nothing more, one finding it
        paused logs the pause.
        """
        self.log.unavailable("file gone")
        self.log.available("max", 7 * 3600 + 58 * 60)
        self.log.serving(MemberState(at=NOW))
        self.assertEqual(
            self.lines(LogLevel.info), ["credential work is available (max, token valid for 7h58m)"]
        )
        self.log.serving(MemberState(Unusable.PAUSED_5H, utilization=99, cap=99, at=NOW))
        self.assertEqual(len(self.lines(LogLevel.warn)), 2)

    def test_loaded_expired(self) -> None:
        """
        A file whose token has expired is loaded, and its refresh announced.
        """
        self.log.loaded_expired("pro")
        self.assertEqual(
            self.lines(),
            ["credential work is loaded (pro); its token has expired and will be refreshed"],
        )

    def test_serving_changes(self) -> None:
        """
        A pause is a warning with its figures as numbers and its reason's
        name; the same state again is not news; the way back is a note,
        logged only after a warning.
        """
        self.log.serving(MemberState(at=NOW))
        self.assertEqual(self.lines(), [])
        paused = MemberState(Unusable.PAUSED_WEEKLY, NOW + 60, utilization=85, cap=80, at=NOW)
        self.log.serving(paused)
        self.log.serving(MemberState(Unusable.PAUSED_WEEKLY, NOW + 60, utilization=85, cap=80, at=NOW + 30))
        [warning] = self.lines(LogLevel.warn)
        self.assertTrue(
            warning.startswith(
                "credential work is paused at its weekly threshold (85% used, pauses at 80%) until "
            )
        )
        event = self.last()
        self.assertEqual(
            (event["reason"], event["utilization"], event["cap"], event["until"]),
            ("PAUSED_WEEKLY", 85, 80, NOW + 60),
        )
        self.log.serving(MemberState(at=NOW + 60))
        self.assertEqual(self.lines(LogLevel.info), ["credential work is usable again"])

    def test_standing_lines(self) -> None:
        """
        A rejected login and a quarantine are each one error line, which a
        request finding the credential so does not repeat; the end of a
        quarantine is a note, after which a state found is news again.
        """
        self.log.login_rejected("log in again")
        self.log.serving(MemberState(Unusable.UNAVAILABLE, problem="log in again", at=NOW))
        self.log.quarantined("banned", NOW - 60)
        self.assertEqual(self.last()["since"], NOW - 60)
        self.log.serving(MemberState(Unusable.QUARANTINED, problem="banned", since=NOW - 60, at=NOW))
        self.assertEqual(
            self.lines(LogLevel.error),
            [
                "credential work needs a new login: log in again",
                "credential work is quarantined: banned; it takes no new requests and its "
                "sessions move to the other credentials of their pools",
            ],
        )
        self.assertEqual(self.lines(LogLevel.warn), [])
        self.log.quarantine_ended("/path")
        self.log.serving(MemberState(at=NOW))
        self.log.token_rejected("HTTP 401")
        self.log.recovered("a refresh")
        self.assertEqual(
            self.lines(LogLevel.info),
            [
                "credential work leaves quarantine: /path holds a new login",
                "credential work: Anthropic rejected its access token (HTTP 401); looking for a "
                "working one in its store, then with a refresh",
                "credential work: retrying with the access token from a refresh",
            ],
        )
        self.log.serving(MemberState(Unusable.PAUSED_5H, utilization=99, cap=99, at=NOW))
        self.assertEqual(len(self.lines(LogLevel.warn)), 1)

    def test_refresh_lines(self) -> None:
        """
        The refresh of a token is told step by step, failures as errors.
        """
        self.log.refreshing()
        self.log.adopted()
        self.log.refreshed(7 * 3600 + 59 * 60)
        self.log.refresh_failed("token refresh failed: HTTP 500 (will retry)")
        self.log.not_saved("disk full")
        self.assertEqual(
            self.lines(),
            [
                "credential work: refreshing the OAuth access token",
                "credential work: adopted tokens refreshed by another program",
                "credential work: token refreshed, valid for 7h59m",
                "credential work: token refresh failed: HTTP 500 (will retry)",
                "credential work: refreshed tokens could not be saved: disk full",
            ],
        )
        self.assertEqual(len(self.lines(LogLevel.error)), 2)

    def test_validity_is_a_number(self) -> None:
        """
        How long a token is valid is words in the line and seconds in a
        field of its own; a token that never expires is valid for ever,
        with no number.
        """
        self.log.available("max", 90.0)
        self.log.refreshed(None)
        self.assertEqual(
            self.lines(LogLevel.info),
            [
                "credential work is available (max, token valid for 1m30s)",
                "credential work: token refreshed, valid for ever",
            ],
        )
        self.assertEqual([event["expires_in_seconds"] for event in self.events], [90.0, None])

    def test_plan(self) -> None:
        """
        A plan learned from the profile is told with its weight; unknown
        parts say so.
        """
        self.log.plan_learned("max", "default_claude_max_20x", 10.0)
        self.log.plan_learned("", "", 1.0)
        self.assertEqual(
            self.lines(),
            [
                "credential work: plan max (default_claude_max_20x), weight 10",
                "credential work: plan unknown (unknown tier), weight 1",
            ],
        )

    def test_polls(self) -> None:
        """
        The first failed poll of a row is a warning, the next ones debug
        lines, each with its delay in words and in seconds; a poll working
        again is a note, and a 429 of the usage endpoint a debug line.
        """
        self.log.poll_failed("HTTP 500", 1, 60.0)
        self.assertEqual(self.last()["delay_seconds"], 60.0)
        self.log.poll_failed("HTTP 500", 2, 120.0)
        self.log.poll_works_again(2)
        self.log.poll_rate_limited(90.0)
        self.assertEqual(self.last()["delay_seconds"], 90.0)
        self.assertEqual(
            self.lines(LogLevel.warn),
            ["usage poll of work failed (HTTP 500); keeping its last known state, next try in 1m0s"],
        )
        self.assertEqual(
            self.lines(LogLevel.debug),
            [
                "usage poll of work failed again (HTTP 500, 2 in a row); next try in 2m0s",
                "usage endpoint rate-limited the poll of work; next poll in 1m30s",
            ],
        )
        self.assertEqual(self.lines(LogLevel.info), ["usage poll of work works again after 2 failed"])
