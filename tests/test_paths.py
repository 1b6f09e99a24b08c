"""
Tests for L{ccm.paths} and its wiring: the path ccm routes on is the path
it forwards, normalized once; paths that could mean something else to a
server behind ccm are refused with ccm's 404 and never reach the upstream.

The pure functions are tested directly.
"""

from __future__ import annotations

import itertools
import re

from twisted.trial.unittest import SynchronousTestCase

from ccm.paths import PathRefused, forwarded_target, normalize_path

# A query string with every kind of byte RFC 3986 allows in one, malformed
# escapes and dot segments included: it goes upstream byte for byte.
VALID_QUERY = "?after_id=x%2Fy&&limit=5;a=b+c%20d&e=%zz&f=../..%2F&g=%7e&h=?/:@!$'()*,&i=="

CLIMBS = "a .. segment climbs above the first segment"

# Paths ccm refuses, each with the reason it logs.  Escapes are written in
# both cases where that matters.
REFUSED = [
    ("/v1/../api/oauth/profile", CLIMBS),
    ("/v1/%2e%2e/api/oauth/usage", CLIMBS),
    ("/v1/%2E%2e/api/oauth/usage", CLIMBS),
    ("/v1/.%2E/api/oauth/usage", CLIMBS),
    ("/v1/messages/../../api/oauth/usage", CLIMBS),
    ("/v1/..", CLIMBS),
    ("/v1/%2e%2e", CLIMBS),
    ("/foo/../v1/messages", CLIMBS),
    ("/..", CLIMBS),
    ("/v1/..;/api/oauth/profile", "a dot segment with parameters"),
    ("/v1/.;x/messages", "a dot segment with parameters"),
    ("/v1/%2e%2e;x/api/oauth/profile", "a dot segment with parameters"),
    ("/v1%2F..%2Fapi/oauth/profile", "an escaped /"),
    ("/v1/messages%2f..%2f..%2fapi", "an escaped /"),
    ("/v1/..%5Capi/oauth/profile", "an escaped \\"),
    ("/v1/..%5capi", "an escaped \\"),
    ("/v1/messages%00.json", "an escaped NUL"),
    ("/v1/%252e%252e/api/oauth/usage", "an escaped % (double encoding)"),
    ("/v1/messages%", "a % that does not start a percent-escape"),
    ("/v1/messages%2", "a % that does not start a percent-escape"),
    ("/v1/%zz/messages", "a % that does not start a percent-escape"),
    ("/v1/%g0/messages", "a % that does not start a percent-escape"),
]

# Request targets with bytes only raw HTTP can carry (a client library
# would escape them), refused with the reason logged.
REFUSED_RAW = [
    (b"/v1/..\\api/oauth/profile", "the byte 0x5c is not allowed in a path"),
    (b"/v1\\..\\api\\oauth\\usage", "the byte 0x5c is not allowed in a path"),
    (b'/v1/"messages"', "the byte 0x22 is not allowed in a path"),
    (b"/v1/{messages}", "the byte 0x7b is not allowed in a path"),
    (b"/v1/a|b", "the byte 0x7c is not allowed in a path"),
    (b"/v1/<messages>", "the byte 0x3c is not allowed in a path"),
    (b"http://evil.example/v1/messages", "the request target is not a path"),
    (b"https://api.anthropic.com/v1/messages", "the request target is not a path"),
    (b"v1/messages", "the request target is not a path"),
]


def rfc3986_remove_dot_segments(path: str) -> str:
    """
    The algorithm of RFC 3986 section 5.2.4, written as the RFC states it
    (an input and an output buffer), to check ccm's segment-wise version.
    """
    output = ""

    def drop_last_segment(buffer: str) -> str:
        cut = buffer.rfind("/")
        return buffer[:cut] if cut >= 0 else ""

    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            output = drop_last_segment(output)
        elif path == "/..":
            path = "/"
            output = drop_last_segment(output)
        elif path in (".", ".."):
            path = ""
        else:
            end = path.find("/", 1)
            if end < 0:
                end = len(path)
            output += path[:end]
            path = path[end:]
    return output


class NormalizePathTests(SynchronousTestCase):
    """
    L{normalize_path} on its own.
    """

    def assert_normalized(self, path: bytes, expected: bytes) -> None:
        """
        C{path} normalizes to C{expected}, and C{expected} is a fixed point.
        """
        self.assertEqual(normalize_path(path), expected, path)
        self.assertEqual(normalize_path(expected), expected, expected)

    def test_api_paths_unchanged(self) -> None:
        """
        The paths the Anthropic API and ccm use come out as they went in.
        """
        for path in (
            b"/",
            b"/v1",
            b"/v1/",
            b"/v1/messages",
            b"/v1/messages/count_tokens",
            b"/v1/messages/batches/msgbatch_013Zva2CMHLNnXjNJJKqJ2EF/results",
            b"/v1/models/claude-haiku-4-5-20251001",
            b"/v1/files/file_011CNha8iCJcU1wXNR6q4V8w/content",
            b"/ccm/v1/status",
            b"/v1/a;b=c/d:e@f!$&'()*+,=~",
        ):
            self.assert_normalized(path, path)

    def test_unreserved_escapes_decoded(self) -> None:
        """
        Escapes of letters, digits, C{-}, C{.}, C{_} and C{~} are decoded,
        whatever the case of their hex digits.
        """
        self.assert_normalized(b"/%76%31/%6D%65ssages", b"/v1/messages")
        self.assert_normalized(b"/v1/models/claude%2Dhaiku%5f4%7e", b"/v1/models/claude-haiku_4~")
        self.assert_normalized(b"/v1/file%2etxt", b"/v1/file.txt")
        self.assert_normalized(b"/v1/%7E%7e", b"/v1/~~")

    def test_other_escapes_upper_cased(self) -> None:
        """
        Escapes of other characters stay escapes, with upper-case hex
        digits: the same path, written one way.
        """
        self.assert_normalized(b"/v1/caf%c3%a9", b"/v1/caf%C3%A9")
        self.assert_normalized(b"/v1/a%3fb%23c%20d", b"/v1/a%3Fb%23c%20d")
        self.assert_normalized(b"/v1/%3a%40", b"/v1/%3A%40")

    def test_dot_segments_removed(self) -> None:
        """
        C{.} and C{..} segments, also escaped, are resolved within the
        path, keeping a trailing slash where the path ended in one.
        """
        cases = [
            (b"/v1/./messages", b"/v1/messages"),
            (b"/v1/%2e/messages", b"/v1/messages"),
            (b"/./v1/messages", b"/v1/messages"),
            (b"/v1/models/../messages", b"/v1/messages"),
            (b"/v1/models/%2E%2e/messages", b"/v1/messages"),
            (b"/v1/a/b/../../messages", b"/v1/messages"),
            (b"/v1/messages/.", b"/v1/messages/"),
            (b"/v1/messages/..", b"/v1/"),
            (b"/v1/.", b"/v1/"),
            (b"/.", b"/"),
            (b"/v1//..", b"/v1/"),
            (b"//v1/..", b"//"),
            (b"/v1/...", b"/v1/..."),
            (b"/v1/..a/.b", b"/v1/..a/.b"),
        ]
        for path, expected in cases:
            self.assert_normalized(path, expected)

    def test_double_slashes_kept(self) -> None:
        """
        Empty segments are not collapsed: C{//v1/...} is not C{/v1/...}.
        """
        self.assert_normalized(b"//v1/messages", b"//v1/messages")
        self.assert_normalized(b"/v1//messages", b"/v1//messages")

    def test_agrees_with_rfc3986(self) -> None:
        """
        For every path of up to five segments drawn from plain, empty, dot
        and escaped-dot segments, the result is what RFC 3986 section 5.2.4
        gives, holds no dot segment, and normalizes to itself; or the path
        is refused because a C{..} climbs above the first segment.
        """
        alphabet = ["v1", "", ".", "..", "%2e", "%2E%2e", ".%2e"]
        checked = refused = 0
        for length in range(1, 6):
            for segments in itertools.product(alphabet, repeat=length):
                path = "/" + "/".join(segments)
                try:
                    result = normalize_path(path.encode("ascii"))
                except PathRefused as refusal:
                    self.assertEqual(str(refusal), CLIMBS)
                    self.assertIn("..", [s.lower().replace("%2e", ".") for s in segments])
                    refused += 1
                    continue
                decoded = re.sub("%2[eE]", ".", path)
                self.assertEqual(result.decode("ascii"), rfc3986_remove_dot_segments(decoded), path)
                self.assertNotIn(b".", result.split(b"/"))
                self.assertNotIn(b"..", result.split(b"/"))
                self.assertEqual(normalize_path(result), result)
                checked += 1
        self.assertGreater(checked, 1000)
        self.assertGreater(refused, 1000)

    def test_climbing_refused(self) -> None:
        """
        A C{..} that would leave the first segment, written plainly or
        escaped, is refused rather than resolved.
        """
        for path, reason in REFUSED:
            if reason == CLIMBS:
                with self.assertRaises(PathRefused, msg=path) as caught:
                    normalize_path(path.encode("ascii"))
                self.assertEqual(str(caught.exception), CLIMBS)

    def test_refusals(self) -> None:
        """
        Each refused path is refused with its reason, a message that never
        quotes the path.
        """
        cases = [(path.encode("ascii"), reason) for path, reason in REFUSED] + REFUSED_RAW
        cases += [
            (b"/v1/a b", "the byte 0x20 is not allowed in a path"),
            (b"/v1/a\x00b", "the byte 0x00 is not allowed in a path"),
            (b"/v1/a\x7fb", "the byte 0x7f is not allowed in a path"),
            (b"/v1/caf\xc3\xa9", "the byte 0xc3 is not allowed in a path"),
            (b"/v1/a#b", "the byte 0x23 is not allowed in a path"),
            (b"*", "the request target is not a path"),
            (b"", "the request target is not a path"),
        ]
        for path, reason in cases:
            with self.assertRaises(PathRefused, msg=path) as caught:
                normalize_path(path)
            message = str(caught.exception)
            self.assertTrue(message.endswith(reason), (path, message))
            self.assertNotIn("messages", message)
            self.assertNotIn("api", message)

    def test_parameters_on_other_segments_kept(self) -> None:
        """
        Parameters on a segment that is not a dot segment are plain
        characters of the path.
        """
        self.assert_normalized(b"/v1/models;x=1/..y;/z", b"/v1/models;x=1/..y;/z")


class ForwardedTargetTests(SynchronousTestCase):
    """
    L{forwarded_target}: the normalized path with the client's query.
    """

    def test_query_kept_byte_for_byte(self) -> None:
        """
        A query of bytes a URL may hold is kept exactly, whatever the raw
        path was.
        """
        self.assertEqual(
            forwarded_target(b"/v1/models", b"/v1/./models" + VALID_QUERY.encode()),
            b"/v1/models" + VALID_QUERY.encode(),
        )

    def test_no_query(self) -> None:
        """
        Without a C{?} there is no query; a lone C{?} is kept.
        """
        self.assertEqual(forwarded_target(b"/v1/models", b"/v1/%6Dodels"), b"/v1/models")
        self.assertEqual(forwarded_target(b"/v1/models", b"/v1/models?"), b"/v1/models?")

    def test_bytes_a_url_cannot_hold_escaped(self) -> None:
        """
        Bytes outside RFC 3986's query characters are percent-escaped (a
        C{#} would otherwise end the query), and nothing else changes.
        """
        self.assertEqual(
            forwarded_target(b"/v1/m", b'/v1/m?a=1#b=2&c="<>[\\]^`{|} \x00\xe9'),
            b"/v1/m?a=1%23b=2&c=%22%3C%3E%5B%5C%5D%5E%60%7B%7C%7D%20%00%E9",
        )
