"""
Tests for :obj:`ccm.proxy.headers`: what a client's request loses and gains on its way
upstream, and what an upstream response loses on its way back.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.proxy.headers import (
    OAUTH_BETA,
    client_response_headers,
    merge_betas,
    upstream_request_headers,
)

ACCESS_TOKEN = "sk-ant-oat01-subscription-token"


def table(headers: Headers) -> dict[str, list[str]]:
    """
    Headers as lower-cased names mapped to their text values.
    """
    return {
        name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
        for name, values in headers.getAllRawHeaders()
    }


def build(**values: str | list[str]) -> Headers:
    """
    Headers from keyword arguments; underscores in names become dashes.
    """
    return Headers(
        {
            name.replace("_", "-").encode("ascii"): [
                v.encode("latin-1") for v in (value if isinstance(value, list) else [value])
            ]
            for name, value in values.items()
        }
    )


class MergeBetasTests(SynchronousTestCase):
    """
    :obj:`merge_betas` joins ``anthropic-beta`` values.
    """

    def test_oauth_added_first(self) -> None:
        """
        Without the OAuth flag, it is put first and the rest keep their
        order.
        """
        self.assertEqual(
            merge_betas(["claude-code-20250219,interleaved-thinking-2025-05-14"]),
            f"{OAUTH_BETA},claude-code-20250219,interleaved-thinking-2025-05-14",
        )

    def test_oauth_kept_in_place(self) -> None:
        """
        An OAuth flag the client sent stays where it was, once.
        """
        self.assertEqual(
            merge_betas([f"claude-code-20250219,{OAUTH_BETA}", f"{OAUTH_BETA}, x-1"]),
            f"claude-code-20250219,{OAUTH_BETA},x-1",
        )

    def test_values_merged_and_deduplicated(self) -> None:
        """
        Items of all values are merged in first-seen order without repeats,
        blanks and empty items dropped.
        """
        self.assertEqual(
            merge_betas([" b-1 , a-2,,", "a-2,c-3", "", " b-1"]),
            f"{OAUTH_BETA},b-1,a-2,c-3",
        )

    def test_nothing(self) -> None:
        """
        No values at all give just the OAuth flag.
        """
        self.assertEqual(merge_betas([]), OAUTH_BETA)


class UpstreamRequestHeadersTests(SynchronousTestCase):
    """
    :obj:`upstream_request_headers` builds what is sent upstream.
    """

    def test_authorization_is_oauth(self) -> None:
        """
        The client's ``Authorization`` is replaced by the subscription's
        bearer token.
        """
        result = table(
            upstream_request_headers(build(authorization="Bearer ccm-user-token"), ACCESS_TOKEN)
        )
        self.assertEqual(result["authorization"], [f"Bearer {ACCESS_TOKEN}"])

    def test_client_credentials_dropped(self) -> None:
        """
        The client's API keys never go upstream.
        """
        result = table(
            upstream_request_headers(build(x_api_key="k1", api_key="k2"), ACCESS_TOKEN)
        )
        self.assertNotIn("x-api-key", result)
        self.assertNotIn("api-key", result)

    def test_hop_by_hop_dropped(self) -> None:
        """
        The RFC 9110 connection headers, and every header the client's
        ``Connection`` names, are dropped.
        """
        client = build(
            connection=["keep-alive, X-Private", "x-other"],
            x_private="1",
            x_other="2",
            keep_alive="timeout=5",
            proxy_authorization="Basic abc",
            proxy_connection="keep-alive",
            te="trailers",
            trailer="x-checksum",
            transfer_encoding="chunked",
            upgrade="websocket",
            x_kept="yes",
        )
        result = table(upstream_request_headers(client, ACCESS_TOKEN))
        self.assertEqual(sorted(result), ["anthropic-beta", "authorization", "x-kept"])

    def test_connection_cannot_drop_oauth(self) -> None:
        """
        A ``Connection`` header naming ``Authorization`` or
        ``anthropic-beta`` cannot remove the OAuth token or flag.
        """
        client = build(connection="authorization, anthropic-beta", anthropic_beta="x-1")
        result = table(upstream_request_headers(client, ACCESS_TOKEN))
        self.assertEqual(result["authorization"], [f"Bearer {ACCESS_TOKEN}"])
        self.assertEqual(result["anthropic-beta"], [OAUTH_BETA])

    def test_cdn_and_cookies_dropped(self) -> None:
        """
        Cookies and the headers CDNs and reverse proxies add are dropped.
        """
        client = build(
            cookie="a=b",
            cf_connecting_ip="203.0.113.1",
            cf_ray="abc",
            cdn_loop="cloudflare",
            true_client_ip="203.0.113.1",
            x_real_ip="203.0.113.1",
            x_forwarded_for="203.0.113.1",
            x_forwarded_proto="https",
            forwarded="for=203.0.113.1",
            via="1.1 cdn",
            host="ccm.example",
            content_length="12",
            accept_encoding="br",
        )
        result = table(upstream_request_headers(client, ACCESS_TOKEN))
        self.assertEqual(sorted(result), ["anthropic-beta", "authorization"])

    def test_ordinary_headers_kept(self) -> None:
        """
        Other headers pass unchanged, with all their values.
        """
        client = build(
            anthropic_version="2023-06-01",
            content_type="application/json",
            user_agent="claude-cli/2.1.197 (external, cli)",
            x_stainless_helper=["a", "b"],
        )
        result = table(upstream_request_headers(client, ACCESS_TOKEN))
        self.assertEqual(result["anthropic-version"], ["2023-06-01"])
        self.assertEqual(result["content-type"], ["application/json"])
        self.assertEqual(result["user-agent"], ["claude-cli/2.1.197 (external, cli)"])
        self.assertEqual(result["x-stainless-helper"], ["a", "b"])

    def test_betas_merged(self) -> None:
        """
        Several ``anthropic-beta`` headers become one value with the OAuth
        flag exactly once.
        """
        client = build(anthropic_beta=["b-1,oauth-2025-04-20", "b-2, b-1"])
        result = table(upstream_request_headers(client, ACCESS_TOKEN))
        self.assertEqual(result["anthropic-beta"], [f"b-1,{OAUTH_BETA},b-2"])

    def test_headers_option_replaces_client_values(self) -> None:
        """
        A configured header replaces every value the client sent under the
        same name, whatever its case.
        """
        client = build(user_agent="claude-cli/2.1.197", x_team=["a", "b"])
        result = table(
            upstream_request_headers(
                client, ACCESS_TOKEN, (("User-Agent", ("ccm/1",)), ("X-Team", ("c",)))
            )
        )
        self.assertEqual(result["user-agent"], ["ccm/1"])
        self.assertEqual(result["x-team"], ["c"])

    def test_headers_option_beta_keeps_oauth(self) -> None:
        """
        An ``anthropic-beta`` set by the ``headers`` option replaces the
        client's and still gets the OAuth flag exactly once.
        """
        client = build(anthropic_beta="claude-code-20250219")
        for configured, expected in (
            (("context-1m-2025-08-07",), f"{OAUTH_BETA},context-1m-2025-08-07"),
            ((f"x-1,{OAUTH_BETA}", OAUTH_BETA), f"x-1,{OAUTH_BETA}"),
        ):
            result = table(
                upstream_request_headers(client, ACCESS_TOKEN, (("anthropic-beta", configured),))
            )
            self.assertEqual(result["anthropic-beta"], [expected])

    def test_headers_option_cannot_set_authorization(self) -> None:
        """
        The ``headers`` option cannot override the OAuth ``Authorization``.
        """
        result = table(
            upstream_request_headers(
                build(), ACCESS_TOKEN, (("Authorization", ("Bearer operator-key",)),)
            )
        )
        self.assertEqual(result["authorization"], [f"Bearer {ACCESS_TOKEN}"])

    def test_client_headers_not_modified(self) -> None:
        """
        The client's own header object is left as it was.
        """
        client = build(authorization="Bearer ccm-user-token", cookie="a=b")
        upstream_request_headers(client, ACCESS_TOKEN)
        self.assertEqual(
            table(client), {"authorization": ["Bearer ccm-user-token"], "cookie": ["a=b"]}
        )


class ClientResponseHeadersTests(SynchronousTestCase):
    """
    :obj:`client_response_headers` cleans an upstream response's headers.
    """

    def test_kept_unchanged(self) -> None:
        """
        The API's own headers pass with all values.
        """
        upstream = build(
            content_type="text/event-stream; charset=utf-8",
            request_id="req_011",
            retry_after="30",
            anthropic_ratelimit_unified_status="allowed",
            x_should_retry="true",
            content_encoding="br",
            cache_control="no-cache",
            x_multi=["1", "2"],
        )
        self.assertEqual(table(client_response_headers(upstream)), table(upstream))

    def test_dropped(self) -> None:
        """
        Hop-by-hop (and those named in ``Connection``), CDN, cookie and
        length headers are dropped.
        """
        upstream = build(
            connection="close, x-internal",
            x_internal="1",
            keep_alive="timeout=5",
            transfer_encoding="chunked",
            content_length="99",
            set_cookie=["__cf_bm=x; path=/", "_cfuvid=y"],
            cf_ray="123-SJC",
            cf_cache_status="DYNAMIC",
            via="1.1 google",
            x_forwarded_for="10.0.0.1",
            request_id="req_1",
        )
        self.assertEqual(table(client_response_headers(upstream)), {"request-id": ["req_1"]})

    def test_empty_content_encoding_dropped(self) -> None:
        """
        The empty ``Content-Encoding`` the HTTP client's decoder leaves when
        the upstream sent none is not passed on.
        """
        upstream = build(content_encoding="", request_id="req_1")
        self.assertEqual(table(client_response_headers(upstream)), {"request-id": ["req_1"]})

    def test_into_the_response(self) -> None:
        """
        Given a response's own headers, the cleaned headers are added to
        them, next to what was set there before, and those are returned.
        """
        upstream = build(request_id="req_1", set_cookie="a=b", content_encoding="")
        response = build(x_request_served_by="ccm")
        result = client_response_headers(upstream, into=response)
        self.assertIs(result, response)
        self.assertEqual(
            table(response), {"request-id": ["req_1"], "x-request-served-by": ["ccm"]}
        )
