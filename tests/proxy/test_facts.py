"""
Tests for :obj:`ccm.proxy.facts`: what ccm reads from a request body,
parsed with orjson and, where orjson refuses, with :obj:`json`.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from ccm.proxy.facts import loads_request, request_facts

#: Bodies orjson refuses and json accepts, and ordinary ones.
BODIES = [
    b'{"model": "m", "messages": [{"role": "user", "content": "h\\u00e9"}]}',
    b'\xef\xbb\xbf{"model": "bom"}',
    b'{"model": "\\ud800", "messages": []}',
    b'{"model": "m", "temperature": NaN}',
    b'{"model": "m", "budget": 1e400}',
    b'{"model": "a", "model": "b"}',
    b'["not", "an", "object"]',
]


def facts_of(body: bytes) -> tuple[str, int, str]:
    """
    The model, message count and session ccm reads from a POST of
    ``body`` to ``/v1/messages``.
    """
    request = DummyRequest([b"v1", b"messages"])
    request.method = b"POST"
    request.path = b"/v1/messages"
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
    facts = request_facts(request, body)  # type: ignore[arg-type]
    return facts.model, facts.messages, facts.session_id


class LoadsRequestTests(SynchronousTestCase):
    """
    :obj:`loads_request` reads every body as ``json.loads`` does.
    """

    def test_same_documents_as_json(self) -> None:
        """
        Ordinary bodies and those only :obj:`json` accepts (a byte order
        mark, a lone surrogate, NaN, a number beyond a double) give the
        document ``json.loads`` gives.
        """
        for body in BODIES:
            self.assertEqual(repr(loads_request(body)), repr(json.loads(body)), body)

    def test_refused_like_json(self) -> None:
        """
        A body neither parser accepts raises :obj:`ValueError`, as
        ``json.loads`` does.
        """
        for body in (b'{"model": ', b"\xff\xfe{}", b'{"a": 1} x'):
            self.assertRaises(ValueError, json.loads, body)
            self.assertRaises(ValueError, loads_request, body)


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
