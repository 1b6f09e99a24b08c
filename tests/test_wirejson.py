# -*- test-case-name: tests.test_wirejson -*-
"""
Tests for :obj:`ccm.wirejson`: JSON from the wire read with orjson and,
where orjson refuses, with :obj:`json`.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from ccm.wirejson import loads_wire

#: Documents orjson refuses and json accepts, and ordinary ones.
DOCUMENTS = [
    b'{"model": "m", "messages": [{"role": "user", "content": "h\\u00e9"}]}',
    b'\xef\xbb\xbf{"model": "bom"}',
    b'{"model": "\\ud800", "messages": []}',
    b'{"model": "m", "temperature": NaN}',
    b'{"model": "m", "budget": 1e400}',
    b'{"model": "a", "model": "b"}',
    b'["not", "an", "object"]',
    b'{"usage": {"input_tokens": 9223372036854775807}}',
]


class LoadsWireTests(SynchronousTestCase):
    """
    :obj:`loads_wire` reads every document as ``json.loads`` does.
    """

    def test_same_documents_as_json(self) -> None:
        """
        Ordinary documents and those only :obj:`json` accepts (a byte order
        mark, a lone surrogate, NaN, a number beyond a double) give the
        document ``json.loads`` gives, the largest 64-bit count included.
        """
        for data in DOCUMENTS:
            self.assertEqual(repr(loads_wire(data)), repr(json.loads(data)), data)

    def test_refused_like_json(self) -> None:
        """
        A document neither parser accepts raises :obj:`ValueError`, as
        ``json.loads`` does.
        """
        for data in (b'{"model": ', b"\xff\xfe{}", b'{"a": 1} x'):
            self.assertRaises(ValueError, json.loads, data)
            self.assertRaises(ValueError, loads_wire, data)

    def test_too_deep_like_json(self) -> None:
        """
        A document nested as deep as orjson reads gives what :obj:`json`
        gives; one deeper than :obj:`json` reads raises what it raises.
        """
        self.assertEqual(loads_wire(b"[" * 900 + b"]" * 900), json.loads(b"[" * 900 + b"]" * 900))
        self.assertRaises(RecursionError, loads_wire, b"[" * 100_000 + b"]" * 100_000)

    def test_huge_integer_is_no_count(self) -> None:
        """
        An integer beyond 64 bits, which no usage file can hold, is read as
        a float, so that no token count takes it.
        """
        self.assertIsInstance(loads_wire(b'{"n": 123456789012345678901234567890}')["n"], float)
