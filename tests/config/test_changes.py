"""
Tests for :obj:`ccm.config.changes`: which differences between the running
configuration and the file read again apply in place, and which need a
restart (and keep their running value).  Configurations are built in
memory with :obj:`ccm.config.load.parse_config`, as the file would give them.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.model import (
    BalancerCredentialConfig,
    Config,
    DefaultCredentialConfig,
    ServiceConfig,
    UserConfig,
)
from ccm.config.load import parse_config
from ccm.config.changes import (
    APPLY,
    BALANCER_FIELDS,
    DEFAULT_CREDENTIAL_FIELDS,
    ENTRIES,
    IDENTITY,
    RESTART,
    SERVICE_FIELDS,
    USER_FIELDS,
    plan_reload,
)

ALICE_TOKEN = "ak-reload-alice-secret-1"
ALICE_NEW_TOKEN = "ak-reload-alice-secret-2"
BOB_TOKEN = "ak-reload-bob-secret"
CAROL_TOKEN = "ak-reload-carol-secret"
SECRETS = (ALICE_TOKEN, ALICE_NEW_TOKEN, BOB_TOKEN, CAROL_TOKEN, "proxy-password-secret")

SINGLE: dict[str, Any] = {
    "endpoint": "tcp:8080:interface=127.0.0.1",
    "credential_path": "/var/lib/ccm/claude/.credentials.json",
    "users": [{"name": "alice", "token": ALICE_TOKEN}, {"name": "bob", "token": BOB_TOKEN}],
}

MULTI: dict[str, Any] = {
    "services": [
        {
            "type": "ccm",
            "tag": "main",
            "listen": "127.0.0.1",
            "listen_port": 8443,
            "credentials": [
                {"tag": "a", "credential_path": "/c/a.json", "reserve_5h": 10},
                {"tag": "b", "credential_path": "/c/b.json"},
                {"tag": "pool", "type": "balancer", "credentials": ["a", "b"]},
            ],
            "users": [
                {"name": "alice", "token": ALICE_TOKEN, "credential": "pool"},
                {"name": "bob", "token": BOB_TOKEN, "credential": "a"},
            ],
        }
    ]
}


def load(document: dict[str, Any]) -> Config:
    """
    The configuration ``document`` describes, as read from ``config.json``.
    """
    return parse_config(document, source="config.json")


def edited(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """
    A deep copy of a bare service document with ``changes`` applied.
    """
    result = copy.deepcopy(document)
    result.update(changes)
    return result


def multi_edited(**changes: Any) -> dict[str, Any]:
    """
    A deep copy of :obj:`MULTI` with ``changes`` applied to its service.
    """
    result = copy.deepcopy(MULTI)
    result["services"][0].update(changes)
    return result


class ClassificationTests(SynchronousTestCase):
    """
    Every field of the configuration model is classified, so a new one
    cannot be forgotten by the reload.
    """

    def test_every_field_classified(self) -> None:
        """
        Each table names exactly the fields of its model class, with one of
        the known policies.
        """
        for model, table in (
            (ServiceConfig, SERVICE_FIELDS),
            (DefaultCredentialConfig, DEFAULT_CREDENTIAL_FIELDS),
            (BalancerCredentialConfig, BALANCER_FIELDS),
            (UserConfig, USER_FIELDS),
        ):
            names = {f.name for f in dataclasses.fields(model)}
            self.assertEqual(set(table), names, model.__name__)
            self.assertLessEqual(set(table.values()), {APPLY, RESTART, IDENTITY, ENTRIES})

    def test_what_needs_a_restart(self) -> None:
        """
        What the running objects were built from needs a restart: listeners
        and TLS, the metrics listeners, credential and usage files, detours,
        URLs, poll intervals.
        """
        self.assertEqual(
            {name for name, policy in SERVICE_FIELDS.items() if policy == RESTART},
            {
                "listeners",
                "metrics_listen",
                "state",
                "credential_path",
                "usages_path",
                "detour",
                "upstream_url",
                "oauth_token_url",
            },
        )
        self.assertEqual(
            {name for name, policy in DEFAULT_CREDENTIAL_FIELDS.items() if policy == RESTART},
            {"credential_path", "usages_path", "detour"},
        )
        self.assertEqual(
            {name for name, policy in BALANCER_FIELDS.items() if policy == RESTART},
            {"poll_interval"},
        )


class PlanTestMixin:
    """
    Helpers to compare a running configuration with an edited one.
    """

    def plan(self, running: dict[str, Any], loaded: dict[str, Any]) -> Any:
        """
        The plan for reloading ``loaded`` over ``running``; no line of it
        holds a secret.
        """
        plan = plan_reload(load(running).services, load(loaded))
        for line in (*plan.applied, *plan.restart):
            for secret in SECRETS:
                self.assertNotIn(secret, line)  # type: ignore[attr-defined]
        return plan

    def changed(self, running: dict[str, Any], loaded: dict[str, Any]) -> tuple[ServiceConfig, Any]:
        """
        The one service the plan changes, and the plan.
        """
        plan = self.plan(running, loaded)
        [(index, config)] = plan.services
        self.assertEqual(index, 0)  # type: ignore[attr-defined]
        return config, plan


class SingleCredentialPlanTests(PlanTestMixin, SynchronousTestCase):
    """
    A bare service with one credential.
    """

    def test_nothing_changed(self) -> None:
        """
        The same file changes nothing.
        """
        plan = self.plan(SINGLE, SINGLE)
        self.assertEqual((plan.services, plan.applied, plan.restart), ((), (), ()))

    def test_users_apply(self) -> None:
        """
        A new token for alice, bob removed and carol added all apply, and
        the summary names the users (never their tokens).
        """
        loaded = edited(
            SINGLE,
            users=[{"name": "alice", "token": ALICE_NEW_TOKEN}, {"name": "carol", "token": CAROL_TOKEN}],
        )
        config, plan = self.changed(SINGLE, loaded)
        self.assertEqual(
            [(u.name, u.token) for u in config.users],
            [("alice", ALICE_NEW_TOKEN), ("carol", CAROL_TOKEN)],
        )
        self.assertEqual(plan.applied, ("users (added carol; removed bob; changed alice)",))
        self.assertEqual(plan.restart, ())

    def test_in_place_settings(self) -> None:
        """
        ``headers``, ``max_request_body`` and ``shutdown_grace`` apply.
        """
        loaded = edited(
            SINGLE, headers={"x-team": "blue"}, max_request_body="1MiB", shutdown_grace="5s"
        )
        config, plan = self.changed(SINGLE, loaded)
        self.assertEqual(config.headers, (("x-team", ("blue",)),))
        self.assertEqual((config.max_request_body, config.shutdown_grace), (1024 * 1024, 5.0))
        self.assertEqual(set(plan.applied), {"headers", "max_request_body", "shutdown_grace"})
        self.assertEqual(plan.restart, ())

    def test_connection_bounds_apply(self) -> None:
        """
        The connection bounds apply to new connections, and the plan names
        each changed key, not the object that holds them.
        """
        loaded = edited(SINGLE, max_connections=10, request_head_timeout="5s")
        config, plan = self.changed(SINGLE, loaded)
        limits = config.connection_limits
        self.assertEqual((limits.max_connections, limits.request_head_timeout), (10, 5.0))
        # The per-address cap, left out, follows the lower total.
        self.assertEqual(
            set(plan.applied),
            {"max_connections", "max_connections_per_address", "request_head_timeout"},
        )
        self.assertEqual(plan.restart, ())

    def test_restart_needed(self) -> None:
        """
        A new endpoint, credential file, usage file, detour, upstream URL
        and token URL each give one line naming the key, and keep their
        running values; a header changed in the same file still applies.
        """
        loaded = edited(
            SINGLE,
            endpoint="tcp:9090:interface=127.0.0.1",
            credential_path="/elsewhere/.credentials.json",
            usages_path="usages.json",
            detour="http://user:proxy-password-secret@127.0.0.1:3128",
            upstream_url="https://api.example",
            oauth_token_url="https://auth.example/token",
            headers={"x-team": "blue"},
        )
        running = load(SINGLE).services[0]
        config, plan = self.changed(SINGLE, loaded)
        self.assertEqual(
            sorted(plan.restart),
            sorted(
                f"config.json: {key}: needs a restart; keeping the running value"
                for key in (
                    "endpoint",
                    "credential_path",
                    "usages_path",
                    "detour",
                    "upstream_url",
                    "oauth_token_url",
                )
            ),
        )
        self.assertEqual(
            dataclasses.replace(config, headers=running.headers), running
        )
        self.assertEqual(plan.applied, ("headers",))

    def test_listen_fields_and_tls(self) -> None:
        """
        With the sing-box listen fields, a new port is reported as
        ``listen``, and new TLS files as ``tls``.
        """
        running = {"listen": "127.0.0.1", "listen_port": 8443, "credential_path": "/c.json"}
        plan = self.plan(running, dict(running, listen_port=9443))
        self.assertEqual(plan.restart, ("config.json: listen: needs a restart; keeping the running value",))
        self.assertEqual(plan.services, ())
        directory = self.mktemp()
        os.makedirs(directory)
        for name in ("a.pem", "b.pem", "k.pem"):
            certificate = os.path.join(directory, name)
            with open(certificate, "w") as handle:
                handle.write("-----BEGIN CERTIFICATE-----\n")
        tls = {
            "enabled": True,
            "certificate_path": os.path.join(directory, "a.pem"),
            "key_path": os.path.join(directory, "k.pem"),
        }
        with_tls = dict(running, tls=tls)
        renewed = dict(tls, certificate_path=os.path.join(directory, "b.pem"))
        plan = self.plan(with_tls, dict(with_tls, tls=renewed))
        self.assertEqual(plan.restart, ("config.json: tls: needs a restart; keeping the running value",))

    def test_switch_to_credentials_list(self) -> None:
        """
        Moving from ``credential_path`` to a ``credentials`` list needs a
        restart; the users (who now name a credential) keep serving from
        the running one.
        """
        loaded = edited(
            SINGLE,
            credential_path="",
            credentials=[{"tag": "a", "credential_path": "/c/a.json"}],
            users=[{"name": "alice", "token": ALICE_TOKEN, "credential": "a"}],
        )
        del loaded["credential_path"]
        config, plan = self.changed(SINGLE, loaded)
        self.assertIn(
            "config.json: credentials: needs a restart (switching between credential_path "
            "and a credentials list); keeping the running value",
            plan.restart,
        )
        self.assertIn(
            "config.json: credential_path: needs a restart; keeping the running value", plan.restart
        )
        self.assertEqual(config.credentials, ())
        self.assertEqual(config.credential_path, SINGLE["credential_path"])
        self.assertEqual([u.name for u in config.users], ["alice"])


class MultiCredentialPlanTests(PlanTestMixin, SynchronousTestCase):
    """
    A sing-box document with a credentials list.
    """

    def credentials(self, config: ServiceConfig) -> dict[str, Any]:
        return {c.tag: c for c in config.credentials}

    def test_reserves_and_strategies_apply(self) -> None:
        """
        Reserves and limits of a credential, and a balancer's strategy,
        rebalance threshold and members apply; paths name the entries.
        """
        service = MULTI["services"][0]
        loaded = multi_edited(
            credentials=[
                {"tag": "a", "credential_path": "/c/a.json", "reserve_5h": 30, "limit_weekly": 80},
                {"tag": "b", "credential_path": "/c/b.json"},
                {
                    "tag": "pool",
                    "type": "balancer",
                    "credentials": ["b"],
                    "strategy": "round-robin",
                    "rebalance_threshold": 12,
                },
            ]
        )
        self.assertEqual(len(service["credentials"]), 3)
        config, plan = self.changed(MULTI, loaded)
        credentials = self.credentials(config)
        self.assertEqual((credentials["a"].reserve_5h, credentials["a"].limit_weekly), (30, 80))
        pool = credentials["pool"]
        self.assertEqual(
            (pool.credentials, pool.strategy, pool.rebalance_threshold), (("b",), "round_robin", 12.0)
        )
        self.assertEqual(
            set(plan.applied),
            {
                "services[0].credentials[0].reserve_5h",
                "services[0].credentials[0].limit_weekly",
                "services[0].credentials[2].credentials",
                "services[0].credentials[2].strategy",
                "services[0].credentials[2].rebalance_threshold",
            },
        )
        self.assertEqual(plan.restart, ())

    def test_user_moves_to_another_pool(self) -> None:
        """
        A user may change the credential they use when it runs already.
        """
        loaded = copy.deepcopy(MULTI)
        loaded["services"][0]["users"][1]["credential"] = "pool"
        config, plan = self.changed(MULTI, loaded)
        self.assertEqual([u.credential for u in config.users], ["pool", "pool"])
        self.assertEqual(plan.applied, ("services[0].users (changed bob)",))

    def test_credential_changes_needing_restart(self) -> None:
        """
        A credential's file, a new credential, a removed one, a retyped
        one and a balancer's poll interval each need a restart; the running
        list stays as it was, and other changes in the file still apply.
        """
        loaded = multi_edited(
            credentials=[
                {"tag": "a", "credential_path": "/c/a2.json", "reserve_5h": 10},
                {"tag": "pool", "type": "default", "credential_path": "/c/p.json"},
                {"tag": "c", "credential_path": "/c/c.json"},
            ],
            users=[
                {"name": "alice", "token": ALICE_TOKEN, "credential": "a"},
                {"name": "bob", "token": BOB_TOKEN, "credential": "a"},
            ],
            headers={"x-team": "blue"},
        )
        running = load(MULTI).services[0]
        config, plan = self.changed(MULTI, loaded)
        self.assertEqual(config.credentials, running.credentials)
        self.assertEqual(
            sorted(plan.restart),
            sorted(
                [
                    "config.json: services[0].credentials[0].credential_path: needs a restart; "
                    "keeping the running value",
                    "config.json: services[0].credentials[1].type: needs a restart; "
                    "keeping the running value",
                    "config.json: services[0].credentials[2]: needs a restart (new credential c); "
                    "keeping the running value",
                    "config.json: services[0].credentials: needs a restart (credential b removed); "
                    "keeping the running value",
                ]
            ),
        )
        self.assertEqual([u.credential for u in config.users], ["a", "a"])
        self.assertEqual(config.headers, (("x-team", ("blue",)),))

    def test_poll_interval_needs_restart(self) -> None:
        """
        A balancer's ``poll_interval`` needs a restart.
        """
        loaded = copy.deepcopy(MULTI)
        loaded["services"][0]["credentials"][2]["poll_interval"] = "30s"
        plan = self.plan(MULTI, loaded)
        self.assertEqual(
            plan.restart,
            (
                "config.json: services[0].credentials[2].poll_interval: needs a restart; "
                "keeping the running value",
            ),
        )
        self.assertEqual(plan.services, ())

    def test_users_of_a_credential_not_running(self) -> None:
        """
        A new credential needs a restart, and so do the users of it: a new
        user is not added yet, and a user moving to it stays where they
        are; a balancer naming it keeps its running members.
        """
        loaded = copy.deepcopy(MULTI)
        service = loaded["services"][0]
        service["credentials"].insert(2, {"tag": "c", "credential_path": "/c/c.json"})
        service["credentials"][3]["credentials"] = ["a", "c"]
        service["users"][1]["credential"] = "c"
        service["users"].append({"name": "carol", "token": CAROL_TOKEN, "credential": "c"})
        plan = self.plan(MULTI, loaded)
        # Nothing applies: the service runs on as it was.
        self.assertEqual(plan.services, ())
        self.assertEqual(
            sorted(plan.restart),
            sorted(
                [
                    "config.json: services[0].credentials[2]: needs a restart (new credential c); "
                    "keeping the running value",
                    "config.json: services[0].credentials[3].credentials: needs a restart "
                    "(credential c is not running); keeping the running value",
                    "config.json: services[0].users[1].credential: needs a restart "
                    "(credential c is not running); keeping the running value",
                    "config.json: services[0].users[2]: needs a restart (new user carol: "
                    "credential c is not running); keeping the running value",
                ]
            ),
        )
        self.assertEqual(plan.applied, ())


class ServiceMatchingTests(PlanTestMixin, SynchronousTestCase):
    """
    Several ccm services in one document are matched by tag, or by
    position when they have no distinct tags.
    """

    def two(self, first_tag: str, second_tag: str, swap: bool = False) -> dict[str, Any]:
        services = [
            {
                "type": "ccm",
                "tag": tag,
                "endpoint": f"tcp:{port}:interface=127.0.0.1",
                "credential_path": f"/c/{port}.json",
                "users": [{"name": "alice", "token": ALICE_TOKEN}],
            }
            for tag, port in ((first_tag, 8080), (second_tag, 8081))
        ]
        if swap:
            services.reverse()
        return {"services": services}

    def test_by_tag(self) -> None:
        """
        Tagged services are found by tag wherever they moved in the file.
        """
        running = self.two("one", "two")
        loaded = self.two("one", "two", swap=True)
        loaded["services"][0]["headers"] = {"x-service": "two"}
        plan = self.plan(running, loaded)
        [(index, config)] = plan.services
        self.assertEqual((index, config.tag, config.headers), (1, "two", (("x-service", ("two",)),)))
        self.assertEqual(plan.applied, ("services[0].headers",))
        self.assertEqual(plan.restart, ())

    def test_added_and_removed_by_tag(self) -> None:
        """
        A service with a new tag, and a running one missing from the file,
        need a restart; the others still reload.
        """
        running = self.two("one", "two")
        loaded = self.two("one", "three")
        loaded["services"][0]["shutdown_grace"] = "1s"
        plan = self.plan(running, loaded)
        self.assertEqual([i for i, _ in plan.services], [0])
        self.assertEqual(
            sorted(plan.restart),
            [
                "config.json: services: needs a restart (service two removed); keeping the running value",
                "config.json: services[1]: needs a restart (new service three); keeping the running value",
            ],
        )

    def test_by_position(self) -> None:
        """
        Untagged services are matched by position; a different number of
        them needs a restart and changes nothing.
        """
        running = self.two("", "")
        loaded = self.two("", "")
        loaded["services"][1]["shutdown_grace"] = "2s"
        plan = self.plan(running, loaded)
        self.assertEqual([(i, c.shutdown_grace) for i, c in plan.services], [(1, 2.0)])
        loaded["services"].pop(0)
        plan = self.plan(running, loaded)
        self.assertEqual(plan.services, ())
        self.assertEqual(
            plan.restart,
            (
                "config.json: services: needs a restart (2 ccm service(s) running, 1 in the "
                "file); keeping the running value",
            ),
        )


class ExtraUsagePlanTests(PlanTestMixin, SynchronousTestCase):
    """
    A credential's ``extra_usage`` changes in place, in both directions.
    """

    def test_extra_usage_applies(self) -> None:
        """
        Allowing extra usage on one credential applies, named by its path,
        and so does going back to ``never``.
        """
        allowed = copy.deepcopy(MULTI)
        allowed["services"][0]["credentials"][1]["extra_usage"] = "allow"
        config, plan = self.changed(MULTI, allowed)
        b = {c.tag: c for c in config.credentials}["b"]
        assert isinstance(b, DefaultCredentialConfig)
        self.assertEqual(b.extra_usage, "allow")
        self.assertEqual(plan.applied, ("services[0].credentials[1].extra_usage",))
        self.assertEqual(plan.restart, ())
        config, plan = self.changed(allowed, MULTI)
        b = {c.tag: c for c in config.credentials}["b"]
        assert isinstance(b, DefaultCredentialConfig)
        self.assertEqual(b.extra_usage, "never")
        self.assertEqual(plan.applied, ("services[0].credentials[1].extra_usage",))
