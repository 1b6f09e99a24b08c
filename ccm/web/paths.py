# -*- test-case-name: tests.web.test_paths -*-
"""
The request target ccm forwards: the one normalization of a request path,
shared by routing and forwarding, and the query string that goes with it.

A client's path is normalized once, by the root of the resource tree
(:obj:`ccm.web.tree.Root`), before any other resource sees it.  The tree routes
on the result and the proxy sends the same result upstream, so the path ccm
checks is the path the upstream gets.  Normalizing follows RFC 3986 section
6.2.2: percent-escapes of unreserved characters are decoded (``%2e`` is
``.``, ``%7E`` is ``~``), the other escapes are written in upper case, and dot
segments are removed as section 5.2.4 says.  What comes out holds no ``.``
or ``..`` segment and no escaped dot, so a front end or an upstream that
resolves dot segments, or decodes once more, has nothing left to resolve.

Some paths are refused instead, with :obj:`PathRefused`; ccm answers them with
its 404 and never forwards them:

 - a request target that is not a path (the absolute form
   ``http://host/v1/...``, or ``*``);
 - a byte that RFC 3986 does not allow in a path, such as ``\\``, a space,
   a control character or a non-ASCII byte, and a ``%`` not followed by two
   hex digits;
 - an escaped ``/``, ``\\``, NUL or ``%`` (``%2F``, ``%5C``, ``%00``, ``%25``):
   they mean one thing to ccm and another to a server that decodes them,
   or decodes twice;
 - a ``..`` that would climb above the first segment (``/v1/../api/...``):
   the first segment as written decides which part of ccm answers, never a
   later segment;
 - a dot segment carrying parameters (``..;x``), which some servers read as
   ``..``.

The query string is forwarded as the client wrote it (:obj:`forwarded_target`).
"""

from __future__ import annotations

UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 pchar (unreserved, sub-delims, ":", "@", escapes) and "/".
_PATH_BYTES = UNRESERVED | frozenset(b"!$&'()*+,;=:@%/")
# RFC 3986 query: pchar, "/" and "?".
_QUERY_BYTES = _PATH_BYTES | frozenset(b"?")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_REFUSED_ESCAPES = {
    0x2F: "an escaped /",
    0x5C: "an escaped \\",
    0x00: "an escaped NUL",
    0x25: "an escaped % (double encoding)",
}
_DOT_SEGMENTS = (b".", b"..")


class PathRefused(Exception):
    """
    A request path ccm neither routes nor forwards.  The message says why,
    for the log; it never quotes the path.
    """


def normalize_path(path: bytes) -> bytes:
    """
    Normalize a request path (without its query string).

    :param path: the path as the client sent it, ``request.path``.
    :return: the normalized path, starting with ``/``; normalizing it again
        changes nothing.
    :raise PathRefused: for a path ccm does not serve whatever it names.
    """
    if not path.startswith(b"/"):
        raise PathRefused("the request target is not a path")
    return _remove_dot_segments(_decode_unreserved(path))


def _decode_unreserved(path: bytes) -> bytes:
    """
    Check every byte of ``path``, decode the escapes of unreserved
    characters and write the other escapes in upper case.
    """
    normalized = bytearray()
    position = 0
    while position < len(path):
        byte = path[position]
        if byte not in _PATH_BYTES:
            raise PathRefused(f"the byte 0x{byte:02x} is not allowed in a path")
        if byte != 0x25:
            normalized.append(byte)
            position += 1
            continue
        digits = path[position + 1 : position + 3]
        if len(digits) != 2 or not _HEX_DIGITS.issuperset(digits):
            raise PathRefused("a % that does not start a percent-escape")
        value = int(digits, 16)
        if value in _REFUSED_ESCAPES:
            raise PathRefused(_REFUSED_ESCAPES[value])
        if value in UNRESERVED:
            normalized.append(value)
        else:
            normalized += b"%" + digits.upper()
        position += 3
    return bytes(normalized)


def _remove_dot_segments(path: bytes) -> bytes:
    """
    RFC 3986 section 5.2.4 for an absolute path, segment by segment, with
    a ``..`` above the first segment refused rather than dropped.
    """
    segments = path.split(b"/")[1:]
    kept: list[bytes] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        name, semicolon, _ = segment.partition(b";")
        if semicolon and name in _DOT_SEGMENTS:
            raise PathRefused("a dot segment with parameters")
        if segment == b"..":
            if len(kept) <= 1:
                raise PathRefused("a .. segment climbs above the first segment")
            kept.pop()
        elif segment != b".":
            kept.append(segment)
            continue
        if last:
            # "/a/b/.." is "/a/", "/a/." is "/a/": the path keeps naming a
            # directory.
            kept.append(b"")
    return b"/" + b"/".join(kept)


def forwarded_target(path: bytes, uri: bytes) -> bytes:
    """
    The request target to send upstream: the normalized path, and the
    query string of the target the client sent.

    The query is kept byte for byte, malformed escapes included; only the
    bytes a URL cannot hold (a space, ``"``, ``#``, ``<``, a backslash, a
    brace, a control or non-ASCII byte) are percent-escaped, so that what ccm
    builds is what the HTTP client sends (a raw ``#`` would otherwise cut the
    query short).  These never come from a client library, which escapes
    them itself.

    :param path: the normalized path, from :obj:`normalize_path`.
    :param uri: the request target as the client sent it, ``request.uri``.
    :return: an ASCII request target in origin form.
    """
    _, question_mark, query = uri.partition(b"?")
    escaped = b"".join(
        bytes((byte,)) if byte in _QUERY_BYTES else b"%%%02X" % (byte,) for byte in query
    )
    return path + question_mark + escaped
