"""
Tests for :obj:`ccm.upstream.anthropic_api`: the request headers of ccm's own
calls to the Anthropic API, and the parsers of the usage and profile
answers.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import cast

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ccm.upstream.anthropic_api import (
    AnswerTooLarge,
    parse_iso_8601,
    parse_profile,
    parse_usage,
    plan_from_profile,
    profile_request_headers,
    read_answer,
    token_request_headers,
    usage_request_headers,
)
from ccm.upstream.identity import CHECKED_AXIOS_VERSION, ClientIdentity


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    """
    Unix seconds of a UTC date and time.
    """
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc).timestamp()


class RequestHeadersTests(SynchronousTestCase):
    """
    The headers ccm sends on its own calls, as Claude Code 2.1.332 sends
    them, naming the release its :obj:`ClientIdentity` claims.
    """

    def setUp(self) -> None:
        self.identity = ClientIdentity()
        self.identity.observe("claude-cli/2.1.400 (external, sdk-cli)")

    def test_token_request(self) -> None:
        """
        A token request is JSON, with axios's default ``Accept`` and user
        agent (Claude Code refreshes through axios), and no bearer.
        """
        headers = token_request_headers(self.identity)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(headers.getRawHeaders(b"accept"), [b"application/json, text/plain, */*"])
        self.assertEqual(
            headers.getRawHeaders(b"user-agent"), [f"axios/{CHECKED_AXIOS_VERSION}".encode()]
        )
        self.assertFalse(headers.hasHeader(b"authorization"))

    def test_usage_request(self) -> None:
        """
        A usage poll carries the OAuth bearer and beta flag, a JSON content
        type and the ``claude-cli`` user agent of Claude Code's API client.
        """
        headers = usage_request_headers("sk-ant-oat01-x", self.identity)
        self.assertEqual(headers.getRawHeaders(b"authorization"), [b"Bearer sk-ant-oat01-x"])
        self.assertEqual(headers.getRawHeaders(b"anthropic-beta"), [b"oauth-2025-04-20"])
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(
            headers.getRawHeaders(b"user-agent"), [b"claude-cli/2.1.400 (external, cli)"]
        )

    def test_profile_request(self) -> None:
        """
        A profile fetch carries the OAuth bearer, a JSON content type, no
        caching and the ``claude-code`` user agent, and no beta flag.
        """
        headers = profile_request_headers("sk-ant-oat01-x", self.identity)
        self.assertEqual(headers.getRawHeaders(b"authorization"), [b"Bearer sk-ant-oat01-x"])
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(headers.getRawHeaders(b"cache-control"), [b"no-cache"])
        self.assertEqual(headers.getRawHeaders(b"user-agent"), [b"claude-code/2.1.400"])
        self.assertFalse(headers.hasHeader(b"anthropic-beta"))

    def test_headers_are_new_each_time(self) -> None:
        """
        Each call gives headers of its own, so one request's changes never
        reach another's.
        """
        first = token_request_headers(self.identity)
        first.setRawHeaders(b"user-agent", [b"changed"])
        self.assertEqual(
            token_request_headers(self.identity).getRawHeaders(b"user-agent"),
            [f"axios/{CHECKED_AXIOS_VERSION}".encode()],
        )


class _Answer(Resource):
    """
    Answers with ``body``, and with ``hang`` keeps the response open after
    it; remembers each request and whether its connection was lost.
    """

    isLeaf = True

    def __init__(self, body: bytes, hang: bool = False) -> None:
        super().__init__()
        self.body = body
        self.hang = hang
        self.lost: list[bool] = []

    def render_GET(self, request: Request) -> bytes | int:
        if not self.hang:
            return self.body
        index = len(self.lost)
        self.lost.append(False)
        request.notifyFinish().addErrback(lambda _: self.lost.__setitem__(index, True))
        request.write(self.body)
        return NOT_DONE_YET


class ReadAnswerTests(SynchronousTestCase):
    """
    :obj:`read_answer`: a body read whole, within a bound.
    """

    def answer(self, resource: _Answer, limit: int) -> tuple[StubTreq, Deferred[bytes]]:
        """
        Ask ``resource`` and start reading its answer, at most ``limit``
        bytes.
        """
        http = StubTreq(resource)
        client = cast(HTTPClient, http)
        response = self.successResultOf(client.get("http://api.test/", unbuffered=True))
        reading = read_answer(response, limit)
        http.flush()
        return http, reading

    def test_whole_body(self) -> None:
        """
        A body within the bound is the answer.
        """
        _, reading = self.answer(_Answer(b'{"five_hour": null}'), 100)
        self.assertEqual(self.successResultOf(reading), b'{"five_hour": null}')

    def test_too_large(self) -> None:
        """
        A body past the bound fails the read, saying how large ccm reads,
        and closes the connection.
        """
        resource = _Answer(b"x" * 11, hang=True)
        http, reading = self.answer(resource, 10)
        failure = self.failureResultOf(reading, AnswerTooLarge)
        self.assertEqual(str(failure.value), "answer larger than 10 bytes")
        http.flush()
        self.assertEqual(resource.lost, [True])

    def test_cancel(self) -> None:
        """
        Cancelling a read whose body is still arriving closes its
        connection, and the read fails as cancelled.
        """
        resource = _Answer(b"partial", hang=True)
        http, reading = self.answer(resource, 100)
        self.assertNoResult(reading)
        reading.cancel()
        http.flush()
        self.assertEqual(resource.lost, [True])
        self.failureResultOf(reading, CancelledError)


class ParseTests(SynchronousTestCase):
    """
    The pure parsers of usage and profile answers.
    """

    def test_iso_8601(self) -> None:
        """
        Offsets, ``Z``, no offset (UTC) and any number of fractional digits
        are understood.
        """
        base = utc(2026, 8, 14, 22, 29, 59)
        self.assertAlmostEqual(
            parse_iso_8601("2026-08-14T22:29:59.777251+00:00"), base + 0.777251, places=5
        )
        self.assertEqual(parse_iso_8601("2026-08-14T22:29:59Z"), base)
        self.assertEqual(parse_iso_8601("2026-08-14T22:29:59"), base)
        self.assertEqual(parse_iso_8601("2026-08-15T00:29:59+02:00"), base)
        self.assertEqual(parse_iso_8601("2026-08-14T20:29:59-0200"), base)
        self.assertAlmostEqual(
            parse_iso_8601("2026-08-14T22:29:59.123456789Z"), base + 0.123456789, places=5
        )

    def test_iso_8601_invalid(self) -> None:
        """
        Anything else is a :obj:`ValueError`.
        """
        for text in ("", "yesterday", "1790000000", "2026-13-01T00:00:00Z", "2026-08-14 22:29"):
            self.assertRaises(ValueError, parse_iso_8601, text)

    def test_usage_numbers_left_to_bounds(self) -> None:
        """
        Numbers of the right type come back as they are, however absurd:
        the window state judges them (see :obj:`tests.pool.test_poller.BoundsTests`).
        """
        self.assertEqual(
            parse_usage(b'{"five_hour": {"utilization": -1}, "seven_day": {"utilization": 1e308}}'),
            ((-1.0, 0.0), (1e308, 0.0)),
        )

    def test_usage(self) -> None:
        """
        The two windows come back as (percent, reset); null buckets as
        ``None``.
        """
        self.assertEqual(
            parse_usage(
                b'{"five_hour": {"utilization": 8, "resets_at": "2026-08-14T22:29:59Z"},'
                b' "seven_day": null}'
            ),
            ((8.0, utc(2026, 8, 14, 22, 29, 59)), None),
        )
        self.assertEqual(parse_usage(b"{}"), (None, None))

    def test_usage_malformed(self) -> None:
        """
        Bodies that are not the usage object, or windows of the wrong shape,
        are a :obj:`ValueError`.
        """
        for body in (
            b"",
            b"[]",
            b'{"five_hour": 8}',
            b'{"five_hour": {"utilization": true}}',
            b'{"seven_day": {"utilization": 5, "resets_at": 1790000000}}',
            b'{"seven_day": {"utilization": 5, "resets_at": "soon"}}',
        ):
            self.assertRaises(ValueError, parse_usage, body)

    def test_plan_from_profile(self) -> None:
        """
        Organization types map to plan names, unknown ones lose their
        ``claude_`` prefix, and a profile without an organization gives
        ``None``.
        """
        def plan(kind: object, tier: object = "t") -> tuple[str, str] | None:
            return plan_from_profile(
                {"organization": {"organization_type": kind, "rate_limit_tier": tier}}
            )

        self.assertEqual(
            plan("claude_max", "default_claude_max_20x"), ("max", "default_claude_max_20x")
        )
        self.assertEqual(plan("claude_pro"), ("pro", "t"))
        self.assertEqual(plan("claude_team"), ("team", "t"))
        self.assertEqual(plan("claude_enterprise"), ("enterprise", "t"))
        self.assertEqual(plan("claude_future"), ("future", "t"))
        self.assertEqual(plan("edu"), ("edu", "t"))
        self.assertEqual(plan(None, 7), ("", ""))
        self.assertIsNone(plan_from_profile({"account": {}}))
        self.assertIsNone(plan_from_profile({"organization": None}))
        self.assertIsNone(plan_from_profile([]))

    def test_parse_profile(self) -> None:
        """
        A profile answer's body gives the plan of its organization; one that
        is not JSON is a :obj:`ValueError` saying so.
        """
        self.assertEqual(
            parse_profile(b'{"organization": {"organization_type": "claude_max"}}'),
            ("max", ""),
        )
        self.assertIsNone(parse_profile(b"{}"))
        error = self.assertRaises(ValueError, parse_profile, b"<html>")
        self.assertEqual(str(error), "not JSON")
