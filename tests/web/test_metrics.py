"""
Tests for :obj:`ccm.web.metrics`: ``/metrics`` on the service's own
listeners is for admins only, in Prometheus's text format or OpenMetrics.
(The ``metrics_listen`` listener, without authentication, is tested in
:obj:`tests.test_build`.)
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.model import UserConfig
from tests.proxyharness import ALICE, ALICE_TOKEN, ProxyHarness

CAROL_TOKEN = "ccm-token-carol-admin-93be01"
CAROL = UserConfig(name="carol", token=CAROL_TOKEN, admin=True)


class MetricsAuthTests(SynchronousTestCase):
    """
    Who may read ``/metrics`` on the main site.
    """

    def setUp(self) -> None:
        self.harness = ProxyHarness(self, users=(ALICE, CAROL))

    def test_admin(self) -> None:
        """
        An admin's token gets the metrics as Prometheus text, not to be
        cached, the service's own series in it.
        """
        harness = self.harness
        response = harness.response("GET", "/metrics", token=CAROL_TOKEN)
        self.assertEqual(response.code, 200)
        [content_type] = response.headers.getRawHeaders(b"content-type")
        self.assertTrue(content_type.startswith(b"text/plain; version="), content_type)
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-store"])
        body = harness.body_of(response).decode()
        self.assertIn("\nccm_requests_in_progress 0.0\n", body)
        self.assertIn('ccm_credential_state{credential="main",state="usable"} 1.0', body)
        for secret in (CAROL_TOKEN, ALICE_TOKEN, harness.fake.access_token):
            self.assertNotIn(secret, body)

    def test_openmetrics(self) -> None:
        """
        A scraper that asks for OpenMetrics gets it.
        """
        response = self.harness.response(
            "GET",
            "/metrics",
            headers={"accept": "application/openmetrics-text; version=1.0.0"},
            token=CAROL_TOKEN,
        )
        self.assertEqual(response.code, 200)
        [content_type] = response.headers.getRawHeaders(b"content-type")
        self.assertTrue(content_type.startswith(b"application/openmetrics-text"), content_type)
        self.assertTrue(self.harness.body_of(response).endswith(b"# EOF\n"))

    def test_no_token(self) -> None:
        """
        Without a token: ccm's 401.
        """
        harness = self.harness
        harness.ccm_error(
            harness.response("GET", "/metrics", token=None), 401, "authentication_error"
        )

    def test_not_an_admin(self) -> None:
        """
        A user who is not an admin: a 403 ``permission_error`` that says
        what would work.
        """
        harness = self.harness
        error = harness.ccm_error(
            harness.response("GET", "/metrics", token=ALICE_TOKEN), 403, "permission_error"
        )
        self.assertIn("metrics_listen", error["message"])

    def test_anonymous_service(self) -> None:
        """
        Without users nobody is an admin: the main site never serves the
        metrics.
        """
        harness = ProxyHarness(self, users=())
        harness.ccm_error(harness.response("GET", "/metrics", token=None), 403, "permission_error")

    def test_methods_and_paths(self) -> None:
        """
        ``HEAD`` is answered without a body; other methods get a 405; a path
        below ``/metrics`` a 404.
        """
        harness = self.harness
        head = harness.response("HEAD", "/metrics", token=CAROL_TOKEN)
        self.assertEqual(head.code, 200)
        self.assertEqual(harness.body_of(head), b"")
        harness.ccm_error(
            harness.response("POST", "/metrics", b"", token=CAROL_TOKEN),
            405,
            "invalid_request_error",
        )
        harness.ccm_error(
            harness.response("GET", "/metrics/x", token=CAROL_TOKEN), 404, "not_found_error"
        )
