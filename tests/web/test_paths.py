"""
Tests for :obj:`ccm.web.paths` and its wiring: the path ccm routes on is the path
it forwards, normalized once; paths that could mean something else to a
server behind ccm are refused with ccm's 404 and never reach the upstream.

The pure function is tested directly.  Its wiring is tested through the
proxy harness (:obj:`StubTreq` and raw bytes to a real :obj:`CcmSite` over a
:obj:`StringTransport`), and once over real loopback sockets, where both
twisted.web's request-line parsing and treq's URL handling are the real
ones.
"""

from __future__ import annotations

import itertools
import os
import re

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ccm.config.model import ServiceConfig
from ccm.web.paths import PathRefused, forwarded_target, normalize_path
from tests.e2e import serve_fake_anthropic
from tests.fixtures import logged_events, write_credentials
from tests.proxyharness import (
    ALICE,
    ALICE_TOKEN,
    BOB_TOKEN,
    ProxyHarness,
    RawConnection,
    RawResponse,
    parse_raw_response,
    raw_request,
    serve_on_loopback,
)

# What a secret in a query string looks like; it must never be logged.
SECRET_QUERY = "?signature=query-secret-5e1f"

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
    :obj:`normalize_path` on its own.
    """

    def assert_normalized(self, path: bytes, expected: bytes) -> None:
        """
        ``path`` normalizes to ``expected``, and ``expected`` is a fixed point.
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
        Escapes of letters, digits, ``-``, ``.``, ``_`` and ``~`` are decoded,
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
        ``.`` and ``..`` segments, also escaped, are resolved within the
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
        Empty segments are not collapsed: ``//v1/...`` is not ``/v1/...``.
        """
        self.assert_normalized(b"//v1/messages", b"//v1/messages")
        self.assert_normalized(b"/v1//messages", b"/v1//messages")

    def test_agrees_with_rfc3986(self) -> None:
        """
        For every path of up to five segments drawn from plain, empty, dot
        and escaped-dot segments, the result is what RFC 3986 section 5.2.4
        gives, holds no dot segment, and normalizes to itself; or the path
        is refused because a ``..`` climbs above the first segment.
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
        A ``..`` that would leave the first segment, written plainly or
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
    :obj:`forwarded_target`: the normalized path with the client's query.
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
        Without a ``?`` there is no query; a lone ``?`` is kept.
        """
        self.assertEqual(forwarded_target(b"/v1/models", b"/v1/%6Dodels"), b"/v1/models")
        self.assertEqual(forwarded_target(b"/v1/models", b"/v1/models?"), b"/v1/models?")

    def test_bytes_a_url_cannot_hold_escaped(self) -> None:
        """
        Bytes outside RFC 3986's query characters are percent-escaped (a
        ``#`` would otherwise end the query), and nothing else changes.
        """
        self.assertEqual(
            forwarded_target(b"/v1/m", b'/v1/m?a=1#b=2&c="<>[\\]^`{|} \x00\xe9'),
            b"/v1/m?a=1%23b=2&c=%22%3C%3E%5B%5C%5D%5E%60%7B%7C%7D%20%00%E9",
        )


class HarnessRoutingTests(SynchronousTestCase):
    """
    Normalization wired into the tree, through the proxy harness.
    """

    def assert_next_request_works(self, harness: ProxyHarness) -> None:
        """
        A plain request after a refused one is proxied as usual.
        """
        before = len(harness.fake.requests)
        response = harness.response("GET", "/v1/models")
        self.assertEqual(response.code, 200)
        self.assertIn(b"claude", harness.body_of(response))
        self.assertEqual(len(harness.fake.requests), before + 1)
        self.assertEqual(harness.fake.requests[-1].path, "/v1/models")

    def test_normalized_path_forwarded(self) -> None:
        """
        The upstream gets the normalized path and the query string as the
        client wrote it, and the log line names the normalized path.
        """
        harness = ProxyHarness(self)
        cases = [
            ("/v1/./models", "/v1/models"),
            ("/v1/files/../models", "/v1/models"),
            ("/%76%31/%6Dodels", "/v1/models"),
            ("/v1/files/%2E%2e/models?limit=5&after_id=a%2Fb", "/v1/models?limit=5&after_id=a%2Fb"),
            ("/v1/models/%63laude-x/../claude-haiku-4-5", "/v1/models/claude-haiku-4-5"),
            ("/v1/caf%c3%a9?q=%c3%a9", "/v1/caf%C3%A9?q=%c3%a9"),
            ("/v1//models", "/v1//models"),
        ]
        for path, forwarded in cases:
            harness.response("GET", path)
            self.assertEqual(harness.fake.requests[-1].path, forwarded, path)
            self.assertEqual(harness.server_requests[-1].path, forwarded.partition("?")[0].encode())
        self.assertEqual(len(harness.fake.requests), len(cases))
        self.assertEqual(
            [line.split(" user=")[0] for line in harness.exchange_lines()],
            ["GET " + forwarded.partition("?")[0] for _, forwarded in cases],
        )
        harness.assert_no_secrets_logged()

    def test_refused_paths(self) -> None:
        """
        A refused path gets ccm's 404, never reaches the proxy or the
        upstream, is logged once as refused with its reason and without its
        query string, and leaves the next request working.  No token is in
        the answer or the log.
        """
        harness = ProxyHarness(self)
        for path, reason in REFUSED:
            for method in ("GET", "POST"):
                before = len(harness.log_texts(LogLevel.warn))
                response = harness.response(method, path + SECRET_QUERY, b"{}")
                error = harness.ccm_error(response, 404, "not_found_error")
                self.assertEqual(error["message"], "Not found")
                warnings = harness.log_texts(LogLevel.warn)[before:]
                self.assertEqual(
                    warnings, [f"refused {method} {path} from 127.0.0.1: {reason}"], path
                )
                self.assertEqual(harness.fake.requests, [])
                self.assertEqual(harness.server_requests, [])
        self.assert_next_request_works(harness)
        for text in harness.log_texts():
            self.assertNotIn("query-secret", text)
        harness.assert_no_secrets_logged()

    def test_refused_before_authentication(self) -> None:
        """
        A refused path is a 404 whatever the token: missing, wrong or valid.
        """
        harness = ProxyHarness(self)
        for token in (None, "ccm-token-wrong-1", ALICE_TOKEN):
            response = harness.response("GET", "/v1/%2e%2e/api/oauth/usage", token=token)
            harness.ccm_error(response, 404, "not_found_error")
        self.assertEqual(harness.callers, [])
        self.assertEqual(harness.fake.requests, [])
        self.assert_next_request_works(harness)

    def test_head_of_refused_path(self) -> None:
        """
        A ``HEAD`` of a refused path gets the 404 headers and no body.
        """
        harness = ProxyHarness(self)
        response = harness.response("HEAD", "/v1/../api/oauth/profile", token=None)
        self.assertEqual(response.code, 404)
        self.assertTrue(response.headers.getRawHeaders("request-id")[0].startswith("ccm_"))
        self.assertEqual(harness.body_of(response), b"")
        self.assertEqual(harness.fake.requests, [])

    def test_status_routed_on_normalized_path(self) -> None:
        """
        The status endpoint is found by its normalized path too, and a path
        that normalizes to something ccm does not serve is its plain 404,
        not logged.
        """
        harness = ProxyHarness(self)
        for path in ("/ccm/v1/./status", "/ccm/%76%31/status", "/ccm/x/../v1/status"):
            response = harness.response("GET", path)
            self.assertEqual(response.code, 200, path)
            self.assertIn(b"plan_weight", harness.body_of(response))
        for path in ("/ccm/v1/status/.", "/api/oauth/x/../usage", "//v1/messages/.."):
            harness.ccm_error(harness.response("GET", path), 404, "not_found_error")
        self.assertEqual(harness.log_texts(LogLevel.warn), [])
        self.assertEqual(harness.fake.requests, [])


class RawTargetTests(SynchronousTestCase):
    """
    Raw request lines to a real :obj:`CcmSite` (over a :obj:`StringTransport`):
    the bytes twisted.web parses are the bytes the client sent.
    """

    def exchange(
        self, connection: RawConnection, harness: ProxyHarness, data: bytes
    ) -> RawResponse:
        """
        Send ``data``, move the upstream along, and return the whole
        response, clearing it from the transport.
        """
        connection.send(data)
        harness.flush()
        response = connection.response()
        assert response is not None
        self.assertTrue(response.complete)
        connection.transport.clear()
        return response

    def test_refused_targets(self) -> None:
        """
        Every refused target, also those with bytes only raw HTTP carries,
        gets ccm's 404 on a connection that then serves the next request;
        nothing reaches the upstream but the plain requests, and no token
        is in any answer or in the log.
        """
        harness = ProxyHarness(self)
        connection = RawConnection(harness.site())
        targets = [(path.encode("ascii"), reason) for path, reason in REFUSED] + REFUSED_RAW
        for target, reason in targets:
            before = len(harness.log_texts(LogLevel.warn))
            response = self.exchange(
                connection, harness, raw_request("GET", target.decode("latin-1") + SECRET_QUERY)
            )
            self.assertEqual(response.status, 404, target)
            document = response.json()
            self.assertEqual(document["error"]["type"], "not_found_error")
            self.assertEqual(document["request_id"], response.headers["request-id"][0])
            self.assertNotIn(harness.fake.access_token.encode(), response.body)
            warnings = harness.log_texts(LogLevel.warn)[before:]
            self.assertEqual(len(warnings), 1, target)
            self.assertTrue(warnings[0].endswith(f"from 192.0.2.7: {reason}"), warnings)
            self.assertNotIn("query-secret", warnings[0])
            ok = self.exchange(connection, harness, raw_request("GET", "/v1/models"))
            self.assertEqual(ok.status, 200, target)
            self.assertEqual(harness.fake.requests[-1].path, "/v1/models")
        self.assertEqual(len(harness.fake.requests), len(targets))
        self.assertEqual({r.path for r in harness.fake.requests}, {"/v1/models"})
        connection.close()
        harness.assert_no_secrets_logged()

    def test_forwarded_targets(self) -> None:
        """
        Targets that normalize to a path under ``/v1/`` go upstream with the
        normalized path and the query string byte for byte.
        """
        harness = ProxyHarness(self)
        connection = RawConnection(harness.site())
        cases = [
            ("/v1/./models" + VALID_QUERY, "/v1/models" + VALID_QUERY),
            ("/v1/models/%2e%2E/models?", "/v1/models"),
            ("/V1/../v1/models", None),
            ("/v1/%4D%4f%44ELS/../models", "/v1/models"),
        ]
        for target, forwarded in cases:
            response = self.exchange(connection, harness, raw_request("GET", target))
            if forwarded is None:
                self.assertEqual(response.status, 404, target)
                continue
            self.assertEqual(response.status, 200, target)
            self.assertEqual(harness.fake.requests[-1].path, forwarded, target)
        self.assertEqual(len(harness.fake.requests), 3)
        connection.close()

    def test_v1_without_slash_and_double_slashes(self) -> None:
        """
        ``/v1`` without a slash and ``//v1/...`` are ccm's 404; ``/v1//...``
        goes upstream as written, for the upstream to judge.
        """
        harness = ProxyHarness(self)
        connection = RawConnection(harness.site())
        for target in ("/v1", "/v1?x=/v1/", "//v1/models", "//v1/..", "///v1/models"):
            response = self.exchange(connection, harness, raw_request("GET", target))
            self.assertEqual(response.status, 404, target)
            self.assertEqual(response.json()["error"]["type"], "not_found_error")
        self.assertEqual(harness.fake.requests, [])
        response = self.exchange(connection, harness, raw_request("GET", "/v1//models"))
        self.assertEqual(harness.fake.requests[-1].path, "/v1//models")
        self.assertEqual(response.status, 404)
        self.assertNotEqual(response.headers["request-id"][0][:4], "ccm_")
        connection.close()


class _RawClient(Protocol):
    """
    A client that writes raw bytes and keeps everything the server sends
    until it closes the connection.
    """

    def __init__(self, data: bytes) -> None:
        self.request = data
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed.callback(self.received)


def split_responses(data: bytes) -> list[RawResponse]:
    """
    Every response in ``data``, each with a ``Content-Length``, but the last,
    which may be chunked.
    """
    responses = []
    while data:
        response = parse_raw_response(data)
        assert response is not None, data
        responses.append(response)
        if "content-length" not in response.headers:
            break
        head, _, rest = data.partition(b"\r\n\r\n")
        data = rest[int(response.headers["content-length"][0]) :]
    return responses


class WireTests(TestCase):
    """
    Raw request lines over real loopback sockets to a real ccm site, in
    front of the fake API on its own port: twisted.web parses what a
    client really sent, and the fake records what treq really sent.
    """

    def setUp(self) -> None:
        self.events = logged_events(self)
        self.fake, upstream_url = serve_fake_anthropic(self)
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, ".credentials.json")
        write_credentials(path, self.fake.access_token, self.fake.refresh_token, 0)
        config = ServiceConfig(
            where="",
            listeners=(),
            credential_path=path,
            users=(ALICE,),
            upstream_url=upstream_url,
            max_request_body=1024,
        )
        _, self.port = serve_on_loopback(self, reactor, config)

    async def converse(self, *requests: bytes) -> list[RawResponse]:
        """
        Send ``requests`` on one connection (the last one closing it) and
        return the responses.
        """
        client = _RawClient(b"".join(requests))
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        await connectProtocol(endpoint, client)
        return split_responses(await client.closed)

    def assert_clean(self, responses: list[RawResponse]) -> None:
        """
        No token is in any response or any log event.
        """
        secrets = [self.fake.access_token, self.fake.refresh_token, ALICE_TOKEN, BOB_TOKEN]
        texts = [formatEvent(event) for event in self.events]
        for secret in secrets:
            for response in responses:
                self.assertNotIn(secret.encode(), response.body)
                self.assertNotIn(secret, repr(response.headers))
            for text in texts:
                self.assertNotIn(secret, text)
        for text in texts:
            self.assertNotIn("query-secret", text)

    async def test_hostile_targets(self) -> None:
        """
        Each hostile target gets ccm's 404 (or, for ``*``, twisted.web's own
        answer), the same connection then serves a plain request, and only
        the plain requests reach the upstream.
        """
        targets = [
            b"http://evil.example/v1/messages",
            b"//v1/..",
            b"/v1/%2e%2E/api/oauth/usage",
            b"/v1/%2E%2e/api/oauth/profile",
            b"/v1/..%2Fapi/oauth/profile",
            b"/v1/..%5Capi/oauth/profile",
            b"/v1/..\\api/oauth/profile",
            b"/v1/messages%00",
            b"/v1",
            b"//v1/models",
        ]
        responses: list[RawResponse] = []
        for target in targets:
            first, second = await self.converse(
                raw_request("GET", target.decode("latin-1") + SECRET_QUERY),
                raw_request("GET", "/v1/models", headers={"Connection": "close"}),
            )
            self.assertEqual(first.status, 404, target)
            self.assertEqual(first.json()["error"]["type"], "not_found_error")
            self.assertTrue(first.headers["request-id"][0].startswith("ccm_"))
            self.assertEqual(second.status, 200, target)
            responses += [first, second]
        star = await self.converse(
            b"OPTIONS * HTTP/1.1\r\nHost: ccm.test\r\nConnection: close\r\n\r\n"
        )
        self.assertEqual(star[0].status, 200)
        self.assertEqual([r.path for r in self.fake.requests], ["/v1/models"] * len(targets))
        self.assert_clean(responses)

    async def test_normalized_path_and_query_on_the_wire(self) -> None:
        """
        A dotted, escaped path reaches the upstream normalized, with its
        query string byte for byte.
        """
        (response,) = await self.converse(
            raw_request(
                "GET", "/v1/./files/%2e%2E/%6Dodels" + VALID_QUERY, headers={"Connection": "close"}
            )
        )
        self.assertEqual(response.status, 200)
        self.assertEqual([r.path for r in self.fake.requests], ["/v1/models" + VALID_QUERY])
        self.assert_clean([response])

    async def test_query_bytes_a_url_cannot_hold(self) -> None:
        """
        A raw ``#``, ``\\`` or ``|`` in a query reaches the upstream escaped,
        with the rest of the query after it.
        """
        (response,) = await self.converse(
            raw_request("GET", "/v1/models?a=1#b|c\\d&e=2", headers={"Connection": "close"})
        )
        self.assertEqual(response.status, 200)
        self.assertEqual([r.path for r in self.fake.requests], ["/v1/models?a=1%23b%7Cc%5Cd&e=2"])

    async def test_methods_on_the_wire(self) -> None:
        """
        ``TRACE``, ``CONNECT`` and a lower-case ``get`` get ccm's 405 with
        ``Allow``; the connection then serves a plain request, and nothing
        but that reaches the upstream.
        """
        responses: list[RawResponse] = []
        for method in ("TRACE", "CONNECT", "get", "OPTIONS"):
            first, second = await self.converse(
                raw_request(method, "/v1/messages" + SECRET_QUERY),
                raw_request("GET", "/v1/models", headers={"Connection": "close"}),
            )
            self.assertEqual(first.status, 405, method)
            self.assertEqual(first.headers["allow"], ["GET, HEAD, POST, PUT, PATCH, DELETE"])
            self.assertEqual(first.json()["error"]["type"], "invalid_request_error")
            self.assertEqual(second.status, 200)
            responses += [first, second]
        self.assertEqual([r.path for r in self.fake.requests], ["/v1/models"] * 4)
        self.assert_clean(responses)
