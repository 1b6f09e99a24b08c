"""
Tests for :obj:`ccm.config.headers`: the ``headers`` option, extra headers sent
upstream.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.config.parsing import ProblemsTestMixin, problems_of, service_of


class HeadersTests(SynchronousTestCase, ProblemsTestMixin):
    """
    The ``headers`` option: extra headers sent upstream.
    """

    def test_string_and_array_values(self) -> None:
        """
        A header takes one string or an array of strings, kept in order.
        """
        service = service_of(
            {"headers": {"X-Team": "infra", "X-Tags": ["a", "b"], "anthropic-beta": "x-1"}}
        )
        self.assertEqual(
            service.headers,
            (("X-Team", ("infra",)), ("X-Tags", ("a", "b")), ("anthropic-beta", ("x-1",))),
        )

    def test_invalid_names(self) -> None:
        """
        Header names must be HTTP tokens.
        """
        self.assert_problems(
            {"headers": {"X Team": "a", "X-Team:": "b", "": "c", "X-\u00e9": "d"}},
            [
                "config.json: headers.X Team: is not a valid header name",
                "config.json: headers.X-Team:: is not a valid header name",
                "config.json: headers.: is not a valid header name",
                "config.json: headers.X-\u00e9: is not a valid header name",
            ],
        )

    def test_forbidden_names(self) -> None:
        """
        Authorization, API keys, cookies, Host and hop-by-hop headers
        cannot be set, in any case.
        """
        problems = problems_of(
            {
                "headers": {
                    "Authorization": "Bearer x",
                    "HOST": "example.test",
                    "connection": "close",
                    "Transfer-Encoding": "chunked",
                    "Upgrade": "h2c",
                    "Keep-Alive": "5",
                    "TE": "trailers",
                    "Proxy-Authorization": "Basic x",
                    "Content-Length": "3",
                    "X-Api-Key": "sk-ant-api03-x",
                    "api-key": "k",
                    "Cookie": "a=b",
                }
            }
        )
        self.assertEqual(len(problems), 12, problems)
        self.assertEqual(
            problems[0],
            "config.json: headers.Authorization: cannot be set here: ccm sets "
            "Authorization to the subscription's OAuth token",
        )
        self.assertEqual(
            problems[1],
            "config.json: headers.HOST: cannot be set here: the Host header follows upstream_url",
        )
        self.assertEqual(
            problems[2],
            "config.json: headers.connection: cannot be set here: it is a hop-by-hop header",
        )
        for line in problems:
            self.assertIn(": cannot be set here: ", line)

    def test_forbidden_names_are_the_proxys(self) -> None:
        """
        The client credentials and hop-by-hop headers that cannot be set are
        those the proxy strips from clients' requests, so the obsolete
        ``Trailers`` is refused too, and a header the proxy only drops from
        clients, such as ``Accept-Encoding``, can be set.
        """
        self.assert_problem(
            {"headers": {"Trailers": "x"}},
            "config.json: headers.Trailers: cannot be set here: it is a hop-by-hop header",
        )
        service = service_of({"headers": {"Accept-Encoding": "identity"}})
        self.assertEqual(service.headers, (("Accept-Encoding", ("identity",)),))

    def test_line_breaks(self) -> None:
        """
        Values with line breaks (header injection) are refused.
        """
        self.assert_problems(
            {"headers": {"X-A": "a\r\nX-Evil: 1", "X-B": ["ok", "b\n"]}},
            [
                "config.json: headers.X-A: values must not contain line breaks",
                "config.json: headers.X-B: values must not contain line breaks",
            ],
        )

    def test_unsendable_values(self) -> None:
        """
        Values that cannot go on the wire (control characters, text beyond
        Latin-1) are refused; tabs and Latin-1 letters are fine.
        """
        self.assert_problems(
            {"headers": {"X-A": "a\x00b", "X-B": "\u20ac"}},
            [
                "config.json: headers.X-A: values must be Latin-1 text without control characters",
                "config.json: headers.X-B: values must be Latin-1 text without control characters",
            ],
        )
        service = service_of({"headers": {"X-A": "a\tb", "X-B": "caf\u00e9"}})
        self.assertEqual(service.headers, (("X-A", ("a\tb",)), ("X-B", ("caf\u00e9",))))

    def test_same_name_twice(self) -> None:
        """
        Header names differing only in case are the same header; the second
        is refused rather than silently replacing the first.
        """
        self.assert_problem(
            {"headers": {"X-Team": "a", "x-team": "b"}},
            "config.json: headers.x-team: repeats 'X-Team': header names are case-insensitive",
        )
