"""
Tests for :obj:`ccm.upstream.verdicts`: what an upstream error answer says
about the subscription, read from its status and body alone.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.upstream.verdicts import MESSAGE_CHARACTERS, Reading, Verdict, classify, plan_downgraded
from tests.fake_anthropic import (
    OAUTH_NOT_ALLOWED_MESSAGE,
    ORGANIZATION_DISABLED_MESSAGE,
    PROMPT_TOO_LONG_MESSAGE,
    REVOKED_401_MESSAGE,
    REVOKED_403_MESSAGE,
    THIRD_PARTY_MESSAGE,
)


def api_error(error_type: str, message: str, request_id: str = "req_011", **extra: Any) -> bytes:
    """
    A body in the API's error shape, with ``extra`` keys in its ``error``.
    """
    error = {"type": error_type, "message": message, **extra}
    return json.dumps({"type": "error", "error": error, "request_id": request_id}).encode()


class ClassifyTests(SynchronousTestCase):
    """
    :obj:`classify` on the answers the API gives.
    """

    def verdict(self, status: int, body: bytes) -> Verdict:
        """
        The verdict on one answer.
        """
        return classify(status, body).verdict

    def test_any_401_rejects_the_token(self) -> None:
        """
        A 401 rejects the token, whatever its body: the API's shape, text
        from something in front of it, or nothing.
        """
        for body in (
            api_error("authentication_error", REVOKED_401_MESSAGE),
            api_error("authentication_error", "OAuth token has expired."),
            b"<html>401 Authorization Required</html>",
            b"",
        ):
            self.assertEqual(self.verdict(401, body), Verdict.TOKEN_REJECTED, body)

    def test_403_revoked_rejects_the_token(self) -> None:
        """
        A 403 that says the token was revoked rejects it, in any case and
        spacing; other 403s (a scope or model the plan lacks) do not.
        """
        self.assertEqual(
            self.verdict(403, api_error("permission_error", REVOKED_403_MESSAGE)),
            Verdict.TOKEN_REJECTED,
        )
        self.assertEqual(
            self.verdict(403, api_error("permission_error", "OAuth  TOKEN has been\nREVOKED")),
            Verdict.TOKEN_REJECTED,
        )
        for message in (
            "OAuth token does not meet scope requirement user:profile",
            "Your plan does not include access to this model.",
        ):
            self.assertEqual(
                self.verdict(403, api_error("permission_error", message)), Verdict.PASS, message
            )

    def test_400_revoked_is_no_verdict(self) -> None:
        """
        Only a 401 or a 403 rejects the token: a 400 mentioning a revoked
        token is the client's business.
        """
        self.assertEqual(
            self.verdict(400, api_error("invalid_request_error", "the file was revoked")),
            Verdict.PASS,
        )

    def test_organization_disabled(self) -> None:
        """
        "This organization has been disabled." bans the subscription, in
        any case, British spelling, or under another status.
        """
        for status, message in (
            (400, ORGANIZATION_DISABLED_MESSAGE),
            (400, "THIS ORGANISATION HAS BEEN DISABLED"),
            (400, "Your organization is disabled."),
            (403, ORGANIZATION_DISABLED_MESSAGE),
        ):
            reading = classify(status, api_error("invalid_request_error", message))
            self.assertEqual(reading.verdict, Verdict.ORGANIZATION_DISABLED, message)
            self.assertTrue(reading.verdict.quarantines)

    def test_oauth_not_allowed(self) -> None:
        """
        OAuth no longer allowed for the organization bans the subscription,
        said in the message or as the code ``oauth_org_not_allowed``
        wherever it sits; the code wins over a 401 too.
        """
        bodies = [
            api_error("permission_error", OAUTH_NOT_ALLOWED_MESSAGE),
            api_error(
                "permission_error", "denied", details={"error_code": "oauth_org_not_allowed"}
            ),
            api_error("oauth_org_not_allowed", "denied"),
            api_error("permission_error", "denied", error_code="OAUTH_ORG_NOT_ALLOWED"),
            json.dumps({"error_code": "oauth_org_not_allowed"}).encode(),
        ]
        for body in bodies:
            for status in (403, 401):
                reading = classify(status, body)
                self.assertEqual(reading.verdict, Verdict.OAUTH_NOT_ALLOWED, (status, body))
                self.assertTrue(reading.verdict.quarantines)

    def test_third_party(self) -> None:
        """
        The 400 "Third-party apps now draw from your extra usage" is its own
        verdict, which quarantines nothing; under another status it is no
        verdict.
        """
        reading = classify(400, api_error("invalid_request_error", THIRD_PARTY_MESSAGE))
        self.assertEqual(reading.verdict, Verdict.THIRD_PARTY)
        self.assertFalse(reading.verdict.quarantines)
        self.assertEqual(
            self.verdict(
                400,
                api_error(
                    "invalid_request_error", "third party apps now draw from your extra usage"
                ),
            ),
            Verdict.THIRD_PARTY,
        )
        self.assertEqual(
            self.verdict(403, api_error("permission_error", THIRD_PARTY_MESSAGE)), Verdict.PASS
        )

    def test_client_errors_pass(self) -> None:
        """
        The client's own mistakes are no verdict on the subscription:
        "prompt is too long", an invalid request, and a feature its
        organization disabled (which names the organization and
        "disabled", but is no ban).
        """
        for message in (
            PROMPT_TOO_LONG_MESSAGE,
            "messages.0.content: Field required",
            "max_tokens: 200000 > 128000, which is the maximum allowed",
            "Your organization has disabled web search.",
            "This feature is disabled for your organization.",
        ):
            reading = classify(400, api_error("invalid_request_error", message))
            self.assertEqual(reading.verdict, Verdict.PASS, message)
            self.assertFalse(reading.verdict.quarantines)

    def test_other_shapes(self) -> None:
        """
        Bodies that are not the API's shape are read as text: a gateway's
        ``{"error": "...", "message": "..."}``, another JSON object, or HTML.
        """
        self.assertEqual(
            self.verdict(
                403, json.dumps({"error": "forbidden", "message": REVOKED_403_MESSAGE}).encode()
            ),
            Verdict.TOKEN_REJECTED,
        )
        self.assertEqual(
            self.verdict(400, json.dumps({"detail": ORGANIZATION_DISABLED_MESSAGE}).encode()),
            Verdict.ORGANIZATION_DISABLED,
        )
        self.assertEqual(
            self.verdict(403, b"<html><h1>403 Forbidden</h1>Access denied</html>"), Verdict.PASS
        )
        self.assertEqual(self.verdict(400, b"\xff\xfe not utf-8"), Verdict.PASS)
        self.assertEqual(self.verdict(400, b"[1, 2]"), Verdict.PASS)


class ReadingTests(SynchronousTestCase):
    """
    What a :obj:`Reading` keeps of an answer, and its words.
    """

    def test_fields_and_words(self) -> None:
        """
        The reading keeps the status, type, message and request id, and
        says them in one phrase.
        """
        reading = classify(403, api_error("permission_error", REVOKED_403_MESSAGE, "req_7"))
        self.assertEqual(
            reading,
            Reading(Verdict.TOKEN_REJECTED, 403, "permission_error", REVOKED_403_MESSAGE, "req_7"),
        )
        self.assertEqual(
            reading.describe(), f'HTTP 403 permission_error "{REVOKED_403_MESSAGE}" (request req_7)'
        )
        self.assertEqual(classify(401, b"").describe(), "HTTP 401")
        self.assertEqual(reading.ban, "")

    def test_message_folded_and_cut(self) -> None:
        """
        Whitespace is folded and a long message is cut, so that a log line
        stays one short line; the match still sees all of it.
        """
        long = "x " * 1000 + ORGANIZATION_DISABLED_MESSAGE
        reading = classify(400, api_error("invalid_request_error", long))
        self.assertEqual(reading.verdict, Verdict.ORGANIZATION_DISABLED)
        self.assertEqual(len(reading.message), MESSAGE_CHARACTERS)
        self.assertTrue(reading.message.endswith("..."))
        folded = classify(400, api_error("invalid_request_error", "a\n\n  b\tc"))
        self.assertEqual(folded.message, "a b c")

    def test_ban_words(self) -> None:
        """
        A ban says what Anthropic did, with the answer.
        """
        disabled = classify(400, api_error("invalid_request_error", ORGANIZATION_DISABLED_MESSAGE))
        self.assertEqual(
            disabled.ban,
            "Anthropic disabled its organization (HTTP 400 invalid_request_error "
            f'"{ORGANIZATION_DISABLED_MESSAGE}" (request req_011))',
        )
        not_allowed = classify(403, api_error("permission_error", OAUTH_NOT_ALLOWED_MESSAGE))
        self.assertTrue(
            not_allowed.ban.startswith("Anthropic no longer allows OAuth for its organization")
        )


class PlanDowngradedTests(SynchronousTestCase):
    """
    :obj:`plan_downgraded`: a profile without a paid plan after a paid one.
    """

    def test_downgrades(self) -> None:
        """
        A paid plan followed by an organization of type ``free``, ``none`` or
        none at all is a downgrade.
        """
        for known in ("max", "pro", "team", "enterprise"):
            for reported in (("free", ""), ("", ""), ("none", "")):
                self.assertTrue(plan_downgraded(known, reported), (known, reported))

    def test_no_downgrade(self) -> None:
        """
        Another paid plan is no downgrade, nor an answer naming no
        organization (no profile ccm can read), nor anything after an
        unknown or unpaid plan.
        """
        self.assertFalse(plan_downgraded("max", None))
        self.assertFalse(plan_downgraded("max", ("pro", "default_claude_pro")))
        self.assertFalse(plan_downgraded("max", ("max", "")))
        self.assertFalse(plan_downgraded("max", ("claude_max_plus", "")))
        self.assertFalse(plan_downgraded("", None))
        self.assertFalse(plan_downgraded("free", ("free", "")))
