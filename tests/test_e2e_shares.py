"""
End-to-end tests of users' shares: a real ``twistd -n ccm`` process with
two users, one of them with a 5-hour share, in front of the fake upstream,
driven by the real Claude Code CLI until the share refuses it.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from twisted.internet.defer import inlineCallbacks

from tests import e2e
from tests.fake_anthropic import allowed_unified_headers, text_reply
from tests.fixtures import expiry_ms, write_credentials

ALICE = "ak-ccm-shares-alice"
BOB = "ak-ccm-shares-bob"


class ShareTestsMixin(e2e.RealClaudeCode):
    """
    alice may use 10 % of the pool's 5-hour window; bob has no share.
    """

    timeout = 300

    @inlineCallbacks
    def start(self) -> Any:
        """Start the fake and ccm, with a usage file (and so a share file)."""
        self.fake, url = e2e.serve_fake_anthropic(self)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        credentials = os.path.join(directory, "credentials.json")
        write_credentials(credentials, self.fake.access_token, "sk-ant-ort01-a", expiry_ms(86400))
        self.usages = os.path.join(directory, "usages.json")
        self.config = {
            "endpoint": "tcp:0:interface=127.0.0.1",
            "upstream_url": url,
            "oauth_token_url": url + "/v1/oauth/token",
            "credential_path": credentials,
            "usages_path": self.usages,
            "users": [
                {"name": "alice", "token": ALICE, "share_5h": 10},
                {"name": "bob", "token": BOB},
            ],
        }
        self.ccm = yield e2e.start_ccm(self, self.config)

    def utilization(self, fraction: float) -> None:
        """The fake's answers report this much of the 5-hour window used."""
        self.fake.unified_headers = allowed_unified_headers(
            time.time(), five_hour_utilization=fraction
        )

    def posts(self) -> int:
        return len([r for r in self.fake.requests if r.path.startswith("/v1/messages")])

    @inlineCallbacks
    def status(self, token: str) -> Any:
        rc, out, err = yield e2e.run_python_script(
            self,
            "import urllib.request\n"
            f"request = urllib.request.Request({self.ccm.url + '/ccm/v1/status'!r},"
            f" headers={{'authorization': 'Bearer {token}'}})\n"
            "print(urllib.request.urlopen(request).read().decode())\n",
        )
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def refusals_of_alice(self) -> int:
        """
        How many of alice's messages ccm has answered with a 429, by its
        log lines.
        """
        return sum(
            1
            for line in self.ccm.output().splitlines()
            if "POST /v1/messages user=alice " in line and "-> 429 " in line
        )

    @inlineCallbacks
    def test_refused_over_share(self) -> Any:
        """
        alice's first run finds the window at 10 %; the next answer reports
        30 %, a rise charged to her (she alone ran): 20 % of the pool, over
        her 10 %.  Her third run, with the CLI's default retries, ends at
        once with "Request rejected (429)" and ccm's message naming her
        share, her use and the reset (UTC and from now), and nothing more
        reaches the upstream.  bob is still served; the status shows alice
        her share; after a restart she is still refused.
        """
        yield self.start()
        self.utilization(0.10)
        self.fake.enqueue(text_reply("one"), text_reply("two"), text_reply("bob's"))
        first = yield self.run_claude(self.ccm.url, ALICE, "one")
        self.assertEqual((first.rc, first.stdout.strip()), (0, "one"), first.stderr)
        self.utilization(0.30)
        second = yield self.run_claude(self.ccm.url, ALICE, "two")
        self.assertEqual((second.rc, second.stdout.strip()), (0, "two"), second.stderr)
        sent = self.posts()
        refusals = self.refusals_of_alice()
        started = time.monotonic()
        refused = yield self.run_claude(
            self.ccm.url, ALICE, "three", extra_env={"CLAUDE_CODE_MAX_RETRIES": None}, timeout=60
        )
        elapsed = time.monotonic() - started
        output = refused.stdout + refused.stderr
        self.assertNotEqual(refused.rc, 0)
        self.assertIn("Request rejected (429)", output)
        # 20 % charged, and her second run's cost, not settled by a later
        # answer, estimated at the dollars per 1 % learnt from the first.
        used = re.search(r"ccm: alice has used ([0-9.]+)% of the pool's 5-hour window", output)
        assert used is not None, output
        self.assertGreaterEqual(float(used.group(1)), 20.0)
        self.assertIn("their share is 10%", output)
        self.assertRegex(output, r"frees up at \d{4}-\d\d-\d\d \d\d:\d\d UTC \(in 4h\d+m\)")
        self.assertEqual(self.posts(), sent)
        # No retry loop: the CLI asked once, and took the answer as final.
        self.assertEqual(self.refusals_of_alice(), refusals + 1, self.ccm.output())
        self.assertLess(elapsed, 30)
        served = yield self.run_claude(self.ccm.url, BOB, "bob")
        self.assertEqual((served.rc, served.stdout.strip()), (0, "bob's"), served.stderr)
        status = yield self.status(ALICE)
        self.assertEqual(status["share"]["five_hour"]["share"], 10)
        self.assertGreaterEqual(status["share"]["five_hour"]["used"], 20)
        self.assertEqual(status["share"]["five_hour"]["remaining"], 0)
        bob_status = yield self.status(BOB)
        self.assertNotIn("share", bob_status)
        yield self.ccm.stop()
        self.assertTrue(os.path.exists(self.usages + ".shares"))
        self.ccm = yield e2e.start_ccm(self, self.config)
        again = yield self.run_claude(self.ccm.url, ALICE, "four")
        self.assertNotEqual(again.rc, 0)
        self.assertIn("their share is 10%", again.stdout + again.stderr)
        self.assertEqual(self.posts(), sent + 1)


globals().update(ShareTestsMixin.make_test_case_classes())
