# -*- test-case-name: tests.upstream.test_verdicts -*-
"""
What an error answer of the Anthropic API says about the subscription that
got it, as a pure function of its status and body: :obj:`classify` gives a
:obj:`Reading`, whose :obj:`Verdict` the proxy and the usage poller act on.

The bodies have the API's error shape (``{"type": "error", "error":
{"type": ..., "message": ...}, "request_id": ...}``, sometimes with
``error.details.error_code``).  Matching is tolerant: of case, of spacing,
of where a code sits and of bodies that are not JSON at all, but each
phrase is specific enough that a client's own mistake (``prompt is too
long``, a missing field) never reads as a verdict on the subscription.
Whatever is not recognised is :obj:`Verdict.PASS`: passed on unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

# How much of an upstream message ccm repeats in its logs and answers.
MESSAGE_CHARACTERS = 300

_WHITESPACE = re.compile(r"\s+")
_ORGANIZATION_DISABLED = re.compile(r"\borgani[sz]ation (?:has been|is|was) disabled\b")
_OAUTH_NOT_ALLOWED = re.compile(r"\boauth authentication is (?:currently )?not allowed\b")
_OAUTH_NOT_ALLOWED_CODE = "oauth_org_not_allowed"
_REVOKED = re.compile(r"\brevoked\b")
_THIRD_PARTY = re.compile(r"\bthird[- ]?party apps? now draw from your extra usage\b")
# A plan the profile reports, as ccm.upstream.anthropic_api.plan_from_profile
# names it, that costs money.
PAID_PLANS = frozenset({"pro", "max", "team", "enterprise"})


class Verdict(Enum):
    """
    What an upstream error answer means for the subscription.
    """

    #: Nothing about the subscription (the client's own mistake, a passing
    #: problem, anything unknown): the answer goes to the client unchanged.
    PASS = "pass"
    #: A 401, or a 403 saying the token was revoked: the access token no
    #: longer works.
    TOKEN_REJECTED = "token rejected"
    #: The subscription's organization was disabled (a ban).
    ORGANIZATION_DISABLED = "organization disabled"
    #: OAuth is no longer allowed for the organization (a ban).
    OAUTH_NOT_ALLOWED = "oauth not allowed"
    #: "Third-party apps now draw from your extra usage, not your plan
    #: limits": passed on unchanged; under ``extra_usage: never`` it
    #: pauses the credential (see :obj:`ccm.pool.extrausage`).
    THIRD_PARTY = "third-party extra usage"

    @property
    def quarantines(self) -> bool:
        """
        Whether the answer bans the subscription, until a new login.
        """
        return self in (Verdict.ORGANIZATION_DISABLED, Verdict.OAUTH_NOT_ALLOWED)


@dataclass(frozen=True)
class Reading:
    """
    One error answer, read: its :obj:`Verdict` and what it said.

    :ivar error_type: ``error.type``, or ``""``.
    :ivar message: ``error.message`` (or the body's text when it is not
        the API's shape), whitespace folded and cut to
        :obj:`MESSAGE_CHARACTERS`.
    :ivar request_id: the body's ``request_id``, or ``""``.
    """

    verdict: Verdict
    status: int
    error_type: str = ""
    message: str = ""
    request_id: str = ""

    def describe(self) -> str:
        """
        The answer in words for logs and ccm's own errors:
        ``HTTP 403 permission_error "OAuth token has been revoked" (request req_1)``.
        """
        words = f"HTTP {self.status}"
        if self.error_type:
            words += f" {self.error_type}"
        if self.message:
            words += f' "{self.message}"'
        if self.request_id:
            words += f" (request {self.request_id})"
        return words

    @property
    def ban(self) -> str:
        """
        What a ban means, in words (empty for other verdicts).
        """
        if self.verdict is Verdict.ORGANIZATION_DISABLED:
            return f"Anthropic disabled its organization ({self.describe()})"
        if self.verdict is Verdict.OAUTH_NOT_ALLOWED:
            return f"Anthropic no longer allows OAuth for its organization ({self.describe()})"
        return ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _fold(text: str) -> str:
    folded = _WHITESPACE.sub(" ", text).strip()
    if len(folded) > MESSAGE_CHARACTERS:
        folded = folded[: MESSAGE_CHARACTERS - 3] + "..."
    return folded


def _fields(body: bytes) -> tuple[str, str, list[str], str]:
    """
    The error type, message, codes and request id of an answer's body,
    wherever the API or something in front of it put them.
    """
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return "", body.decode("utf-8", "replace"), [], ""
    error = document.get("error")
    codes = [_text(document.get("error_code")), _text(document.get("code"))]
    if isinstance(error, dict):
        details = error.get("details")
        if isinstance(details, dict):
            codes.append(_text(details.get("error_code")))
        codes += [_text(error.get("error_code")), _text(error.get("code"))]
        error_type = _text(error.get("type"))
        message = _text(error.get("message"))
    else:
        # A bare {"error": "...", "message": "..."}, as gateways write.
        error_type = _text(error)
        message = _text(document.get("message"))
    codes.append(error_type)
    return error_type, message, [c.lower() for c in codes if c], _text(document.get("request_id"))


def classify(status: int, body: bytes) -> Reading:
    """
    Read an upstream error answer (the proxy inspects 400, 401 and 403).

    :param status: the HTTP status.
    :param body: the whole body, decoded from any content encoding.
    """
    error_type, message, codes, request_id = _fields(body)
    if not message and not error_type:
        # JSON of some other shape: its text, as for a body that is not JSON.
        message = body.decode("utf-8", "replace")
    phrase = _WHITESPACE.sub(" ", message).lower()
    if _OAUTH_NOT_ALLOWED_CODE in codes or _OAUTH_NOT_ALLOWED.search(phrase):
        verdict = Verdict.OAUTH_NOT_ALLOWED
    elif _ORGANIZATION_DISABLED.search(phrase):
        verdict = Verdict.ORGANIZATION_DISABLED
    elif status == 400 and _THIRD_PARTY.search(phrase):
        verdict = Verdict.THIRD_PARTY
    elif status == 401 or (status == 403 and _REVOKED.search(phrase)):
        verdict = Verdict.TOKEN_REJECTED
    else:
        verdict = Verdict.PASS
    return Reading(verdict, status, _fold(error_type), _fold(message), _fold(request_id))


def plan_downgraded(known: str, reported: tuple[str, str] | None) -> bool:
    """
    Whether a profile answer reports an organization without a paid plan
    (``free``, ``none``, or no type at all) where ``known``, the plan the
    credential had, is a paid one: an early sign of a ban.  An answer that
    names no organization at all is no verdict: it is no profile ccm can
    read (a gateway's empty ``{}``, another API's answer).

    :param known: the subscription type known so far (``max``, ``pro``, ...).
    :param reported: what :obj:`ccm.upstream.anthropic_api.parse_profile`
        made of the answer: (subscription type, tier), or None when it names
        no organization.
    """
    if known not in PAID_PLANS or reported is None:
        return False
    return reported[0] in ("", "free", "none")
