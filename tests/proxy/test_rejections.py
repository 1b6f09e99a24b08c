"""
Tests for :obj:`ccm.proxy.rejections`, through the proxy: an upstream 401 or
403 "revoked" recovered by re-reading the store or by one refresh, the
answer when nothing works, bans quarantining a credential and moving its
requests, and every other 400/401/403 relayed exactly as it came.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from ccm.credentials.recovery import FORCED_REFRESH_INTERVAL_SECONDS
from ccm.proxy.rejections import INSPECTED_BODY_BYTES
from ccm.pool.serving import Unusable
from tests.fake_anthropic import (
    ORGANIZATION_DISABLED_MESSAGE,
    PROMPT_TOO_LONG_MESSAGE,
    REVOKED_403_MESSAGE,
    RecordedRequest,
    error_reply,
    manual_reply,
    oauth_not_allowed_reply,
    organization_disabled_reply,
    prompt_too_long_reply,
    text_reply,
    third_party_reply,
)
from tests.fixtures import write_credentials
from tests.proxy.messages import MESSAGE_BODY, send_message
from tests.proxyharness import MAIN, SECOND, SECOND_ACCESS_TOKEN, START_TIME, ProxyHarness

#: The tokens the fake's refreshes mint, in order.
REFRESHED_1 = "sk-ant-oat01-fake-1"
REFRESHED_2 = "sk-ant-oat01-fake-2"
#: A token another program (Claude Code on the ccm host) stored.
STORED_ELSEWHERE = "sk-ant-oat01-stored-by-claude-code"
SESSION = "33333333-3333-4333-8333-333333333333"


def posts(harness: ProxyHarness) -> list[RecordedRequest]:
    """
    The Messages requests the fake received.
    """
    return [r for r in harness.fake.requests if r.path.startswith("/v1/messages")]


def bearers(harness: ProxyHarness) -> list[str]:
    """
    The access token each Messages request upstream carried.
    """
    return [(r.header("authorization") or "").removeprefix("Bearer ") for r in posts(harness)]


def error_lines(harness: ProxyHarness, words: str) -> list[str]:
    """
    The error-level log lines holding ``words``.
    """
    return [t for t in harness.log_texts(LogLevel.error) if words in t]


def ask(harness: ProxyHarness, **headers: str) -> IResponse:
    """
    A Messages request, answered.
    """
    harness.flush()
    return harness.messages(MESSAGE_BODY, headers)


class RecoveryTests(SynchronousTestCase):
    """
    A rejected token on a credential serving alone.
    """

    def setUp(self) -> None:
        self.harness = ProxyHarness(self)
        self.fake = self.harness.fake
        self.original = self.fake.access_token

    def test_recovered_by_reading_the_store(self) -> None:
        """
        When the store holds another token (Claude Code refreshed it), the
        request is sent again with it and the client sees only the answer;
        nothing is refreshed.
        """
        self.fake.revoke()
        self.fake.extra_access_tokens.add(STORED_ELSEWHERE)
        write_credentials(
            self.harness.credential_path,
            STORED_ELSEWHERE,
            self.fake.refresh_token,
            int((START_TIME + 86400) * 1000),
        )
        self.fake.enqueue(text_reply("Recovered."))
        response = ask(self.harness)
        self.assertEqual(response.code, 200)
        self.assertIn(b"Recovered.", self.harness.body_of(response))
        self.assertEqual(bearers(self.harness), [self.original, STORED_ELSEWHERE])
        self.assertEqual(self.fake.token_requests, [])
        texts = self.harness.log_texts(LogLevel.info)
        self.assertTrue(any("retrying with the access token from its store" in t for t in texts))
        self.assertEqual(self.harness.log_texts(LogLevel.error), [])
        self.harness.assert_no_secrets_logged(STORED_ELSEWHERE)

    def test_recovered_by_refresh(self) -> None:
        """
        A 401, or a 403 saying the token was revoked, with nothing new in
        the store, is recovered by one refresh, and the request is sent
        again with the new token.
        """
        for status in (401, 403):
            harness = ProxyHarness(self)
            harness.fake.token_mode = "ok"
            original = harness.fake.access_token
            harness.fake.revoke(status=status)
            response = ask(harness)
            self.assertEqual(response.code, 200, status)
            self.assertIn(b"Hello from the fake.", harness.body_of(response))
            self.assertEqual(bearers(harness), [original, REFRESHED_1])
            self.assertEqual(len(harness.fake.token_requests), 1)
            assert harness.credential.tokens is not None
            self.assertEqual(harness.credential.tokens.access_token, REFRESHED_1)
            self.assertEqual(harness.log_texts(LogLevel.error), [])
            harness.assert_no_secrets_logged(REFRESHED_1)

    def test_refresh_at_most_once_per_interval(self) -> None:
        """
        A token that a refresh brought and that is rejected again within
        the interval is not refreshed again: the credential needs a new
        login.  After the interval, a rejected token is refreshed again.
        """
        self.fake.token_mode = "ok"
        self.fake.revoke()
        self.assertEqual(ask(self.harness).code, 200)
        self.harness.clock.advance(FORCED_REFRESH_INTERVAL_SECONDS - 60)
        self.fake.revoke(REFRESHED_1)
        response = ask(self.harness)
        self.harness.ccm_error(response, 503, "api_error")
        self.assertEqual(len(self.fake.token_requests), 1)

        later = ProxyHarness(self)
        later.fake.token_mode = "ok"
        later.fake.revoke()
        self.assertEqual(ask(later).code, 200)
        later.clock.advance(FORCED_REFRESH_INTERVAL_SECONDS + 1)
        later.fake.revoke(REFRESHED_1)
        self.assertEqual(ask(later).code, 200)
        self.assertEqual(len(later.fake.token_requests), 2)
        assert later.credential.tokens is not None
        self.assertEqual(later.credential.tokens.access_token, REFRESHED_2)

    def test_nothing_works(self) -> None:
        """
        When neither the store nor a refresh brings a token, the client gets
        ccm's 503 saying the subscription on the ccm host needs ``claude
        /login`` (with the directory of its file), with ``x-should-retry:
        false``; later requests get it without reaching the upstream.  The
        ccm host's log says it once, at error level.
        """
        self.fake.token_mode = "invalid_grant"
        self.fake.revoke()
        directory = os.path.dirname(self.harness.credential_path)
        for _ in range(3):
            response = ask(self.harness)
            self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])
            error = self.harness.ccm_error(response, 503, "api_error")
            self.assertIn(
                "ccm cannot serve requests: Anthropic rejects the subscription's login",
                error["message"],
            )
            self.assertIn(REVOKED_403_MESSAGE, error["message"])
            self.assertIn(
                f"`CLAUDE_CONFIG_DIR={directory} claude /login` on the ccm host", error["message"]
            )
        self.assertEqual(len(posts(self.harness)), 1)
        [line] = error_lines(self.harness, "needs a new login")
        self.assertIn(f"credential {MAIN} needs a new login", line)
        self.assertIn("claude /login", line)
        self.assertEqual(
            self.harness.pool.members[0].state(START_TIME).reason, Unusable.UNAVAILABLE
        )
        self.harness.assert_no_secrets_logged()

    def test_retried_once(self) -> None:
        """
        The request is sent again once: when the refreshed token is rejected
        too, the credential needs a new login and the client gets the 503.
        """
        self.fake.token_mode = "ok"
        self.fake.revoke()
        self.fake.revoke(REFRESHED_1, status=401)
        response = ask(self.harness)
        error = self.harness.ccm_error(response, 503, "api_error")
        self.assertIn('HTTP 401 authentication_error "Invalid bearer token"', error["message"])
        self.assertEqual(bearers(self.harness), [self.original, REFRESHED_1])
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertEqual(len(error_lines(self.harness, "needs a new login")), 1)
        self.harness.assert_no_secrets_logged(REFRESHED_1)

    def test_concurrent_rejections_share_one_recovery(self) -> None:
        """
        Requests rejected at the same time share one refresh, and the
        incident is logged once.
        """
        self.fake.token_mode = "hang"
        self.fake.revoke()
        first = send_message(self.harness)
        second = send_message(self.harness)
        self.harness.flush()
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertNoResult(first)
        self.harness.clock.advance(30)
        self.harness.flush()
        for d in (first, second):
            self.harness.ccm_error(self.successResultOf(d), 503, "api_error")
        self.assertEqual(len(self.fake.token_requests), 1)
        self.assertEqual(len(error_lines(self.harness, "needs a new login")), 1)

    def test_new_login_ends_it(self) -> None:
        """
        A credential that needs a new login serves again once its store
        holds another token.
        """
        self.fake.token_mode = "invalid_grant"
        self.fake.revoke()
        self.harness.ccm_error(ask(self.harness), 503, "api_error")
        self.fake.extra_access_tokens.add(STORED_ELSEWHERE)
        write_credentials(
            self.harness.credential_path, STORED_ELSEWHERE, "sk-ant-ort01-new-login", 0
        )
        self.harness.credential.reload()
        response = ask(self.harness)
        self.assertEqual(response.code, 200)
        self.assertEqual(bearers(self.harness)[-1], STORED_ELSEWHERE)


class QuarantineTests(SynchronousTestCase):
    """
    A ban on a credential serving alone.
    """

    def setUp(self) -> None:
        self.harness = ProxyHarness(self)
        self.fake = self.harness.fake

    def test_ban_answered_by_ccm(self) -> None:
        """
        A 400 "organization disabled" quarantines the credential; the client
        gets ccm's 503 (``x-should-retry: false``) saying why, since when,
        and what ends it, and so do later requests, which reach no upstream.
        The log says it once, at error level.
        """
        self.fake.enqueue(organization_disabled_reply())
        for ago in ("0ms", "1m30s"):
            response = ask(self.harness)
            self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])
            message = self.harness.ccm_error(response, 503, "api_error")["message"]
            self.assertIn(f"{MAIN}: quarantined since 2026-09-21 14:13 UTC ({ago} ago)", message)
            self.harness.clock.advance(90)
            self.assertIn(
                "Anthropic disabled its organization (HTTP 400 invalid_request_error "
                f'"{ORGANIZATION_DISABLED_MESSAGE}"',
                message,
            )
            self.assertIn(f"once a new login appears in {self.harness.credential_path}", message)
        self.assertEqual(len(posts(self.harness)), 1)
        quarantine = self.harness.credential.quarantine
        assert quarantine is not None
        self.assertEqual(quarantine.since, START_TIME)
        [line] = error_lines(self.harness, "is quarantined")
        self.assertIn(
            f"credential {MAIN} is quarantined: Anthropic disabled its organization", line
        )
        self.harness.assert_no_secrets_logged()

    def test_oauth_not_allowed(self) -> None:
        """
        A 403 ``oauth_org_not_allowed`` quarantines the credential too.
        """
        self.fake.enqueue(oauth_not_allowed_reply())
        message = self.harness.ccm_error(ask(self.harness), 503, "api_error")["message"]
        self.assertIn("Anthropic no longer allows OAuth for its organization", message)
        self.assertIsNotNone(self.harness.credential.quarantine)

    def test_only_a_new_login_ends_it(self) -> None:
        """
        The store read again with the same login, or with a token refreshed
        from the same refresh token, keeps the quarantine; a file with a
        refresh token ccm never held ends it, and the credential serves.
        """
        self.fake.enqueue(organization_disabled_reply())
        ask(self.harness)
        path, fake = self.harness.credential_path, self.fake
        write_credentials(path, fake.access_token, fake.refresh_token, 0)
        self.harness.credential.reload()
        self.assertIsNotNone(self.harness.credential.quarantine)
        write_credentials(path, STORED_ELSEWHERE, "sk-ant-ort01-new-login", 0)
        fake.extra_access_tokens.add(STORED_ELSEWHERE)
        self.harness.credential.reload()
        self.assertIsNone(self.harness.credential.quarantine)
        self.assertEqual(ask(self.harness).code, 200)
        texts = self.harness.log_texts(LogLevel.info)
        self.assertTrue(
            any(
                f"credential {MAIN} leaves quarantine: {path} holds a new login" in t for t in texts
            )
        )


class PoolTests(SynchronousTestCase):
    """
    Rejections and bans in a balancer over ``main`` and ``second``.
    """

    def setUp(self) -> None:
        self.harness = ProxyHarness(self, balancer="least_used")
        self.fake = self.harness.fake
        self.fake.extra_access_tokens.add(SECOND_ACCESS_TOKEN)
        self.original = self.fake.access_token

    def test_rejected_token_moves_the_request(self) -> None:
        """
        When ``main``'s rejected token cannot be recovered, the request is
        sent on ``second`` before anything reached the client; later
        requests go to ``second`` directly.
        """
        self.fake.revoke()
        self.fake.enqueue(text_reply("From second."))
        response = ask(self.harness)
        self.assertEqual(response.code, 200)
        self.assertIn(b"From second.", self.harness.body_of(response))
        ask(self.harness)
        self.assertEqual(
            bearers(self.harness), [self.original, SECOND_ACCESS_TOKEN, SECOND_ACCESS_TOKEN]
        )
        self.assertEqual(len(error_lines(self.harness, f"credential {MAIN} needs a new login")), 1)

    def test_ban_moves_the_session(self) -> None:
        """
        A ban on ``main`` moves the request, and its session, to ``second``;
        the session's next request goes to ``second``; ``main`` is never
        chosen again.
        """
        self.fake.enqueue(organization_disabled_reply(), text_reply("Moved."))
        response = ask(self.harness, **{"x-claude-code-session-id": SESSION})
        self.assertEqual(response.code, 200)
        self.assertIn(b"Moved.", self.harness.body_of(response))
        for _ in range(2):
            self.assertEqual(ask(self.harness, **{"x-claude-code-session-id": SESSION}).code, 200)
        self.assertEqual(ask(self.harness).code, 200)
        self.assertEqual(bearers(self.harness), [self.original] + [SECOND_ACCESS_TOKEN] * 4)
        texts = self.harness.log_texts(LogLevel.info)
        self.assertTrue(
            any(f"assigned to credential {SECOND}, moved from {MAIN}" in t for t in texts)
        )
        self.assertEqual(self.harness.pool.status()["plan_weight"], 10.0)

    def test_all_banned(self) -> None:
        """
        When every credential of the pool is banned, the client gets the
        pool's 503 naming each one's quarantine.
        """
        self.fake.enqueue(organization_disabled_reply(), oauth_not_allowed_reply())
        response = ask(self.harness)
        message = self.harness.ccm_error(response, 503, "api_error")["message"]
        self.assertIn(f"{MAIN}: quarantined since", message)
        self.assertIn(f"{SECOND}: quarantined since", message)
        self.assertEqual(response.headers.getRawHeaders("x-should-retry"), ["false"])

    def test_client_error_not_retried(self) -> None:
        """
        The client's own 400 is answered by the credential that got it:
        not sent on the other one, nothing quarantined.
        """
        self.fake.enqueue(prompt_too_long_reply())
        response = ask(self.harness)
        self.assertEqual(response.code, 400)
        self.assertEqual(bearers(self.harness), [self.original])
        self.assertIsNone(self.harness.credential.quarantine)


class PassThroughTests(SynchronousTestCase):
    """
    400, 401 and 403 answers that say nothing about the credential reach
    the client exactly as they came.
    """

    def setUp(self) -> None:
        self.harness = ProxyHarness(self)
        self.fake = self.harness.fake

    def assert_unchanged(self, response: IResponse, status: int, message: str) -> None:
        """
        ``response`` is the upstream's own: its status, request id and body.
        """
        self.assertEqual(response.code, status)
        [upstream] = posts(self.harness)
        self.assertEqual(response.headers.getRawHeaders("request-id"), [upstream.request_id])
        self.assertEqual(
            response.headers.getRawHeaders("anthropic-ratelimit-unified-status"), ["allowed"]
        )
        document = json.loads(self.harness.body_of(response))
        self.assertEqual(document["error"]["message"], message)
        self.assertEqual(document["request_id"], upstream.request_id)

    def assert_nothing_happened(self) -> None:
        """
        No quarantine, no refresh, no retry, no error logged.
        """
        self.assertIsNone(self.harness.credential.quarantine)
        self.assertIsNone(self.harness.credential.unavailable_reason)
        self.assertEqual(self.fake.token_requests, [])
        self.assertEqual(len(posts(self.harness)), 1)
        self.assertEqual(self.harness.log_texts(LogLevel.error), [])

    def test_prompt_too_long(self) -> None:
        """
        400 "prompt is too long" passes through and quarantines nothing.
        """
        self.fake.enqueue(prompt_too_long_reply())
        self.assert_unchanged(ask(self.harness), 400, PROMPT_TOO_LONG_MESSAGE)
        self.assert_nothing_happened()

    def test_invalid_request(self) -> None:
        """
        Any other ``invalid_request_error`` passes through too.
        """
        self.fake.enqueue(error_reply(400, "invalid_request_error", "messages: Field required"))
        self.assert_unchanged(ask(self.harness), 400, "messages: Field required")
        self.assert_nothing_happened()

    def test_third_party(self) -> None:
        """
        The third-party 400 passes through unchanged and is no ban, no
        rejected login and no retry (its pause is tested with the
        ``extra_usage`` setting, in tests.proxy.test_extra_usage).
        """
        self.fake.enqueue(third_party_reply())
        response = ask(self.harness)
        self.assertEqual(response.code, 400)
        self.assertIn(b"Third-party apps now draw", self.harness.body_of(response))
        self.assertIsNone(self.harness.credential.quarantine)
        self.assertEqual(self.fake.token_requests, [])
        self.assertEqual(len(posts(self.harness)), 1)
        self.assertEqual(self.harness.log_texts(LogLevel.error), [])

    def test_other_403(self) -> None:
        """
        A 403 that does not say the token was revoked passes through.
        """
        self.fake.enqueue(error_reply(403, "permission_error", "Not for your plan."))
        self.assert_unchanged(ask(self.harness), 403, "Not for your plan.")
        self.assert_nothing_happened()

    def test_byte_identical(self) -> None:
        """
        The body is relayed byte for byte, with the upstream's own headers,
        even when it is split in odd pieces and not quite JSON.
        """
        reply = manual_reply()
        self.fake.enqueue(reply)
        d = send_message(self.harness)
        assert reply.handle is not None
        reply.handle.start(403, {"x-upstream": "kept"}, content_type="text/plain")
        for piece in (b"Forb", b"idden\r\n", b"\x00 not json"):
            reply.handle.write(piece)
        reply.handle.finish()
        self.harness.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 403)
        self.assertEqual(response.headers.getRawHeaders("x-upstream"), ["kept"])
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/plain"])
        self.assertEqual(self.harness.body_of(response), b"Forbidden\r\n\x00 not json")
        self.assert_nothing_happened()

    def test_large_body_streamed(self) -> None:
        """
        A body larger than the inspection's limit is no verdict, even if it
        says "revoked": it is relayed as it streams, the part already read
        first, and the credential is left alone.
        """
        reply = manual_reply()
        self.fake.enqueue(reply)
        d = send_message(self.harness)
        assert reply.handle is not None
        reply.handle.start(403, content_type="application/json")
        head = b'{"error": {"message": "revoked", "padding": "' + b"x" * INSPECTED_BODY_BYTES
        reply.handle.write(head)
        self.harness.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 403)
        chunks, done = self.harness.collect(response)
        self.assertEqual(b"".join(chunks), head)
        reply.handle.write(b'"}}')
        reply.handle.finish()
        self.harness.flush()
        self.successResultOf(done)
        self.assertEqual(b"".join(chunks), head + b'"}}')
        self.assert_nothing_happened()

    def test_broken_off(self) -> None:
        """
        An error body that breaks off before its end, or stalls, gets ccm's
        502: nothing of it reached the client, which may retry.
        """
        for stall in (False, True):
            harness = ProxyHarness(self)
            reply = manual_reply()
            harness.fake.enqueue(reply)
            d = send_message(harness)
            assert reply.handle is not None
            reply.handle.start(401, {"content-length": "100"}, content_type="application/json")
            reply.handle.write(b'{"error": ')
            harness.flush()
            if stall:
                harness.clock.advance(300)
            else:
                reply.handle.abort()
            harness.flush()
            error = harness.ccm_error(self.successResultOf(d), 502, "api_error")
            self.assertIn("broke off its HTTP 401 answer", error["message"])
            self.assertEqual(harness.fake.token_requests, [])

    def test_client_leaves_during_check(self) -> None:
        """
        A client that goes away while an error body is being read stops
        the read: the upstream connection is closed.
        """
        reply = manual_reply()
        self.fake.enqueue(reply)
        d: Deferred[Any] = send_message(self.harness)
        assert reply.handle is not None
        reply.handle.start(403, content_type="application/json")
        reply.handle.write(b'{"error": ')
        self.harness.flush()
        d.cancel()
        self.harness.flush()
        self.failureResultOf(d)
        self.assertTrue(reply.handle.disconnected)
