"""
Tests for the configuration: the model in L{ccm.config.model}, the typed reader in
L{ccm.config.reader} and the loader and validator in L{ccm.config.load}.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.model import (
    DEFAULT_MAX_REQUEST_BODY_BYTES,
    DEFAULT_OAUTH_TOKEN_URL,
    DEFAULT_UPSTREAM_URL,
    AddressListener,
    BalancerCredentialConfig,
    Config,
    ConfigError,
    ConnectionLimits,
    DefaultCredentialConfig,
    Detour,
    EndpointListener,
    ServiceConfig,
    UserConfig,
    default_config,
)
from ccm.config.load import load_config, parse_config
from tests.config.parsing import (
    SEED_BALANCER_CREDENTIAL,
    SEED_DEFAULT_CREDENTIAL,
    SEED_FALLBACK_CREDENTIAL,
    SEED_MULTIPLE_CREDENTIALS_EXAMPLE,
    SEED_SERVER_EXAMPLE,
    SOURCE,
    ProblemsTestMixin,
    problems_of,
    service_of,
)

def multi(*credentials: dict[str, Any], **service: Any) -> dict[str, Any]:
    """
    A bare service object with a C{credentials} list.
    """
    return {"credentials": list(credentials), **service}


class SeedExampleTests(SynchronousTestCase):
    """
    The examples of the seed documentation load unchanged.
    """

    def load(self, text: str) -> Config:
        """
        Parse an example as L{load_config} does, without the check of the
        usage files' directories: the examples name directories (such as
        C{/data}) that need not exist here.  L{UsagePathCheckTests} covers
        that check.
        """
        return parse_config(json.loads(text), source="config.json")

    def test_server_example(self) -> None:
        """
        The single-credential server example gives one service listening
        on 0.0.0.0:8080 with the usage file, two users and the legacy
        default credential capped at 99 %.
        """
        config = self.load(SEED_SERVER_EXAMPLE)
        self.assertEqual(config.source, "config.json")
        self.assertEqual(config.warnings, ())
        [service] = config.services
        self.assertEqual(service.where, "services[0]")
        self.assertEqual(service.listeners, (AddressListener("0.0.0.0", 8080, None),))
        self.assertEqual(service.usages_path, "./claude-usages.json")
        self.assertEqual(
            service.users,
            (
                UserConfig(name="alice", token="ak-ccm-hello-world"),
                UserConfig(name="bob", token="ak-ccm-hello-bob"),
            ),
        )
        self.assertFalse(service.multi_credential)
        [credential] = service.default_credentials()
        self.assertEqual(credential.tag, "default")
        self.assertEqual(credential.usages_path, "./claude-usages.json")
        self.assertEqual((credential.cap_5h, credential.cap_weekly), (99, 99))
        self.assertEqual(service.upstream_url, DEFAULT_UPSTREAM_URL)
        self.assertEqual(service.oauth_token_url, DEFAULT_OAUTH_TOKEN_URL)
        self.assertEqual(service.max_request_body, DEFAULT_MAX_REQUEST_BODY_BYTES)

    def test_multiple_credentials_example(self) -> None:
        """
        The multi-credential example gives two default credentials with
        their reserves turned into caps, a least-used balancer over them
        polling every 60 s, and users bound to their credentials.
        """
        config = self.load(SEED_MULTIPLE_CREDENTIALS_EXAMPLE)
        [service] = config.services
        self.assertTrue(service.multi_credential)
        self.assertEqual(service.listeners, (AddressListener("0.0.0.0", 8080, None),))
        a, b, pool = service.credentials
        self.assertEqual(
            a,
            DefaultCredentialConfig(
                tag="a",
                credential_path="/home/user/.claude-a/.credentials.json",
                usages_path="/data/usages-a.json",
                reserve_5h=20,
                reserve_weekly=20,
            ),
        )
        self.assertEqual((a.cap_5h, a.cap_weekly), (80, 80))
        self.assertEqual(
            b,
            DefaultCredentialConfig(
                tag="b",
                credential_path="/home/user/.claude-b/.credentials.json",
                reserve_5h=10,
                reserve_weekly=10,
            ),
        )
        self.assertEqual((b.cap_5h, b.cap_weekly), (90, 90))
        self.assertEqual(
            pool,
            BalancerCredentialConfig(
                tag="pool", credentials=("a", "b"), strategy="least_used", poll_interval=60.0
            ),
        )
        self.assertEqual(service.default_credentials(), (a, b))
        self.assertEqual(
            [(u.name, u.token, u.credential) for u in service.users],
            [("alice", "ak-ccm-hello-world", "pool"), ("bob", "ak-ccm-hello-bob", "a")],
        )

    def test_credential_snippets(self) -> None:
        """
        The default, balancer and fallback credential snippets of the seed
        documentation load side by side: the empty detour means none, the
        empty strategy means least-used, and the fallback type is a balancer
        with the fallback strategy.
        """
        entries = [
            json.loads(SEED_DEFAULT_CREDENTIAL),
            {"tag": "b"},
            json.loads(SEED_BALANCER_CREDENTIAL),
            json.loads(SEED_FALLBACK_CREDENTIAL),
        ]
        service = service_of(multi(*entries))
        a, _, pool, backup = service.credentials
        assert isinstance(a, DefaultCredentialConfig)
        self.assertEqual(a.credential_path, "/path/to/.credentials.json")
        self.assertEqual(a.usages_path, "/path/to/usages.json")
        self.assertIsNone(a.detour)
        self.assertEqual((a.reserve_5h, a.reserve_weekly), (20, 20))
        self.assertEqual(pool, BalancerCredentialConfig("pool", ("a", "b"), "least_used", 60.0))
        self.assertEqual(backup, BalancerCredentialConfig("backup", ("a", "b"), "fallback", 30.0))

    def test_structure_with_empty_values(self) -> None:
        """
        The documented structure with every field empty loads as the legacy
        defaults (loopback port 8080, no users, no headers, no detour).
        """
        service = service_of(
            {
                "type": "ccm",
                "credential_path": "",
                "credentials": [],
                "usages_path": "",
                "users": [],
                "headers": {},
                "detour": "",
                "tls": {},
            }
        )
        self.assertEqual(service.listeners, (AddressListener("127.0.0.1", 8080, None),))
        self.assertFalse(service.multi_credential)
        self.assertEqual(
            (service.credential_path, service.usages_path, service.detour),
            ("", "", None),
        )
        self.assertEqual((service.users, service.headers), ((), ()))


class DocumentShapeTests(SynchronousTestCase, ProblemsTestMixin):
    """
    Both document shapes are accepted, and anything else is refused with a
    line naming the file.
    """

    def write(self, data: bytes, name: str = "config.json") -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def assert_load_fails(self, path: str, expected: list[str]) -> None:
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertEqual(caught.exception.problems, expected)
        self.assertEqual(str(caught.exception), "\n".join(expected))

    def test_bare_service_object(self) -> None:
        """
        A bare ccm service object, with or without C{type}, is one service
        whose JSON paths have no prefix.
        """
        for document in ({"listen_port": 9000}, {"type": "ccm", "listen_port": 9000}):
            service = service_of(document)
            self.assertEqual(service.where, "")
            self.assertEqual(service.listeners, (AddressListener("127.0.0.1", 9000, None),))
        self.assert_problem(
            {"listen_port": "9000"},
            "config.json: listen_port: must be a whole number, got a string",
        )

    def test_bare_object_of_another_type(self) -> None:
        """
        A bare object whose C{type} is not C{ccm} is refused, with a hint
        about the sing-box document shape.
        """
        [line] = problems_of({"type": "shadowsocks", "listen_port": 8388})
        self.assertTrue(line.startswith('config.json: type: must be "ccm"'), line)
        self.assertIn("'shadowsocks'", line)
        self.assertIn('"services" array', line)

    def test_singbox_document_with_several_services(self) -> None:
        """
        In a sing-box document every ccm service is served, in order, each
        knowing its JSON path; other services are ignored, whatever they
        hold.
        """
        config = parse_config(
            {
                "log": {"level": "info"},
                "services": [
                    {"type": "ccm", "listen_port": 8001},
                    {"type": "derp", "listen_port": 443, "anything": [1, 2]},
                    {"type": "ccm", "endpoint": "tcp:8002:interface=127.0.0.1"},
                ],
                "outbounds": [{"type": "direct", "tag": "direct"}],
            },
            source=SOURCE,
        )
        self.assertEqual([s.where for s in config.services], ["services[0]", "services[2]"])
        self.assertEqual(
            [s.listeners for s in config.services],
            [
                (AddressListener("127.0.0.1", 8001, None),),
                (EndpointListener("tcp:8002:interface=127.0.0.1"),),
            ],
        )

    def test_singbox_document_without_ccm_service(self) -> None:
        """
        A sing-box document with no ccm service is refused rather than
        starting nothing.
        """
        expected = 'config.json: services: has no service of type "ccm"'
        self.assert_problem({"services": [{"type": "derp"}]}, expected)
        self.assert_problem({"services": []}, expected)

    def test_services_not_an_array(self) -> None:
        """
        C{services} must be an array of objects.
        """
        self.assert_problem(
            {"services": {"type": "ccm"}},
            "config.json: services: must be an array, got an object",
        )
        self.assert_problem(
            {"services": [{"type": "ccm"}, "ccm"]},
            "config.json: services[1]: must be an object, got a string",
        )

    def test_outbounds_not_an_array(self) -> None:
        """
        C{outbounds}, when present, must be an array.
        """
        self.assert_problem(
            {"services": [{"type": "ccm"}], "outbounds": {"direct": {}}},
            "config.json: outbounds: must be an array, got an object",
        )

    def test_not_an_object(self) -> None:
        """
        A document that is not a JSON object is refused, naming what it is.
        """
        for document, kind in (
            ([], "an array"),
            ("ccm", "a string"),
            (None, "null"),
            (3, "a number"),
        ):
            self.assert_problem(document, f"config.json: must be a JSON object, got {kind}")

    def test_load_file(self) -> None:
        """
        L{load_config} reads a file and names it by its base name in the
        configuration and in its problems.
        """
        path = self.write(b'{"listen_port": 9001}')
        config = load_config(path)
        self.assertEqual(config.source, "config.json")
        self.assertEqual(config.services[0].listeners, (AddressListener("127.0.0.1", 9001, None),))

    def test_design_example_line(self) -> None:
        """
        The problem line of the design contract comes out exactly so.
        """
        path = self.write(
            json.dumps(
                {
                    "services": [
                        {
                            "type": "ccm",
                            "credentials": [{"tag": "a"}, {"tag": "b", "reserve_5h": 120}],
                        }
                    ]
                }
            ).encode("utf-8")
        )
        self.assert_load_fails(
            path,
            [
                "config.json: services[0].credentials[1].reserve_5h: must be between 1 and 99, got 120"
            ],
        )

    def test_invalid_json(self) -> None:
        """
        Invalid JSON is reported on one line with its line and column.
        """
        path = self.write(b'{\n  "listen": "127.0.0.1",\n  "listen_port": 80 80\n}\n')
        self.assert_load_fails(
            path,
            ["config.json: invalid JSON at line 3 column 21: Expecting ',' delimiter"],
        )

    def test_empty_file(self) -> None:
        """
        An empty file is invalid JSON at its very start.
        """
        self.assert_load_fails(
            self.write(b""), ["config.json: invalid JSON at line 1 column 1: Expecting value"]
        )

    def test_not_utf8(self) -> None:
        """
        A file that is not UTF-8 text is refused in one line.
        """
        self.assert_load_fails(self.write(b'{"tag": "caf\xe9"}'), ["config.json: not UTF-8 text"])

    def test_beyond_the_decoder(self) -> None:
        """
        JSON nested deeper than the decoder goes, or with a number longer
        than Python converts, is refused in one line instead of a
        traceback.
        """
        self.assert_load_fails(self.write(b"[" * 200_000), ["config.json: nested too deeply"])
        self.assert_load_fails(
            self.write(b'{"listen_port": ' + b"1" * 5000 + b"}"),
            ["config.json: a number has too many digits"],
        )

    def test_missing_file(self) -> None:
        """
        A file that does not exist is reported with its full path and the
        reason.
        """
        path = os.path.join(os.path.abspath(self.mktemp()), "config.json")
        self.assert_load_fails(path, [f"{path}: cannot read: No such file or directory"])

    def test_unreadable_file(self) -> None:
        """
        A path that cannot be read as a file is reported with its reason.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.assert_load_fails(directory, [f"{directory}: cannot read: Is a directory"])


class ReferenceValidationTests(SynchronousTestCase, ProblemsTestMixin):
    """
    Every validation rule of the reference (its section 1.3) holds, each
    reported with its JSON path.
    """

    def test_credential_path_with_credentials(self) -> None:
        """
        A top-level C{credential_path} is refused in multi-credential mode.
        """
        self.assert_problem(
            multi({"tag": "a"}, credential_path="/x/.credentials.json"),
            "config.json: credential_path: credential_path and credentials are mutually exclusive",
        )

    def test_usages_path_with_credentials(self) -> None:
        """
        A top-level C{usages_path} is refused in multi-credential mode.
        """
        self.assert_problem(
            multi({"tag": "a"}, usages_path="usages.json"),
            "config.json: usages_path: usages_path and credentials are mutually "
            "exclusive; use usages_path on individual credentials",
        )

    def test_detour_with_credentials(self) -> None:
        """
        A top-level C{detour} is refused in multi-credential mode.
        """
        self.assert_problem(
            multi({"tag": "a"}, detour="http://127.0.0.1:3128"),
            "config.json: detour: detour and credentials are mutually exclusive; "
            "use detour on individual credentials",
        )

    def test_duplicate_tag(self) -> None:
        """
        Two credentials with the same tag are refused at the second one.
        """
        self.assert_problem(
            multi(
                {"tag": "a"}, {"tag": "b"}, {"tag": "a", "type": "balancer", "credentials": ["b"]}
            ),
            "config.json: credentials[2].tag: duplicate credential tag: a",
        )

    def test_missing_tag(self) -> None:
        """
        Every credential needs a non-empty string tag.
        """
        self.assert_problems(
            multi({"credential_path": "x"}, {"tag": ""}, {"tag": 7}),
            [
                "config.json: credentials[0].tag: every credential needs a non-empty tag",
                "config.json: credentials[1].tag: every credential needs a non-empty tag",
                "config.json: credentials[2].tag: must be a string, got a number",
            ],
        )

    def test_reserve_above_99(self) -> None:
        """
        C{reserve_5h} and C{reserve_weekly} above 99 are refused, and so is
        a negative reserve; 99 itself and 0 (not set) are accepted.
        """
        self.assert_problems(
            multi(
                {"tag": "a", "reserve_5h": 120, "reserve_weekly": 100},
                {"tag": "b", "reserve_5h": -1},
            ),
            [
                "config.json: credentials[0].reserve_5h: must be between 1 and 99, got 120",
                "config.json: credentials[0].reserve_weekly: must be between 1 and 99, got 100",
                "config.json: credentials[1].reserve_5h: must be between 1 and 99, got -1",
            ],
        )
        [credential] = service_of(
            multi({"tag": "a", "reserve_5h": 99, "reserve_weekly": 0})
        ).credentials
        assert isinstance(credential, DefaultCredentialConfig)
        self.assertEqual((credential.cap_5h, credential.cap_weekly), (1, 99))

    def test_limit_above_100(self) -> None:
        """
        C{limit_5h} and C{limit_weekly} above 100 are refused; 100 is
        accepted and becomes the cap.
        """
        self.assert_problems(
            multi({"tag": "a", "limit_5h": 101, "limit_weekly": 255}),
            [
                "config.json: credentials[0].limit_5h: must be between 1 and 100, got 101",
                "config.json: credentials[0].limit_weekly: must be between 1 and 100, got 255",
            ],
        )
        [credential] = service_of(
            multi({"tag": "a", "limit_5h": 100, "limit_weekly": 40})
        ).credentials
        assert isinstance(credential, DefaultCredentialConfig)
        self.assertEqual((credential.cap_5h, credential.cap_weekly), (100, 40))

    def test_reserve_and_limit(self) -> None:
        """
        A reserve and a limit on the same window are mutually exclusive; on
        different windows they are fine.
        """
        self.assert_problems(
            multi(
                {
                    "tag": "a",
                    "reserve_5h": 10,
                    "limit_5h": 50,
                    "reserve_weekly": 5,
                    "limit_weekly": 60,
                }
            ),
            [
                "config.json: credentials[0].limit_5h: reserve_5h and limit_5h are mutually exclusive",
                "config.json: credentials[0].limit_weekly: reserve_weekly and limit_weekly are mutually exclusive",
            ],
        )
        [credential] = service_of(
            multi({"tag": "a", "reserve_5h": 10, "limit_weekly": 60})
        ).credentials
        assert isinstance(credential, DefaultCredentialConfig)
        self.assertEqual((credential.cap_5h, credential.cap_weekly), (90, 60))

    def test_unknown_strategy(self) -> None:
        """
        An unknown balancer strategy is refused, listing the known ones.
        """
        self.assert_problem(
            multi(
                {"tag": "a"},
                {"tag": "p", "type": "balancer", "strategy": "fastest", "credentials": ["a"]},
            ),
            "config.json: credentials[1].strategy: unknown balancer strategy 'fastest'; "
            "expected least_used, round_robin, random or fallback",
        )

    def test_negative_rebalance_threshold(self) -> None:
        """
        A negative C{rebalance_threshold} is refused; zero and positive
        values are kept.
        """
        self.assert_problem(
            multi(
                {"tag": "a"},
                {"tag": "p", "type": "balancer", "credentials": ["a"], "rebalance_threshold": -0.5},
            ),
            "config.json: credentials[1].rebalance_threshold: must not be below 0, got -0.5",
        )
        service = service_of(
            multi(
                {"tag": "a"},
                {"tag": "p", "type": "balancer", "credentials": ["a"], "rebalance_threshold": 12.5},
            )
        )
        self.assertEqual(
            service.credentials[1], BalancerCredentialConfig("p", ("a",), rebalance_threshold=12.5)
        )

    def test_user_without_credential(self) -> None:
        """
        In multi-credential mode every user must name a credential.
        """
        self.assert_problem(
            multi({"tag": "a"}, users=[{"name": "alice", "token": "t-1"}]),
            "config.json: users[0].credential: user alice must specify credential in multi-credential mode",
        )

    def test_user_with_unknown_credential(self) -> None:
        """
        A user may only name a configured credential.
        """
        self.assert_problem(
            multi({"tag": "a"}, users=[{"name": "alice", "token": "t-1", "credential": "b"}]),
            "config.json: users[0].credential: user alice references unknown credential: b",
        )

    def test_user_credentials_of_every_type(self) -> None:
        """
        A user may be served by a default credential or by a pool.
        """
        service = service_of(
            multi(
                {"tag": "a"},
                {"tag": "p", "type": "fallback", "credentials": ["a"]},
                users=[
                    {"name": "alice", "token": "t-1", "credential": "a"},
                    {"name": "bob", "token": "t-2", "credential": "p"},
                ],
            )
        )
        self.assertEqual([u.credential for u in service.users], ["a", "p"])

    def test_balancer_referencing_balancer(self) -> None:
        """
        A pool can only contain default credentials.
        """
        self.assert_problem(
            multi(
                {"tag": "a"},
                {"tag": "p", "type": "balancer", "credentials": ["a"]},
                {"tag": "q", "type": "fallback", "credentials": ["a", "p"]},
            ),
            "config.json: credentials[2].credentials[1]: credential q can only contain "
            "default credentials; p is a pool",
        )

    def test_balancer_referencing_unknown_tag(self) -> None:
        """
        A pool member must be a configured credential; credentials listed
        after the pool count.
        """
        self.assert_problem(
            multi({"tag": "p", "type": "balancer", "credentials": ["a", "zz"]}, {"tag": "a"}),
            "config.json: credentials[0].credentials[1]: credential p references unknown credential: zz",
        )

    def test_balancer_listing_a_member_twice(self) -> None:
        """
        A pool that lists the same credential twice is refused.
        """
        self.assert_problem(
            multi({"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": ["a", "a"]}),
            "config.json: credentials[1].credentials: lists the same credential twice",
        )

    def test_empty_sub_credentials(self) -> None:
        """
        A pool needs at least one member, and the list itself is required.
        """
        self.assert_problems(
            multi(
                {"tag": "a"},
                {"tag": "p", "type": "balancer", "credentials": []},
                {"tag": "q", "type": "fallback"},
            ),
            [
                "config.json: credentials[1].credentials: credential p has no sub-credentials",
                "config.json: credentials[2].credentials: is required: list the tags of default credentials",
            ],
        )

    def test_single_member_as_string(self) -> None:
        """
        Like sing-box, a pool's C{credentials} may be a single string.
        """
        service = service_of(
            multi({"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": "a"})
        )
        self.assertEqual(service.credentials[1], BalancerCredentialConfig("p", ("a",)))

    def test_external_credentials_refused(self) -> None:
        """
        External credentials (chained ccm instances) are refused clearly.
        """
        self.assert_problem(
            multi(
                {"tag": "a"},
                {"tag": "peer", "type": "external", "url": "https://peer:8443", "token": "x"},
            ),
            "config.json: credentials[1].type: external credentials (chaining ccm "
            "instances) are not supported by ccm",
        )

    def test_unknown_credential_type(self) -> None:
        """
        A credential type other than default, balancer or fallback is
        refused.
        """
        self.assert_problem(
            multi({"tag": "a", "type": "oauth"}),
            "config.json: credentials[0].type: unknown credential type 'oauth'; "
            "expected default, balancer or fallback",
        )

    def test_user_external_fields_refused(self) -> None:
        """
        The users' C{external_credential} and C{allow_external_usage} are
        refused, not silently ignored.
        """
        self.assert_problems(
            multi(
                {"tag": "a"},
                users=[
                    {
                        "name": "alice",
                        "token": "t-1",
                        "credential": "a",
                        "external_credential": "peer",
                        "allow_external_usage": True,
                    }
                ],
            ),
            [
                "config.json: users[0].allow_external_usage: external credentials are not supported by ccm",
                "config.json: users[0].external_credential: external credentials are not supported by ccm",
            ],
        )


class StrategyTests(SynchronousTestCase):
    """
    Balancer strategies are accepted in every spelling the reference and its
    documentation use.
    """

    def strategy(self, credential: dict[str, Any]) -> str:
        service = service_of(multi({"tag": "a"}, {"tag": "p", "credentials": ["a"], **credential}))
        pool = service.credentials[1]
        assert isinstance(pool, BalancerCredentialConfig)
        return pool.strategy

    def test_spellings(self) -> None:
        """
        Underscores and hyphens are the same strategy; an empty or absent
        strategy is least-used.
        """
        for spelled, strategy in (
            ("least_used", "least_used"),
            ("least-used", "least_used"),
            ("round_robin", "round_robin"),
            ("round-robin", "round_robin"),
            ("random", "random"),
            ("fallback", "fallback"),
            ("", "least_used"),
        ):
            self.assertEqual(
                self.strategy({"type": "balancer", "strategy": spelled}), strategy, spelled
            )
        self.assertEqual(self.strategy({"type": "balancer"}), "least_used")

    def test_fallback_type(self) -> None:
        """
        C{type: fallback} is a balancer with the fallback strategy.
        """
        self.assertEqual(self.strategy({"type": "fallback"}), "fallback")

    def test_fallback_type_has_no_strategy(self) -> None:
        """
        The fallback type takes neither a strategy nor a rebalance threshold.
        """
        problems = problems_of(
            multi(
                {"tag": "a"},
                {
                    "tag": "p",
                    "type": "fallback",
                    "credentials": ["a"],
                    "strategy": "random",
                    "rebalance_threshold": 1,
                },
            )
        )
        self.assertEqual(
            problems,
            [
                "config.json: credentials[1].strategy: unknown key",
                "config.json: credentials[1].rebalance_threshold: unknown key",
            ],
        )

    def test_strategy_must_be_a_string(self) -> None:
        """
        A strategy that is not a string is a type error.
        """
        problems = problems_of(
            multi(
                {"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": ["a"], "strategy": 1}
            )
        )
        self.assertEqual(
            problems, ["config.json: credentials[1].strategy: must be a string, got a number"]
        )


class PollIntervalTests(SynchronousTestCase, ProblemsTestMixin):
    """
    C{poll_interval} is a positive Go-style duration, 60 seconds by default
    as documented.
    """

    def pool(self, **fields: Any) -> dict[str, Any]:
        return multi({"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": ["a"], **fields})

    def test_default(self) -> None:
        """
        Without C{poll_interval} a pool polls every 60 seconds.
        """
        pool = service_of(self.pool()).credentials[1]
        assert isinstance(pool, BalancerCredentialConfig)
        self.assertEqual(pool.poll_interval, 60.0)

    def test_durations(self) -> None:
        """
        Go-style durations are read in seconds.
        """
        for text, seconds in (("30s", 30.0), ("1h30m", 5400.0), ("500ms", 0.5), ("2m", 120.0)):
            pool = service_of(self.pool(poll_interval=text)).credentials[1]
            assert isinstance(pool, BalancerCredentialConfig)
            self.assertEqual(pool.poll_interval, seconds, text)

    def test_bad_duration(self) -> None:
        """
        A duration that does not parse is refused with the parser's message.
        """
        [line] = problems_of(self.pool(poll_interval="often"))
        self.assertTrue(
            line.startswith("config.json: credentials[1].poll_interval: invalid duration 'often'"),
            line,
        )

    def test_missing_unit(self) -> None:
        """
        A number without a unit is refused.
        """
        [line] = problems_of(self.pool(poll_interval="60"))
        self.assertTrue(
            line.startswith("config.json: credentials[1].poll_interval: invalid duration '60'"),
            line,
        )

    def test_not_positive(self) -> None:
        """
        Zero and negative durations are refused.
        """
        self.assert_problem(
            self.pool(poll_interval="0s"),
            "config.json: credentials[1].poll_interval: must be positive, got '0s'",
        )
        self.assert_problem(
            self.pool(poll_interval="-5m"),
            "config.json: credentials[1].poll_interval: must be positive, got '-5m'",
        )

    def test_number_refused(self) -> None:
        """
        A bare JSON number is not a duration.
        """
        self.assert_problem(
            self.pool(poll_interval=60),
            "config.json: credentials[1].poll_interval: must be a string, got a number",
        )


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
        or a L{ConfigError}, never another exception.
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


class OnePassTests(SynchronousTestCase):
    """
    Every problem of a configuration is reported together, one line each.
    """

    def test_all_problems_at_once(self) -> None:
        """
        Problems in different parts of a document are all reported, each on
        its own line naming the file and the JSON path.
        """
        problems = problems_of(
            {
                "services": [
                    {
                        "type": "ccm",
                        "listen": "localhost",
                        "listen_port": 99999,
                        "credentials": [{"tag": "a", "reserve_5h": 120}],
                        "users": [{"name": "u", "token": "t"}],
                        "max_request_body": "huge",
                    },
                    {"type": "ccm", "upstream_url": "ftp://example.test"},
                ]
            }
        )
        self.assertEqual(len(problems), 6, problems)
        for line in problems:
            self.assertNotIn("\n", line)
            self.assertTrue(line.startswith("config.json: services["), line)
        self.assertEqual(
            [line.split(":")[1].strip() for line in problems],
            [
                "services[0].listen",
                "services[0].listen_port",
                "services[0].credentials[0].reserve_5h",
                "services[0].users[0].credential",
                "services[0].max_request_body",
                "services[1].upstream_url",
            ],
        )


class UserTests(SynchronousTestCase, ProblemsTestMixin):
    """
    Users: names and tokens are required and unique, and tokens never show
    in messages or representations.
    """

    def test_users_loaded(self) -> None:
        """
        Users keep their names and tokens in order.
        """
        service = service_of(
            {"users": [{"name": "alice", "token": "tok-a"}, {"name": "bob", "token": "tok-b"}]}
        )
        self.assertEqual(service.users, (UserConfig("alice", "tok-a"), UserConfig("bob", "tok-b")))

    def test_duplicate_names(self) -> None:
        """
        Two users with the same name are refused.
        """
        self.assert_problem(
            {"users": [{"name": "alice", "token": "tok-a"}, {"name": "alice", "token": "tok-b"}]},
            "config.json: users[1].name: duplicate user name: alice",
        )

    def test_duplicate_tokens(self) -> None:
        """
        Two users with the same token are refused, without the token in the
        message.
        """
        token = "ak-ccm-shared-secret"
        problems = problems_of(
            {"users": [{"name": "alice", "token": token}, {"name": "bob", "token": token}]}
        )
        self.assertEqual(
            problems, ["config.json: users[1].token: user bob has the same token as another user"]
        )

    def test_token_with_surrounding_space(self) -> None:
        """
        A token with white space at either end is refused, since a client's
        token is read without it and could never match.
        """
        self.assert_problem(
            {"users": [{"name": "alice", "token": " ak-ccm-padded "}]},
            "config.json: users[0].token: user alice's token starts or ends with "
            "white space, which clients cannot send",
        )

    def test_empty_token_and_name(self) -> None:
        """
        A user needs a non-empty name and a non-empty token.
        """
        self.assert_problems(
            {"users": [{"name": "alice", "token": ""}, {"name": "bob"}, {"token": "tok-c"}]},
            [
                "config.json: users[0].token: user alice needs a non-empty token",
                "config.json: users[1].token: user bob needs a non-empty token",
                "config.json: users[2].name: every user needs a non-empty name",
            ],
        )

    def test_tokens_never_in_messages(self) -> None:
        """
        However a user entry is wrong, its token does not appear in any
        problem line.
        """
        token = "ak-ccm-very-secret-token"
        problems = problems_of(
            multi(
                {"tag": "a"},
                users=[
                    {"name": "alice", "token": token, "credential": "zz", "tokne": 1},
                    {"name": "alice", "token": token},
                    {"name": 5, "token": token, "credential": "a"},
                ],
            )
        )
        self.assertEqual(
            problems,
            [
                "config.json: users[0].tokne: unknown key; did you mean 'token'?",
                "config.json: users[0].credential: user alice references unknown credential: zz",
                "config.json: users[1].name: duplicate user name: alice",
                "config.json: users[1].token: user alice has the same token as another user",
                "config.json: users[1].credential: user alice must specify credential in multi-credential mode",
                "config.json: users[2].name: must be a string, got a number",
                "config.json: users[2].token: user ? has the same token as another user",
            ],
        )
        for line in problems:
            self.assertNotIn(token, line)

    def test_tokens_not_in_repr(self) -> None:
        """
        The representation of a loaded configuration does not hold the
        users' tokens.
        """
        token = "ak-ccm-very-secret-token"
        config = parse_config({"users": [{"name": "alice", "token": token}]}, source=SOURCE)
        self.assertIn("alice", repr(config))
        self.assertNotIn(token, repr(config))

    def test_wrong_types_reported_once(self) -> None:
        """
        A name, token or credential of the wrong type is reported once, as
        a type error, not also as missing.
        """
        self.assert_problems(
            multi({"tag": "a"}, users=[{"name": ["alice"], "token": 12345, "credential": True}]),
            [
                "config.json: users[0].name: must be a string, got an array",
                "config.json: users[0].token: must be a string, got a number",
                "config.json: users[0].credential: must be a string, got a boolean",
            ],
        )

    def test_credential_in_single_mode(self) -> None:
        """
        A user's C{credential} without a credentials list is ignored with a
        warning naming where it is.
        """
        config = parse_config(
            {"users": [{"name": "alice", "token": "t", "credential": "a"}]}, source=SOURCE
        )
        self.assertEqual(
            config.warnings,
            ("config.json: users[0].credential: ignored, there is no credentials list",),
        )
        self.assertEqual(config.services[0].users[0].credential, "a")


class UsagesPathTests(SynchronousTestCase, ProblemsTestMixin):
    """
    Each credential keeps its own usage file.
    """

    def test_shared_usages_path(self) -> None:
        """
        Two credentials writing the same usage file are refused, also when
        the paths are spelled differently.
        """
        self.assert_problem(
            multi(
                {"tag": "a", "usages_path": "usages.json"},
                {"tag": "b", "usages_path": "./usages.json"},
            ),
            "config.json: credentials[1].usages_path: credential a already uses "
            "./usages.json; each credential needs its own usage file",
        )

    def test_distinct_usages_paths(self) -> None:
        """
        Distinct usage files, and credentials without one, are fine.
        """
        service = service_of(
            multi(
                {"tag": "a", "usages_path": "a.json"},
                {"tag": "b", "usages_path": "b.json"},
                {"tag": "c"},
                {"tag": "d"},
            )
        )
        self.assertEqual(
            [c.usages_path for c in service.default_credentials()], ["a.json", "b.json", "", ""]
        )


class UsagePathCheckTests(SynchronousTestCase):
    """
    L{load_config} refuses a C{usages_path} whose directory is missing or
    not writable, naming its JSON path, so that start-up fails instead of
    the usage being lost at shutdown.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def write(self, document: object) -> str:
        path = os.path.join(self.directory, "config.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
        return path

    def load_fails(self, document: object) -> list[str]:
        error = self.assertRaises(ConfigError, load_config, self.write(document))
        return error.problems

    def test_missing_directory(self) -> None:
        """
        A service-level C{usages_path} in a directory that does not exist
        is one problem line naming the key, the path and the directory;
        nothing is created.
        """
        missing = os.path.join(self.directory, "nowhere")
        usages = os.path.join(missing, "usages.json")
        self.assertEqual(
            self.load_fails({"usages_path": usages}),
            [
                f"config.json: usages_path: cannot save usage to {usages}: directory "
                f"{missing} does not exist; create it (writable by the user ccm runs as) "
                "or fix the path"
            ],
        )
        self.assertFalse(os.path.exists(missing))

    def test_credential_paths(self) -> None:
        """
        In a sing-box document, each credential's C{usages_path} is checked
        and named by its own JSON path; good ones pass silently.
        """
        good = os.path.join(self.directory, "a.json")
        bad = os.path.join(self.directory, "gone", "b.json")
        document = {
            "services": [
                {"type": "direct", "tag": "other"},
                {
                    "type": "ccm",
                    "credentials": [
                        {"tag": "a", "usages_path": good},
                        {"tag": "pool", "type": "balancer", "credentials": ["a", "b"]},
                        {"tag": "b", "usages_path": bad},
                    ],
                },
            ]
        }
        [line] = self.load_fails(document)
        self.assertTrue(
            line.startswith(
                f"config.json: services[1].credentials[2].usages_path: cannot save usage to {bad}:"
            ),
            line,
        )

    def test_parent_is_a_file(self) -> None:
        """
        A path under a regular file is refused: that "directory" is not one.
        """
        blocker = os.path.join(self.directory, "file")
        open(blocker, "w").close()
        [line] = self.load_fails({"usages_path": os.path.join(blocker, "usages.json")})
        self.assertIn(f": {blocker} is not a directory; fix the path", line)

    def test_path_is_a_directory(self) -> None:
        """
        A C{usages_path} naming a directory is refused with a suggestion.
        """
        [line] = self.load_fails({"usages_path": self.directory})
        self.assertEqual(
            line,
            f"config.json: usages_path: {self.directory} is a directory; name a file in "
            f"it, such as {os.path.join(self.directory, 'usages.json')}",
        )

    def test_directory_not_writable(self) -> None:
        """
        A directory the system reports as not writable is refused.  The
        answer is simulated (as root every directory is writable); the check
        asks for write and search permission on the directory itself.
        """
        usages = os.path.join(self.directory, "usages.json")
        asked: list[tuple[str, int]] = []

        def access(path: str, mode: int) -> bool:
            asked.append((path, mode))
            return False

        self.patch(os, "access", access)
        [line] = self.load_fails({"usages_path": usages})
        self.assertEqual(
            line,
            f"config.json: usages_path: cannot save usage to {usages}: directory "
            f"{self.directory} is not writable by the user ccm runs as; make it writable "
            "or choose another path",
        )
        self.assertEqual(asked, [(self.directory, os.W_OK | os.X_OK)])

    def test_usable_paths(self) -> None:
        """
        A usage file that does not exist yet in a writable directory, an
        existing one, and one reached through a symbolic link all load, and
        the check creates nothing.
        """
        existing = os.path.join(self.directory, "existing.json")
        open(existing, "w").close()
        link = os.path.join(self.directory, "link.json")
        os.symlink(existing, link)
        for usages in (os.path.join(self.directory, "new.json"), existing, link):
            config = load_config(self.write({"usages_path": usages}))
            self.assertEqual(config.services[0].usages_path, usages)
        self.assertEqual(sorted(os.listdir(self.directory)), ["config.json", "existing.json", "link.json"])

    def test_problems_of_parsing_come_first(self) -> None:
        """
        A document with other problems reports those, and the file system
        is not looked at: L{parse_config} alone never touches it.
        """
        missing = os.path.join(self.directory, "nowhere", "usages.json")
        self.assertEqual(
            self.load_fails({"usages_path": missing, "listen_port": "x"}),
            ["config.json: listen_port: must be a whole number, got a string"],
        )
        self.assertEqual(
            parse_config({"usages_path": missing}, "config.json").services[0].usages_path, missing
        )


class URLTests(SynchronousTestCase, ProblemsTestMixin):
    """
    C{upstream_url} and C{oauth_token_url}.
    """

    def test_defaults(self) -> None:
        """
        Without them, the real API and token endpoint are used.
        """
        service = service_of({})
        self.assertEqual(service.upstream_url, "https://api.anthropic.com")
        self.assertEqual(service.oauth_token_url, "https://platform.claude.com/v1/oauth/token")

    def test_custom(self) -> None:
        """
        Custom URLs are kept; the upstream base loses its trailing slash and
        the token URL is kept exactly.
        """
        service = service_of(
            {
                "upstream_url": "http://127.0.0.1:9000/base/",
                "oauth_token_url": "http://127.0.0.1:9000/token/",
            }
        )
        self.assertEqual(service.upstream_url, "http://127.0.0.1:9000/base")
        self.assertEqual(service.oauth_token_url, "http://127.0.0.1:9000/token/")

    def test_bad_urls(self) -> None:
        """
        Only http and https URLs with a host and without query or fragment
        are accepted.
        """
        self.assert_problems(
            {"upstream_url": "ftp://example.test", "oauth_token_url": "https://"},
            [
                "config.json: upstream_url: must be an http:// or https:// URL, got 'ftp://example.test'",
                "config.json: oauth_token_url: must be an http:// or https:// URL, got 'https://'",
            ],
        )
        self.assert_problems(
            {
                "upstream_url": "https://example.test/?x=1",
                "oauth_token_url": "https://example.test/t#f",
            },
            [
                "config.json: upstream_url: must not have a query or fragment",
                "config.json: oauth_token_url: must not have a query or fragment",
            ],
        )
        self.assert_problem(
            {"upstream_url": "api.anthropic.com"},
            "config.json: upstream_url: must be an http:// or https:// URL, got 'api.anthropic.com'",
        )


class MaxRequestBodyTests(SynchronousTestCase, ProblemsTestMixin):
    """
    C{max_request_body}: a byte count or a size with a unit, 64 MiB by
    default.
    """

    def test_default(self) -> None:
        """
        The default is 64 MiB.
        """
        self.assertEqual(service_of({}).max_request_body, 64 * 1024 * 1024)

    def test_values(self) -> None:
        """
        A byte count and sizes with units are read in bytes.
        """
        for value, size in (
            (1000, 1000),
            ("64MiB", 64 * 1024 * 1024),
            ("10MB", 10_000_000),
            ("512", 512),
        ):
            self.assertEqual(service_of({"max_request_body": value}).max_request_body, size, value)

    def test_bad_values(self) -> None:
        """
        Zero, negative, fractional and other values are refused.
        """
        self.assert_problem(
            {"max_request_body": 0}, "config.json: max_request_body: must be at least 1 byte"
        )
        self.assert_problem(
            {"max_request_body": -1}, "config.json: max_request_body: must not be negative, got -1"
        )
        self.assert_problem(
            {"max_request_body": 1.5},
            'config.json: max_request_body: must be a whole number of bytes or a size such as "64MiB", got 1.5',
        )
        self.assert_problem(
            {"max_request_body": True},
            'config.json: max_request_body: must be a whole number of bytes or a size such as "64MiB", got a boolean',
        )
        [line] = problems_of({"max_request_body": "huge"})
        self.assertTrue(line.startswith("config.json: max_request_body: invalid size 'huge'"), line)


class ShutdownGraceTests(SynchronousTestCase, ProblemsTestMixin):
    """
    C{shutdown_grace}: how long a shutdown waits for requests in progress,
    a duration string, 30 seconds by default; zero turns the wait off.
    """

    def test_default(self) -> None:
        """
        The default is 30 seconds.
        """
        self.assertEqual(service_of({}).shutdown_grace, 30.0)

    def test_values(self) -> None:
        """
        Duration strings are read in seconds, zero included.
        """
        for text, seconds in (("90s", 90.0), ("2m", 120.0), ("1m30s", 90.0), ("0s", 0.0), ("0", 0.0)):
            self.assertEqual(service_of({"shutdown_grace": text}).shutdown_grace, seconds, text)

    def test_bad_values(self) -> None:
        """
        Negative durations, numbers and words are refused, naming the key.
        """
        self.assert_problem(
            {"shutdown_grace": "-5s"}, "config.json: shutdown_grace: must be zero or positive, got '-5s'"
        )
        self.assert_problem(
            {"shutdown_grace": 30}, "config.json: shutdown_grace: must be a string, got a number"
        )
        [line] = problems_of({"shutdown_grace": "soon"})
        self.assertTrue(line.startswith("config.json: shutdown_grace: invalid duration 'soon'"), line)


class ConnectionLimitsTests(SynchronousTestCase, ProblemsTestMixin):
    """
    The connection bounds (C{request_head_timeout}, C{request_body_min_rate},
    C{request_body_grace}, C{keep_alive_timeout}, C{max_connections},
    C{max_connections_per_address}, C{max_request_head}) are read into one
    L{ConnectionLimits}, each with its default and its checks.
    """

    def test_defaults(self) -> None:
        """
        Without any of the keys the service has the documented defaults.
        """
        self.assertEqual(
            service_of({}).connection_limits,
            ConnectionLimits(
                request_head_timeout=30.0,
                request_body_min_rate=1024,
                request_body_grace=30.0,
                keep_alive_timeout=60.0,
                max_connections=1024,
                max_connections_per_address=256,
                max_request_head=32 * 1024,
            ),
        )
        self.assertEqual(ConnectionLimits(), service_of({}).connection_limits)

    def test_values(self) -> None:
        """
        Every key is read: durations in seconds, sizes in bytes, counts as
        they are.
        """
        limits = service_of(
            {
                "request_head_timeout": "10s",
                "request_body_min_rate": "4KiB",
                "request_body_grace": "1m",
                "keep_alive_timeout": "2m30s",
                "max_connections": 100,
                "max_connections_per_address": 10,
                "max_request_head": "64KiB",
            }
        ).connection_limits
        self.assertEqual(
            limits,
            ConnectionLimits(
                request_head_timeout=10.0,
                request_body_min_rate=4096,
                request_body_grace=60.0,
                keep_alive_timeout=150.0,
                max_connections=100,
                max_connections_per_address=10,
                max_request_head=65536,
            ),
        )

    def test_sizes_as_numbers(self) -> None:
        """
        The two sizes also take a plain byte count.
        """
        limits = service_of(
            {"request_body_min_rate": 500, "max_request_head": 2048}
        ).connection_limits
        self.assertEqual((limits.request_body_min_rate, limits.max_request_head), (500, 2048))

    def test_zero_turns_off(self) -> None:
        """
        Zero is accepted where it turns a bound off: the head deadline, the
        body rate and grace, and both caps.
        """
        limits = service_of(
            {
                "request_head_timeout": "0s",
                "request_body_min_rate": 0,
                "request_body_grace": "0s",
                "max_connections": 0,
                "max_connections_per_address": 0,
            }
        ).connection_limits
        self.assertEqual(
            (
                limits.request_head_timeout,
                limits.request_body_min_rate,
                limits.request_body_grace,
                limits.max_connections,
                limits.max_connections_per_address,
            ),
            (0.0, 0, 0.0, 0, 0),
        )

    def test_per_address_without_total(self) -> None:
        """
        With no total cap, any per-address cap is accepted.
        """
        limits = service_of(
            {"max_connections": 0, "max_connections_per_address": 5000}
        ).connection_limits
        self.assertEqual(limits.max_connections_per_address, 5000)

    def test_bad_durations(self) -> None:
        """
        Negative durations, numbers and words are refused, naming the key;
        the keep-alive bound cannot be zero.
        """
        for key in ("request_head_timeout", "request_body_grace", "keep_alive_timeout"):
            self.assert_problem(
                {key: 30}, f"config.json: {key}: must be a string, got a number"
            )
            [line] = problems_of({key: "soon"})
            self.assertTrue(line.startswith(f"config.json: {key}: invalid duration 'soon'"), line)
        for key in ("request_head_timeout", "request_body_grace"):
            self.assert_problem(
                {key: "-1s"}, f"config.json: {key}: must be zero or positive, got '-1s'"
            )
        self.assert_problem(
            {"keep_alive_timeout": "0s"},
            "config.json: keep_alive_timeout: must be positive, got '0s'",
        )

    def test_bad_sizes(self) -> None:
        """
        The sizes refuse fractions, booleans, words and negative numbers;
        C{max_request_head} must be at least 1 KiB.
        """
        self.assert_problem(
            {"request_body_min_rate": 1.5},
            'config.json: request_body_min_rate: must be a whole number of bytes per second '
            'or a size such as "1KiB", got 1.5',
        )
        self.assert_problem(
            {"request_body_min_rate": -1},
            "config.json: request_body_min_rate: must not be negative, got -1",
        )
        self.assert_problem(
            {"max_request_head": True},
            'config.json: max_request_head: must be a whole number of bytes or a size such as '
            '"32KiB", got a boolean',
        )
        self.assert_problem(
            {"max_request_head": "512"},
            "config.json: max_request_head: must be at least 1024 bytes, got 512",
        )
        [line] = problems_of({"max_request_head": "big"})
        self.assertTrue(line.startswith("config.json: max_request_head: invalid size 'big'"), line)

    def test_bad_counts(self) -> None:
        """
        The caps must be whole numbers, not negative.
        """
        for key in ("max_connections", "max_connections_per_address"):
            self.assert_problem(
                {key: -1}, f"config.json: {key}: must be 0 (no limit) or more, got -1"
            )
            self.assert_problem(
                {key: "100"}, f"config.json: {key}: must be a whole number, got a string"
            )
            self.assert_problem(
                {key: 2.5}, f"config.json: {key}: must be a whole number, got 2.5"
            )

    def test_per_address_follows_a_lower_total(self) -> None:
        """
        Without its own value, the per-address cap is the total cap when
        that is below the default, so lowering C{max_connections} alone is
        not an error.
        """
        limits = service_of({"max_connections": 10}).connection_limits
        self.assertEqual((limits.max_connections, limits.max_connections_per_address), (10, 10))
        limits = service_of({"max_connections": 0}).connection_limits
        self.assertEqual(limits.max_connections_per_address, 256)

    def test_per_address_above_total(self) -> None:
        """
        A per-address cap above the total cap is an error: it could never
        apply.
        """
        self.assert_problem(
            {"max_connections": 100, "max_connections_per_address": 101},
            "config.json: max_connections_per_address: must not exceed max_connections "
            "(100), got 101",
        )
        self.assert_problem(
            {"max_connections_per_address": 2000},
            "config.json: max_connections_per_address: must not exceed max_connections "
            "(1024), got 2000",
        )

    def test_paths_in_a_sing_box_document(self) -> None:
        """
        Inside a sing-box document the problems name the service's path.
        """
        self.assert_problems(
            {"services": [{"type": "ccm", "max_connections": -5, "max_request_head": "1"}]},
            [
                "config.json: services[0].max_connections: must be 0 (no limit) or more, got -5",
                "config.json: services[0].max_request_head: must be at least 1024 bytes, got 1",
            ],
        )

    def test_misspelled_key(self) -> None:
        """
        A misspelled bound is an unknown key with the right suggestion.
        """
        self.assert_problem(
            {"max_conections": 10},
            "config.json: max_conections: unknown key; did you mean 'max_connections'?",
        )


class DetourTests(SynchronousTestCase, ProblemsTestMixin):
    """
    C{detour}: a proxy URL or the tag of a sing-box outbound.
    """

    def detour_of(self, document: dict[str, Any]) -> Detour | None:
        return service_of(document).detour

    def test_none(self) -> None:
        """
        No detour, or an empty one, means a direct connection.
        """
        self.assertIsNone(self.detour_of({}))
        self.assertIsNone(self.detour_of({"detour": ""}))

    def test_http_url(self) -> None:
        """
        An http URL with credentials is an HTTP CONNECT proxy; the password
        is kept but neither shown nor part of its name.
        """
        detour = self.detour_of({"detour": "http://proxy-user:S3cr%40t@proxy.example.test:3128"})
        self.assertEqual(
            detour,
            Detour(
                kind="http",
                host="proxy.example.test",
                port=3128,
                username="proxy-user",
                password="S3cr@t",
                name="http://proxy.example.test:3128",
            ),
        )
        assert detour is not None
        self.assertNotIn("S3cr", repr(detour))
        self.assertNotIn("S3cr", str(detour))

    def test_socks5_url(self) -> None:
        """
        A socks5 URL is a SOCKS5 proxy, with or without credentials.
        """
        self.assertEqual(
            self.detour_of({"detour": "socks5://10.0.0.2:1080"}),
            Detour(kind="socks5", host="10.0.0.2", port=1080, name="socks5://10.0.0.2:1080"),
        )
        detour = self.detour_of({"detour": "socks5://u:pw-secret@[::1]:1080"})
        assert detour is not None
        self.assertEqual(
            (detour.kind, detour.host, detour.port, detour.username), ("socks5", "::1", 1080, "u")
        )
        self.assertEqual(str(detour), "socks5://[::1]:1080")
        self.assertNotIn("pw-secret", repr(detour))

    def test_bad_urls(self) -> None:
        """
        URLs with another scheme, without a host or port, or with a bad
        port are refused, and never echo the password.
        """
        cases = {
            "ftp://u:pw-secret@h:21": "proxy URL scheme must be http or socks5, got 'ftp'",
            "http://u:pw-secret@proxy.example.test": "proxy URL needs a host and a port, e.g. http://127.0.0.1:3128",
            "http://u:pw-secret@h:0": "proxy URL needs a host and a port, e.g. http://127.0.0.1:3128",
            "http://u:pw-secret@h:99999": "invalid proxy URL: expected http://[user:pass@]host:port or "
            "socks5://[user:pass@]host:port with a port from 1 to 65535",
            "socks5://user:pw-secret": "invalid proxy URL: expected http://[user:pass@]host:port or "
            "socks5://[user:pass@]host:port with a port from 1 to 65535",
        }
        for url, message in cases.items():
            self.assert_problem({"detour": url}, f"config.json: detour: {message}")

    def test_outbound_tags(self) -> None:
        """
        A tag names an outbound of the document: http and socks outbounds
        are proxies, direct is a direct connection.
        """
        config = parse_config(
            {
                "services": [
                    {"type": "ccm", "detour": "corp", "listen_port": 1},
                    {"type": "ccm", "detour": "tor", "listen_port": 2},
                    {"type": "ccm", "detour": "direct-out", "listen_port": 3},
                ],
                "outbounds": [
                    {
                        "type": "http",
                        "tag": "corp",
                        "server": "10.0.0.1",
                        "server_port": 3128,
                        "username": "u",
                        "password": "outbound-secret",
                        "tls": {},
                    },
                    {
                        "type": "socks",
                        "tag": "tor",
                        "server": "127.0.0.1",
                        "server_port": 9050,
                        "version": "5",
                    },
                    {"type": "direct", "tag": "direct-out"},
                    {"type": "vmess", "tag": "unused"},
                ],
            },
            source=SOURCE,
        )
        self.assertEqual(
            [s.detour for s in config.services],
            [
                Detour("http", "10.0.0.1", 3128, "u", "outbound-secret", "corp"),
                Detour("socks5", "127.0.0.1", 9050, name="tor"),
                Detour("direct", name="direct-out"),
            ],
        )
        self.assertNotIn("outbound-secret", repr(config))

    def test_credential_detour(self) -> None:
        """
        Default credentials take a detour of their own, by URL or tag.
        """
        config = parse_config(
            {
                "services": [
                    {
                        "type": "ccm",
                        "credentials": [
                            {"tag": "a", "detour": "corp"},
                            {"tag": "b", "detour": "http://10.0.0.9:8080"},
                        ],
                    }
                ],
                "outbounds": [
                    {"type": "http", "tag": "corp", "server": "10.0.0.1", "server_port": 3128}
                ],
            },
            source=SOURCE,
        )
        a, b = config.services[0].default_credentials()
        self.assertEqual(a.detour, Detour("http", "10.0.0.1", 3128, name="corp"))
        self.assertEqual(b.detour, Detour("http", "10.0.0.9", 8080, name="http://10.0.0.9:8080"))

    def test_unknown_tag(self) -> None:
        """
        A tag that names no outbound is refused, listing the known tags.
        """
        self.assert_problem(
            {
                "services": [{"type": "ccm", "detour": "proxy"}],
                "outbounds": [{"type": "direct", "tag": "direct"}],
            },
            "config.json: services[0].detour: 'proxy' is neither a proxy URL (http://host:port, "
            "socks5://host:port) nor the tag of an entry in outbounds (tags: direct)",
        )

    def test_unknown_value_with_password(self) -> None:
        """
        A value that looks like a URL without its scheme is refused without
        echoing it, as it may hold a password.
        """
        [line] = problems_of({"detour": "user:pw-secret@proxy:3128"})
        self.assertNotIn("pw-secret", line)
        self.assertTrue(
            line.startswith("config.json: detour: the value is neither a proxy URL"), line
        )

    def test_unsupported_outbound(self) -> None:
        """
        An outbound ccm cannot use as a detour is refused at the outbound.
        """
        self.assert_problem(
            {
                "services": [{"type": "ccm", "detour": "wg"}],
                "outbounds": [{"type": "wireguard", "tag": "wg"}],
            },
            "config.json: outbounds[0].type: outbound 'wg' has type 'wireguard', which ccm "
            "cannot use as a detour (supported: http, socks, direct)",
        )

    def test_incomplete_outbound(self) -> None:
        """
        A proxy outbound needs a server and a port, reported once even when
        several detours use it.
        """
        self.assert_problems(
            {
                "services": [
                    {
                        "type": "ccm",
                        "credentials": [{"tag": "a", "detour": "p"}, {"tag": "b", "detour": "p"}],
                    }
                ],
                "outbounds": [{"type": "http", "tag": "p"}],
            },
            [
                "config.json: outbounds[0].server: outbound 'p' needs a server",
                "config.json: outbounds[0].server_port: outbound 'p' needs a server_port",
            ],
        )
        self.assert_problem(
            {
                "services": [{"type": "ccm", "detour": "p"}],
                "outbounds": [{"type": "socks", "tag": "p", "server": "h", "server_port": 0}],
            },
            "config.json: outbounds[0].server_port: must be between 1 and 65535, got 0",
        )


class ModelTests(SynchronousTestCase):
    """
    The configuration model in L{ccm.config.model}.
    """

    def test_frozen(self) -> None:
        """
        Configuration objects cannot be changed once built.
        """
        config = parse_config(
            multi(
                {"tag": "a"},
                {"tag": "p", "type": "balancer", "credentials": ["a"]},
                users=[{"name": "u", "token": "t", "credential": "p"}],
                tls={"enabled": True, "certificate": "c", "key": "k"},
            ),
            source=SOURCE,
        )
        service = config.services[0]
        a, pool = service.credentials
        listener = service.listeners[0]
        assert isinstance(listener, AddressListener)
        for obj, attribute, value in (
            (config, "source", "other"),
            (service, "upstream_url", "http://evil.test"),
            (a, "reserve_5h", 1),
            (pool, "strategy", "random"),
            (service.users[0], "token", "x"),
            (listener, "port", 1),
            (listener.tls, "key_pem", "x"),
            (Detour("direct"), "host", "x"),
            (EndpointListener("tcp:1"), "description", "tcp:2"),
            (service.connection_limits, "max_connections", 1),
        ):
            with self.assertRaises(dataclasses.FrozenInstanceError):
                setattr(obj, attribute, value)

    def test_legacy_default_credential(self) -> None:
        """
        Without a credentials list the service has one credential tagged
        C{default} built from the top-level fields, capped at 99 %.
        """
        detour = Detour("http", "h", 1, name="http://h:1")
        service = ServiceConfig(
            where="", credential_path="/c.json", usages_path="/u.json", detour=detour
        )
        [credential] = service.default_credentials()
        self.assertEqual(
            credential,
            DefaultCredentialConfig(
                tag="default", credential_path="/c.json", usages_path="/u.json", detour=detour
            ),
        )
        self.assertEqual((credential.cap_5h, credential.cap_weekly), (99, 99))
        self.assertFalse(service.multi_credential)

    def test_default_credentials_skip_pools(self) -> None:
        """
        In multi-credential mode the default credentials are the entries of
        the default type only, in order.
        """
        a = DefaultCredentialConfig("a")
        b = DefaultCredentialConfig("b")
        service = ServiceConfig(
            where="", credentials=(a, BalancerCredentialConfig("p", ("a", "b")), b)
        )
        self.assertTrue(service.multi_credential)
        self.assertEqual(service.default_credentials(), (a, b))

    def test_caps(self) -> None:
        """
        A reserve pauses the credential at 100 minus the reserve, a limit at
        the limit itself; no reserve counts as a reserve of 1.
        """
        self.assertEqual(DefaultCredentialConfig("a", reserve_5h=20).cap_5h, 80)
        self.assertEqual(DefaultCredentialConfig("a", reserve_weekly=20).cap_weekly, 80)
        self.assertEqual(DefaultCredentialConfig("a", limit_5h=50).cap_5h, 50)
        self.assertEqual(DefaultCredentialConfig("a", limit_weekly=50).cap_weekly, 50)
        self.assertEqual(DefaultCredentialConfig("a").cap_5h, 99)
        self.assertEqual(DefaultCredentialConfig("a").cap_weekly, 99)

    def test_config_error(self) -> None:
        """
        L{ConfigError} keeps its problem lines and reads as them.
        """
        error = ConfigError(["a.json: x: bad", "a.json: y: worse"])
        self.assertEqual(error.problems, ["a.json: x: bad", "a.json: y: worse"])
        self.assertEqual(str(error), "a.json: x: bad\na.json: y: worse")

    def test_default_config(self) -> None:
        """
        The configuration without C{--config} is one service on loopback
        port 8080 with the default credential file, no users and no usage
        file.
        """
        config = default_config()
        [service] = config.services
        self.assertEqual(service.listeners, (EndpointListener("tcp:8080:interface=127.0.0.1"),))
        self.assertEqual((service.users, service.credentials), ((), ()))
        [credential] = service.default_credentials()
        self.assertEqual((credential.credential_path, credential.usages_path), ("", ""))
        self.assertEqual(config.warnings, ())
