"""
Tests for :obj:`ccm.proxy.facts`: what ccm reads from a request body,
whatever JSON it is written in (:obj:`ccm.wirejson` reads it).
"""

from __future__ import annotations

import json
from typing import cast

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest

from ccm.proxy.facts import request_facts

def facts_of(body: bytes) -> tuple[str, int, str]:
    """
    The model, message count and session ccm reads from a POST of
    ``body`` to ``/v1/messages``.
    """
    # The dummy stands in for the Request ccm reads.
    request = cast(Request, DummyRequest([b"v1", b"messages"]))
    request.method = b"POST"
    request.path = b"/v1/messages"
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
    facts = request_facts(request, body)
    return facts.model, facts.messages, facts.session_id


class RequestFactsTests(SynchronousTestCase):
    """
    :obj:`request_facts` reads the model, the messages and the session.
    """

    def test_fields(self) -> None:
        """
        The model, how many messages, and the session of the
        ``metadata.user_id`` Claude Code sends.
        """
        user_id = json.dumps({"session_id": "sess-1", "account_uuid": "a"})
        body = json.dumps(
            {
                "model": "claude-sonnet-4-5",
                "messages": [{"role": "user", "content": "x"}] * 3,
                "metadata": {"user_id": user_id},
            }
        ).encode()
        self.assertEqual(facts_of(body), ("claude-sonnet-4-5", 3, "sess-1"))

    def test_only_json_accepts(self) -> None:
        """
        A body only :obj:`json` parses (here with a byte order mark) still
        gives its model.
        """
        self.assertEqual(facts_of(b'\xef\xbb\xbf{"model": "bom", "messages": [1]}'), ("bom", 1, ""))

    def test_not_an_object(self) -> None:
        """
        A body that is not a JSON object gives no facts.
        """
        self.assertEqual(facts_of(b'["model"]'), ("", 0, ""))
        self.assertEqual(facts_of(b"{nope"), ("", 0, ""))

    def test_too_deep(self) -> None:
        """
        A body nested deeper than any JSON reader here goes gives no facts,
        rather than an error: it is still forwarded as it is.
        """
        self.assertEqual(facts_of(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), ("", 0, ""))
