# -*- test-case-name: tests.proxy.test_headers -*-
"""
Header hygiene, one function in each direction.

Towards the upstream, a client's request loses everything that identifies
the client to ccm or belongs to its own connection (its token, cookies,
hop-by-hop and CDN headers) and gains the subscription's OAuth token and the
OAuth beta flag.  Towards the client, an upstream response loses hop-by-hop,
CDN and cookie headers and keeps everything else untouched.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from twisted.web.http_headers import Headers

OAUTH_BETA = "oauth-2025-04-20"

# RFC 9110 section 7.6.1, plus the obsolete names still seen in the wild.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Headers that CDNs and reverse proxies add about their own hop.
_CDN_EXACT = frozenset(
    {b"cdn-loop", b"true-client-ip", b"x-real-ip", b"forwarded", b"via"}
)
_CDN_PREFIXES = (b"cf-", b"x-forwarded-")

# What a client sends to authenticate to ccm; never forwarded.
CLIENT_CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key"})

_REQUEST_DROPPED = frozenset(
    {
        b"host",
        b"content-length",
        b"cookie",
        # treq asks for gzip itself and decodes it while streaming; passing
        # the client's list on could bring back encodings nobody decodes.
        b"accept-encoding",
    }
)
_RESPONSE_DROPPED = frozenset({b"content-length", b"set-cookie"})


def _connection_named(headers: Headers) -> set[bytes]:
    named: set[bytes] = set()
    for value in headers.getRawHeaders(b"connection", []):
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                named.add(token)
    return named


def _is_cdn(name: bytes) -> bool:
    return name in _CDN_EXACT or name.startswith(_CDN_PREFIXES)


def _copy_without(
    headers: Headers, dropped: frozenset[bytes], into: Headers | None = None
) -> Headers:
    also_dropped = _connection_named(headers)
    copied = Headers() if into is None else into
    for name, values in headers.getAllRawHeaders():
        lowered = name.lower()
        if (
            lowered in HOP_BY_HOP
            or lowered in dropped
            or lowered in also_dropped
            or _is_cdn(lowered)
        ):
            continue
        copied.setRawHeaders(name, list(values))
    return copied


def merge_betas(values: Iterable[str]) -> str:
    """
    Merge ``anthropic-beta`` header values into one list: items in their
    first order, without repeats, with the OAuth flag present exactly once
    (first, when the client did not send it).
    """
    items: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item and item not in items:
                items.append(item)
    if OAUTH_BETA not in items:
        items.insert(0, OAUTH_BETA)
    return ",".join(items)


def upstream_request_headers(
    client_headers: Headers,
    access_token: str,
    extra: Sequence[tuple[str, Sequence[str]]] = (),
) -> Headers:
    """
    The headers to send upstream for a client's request.

    :param client_headers: the headers the client sent to ccm.
    :param access_token: the subscription's OAuth access token.
    :param extra: the configured ``headers`` option; each replaces what the
        client sent under the same name.
    """
    outgoing = _copy_without(client_headers, _REQUEST_DROPPED | CLIENT_CREDENTIAL_HEADERS)
    for name, values in extra:
        outgoing.setRawHeaders(name.encode("latin-1"), [v.encode("latin-1") for v in values])
    betas = [v.decode("latin-1") for v in outgoing.getRawHeaders(b"anthropic-beta", [])]
    outgoing.setRawHeaders(b"anthropic-beta", [merge_betas(betas).encode("latin-1")])
    outgoing.setRawHeaders(b"authorization", [b"Bearer " + access_token.encode("ascii")])
    return outgoing


def client_response_headers(upstream_headers: Headers, into: Headers | None = None) -> Headers:
    """
    The headers to send the client for an upstream response, added to
    ``into`` (a response's own headers: one copy instead of two) or to new
    headers.
    """
    copied = _copy_without(upstream_headers, _RESPONSE_DROPPED, into)
    # treq's content decoder leaves an empty Content-Encoding behind when the
    # upstream sent none (or only encodings it decoded): not the upstream's.
    encodings = [v for v in copied.getRawHeaders(b"content-encoding", []) if v.strip()]
    if encodings:
        copied.setRawHeaders(b"content-encoding", encodings)
    else:
        copied.removeHeader(b"content-encoding")
    return copied
