# -*- test-case-name: tests.test_wirejson -*-
"""
JSON that arrives on the wire (request bodies, response bodies and
stream events), read with orjson first: several times faster than
:obj:`json` on the bodies Claude Code sends and on small answers alike.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads_wire(data: bytes) -> Any:
    """
    ``json.loads(data)``, with orjson first.  What orjson refuses and
    :obj:`json` accepts (a byte order mark, a lone surrogate escape, NaN,
    numbers beyond a double) is parsed again by :obj:`json`, so no
    document is read differently in what ccm takes from it (strings,
    lists, objects, counts).  One difference stays: orjson reads an
    integer beyond 64 bits as a float, which no token count accepts, where
    :obj:`json` would give a count no usage file can hold.

    :raises ValueError: when :obj:`json` refuses it too.
    :raises RecursionError: when :obj:`json` nests too deep for it.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
