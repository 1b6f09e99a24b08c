# -*- test-case-name: tests.config.test_headers -*-
"""
The ``headers`` option: extra headers ccm sends upstream with every request.

Names must be HTTP tokens and values Latin-1 text on one line; headers
that ccm itself sets, or that would break the connection or leak a
client's credentials, cannot be set.
"""

from __future__ import annotations

import re

from ccm.config.reader import ObjectReader, Problems, json_path
from ccm.proxy.headers import CLIENT_CREDENTIAL_HEADERS, HOP_BY_HOP

# RFC 9110 token characters, for header names.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Headers ccm sets itself, with no counterpart in ccm.proxy.headers.
_SET_BY_CCM = {
    "host": "the Host header follows upstream_url",
    "content-length": "ccm computes Content-Length from the body",
    "cookie": "ccm never sends cookies upstream",
}
# What a header value may hold: Latin-1 text without control characters
# (horizontal tab aside), as it goes on the wire.
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")


def parse_headers(reader: ObjectReader, problems: Problems) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """
    The ``headers`` option of the service object ``reader`` reads: each name
    with its values, in order.
    """
    obj = reader.object("headers")
    if not obj:
        return ()
    headers = []
    seen: dict[str, str] = {}
    for name in obj:
        path = json_path(reader.where("headers"), name)
        values = ObjectReader(problems, obj, reader.where("headers"), obj.keys()).strings(name)
        if not _HEADER_NAME.match(name):
            problems.add(path, "is not a valid header name")
            continue
        reason = _why_not_settable(name)
        if reason is not None:
            problems.add(path, f"cannot be set here: {reason}")
            continue
        if any("\r" in v or "\n" in v for v in values):
            problems.add(path, "values must not contain line breaks")
            continue
        if not all(_HEADER_VALUE.match(v) for v in values):
            problems.add(path, "values must be Latin-1 text without control characters")
            continue
        if name.lower() in seen:
            problems.add(
                path, f"repeats {seen[name.lower()]!r}: header names are case-insensitive"
            )
            continue
        seen[name.lower()] = name
        headers.append((name, values))
    return tuple(headers)


def _why_not_settable(name: str) -> str | None:
    """
    Why the ``headers`` option cannot set the header ``name`` (an HTTP
    token), or ``None`` when it can: the client credentials and hop-by-hop
    headers are those :obj:`ccm.proxy.headers` strips from clients' requests.
    """
    lowered = name.lower()
    if lowered == "authorization":
        return "ccm sets Authorization to the subscription's OAuth token"
    if lowered.encode("ascii") in CLIENT_CREDENTIAL_HEADERS:
        return "ccm authenticates upstream with the subscription's OAuth token only"
    if lowered.encode("ascii") in HOP_BY_HOP:
        return "it is a hop-by-hop header"
    return _SET_BY_CCM.get(lowered)
