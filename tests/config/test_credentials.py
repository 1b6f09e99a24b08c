"""
Tests for :obj:`ccm.config.credentials`: a service's ``credentials`` list (default
credentials, balancers and fallbacks) and its ``users``, and the rules of the
reference on how they refer to each other.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.load import parse_config
from ccm.config.model import (
    BalancerCredentialConfig,
    DefaultCredentialConfig,
    UserConfig,
)
from tests.config.parsing import (
    SOURCE,
    ProblemsTestMixin,
    multi,
    problems_of,
    service_of,
)


class ReferenceValidationTests(SynchronousTestCase, ProblemsTestMixin):
    """
    Every validation rule of the reference (its section 1.3) holds, each
    reported with its JSON path.
    """

    def test_credential_path_with_credentials(self) -> None:
        """
        A top-level ``credential_path`` is refused in multi-credential mode.
        """
        self.assert_problem(
            multi({"tag": "a"}, credential_path="/x/.credentials.json"),
            "config.json: credential_path: credential_path and credentials are mutually exclusive",
        )

    def test_usages_path_with_credentials(self) -> None:
        """
        A top-level ``usages_path`` is refused in multi-credential mode.
        """
        self.assert_problem(
            multi({"tag": "a"}, usages_path="usages.json"),
            "config.json: usages_path: usages_path and credentials are mutually "
            "exclusive; use usages_path on individual credentials",
        )

    def test_detour_with_credentials(self) -> None:
        """
        A top-level ``detour`` is refused in multi-credential mode.
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
        ``reserve_5h`` and ``reserve_weekly`` above 99 are refused, and so is
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
        ``limit_5h`` and ``limit_weekly`` above 100 are refused; 100 is
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
        A negative ``rebalance_threshold`` is refused; zero and positive
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
        Like sing-box, a pool's ``credentials`` may be a single string.
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
        The users' ``external_credential`` and ``allow_external_usage`` are
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
        ``type: fallback`` is a balancer with the fallback strategy.
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
    ``poll_interval`` is a positive Go-style duration, 60 seconds by default
    as documented.
    """

    def pool(self, **fields: Any) -> dict[str, Any]:
        return multi({"tag": "a"}, {"tag": "p", "type": "balancer", "credentials": ["a"], **fields})

    def test_default(self) -> None:
        """
        Without ``poll_interval`` a pool polls every 60 seconds.
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

    def test_admin(self) -> None:
        """
        ``admin`` marks a user as an operator; it is false when left out,
        and anything but true or false is refused, naming its path.
        """
        service = service_of(
            {
                "users": [
                    {"name": "alice", "token": "tok-a", "admin": True},
                    {"name": "bob", "token": "tok-b"},
                ]
            }
        )
        self.assertEqual([u.admin for u in service.users], [True, False])
        self.assert_problem(
            {"users": [{"name": "alice", "token": "tok-a", "admin": "yes"}]},
            "config.json: users[0].admin: must be true or false, got a string",
        )

    def test_shares(self) -> None:
        """
        ``share_5h`` and ``share_weekly`` are percents of the pool's window
        (fractions allowed), 0 (no cap) when left out.
        """
        service = service_of(
            {
                "users": [
                    {"name": "alice", "token": "tok-a", "share_5h": 40, "share_weekly": 12.5},
                    {"name": "bob", "token": "tok-b"},
                ]
            }
        )
        self.assertEqual(
            [(u.share_5h, u.share_weekly) for u in service.users], [(40.0, 12.5), (0.0, 0.0)]
        )

    def test_bad_shares(self) -> None:
        """
        A share of 0, over 100, below 0 or not a number is refused, once,
        naming its path.
        """
        for value, message in [
            (0, "must be above 0 and at most 100, got 0"),
            (120, "must be above 0 and at most 100, got 120"),
            (-5, "must not be below 0, got -5"),
            ("40%", "must be a number, got a string"),
        ]:
            self.assert_problem(
                {"users": [{"name": "alice", "token": "tok-a", "share_weekly": value}]},
                f"config.json: users[0].share_weekly: {message}",
            )

    def test_per_user_headers(self) -> None:
        """
        ``per_user_headers`` is true when left out; false keeps the
        account's headers for a user with a share; anything but true or
        false is refused, naming its path.
        """
        service = service_of(
            {
                "users": [
                    {"name": "alice", "token": "tok-a", "share_5h": 10, "per_user_headers": False},
                    {"name": "bob", "token": "tok-b", "share_5h": 10},
                ]
            }
        )
        self.assertEqual([u.per_user_headers for u in service.users], [False, True])
        self.assert_problem(
            {"users": [{"name": "alice", "token": "tok-a", "per_user_headers": "auto"}]},
            "config.json: users[0].per_user_headers: must be true or false, got a string",
        )

    def test_per_user_headers_without_share(self) -> None:
        """
        ``per_user_headers`` on a user without a share is ignored with a
        warning naming where it is.
        """
        config = parse_config(
            {"users": [{"name": "alice", "token": "t", "per_user_headers": True}]}, source=SOURCE
        )
        self.assertEqual(
            config.warnings,
            ("config.json: users[0].per_user_headers: ignored, user alice has no share",),
        )

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
        A user's ``credential`` without a credentials list is ignored with a
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


class ExtraUsageTests(SynchronousTestCase, ProblemsTestMixin):
    """
    A default credential's ``extra_usage`` is ``"never"`` unless set to
    ``"allow"``; anything else is refused with its JSON path.
    """

    def test_default_is_never(self) -> None:
        """
        Without the key, and in single-credential mode, a credential may
        not serve from paid extra usage.
        """
        [credential] = service_of(multi({"tag": "a"})).default_credentials()
        self.assertEqual(credential.extra_usage, "never")
        self.assertFalse(credential.allows_extra_usage)
        [single] = service_of({"type": "ccm"}).default_credentials()
        self.assertFalse(single.allows_extra_usage)

    def test_values(self) -> None:
        """
        ``"never"`` and ``"allow"`` are read as given.
        """
        service = service_of(
            multi({"tag": "a", "extra_usage": "allow"}, {"tag": "b", "extra_usage": "never"})
        )
        a, b = service.default_credentials()
        self.assertEqual((a.extra_usage, a.allows_extra_usage), ("allow", True))
        self.assertEqual((b.extra_usage, b.allows_extra_usage), ("never", False))

    def test_other_words_refused(self) -> None:
        """
        Any other word, other spellings of the two included, is refused,
        naming the entry.
        """
        for value in ("always", "Allow", "", "cap"):
            self.assert_problem(
                multi({"tag": "a"}, {"tag": "b", "extra_usage": value}),
                f"config.json: credentials[1].extra_usage: must be \"never\" or \"allow\", "
                f"got {value!r}",
            )

    def test_wrong_type_refused(self) -> None:
        """
        A boolean is not one of the two words.
        """
        self.assert_problem(
            multi({"tag": "a", "extra_usage": True}),
            "config.json: credentials[0].extra_usage: must be a string, got a boolean",
        )

    def test_not_on_a_balancer(self) -> None:
        """
        The key belongs to default credentials: on a balancer it is an
        unknown key.
        """
        pool = {"tag": "p", "type": "balancer", "credentials": ["a"], "extra_usage": "allow"}
        [line] = problems_of(multi({"tag": "a"}, pool))
        self.assertTrue(line.startswith("config.json: credentials[1].extra_usage: unknown key"), line)

    def test_thresholds(self) -> None:
        """
        Without a reserve or a limit, a credential pauses at 99% under
        ``never`` and at 100% under ``allow`` (it serves on past the plan's
        end); a reserve or a limit set is kept either way.
        """
        service = service_of(
            multi(
                {"tag": "a"},
                {"tag": "b", "extra_usage": "allow"},
                {"tag": "c", "extra_usage": "allow", "reserve_5h": 10, "limit_weekly": 95},
                {"tag": "d", "extra_usage": "allow", "reserve_weekly": 1},
            )
        )
        self.assertEqual(
            [(c.cap_5h, c.cap_weekly) for c in service.default_credentials()],
            [(99, 99), (100, 100), (90, 95), (100, 99)],
        )
