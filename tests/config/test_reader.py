"""
Tests for :obj:`ccm.config.reader`: values of the wrong JSON type and unknown keys,
each reported once with its JSON path, wherever they are in a document.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.load import parse_config
from ccm.config.model import ConfigError
from tests.config.parsing import SOURCE, ProblemsTestMixin, multi, problems_of


class WrongTypeTests(SynchronousTestCase, ProblemsTestMixin):
    """
    A value of the wrong JSON type is reported once, naming the type
    expected and the type found.
    """

    def test_string_fields(self) -> None:
        """
        String fields refuse numbers, booleans, arrays and objects.
        """
        self.assert_problems(
            {"tag": 1, "credential_path": True, "usages_path": [], "upstream_url": {}},
            [
                "config.json: credential_path: must be a string, got a boolean",
                "config.json: usages_path: must be a string, got an array",
                "config.json: tag: must be a string, got a number",
                "config.json: upstream_url: must be a string, got an object",
            ],
        )

    def test_boolean_field(self) -> None:
        """
        A boolean field refuses a string.
        """
        self.assert_problem(
            {"tls": {"enabled": "true"}},
            "config.json: tls.enabled: must be true or false, got a string",
        )

    def test_integer_fields(self) -> None:
        """
        Integer fields refuse strings, booleans and fractions, each with one
        line only.
        """
        self.assert_problems(
            multi(
                {
                    "tag": "a",
                    "reserve_5h": "20",
                    "reserve_weekly": True,
                    "limit_5h": 1.5,
                    "limit_weekly": 0.0,
                }
            ),
            [
                "config.json: credentials[0].reserve_5h: must be a whole number, got a string",
                "config.json: credentials[0].reserve_weekly: must be a whole number, got a boolean",
                "config.json: credentials[0].limit_5h: must be a whole number, got 1.5",
                "config.json: credentials[0].limit_weekly: must be a whole number, got 0.0",
            ],
        )
        self.assert_problem(
            {"listen_port": False},
            "config.json: listen_port: must be a whole number, got a boolean",
        )

    def test_number_field(self) -> None:
        """
        A number field refuses a string or a boolean, once.
        """
        self.assert_problem(
            multi(
                {"tag": "a"},
                {"tag": "p", "type": "balancer", "credentials": ["a"], "rebalance_threshold": "1"},
            ),
            "config.json: credentials[1].rebalance_threshold: must be a number, got a string",
        )
        self.assert_problem(
            multi(
                {"tag": "a"},
                {
                    "tag": "p",
                    "type": "balancer",
                    "credentials": ["a"],
                    "rebalance_threshold": False,
                },
            ),
            "config.json: credentials[1].rebalance_threshold: must be a number, got a boolean",
        )

    def test_array_fields(self) -> None:
        """
        Array fields refuse other types, and their items must be objects.
        """
        self.assert_problems(
            {"credentials": {"tag": "a"}, "users": "alice"},
            [
                "config.json: credentials: must be an array, got an object",
                "config.json: users: must be an array, got a string",
            ],
        )
        self.assert_problems(
            {"users": ["alice", None]},
            [
                "config.json: users[0]: must be an object, got a string",
                "config.json: users[1]: must be an object, got null",
            ],
        )

    def test_string_or_array_fields(self) -> None:
        """
        Fields that take a string or an array of strings refuse other types
        and report bad items by index.
        """
        self.assert_problems(
            {"endpoint": ["tcp:8080", 8081], "headers": {"X-A": 5}},
            [
                "config.json: endpoint[1]: must be a string, got a number",
                "config.json: headers.X-A: must be a string or an array of strings, got a number",
            ],
        )
        self.assert_problem(
            {"endpoint": 8080},
            "config.json: endpoint: must be a string or an array of strings, got a number",
        )

    def test_object_fields(self) -> None:
        """
        Object fields refuse other types.
        """
        self.assert_problems(
            {"headers": ["X-A: 1"], "tls": True},
            [
                "config.json: tls: must be an object, got a boolean",
                "config.json: headers: must be an object, got an array",
            ],
        )

    def test_never_crashes(self) -> None:
        """
        Whatever JSON value any field holds, the result is a configuration
        or a :obj:`ConfigError`, never another exception.
        """
        values: list[object] = [
            5,
            1.5,
            True,
            None,
            "",
            "x",
            [],
            [5],
            [{}],
            {},
            {"a": 1},
            -1,
            0,
            70000,
        ]
        documents: list[object] = []
        for value in values:
            documents.append(value)
            documents.append({"services": value})
            documents.append({"services": [value]})
            documents.append({"services": [{"type": "ccm"}], "outbounds": [value]})
            documents.append({"headers": {"X-A": value}})
            documents.append(multi({"tag": "a", "type": value}))
            documents.append(
                multi({"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": [value]})
            )
            for key in (
                "type",
                "tag",
                "listen",
                "listen_port",
                "credential_path",
                "credentials",
                "usages_path",
                "users",
                "headers",
                "detour",
                "tls",
                "endpoint",
                "upstream_url",
                "oauth_token_url",
                "max_request_body",
                "request_head_timeout",
                "request_body_min_rate",
                "max_connections",
                "max_request_head",
            ):
                documents.append({key: value})
            for key in (
                "tag",
                "credential_path",
                "usages_path",
                "detour",
                "reserve_5h",
                "limit_weekly",
            ):
                documents.append(multi({"tag": "a", key: value}))
            for key in ("strategy", "credentials", "poll_interval", "rebalance_threshold"):
                documents.append(
                    multi(
                        {"tag": "a"},
                        {"tag": "p", "type": "balancer", "credentials": ["a"], key: value},
                    )
                )
            for key in ("name", "token", "credential"):
                documents.append({"users": [{"name": "n", "token": "t", key: value}]})
            for key in ("enabled", "certificate", "key", "alpn", "min_version"):
                documents.append(
                    {"tls": {"enabled": True, "certificate": "c", "key": "k", key: value}}
                )
            for key in ("type", "server", "server_port", "username", "password"):
                documents.append(
                    {
                        "services": [{"type": "ccm", "detour": "o"}],
                        "outbounds": [
                            {
                                "tag": "o",
                                "type": "http",
                                "server": "h",
                                "server_port": 1,
                                key: value,
                            }
                        ],
                    }
                )
        outcomes = set()
        for document in documents:
            try:
                parse_config(document, source=SOURCE)
            except ConfigError as error:
                self.assertTrue(error.problems, document)
                self.assertTrue(
                    all(line.startswith("config.json") for line in error.problems), error.problems
                )
                outcomes.add("refused")
            else:
                outcomes.add("loaded")
        self.assertEqual(outcomes, {"refused", "loaded"})


class UnknownKeyTests(SynchronousTestCase, ProblemsTestMixin):
    """
    Unknown keys are errors, as in sing-box, with the closest known key
    suggested when there is one.
    """

    def test_suggestion(self) -> None:
        """
        A misspelled key is reported with the key it probably meant.
        """
        self.assert_problems(
            multi({"tag": "a", "reserve_weeky": 10}, credentail_path="x"),
            [
                "config.json: credentail_path: unknown key; did you mean 'credential_path'?",
                "config.json: credentials[0].reserve_weeky: unknown key; did you mean 'reserve_weekly'?",
            ],
        )

    def test_no_suggestion(self) -> None:
        """
        A key like no known one is reported without a suggestion.
        """
        self.assert_problem({"zzz": 1}, "config.json: zzz: unknown key")

    def test_everywhere(self) -> None:
        """
        Unknown keys are found in every object of the schema: services,
        users, pools, TLS and the sing-box service entries.
        """
        problems = problems_of(
            {
                "services": [
                    {
                        "type": "ccm",
                        "listen_prot": 1,
                        "credentials": [
                            {"tag": "a"},
                            {
                                "tag": "p",
                                "type": "balancer",
                                "credentials": ["a"],
                                "strategie": "random",
                            },
                        ],
                        "users": [{"name": "u", "token": "t", "credential": "a", "tokn": "x"}],
                        "tls": {"enabled": False, "certificat_path": "c.pem"},
                    }
                ]
            }
        )
        self.assertEqual(
            problems,
            [
                "config.json: services[0].listen_prot: unknown key; did you mean 'listen_port'?",
                "config.json: services[0].tls.certificat_path: unknown key; did you mean 'certificate_path'?",
                "config.json: services[0].credentials[1].strategie: unknown key; did you mean 'strategy'?",
                "config.json: services[0].users[0].tokn: unknown key; did you mean 'token'?",
            ],
        )
