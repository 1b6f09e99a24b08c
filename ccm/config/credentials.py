# -*- test-case-name: tests.config.test_credentials -*-
"""
Parse a service's ``credentials`` list (default credentials, balancers and
fallbacks) and its ``users``, and check how they refer to each other.
"""

from __future__ import annotations

import os
from typing import Any

from ccm.config.model import (
    DEFAULT_POLL_INTERVAL_SECONDS,
    EXTRA_USAGE_NEVER,
    EXTRA_USAGE_VALUES,
    BalancerCredentialConfig,
    CredentialConfig,
    DefaultCredentialConfig,
    UserConfig,
)
from ccm.config.detour import parse_detour
from ccm.config.reader import ObjectReader, Problems, describe_type, json_path

_DEFAULT_CREDENTIAL_KEYS = (
    "tag",
    "type",
    "credential_path",
    "usages_path",
    "detour",
    "reserve_5h",
    "reserve_weekly",
    "limit_5h",
    "limit_weekly",
    "extra_usage",
)
_BALANCER_KEYS = (
    "tag",
    "type",
    "strategy",
    "credentials",
    "poll_interval",
    "rebalance_threshold",
)
_FALLBACK_KEYS = ("tag", "type", "credentials", "poll_interval")
_USER_KEYS = (
    "name",
    "token",
    "credential",
    "admin",
    "max_concurrent",
    "requests_per_minute",
    "share_5h",
    "share_weekly",
    "per_user_headers",
)
#: The bounds of the per-user limits (ccm.limits).
MAX_CONCURRENT_BOUND = 1000
REQUESTS_PER_MINUTE_BOUND = 100_000
_UNSUPPORTED_USER_KEYS = ("external_credential", "allow_external_usage")

_STRATEGY_SPELLINGS = {
    "": "least_used",
    "least_used": "least_used",
    "least-used": "least_used",
    "round_robin": "round_robin",
    "round-robin": "round_robin",
    "random": "random",
    "fallback": "fallback",
}


def parse_credentials(
    reader: ObjectReader,
    outbounds: dict[str, tuple[str, dict[str, Any]]],
    problems: Problems,
) -> tuple[CredentialConfig, ...]:
    """
    The service's ``credentials`` list, each entry checked, and the pools'
    references to their members and the usage files checked across entries.
    """
    entries = reader.objects("credentials")
    parsed: list[tuple[str, CredentialConfig]] = []
    seen_tags: set[str] = set()
    for path, obj in entries:
        kind = obj.get("type") or "default"
        tag = obj.get("tag")
        if tag is not None and not isinstance(tag, str):
            problems.add(json_path(path, "tag"), f"must be a string, got {describe_type(tag)}")
            tag = ""
        elif not tag:
            problems.add(json_path(path, "tag"), "every credential needs a non-empty tag")
            tag = ""
        elif tag in seen_tags:
            problems.add(json_path(path, "tag"), f"duplicate credential tag: {tag}")
        seen_tags.add(tag)
        credential: CredentialConfig | None
        if kind == "default":
            credential = _parse_default_credential(obj, path, tag, outbounds, problems)
        elif kind in ("balancer", "fallback"):
            credential = _parse_balancer(obj, path, tag, kind, problems)
        elif kind == "external":
            problems.add(
                json_path(path, "type"),
                "external credentials (chaining ccm instances) are not supported by ccm",
            )
            credential = None
        else:
            problems.add(
                json_path(path, "type"),
                f"unknown credential type {kind!r}; expected default, balancer or fallback",
            )
            credential = None
        if credential is not None:
            parsed.append((path, credential))
    _check_pool_members(parsed, problems)
    _check_usage_paths(parsed, problems)
    return tuple(c for _, c in parsed)


def _parse_default_credential(
    obj: dict[str, Any],
    path: str,
    tag: str,
    outbounds: dict[str, tuple[str, dict[str, Any]]],
    problems: Problems,
) -> DefaultCredentialConfig:
    reader = ObjectReader(problems, obj, path, _DEFAULT_CREDENTIAL_KEYS)
    values = {}
    for key, maximum in (
        ("reserve_5h", 99),
        ("reserve_weekly", 99),
        ("limit_5h", 100),
        ("limit_weekly", 100),
    ):
        value = reader.obj.get(key)
        if value == 0 and type(value) is int:  # 0 means "not set", as in sing-box
            values[key] = 0
            continue
        values[key] = reader.integer(key, 0, 1, maximum)
    for window in ("5h", "weekly"):
        if values[f"reserve_{window}"] and values[f"limit_{window}"]:
            problems.add(
                reader.where(f"limit_{window}"),
                f"reserve_{window} and limit_{window} are mutually exclusive",
            )
    return DefaultCredentialConfig(
        tag=tag,
        credential_path=reader.string("credential_path"),
        usages_path=reader.string("usages_path"),
        detour=parse_detour(reader, "detour", outbounds, problems),
        extra_usage=_parse_extra_usage(reader),
        **values,
    )


def _parse_extra_usage(reader: ObjectReader) -> str:
    """
    A default credential's ``extra_usage``: ``"never"`` (the default) or
    ``"allow"``, spelled exactly.
    """
    value = reader.string("extra_usage", EXTRA_USAGE_NEVER)
    if value not in EXTRA_USAGE_VALUES:
        choices = " or ".join(f'"{v}"' for v in EXTRA_USAGE_VALUES)
        reader.problems.add(reader.where("extra_usage"), f"must be {choices}, got {value!r}")
        return EXTRA_USAGE_NEVER
    return value


def _parse_balancer(
    obj: dict[str, Any], path: str, tag: str, kind: str, problems: Problems
) -> BalancerCredentialConfig:
    known = _BALANCER_KEYS if kind == "balancer" else _FALLBACK_KEYS
    reader = ObjectReader(problems, obj, path, known)
    strategy = "fallback"
    if kind == "balancer":
        spelled = reader.string("strategy")
        if spelled not in _STRATEGY_SPELLINGS:
            problems.add(
                reader.where("strategy"),
                f"unknown balancer strategy {spelled!r}; expected least_used, "
                "round_robin, random or fallback",
            )
        strategy = _STRATEGY_SPELLINGS.get(spelled, "least_used")
    members = reader.strings("credentials")
    if not reader.has("credentials"):
        problems.add(reader.where("credentials"), "is required: list the tags of default credentials")
    elif not members:
        problems.add(reader.where("credentials"), f"credential {tag} has no sub-credentials")
    return BalancerCredentialConfig(
        tag=tag,
        credentials=members,
        strategy=strategy,
        poll_interval=reader.duration("poll_interval", DEFAULT_POLL_INTERVAL_SECONDS),
        rebalance_threshold=reader.number("rebalance_threshold", 0.0, 0.0)
        if kind == "balancer"
        else 0.0,
    )


def _check_pool_members(parsed: list[tuple[str, CredentialConfig]], problems: Problems) -> None:
    kinds = {c.tag: c for _, c in parsed}
    for path, credential in parsed:
        if not isinstance(credential, BalancerCredentialConfig):
            continue
        for index, member in enumerate(credential.credentials):
            where = json_path(json_path(path, "credentials"), index)
            target = kinds.get(member)
            if target is None:
                problems.add(where, f"credential {credential.tag} references unknown credential: {member}")
            elif not isinstance(target, DefaultCredentialConfig):
                problems.add(
                    where,
                    f"credential {credential.tag} can only contain default credentials; "
                    f"{member} is a pool",
                )
        if len(set(credential.credentials)) != len(credential.credentials):
            problems.add(json_path(path, "credentials"), "lists the same credential twice")


def _check_usage_paths(parsed: list[tuple[str, CredentialConfig]], problems: Problems) -> None:
    owners: dict[str, str] = {}
    for path, credential in parsed:
        if not isinstance(credential, DefaultCredentialConfig) or not credential.usages_path:
            continue
        key = os.path.abspath(credential.usages_path)
        if key in owners:
            problems.add(
                json_path(path, "usages_path"),
                f"credential {owners[key]} already uses {credential.usages_path}; "
                "each credential needs its own usage file",
            )
        else:
            owners[key] = credential.tag


def parse_users(
    reader: ObjectReader,
    credentials: tuple[CredentialConfig, ...],
    problems: Problems,
    warnings: list[str],
) -> tuple[UserConfig, ...]:
    """
    The service's ``users``: unique names and tokens, each user's
    ``credential`` naming an entry of ``credentials`` when there is a list.
    """
    tags = {c.tag for c in credentials}
    users = []
    names: set[str] = set()
    tokens: set[str] = set()
    for path, obj in reader.objects("users"):
        user = ObjectReader(problems, obj, path, _USER_KEYS, ignored=_UNSUPPORTED_USER_KEYS)
        for key in user.ignored_present:
            problems.add(user.where(key), "external credentials are not supported by ccm")
        name = user.string("name")
        token = user.string("token")
        credential = user.string("credential")
        admin = user.boolean("admin")
        # A value of the wrong type was reported already, once.
        wrong_type = {
            k
            for k in ("name", "token", "credential")
            if obj.get(k) is not None and not isinstance(obj[k], str)
        }
        if not name:
            if "name" not in wrong_type:
                problems.add(user.where("name"), "every user needs a non-empty name")
        elif name in names:
            problems.add(user.where("name"), f"duplicate user name: {name}")
        if not token:
            if "token" not in wrong_type:
                problems.add(user.where("token"), f"user {name or '?'} needs a non-empty token")
        elif token != token.strip():
            problems.add(
                user.where("token"),
                f"user {name or '?'}'s token starts or ends with white space, "
                "which clients cannot send",
            )
        elif token in tokens:
            problems.add(user.where("token"), f"user {name or '?'} has the same token as another user")
        names.add(name)
        tokens.add(token)
        if credentials:
            if not credential:
                if "credential" not in wrong_type:
                    problems.add(
                        user.where("credential"),
                        f"user {name} must specify credential in multi-credential mode",
                    )
            elif credential not in tags:
                problems.add(
                    user.where("credential"),
                    f"user {name} references unknown credential: {credential}",
                )
        elif credential:
            warnings.append(
                f"{user.where('credential')}: ignored, there is no credentials list"
            )
        share_5h, share_weekly = (_share(user, key) for key in ("share_5h", "share_weekly"))
        if user.has("per_user_headers") and not (share_5h or share_weekly):
            warnings.append(f"{user.where('per_user_headers')}: ignored, user {name} has no share")
        users.append(
            UserConfig(
                name=name,
                token=token,
                credential=credential,
                admin=admin,
                max_concurrent=user.integer("max_concurrent", 0, 1, MAX_CONCURRENT_BOUND),
                requests_per_minute=user.integer(
                    "requests_per_minute", 0, 1, REQUESTS_PER_MINUTE_BOUND
                ),
                share_5h=share_5h,
                share_weekly=share_weekly,
                per_user_headers=user.boolean("per_user_headers", True),
            )
        )
    return tuple(users)


def _share(user: ObjectReader, key: str) -> float:
    """
    A user's ``share_5h`` or ``share_weekly``: a percent above 0 and at
    most 100 (shares of several users may add up to more); absent is no cap.
    """
    raw = user.obj.get(key)
    value = user.number(key, 0.0, 0.0)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and 0 <= raw and not 0 < raw <= 100:
        user.problems.add(user.where(key), f"must be above 0 and at most 100, got {raw:g}")
        return 0.0
    return value
