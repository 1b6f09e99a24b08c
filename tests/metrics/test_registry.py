"""
Tests for :obj:`ccm.metrics.registry`: the counters and histograms of a
service after a known sequence of requests, refreshes and polls, through
the whole service (:obj:`tests.proxyharness.ProxyHarness`).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.metrics.registry import LATENCY_BUCKETS_SECONDS, ServiceMetrics
from ccm.pool.poller import UsagePoller
from tests.fake_anthropic import error_reply, manual_reply, text_reply
from tests.proxy.messages import MESSAGE_BODY, USAGE, send_message
from tests.proxyharness import BOB_TOKEN, MAIN, SECOND, ProxyHarness

#: What :obj:`USAGE` costs on Sonnet 4.5 at list prices (USD per million:
#: 3 input, 15 output, 0.30 cache reads, 3.75 and 6 for 5-minute and
#: 1-hour cache writes).
USAGE_COST_USD = (21 * 3 + 9 * 15 + 300 * 0.30 + 20 * 3.75 + 30 * 6) / 1e6


def value(harness: ProxyHarness, name: str, **labels: str) -> Any:
    """
    The value of one sample of the service's metrics, or None when absent.
    """
    metrics = harness.service.metrics
    assert isinstance(metrics, ServiceMetrics)
    return metrics.registry.get_sample_value(name, labels)


class RequestMetricsTests(SynchronousTestCase):
    """
    A balancer over ``main`` and ``second``: requests, tokens, cost, 429s
    and retries as the proxy answers them.
    """

    def setUp(self) -> None:
        """
        Three requests: alice's is served by ``main``; bob's gets a 429
        from ``main`` (now limited) and is retried on ``second``; alice's
        next one gets a 429 from ``second`` too, and ccm answers its own 429.
        """
        self.harness = harness = ProxyHarness(self, balancer="fallback")
        harness.fake.enqueue(
            text_reply("One.", usage=USAGE),
            error_reply(429, "rate_limit_error", "Used up."),
            text_reply("Two.", usage=USAGE),
            error_reply(429, "rate_limit_error", "Used up."),
        )
        self.assertEqual(harness.messages(MESSAGE_BODY).code, 200)
        bob = harness.response(
            "POST",
            "/v1/messages",
            b'{"model": "claude-sonnet-4-5-20250929", "max_tokens": 8, "messages": []}',
            {"content-type": "application/json"},
            token=BOB_TOKEN,
        )
        self.assertEqual(bob.code, 200)
        harness.body_of(bob)
        self.assertEqual(harness.messages(MESSAGE_BODY).code, 429)

    def test_requests(self) -> None:
        """
        Each request is counted once, by user, the credential that served
        it last, the model family and the status sent.
        """
        h = self.harness
        sonnet = {"model": "sonnet"}
        self.assertEqual(
            value(h, "ccm_requests_total", user="alice", credential=MAIN, status="200", **sonnet),
            1.0,
        )
        self.assertEqual(
            value(h, "ccm_requests_total", user="bob", credential=SECOND, status="200", **sonnet),
            1.0,
        )
        self.assertEqual(
            value(h, "ccm_requests_total", user="alice", credential=SECOND, status="429", **sonnet),
            1.0,
        )
        self.assertIsNone(
            value(h, "ccm_requests_total", user="bob", credential=MAIN, status="429", **sonnet)
        )

    def test_tokens_and_cost(self) -> None:
        """
        The tokens of each answer are counted by kind, and its cost at list
        prices, under the user and the credential that served it.
        """
        h = self.harness
        for user, credential in (("alice", MAIN), ("bob", SECOND)):
            labels = {"user": user, "credential": credential, "model": "sonnet"}
            self.assertEqual(
                {
                    kind: value(h, "ccm_tokens_total", kind=kind, **labels)
                    for kind in ("input", "output", "cache_read", "cache_write")
                },
                {"input": 21.0, "output": 9.0, "cache_read": 300.0, "cache_write": 50.0},
            )
            self.assertAlmostEqual(value(h, "ccm_cost_usd_total", **labels), USAGE_COST_USD)

    def test_rate_limits_and_retries(self) -> None:
        """
        The 429 ccm answered itself counts as ccm's; the move off ``main``
        counts as a retry; nothing was passed through.
        """
        h = self.harness
        self.assertEqual(
            value(h, "ccm_rate_limited_responses_total", credential=SECOND, source="ccm"), 1.0
        )
        for credential in (MAIN, SECOND):
            self.assertEqual(
                value(
                    h, "ccm_rate_limited_responses_total", credential=credential, source="upstream"
                ),
                0.0,
            )
        self.assertEqual(
            value(h, "ccm_retries_total", credential=MAIN, reason="rate_limited"), 1.0
        )
        self.assertEqual(
            value(h, "ccm_retries_total", credential=SECOND, reason="rate_limited"), 0.0
        )

    def test_durations(self) -> None:
        """
        Every request's duration is observed under its credential; the time
        to headers only for the upstream answers relayed.
        """
        h = self.harness
        self.assertEqual(value(h, "ccm_request_duration_seconds_count", credential=MAIN), 1.0)
        self.assertEqual(value(h, "ccm_request_duration_seconds_count", credential=SECOND), 2.0)
        self.assertEqual(value(h, "ccm_response_headers_seconds_count", credential=MAIN), 1.0)
        self.assertEqual(value(h, "ccm_response_headers_seconds_count", credential=SECOND), 1.0)


class PassedThroughTests(SynchronousTestCase):
    """
    The upstream's own 429, passed through.
    """

    def test_passed_through_429(self) -> None:
        """
        A throttle 429 with nowhere else to go reaches the client as the
        upstream sent it, and counts as the upstream's.
        """
        harness = ProxyHarness(self)
        harness.fake.enqueue(error_reply(429, "rate_limit_error", "Slow down.", headers={}))
        self.assertEqual(harness.messages(MESSAGE_BODY).code, 429)
        self.assertEqual(
            value(harness, "ccm_rate_limited_responses_total", credential=MAIN, source="upstream"),
            1.0,
        )
        self.assertEqual(
            value(harness, "ccm_rate_limited_responses_total", credential=MAIN, source="ccm"), 0.0
        )


class TimingTests(SynchronousTestCase):
    """
    The histograms and the requests in progress, on the harness's clock.
    """

    def test_time_to_headers_and_duration(self) -> None:
        """
        A stream whose headers come after 2 s and which ends 5 s later is
        observed as 2 s to headers and 7 s in all; while it runs it is in
        progress.
        """
        harness = ProxyHarness(self)
        reply = manual_reply()
        harness.fake.enqueue(reply)
        started = send_message(harness)
        self.assertEqual(value(harness, "ccm_requests_in_progress"), 1.0)
        harness.clock.advance(2)
        assert reply.handle is not None
        reply.handle.start(200, content_type="application/json")
        harness.flush()
        harness.clock.advance(5)
        reply.handle.write(b"{}")
        reply.handle.finish()
        harness.flush()
        harness.body_of(self.successResultOf(started))
        self.assertEqual(value(harness, "ccm_requests_in_progress"), 0.0)
        labels = {"credential": MAIN}
        self.assertEqual(value(harness, "ccm_response_headers_seconds_sum", **labels), 2.0)
        self.assertEqual(value(harness, "ccm_request_duration_seconds_sum", **labels), 7.0)
        self.assertEqual(
            value(harness, "ccm_response_headers_seconds_bucket", le="1.0", **labels), 0.0
        )
        self.assertEqual(
            value(harness, "ccm_response_headers_seconds_bucket", le="2.5", **labels), 1.0
        )
        self.assertIn(600.0, LATENCY_BUCKETS_SECONDS)

    def test_unknown_model_is_other(self) -> None:
        """
        A model id the client made up is counted as ``other``, never under
        its own name.
        """
        harness = ProxyHarness(self)
        harness.messages(dict(MESSAGE_BODY, model="made-up-model-123"))
        self.assertEqual(
            value(
                harness,
                "ccm_requests_total",
                user="alice",
                credential=MAIN,
                model="other",
                status="200",
            ),
            1.0,
        )
        metrics = harness.service.metrics
        assert metrics is not None
        labels = {
            sample.labels.get("model")
            for family in metrics.registry.collect()
            for sample in family.samples
        }
        self.assertNotIn("made-up-model-123", labels)


class CredentialEventTests(SynchronousTestCase):
    """
    Refreshes and usage polls, counted by outcome.
    """

    def test_refreshes(self) -> None:
        """
        A refresh that works counts as ``refreshed``, one the token
        endpoint refuses as ``failed``; every outcome is there from the
        start.
        """
        harness = ProxyHarness(self)
        self.assertEqual(
            value(harness, "ccm_token_refreshes_total", credential=MAIN, outcome="adopted"), 0.0
        )
        harness.fake.token_mode = "ok"
        self.successResultOf(harness.credential.refresh())
        self.assertEqual(
            value(harness, "ccm_token_refreshes_total", credential=MAIN, outcome="refreshed"), 1.0
        )
        harness.fake.token_mode = "server_error"
        harness.credential.refresh()
        harness.flush()
        self.assertEqual(
            value(harness, "ccm_token_refreshes_total", credential=MAIN, outcome="failed"), 1.0
        )

    def test_polls(self) -> None:
        """
        A usage poll that works counts as ``ok``; after the poll interval,
        one answered with a 500 as ``failed``; after its back-off, one
        answered with a 429 as ``rate_limited``.
        """
        harness = ProxyHarness(self)
        [poller] = [s for s in harness.service if isinstance(s, UsagePoller)]
        outcomes = ("ok", "failed", "rate_limited")
        for mode, seen in zip(("ok", "server_error", "rate_limited"), outcomes):
            harness.fake.usage_mode = mode
            harness.clock.advance(3600)
            self.successResultOf(poller.poll_all())
            harness.flush()
            self.assertEqual(
                value(harness, "ccm_usage_polls_total", credential=MAIN, outcome=seen), 1.0
            )
        self.assertEqual(
            sum(
                value(harness, "ccm_usage_polls_total", credential=MAIN, outcome=outcome)
                for outcome in outcomes
            ),
            3.0,
        )
