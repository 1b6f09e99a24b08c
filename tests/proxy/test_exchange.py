"""
Tests for :obj:`ccm.proxy.exchange` and its :obj:`ccm.proxy.context`: a proxied
request uses the route of the credential that serves it, and keeps the
context it started with.  (Most of the exchange's behaviour is tested
through the resource, in :obj:`tests.proxy.test_resource`.)
"""

from __future__ import annotations

from typing import cast

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from ccm.proxy.accesslog import ACCESS_LOG_FORMAT
from ccm.credentials.credential import Credential
from ccm.proxy.context import Route
from tests.fake_anthropic import error_reply, text_reply
from tests.fixtures import MemoryRecorder
from tests.proxy.messages import MESSAGE_BODY, USAGE, send_message
from tests.proxyharness import MAIN, SECOND, SECOND_ACCESS_TOKEN, ProxyHarness


class RouteTests(SynchronousTestCase):
    """
    Each credential's requests take its own :obj:`Route`.
    """

    def test_usage_counted_by_the_serving_credential(self) -> None:
        """
        The usage of a request is recorded by the recorder of the
        credential that answered it: after a 429 moved the request from
        ``main`` (which counts usage) to ``second`` (which does not), nothing
        is recorded; a request ``main`` answers is.
        """
        recorder = MemoryRecorder()
        harness = ProxyHarness(self, balancer="fallback", recorder=recorder)
        harness.fake.extra_access_tokens.add(SECOND_ACCESS_TOKEN)
        harness.fake.enqueue(
            error_reply(429, "rate_limit_error", "Slow down.", headers={}),
            text_reply("From second.", usage=USAGE),
            text_reply("From main.", usage=USAGE),
        )
        self.assertIn(b"From second.", harness.body_of(harness.messages(MESSAGE_BODY)))
        self.assertEqual(recorder.records, [])
        self.assertIn(b"From main.", harness.body_of(harness.messages(MESSAGE_BODY)))
        self.assertEqual(len(recorder.records), 1)
        first, second = harness.exchange_lines()
        self.assertIn(f"credential={SECOND} ", first)
        self.assertNotIn("tokens in=", first)
        self.assertIn(f"credential={MAIN} ", second)
        self.assertIn("tokens in=21 out=9", second)

    def test_round_robin_turn_after_a_retry(self) -> None:
        """
        A request without a session that a throttle moved from ``main`` to
        ``second`` takes one turn of a round robin, not two: the next
        request goes to ``main`` again (the pool is asked once for the
        retry's credential).
        """
        harness = ProxyHarness(self, balancer="round_robin")
        harness.fake.extra_access_tokens.add(SECOND_ACCESS_TOKEN)
        harness.fake.enqueue(
            error_reply(429, "rate_limit_error", "Slow down.", headers={}),
            text_reply("From second."),
            text_reply("From main."),
        )
        self.assertIn(b"From second.", harness.body_of(harness.messages(MESSAGE_BODY)))
        self.assertIn(b"From main.", harness.body_of(harness.messages(MESSAGE_BODY)))
        bearers = [r.header("authorization") for r in harness.fake.requests]
        self.assertEqual(
            bearers,
            [
                f"Bearer {harness.fake.access_token}",
                f"Bearer {SECOND_ACCESS_TOKEN}",
                f"Bearer {harness.fake.access_token}",
            ],
        )

    def test_routes_by_tag(self) -> None:
        """
        The proxy's context holds one route per credential, with the
        service's client for credentials without a detour.
        """
        harness = ProxyHarness(self, balancer="fallback")
        upstream = cast(HTTPClient, harness.upstream)
        routes = harness.proxy.context.routes
        self.assertEqual(sorted(routes), [MAIN, SECOND])
        self.assertEqual(
            [routes[tag] for tag in (MAIN, SECOND)],
            [Route(upstream, None), Route(upstream, None)],
        )


class ContextTests(SynchronousTestCase):
    """
    A request in progress keeps the context it started with; a reload
    gives new requests a new one.
    """

    def test_reload_applies_to_new_requests(self) -> None:
        """
        Headers a reload adds are not sent with a request that started
        before it (here, still waiting for its access token), and are sent
        with the next one.
        """
        harness = ProxyHarness(self)
        pending: Deferred[str] = Deferred()
        self.patch(Credential, "access_token", lambda credential: pending)
        started = send_message(harness)
        harness.proxy.reconfigure(
            extra_headers=(("x-team", ("blue",)),), max_request_body=harness.proxy.max_request_body
        )
        pending.callback(harness.fake.access_token)
        harness.flush()
        self.assertEqual(self.successResultOf(started).code, 200)
        self.assertNotIn("x-team", harness.fake.requests[-1].headers)
        token = harness.fake.access_token
        self.patch(Credential, "access_token", lambda credential: succeed(token))
        self.assertEqual(harness.messages(MESSAGE_BODY).code, 200)
        self.assertEqual(harness.fake.requests[-1].headers["x-team"], ["blue"])


class LogFieldTests(SynchronousTestCase):
    """
    The exchange's log events carry their figures as fields of their own,
    so that a JSON log observer gets numbers.
    """

    def test_request_line(self) -> None:
        """
        The per-request line has the status, duration, bytes and token
        counts as numbers, and renders as docs/running.md shows it.
        """
        harness = ProxyHarness(self, recorder=MemoryRecorder())
        harness.fake.enqueue(text_reply("Hello", usage=USAGE))
        body = harness.body_of(harness.messages(dict(MESSAGE_BODY, stream=True)))
        [event] = [
            e for e in harness.log if e.get("log_format") == ACCESS_LOG_FORMAT
        ]
        self.assertEqual(
            [
                event[name]
                for name in (
                    "status",
                    "bytes",
                    "input_tokens",
                    "output_tokens",
                    "cache_read_input_tokens",
                    "cache_creation_input_tokens",
                )
            ],
            [200, len(body), 21, 9, 300, 50],
        )
        self.assertIsInstance(event["duration"], float)
        self.assertEqual(
            harness.exchange_lines(),
            [
                f"POST /v1/messages user=alice model={MESSAGE_BODY['model']} credential=main "
                f"-> 200 in 0.000s, {len(body)} bytes, tokens in=21 out=9 cache read=300 write=50"
            ],
        )

    def test_retry_line(self) -> None:
        """
        The line of a retry after a 429 has the seconds the credential is
        limited for as a number, next to its readable form.
        """
        harness = ProxyHarness(self, balancer="fallback")
        harness.fake.extra_access_tokens.add(SECOND_ACCESS_TOKEN)
        harness.fake.enqueue(error_reply(429, "rate_limit_error", "Used up."), text_reply("Hi"))
        harness.body_of(harness.messages(MESSAGE_BODY))
        [event] = [e for e in harness.log if "429 from credential" in e.get("log_format", "")]
        self.assertIsInstance(event["limited_seconds"], float)
        self.assertGreater(event["limited_seconds"], 0)
        [line] = [
            t for t in harness.log_texts() if t.startswith("429 from credential main (limited for ")
        ]
        self.assertTrue(line.endswith("); retrying on another credential"), line)
