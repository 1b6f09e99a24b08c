# -*- test-case-name: tests.config.test_changes -*-
"""
What re-reading the configuration file changes.

SIGHUP makes ccm read its configuration file again.  Settings that only
shape new requests (users and their tokens, ``headers``, reserves and
limits, ``extra_usage``, balancing strategies, ...) apply in place; settings the running
objects were built from (listeners and TLS, credential and usage files,
detours, upstream URLs) need a restart: each such difference is reported
on its own line and the running value stays.

The comparison is pure, on configuration objects, without a reactor or a
file: :obj:`ccm.reload.Reloader` reads the file and applies the plan.  The
tables below classify every field of the configuration model; a field
added to the model must be added to its table (the tests check that none
is missing), which is all a new restart-only setting needs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping, Sequence, TypeVar

from ccm.config.model import (
    BalancerCredentialConfig,
    Config,
    ConnectionLimits,
    CredentialConfig,
    DefaultCredentialConfig,
    EndpointListener,
    Listener,
    ServiceConfig,
    UserConfig,
)
from ccm.config.reader import json_path

#: The new value is used for new requests.
APPLY = "applies in place"
#: The running value stays until ccm restarts.
RESTART = "needs a restart"
#: Says which entry this is (its place or tag), not how it behaves.
IDENTITY = "identifies the entry"
#: A list compared entry by entry (see :obj:`_merge_credentials`, :obj:`_merge_users`).
ENTRIES = "compared entry by entry"

SERVICE_FIELDS: Mapping[str, str] = {
    "where": IDENTITY,
    "tag": IDENTITY,
    "listeners": RESTART,
    "credential_path": RESTART,
    "usages_path": RESTART,
    "detour": RESTART,
    "credentials": ENTRIES,
    "users": ENTRIES,
    "headers": APPLY,
    "upstream_url": RESTART,
    "oauth_token_url": RESTART,
    "max_request_body": APPLY,
    "shutdown_grace": APPLY,
    # Taken by each new connection; open ones keep the bounds they had.
    "connection_limits": APPLY,
    "metrics_listen": RESTART,
    "state": RESTART,
}

DEFAULT_CREDENTIAL_FIELDS: Mapping[str, str] = {
    "tag": IDENTITY,
    "credential_path": RESTART,
    "usages_path": RESTART,
    "detour": RESTART,
    "reserve_5h": APPLY,
    "reserve_weekly": APPLY,
    "limit_5h": APPLY,
    "limit_weekly": APPLY,
    # Read by the credential's pool member at each choice, as the limits
    # are; the extra-usage facts it judges are kept whatever it says.
    "extra_usage": APPLY,
}

BALANCER_FIELDS: Mapping[str, str] = {
    "tag": IDENTITY,
    # Members apply in place when each is a credential that runs already.
    "credentials": APPLY,
    "strategy": APPLY,
    "poll_interval": RESTART,
    "rebalance_threshold": APPLY,
}

USER_FIELDS: Mapping[str, str] = {
    "name": IDENTITY,
    "token": APPLY,
    # Applies in place when it names a credential or pool that runs already.
    "credential": APPLY,
    "admin": APPLY,
    "max_concurrent": APPLY,
    "requests_per_minute": APPLY,
    "share_5h": APPLY,
    "share_weekly": APPLY,
    "per_user_headers": APPLY,
}


@dataclass
class _Notes:
    """
    What a comparison found: the paths that apply, and one line per
    difference that needs a restart.
    """

    source: str
    applied: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)

    def needs_restart(self, path: str, why: str = "") -> None:
        detail = f" ({why})" if why else ""
        self.restart.append(
            f"{self.source}: {path}: needs a restart{detail}; keeping the running value"
        )


@dataclass(frozen=True)
class ReloadPlan:
    """
    The outcome of comparing the running services with a configuration
    read again.

    :ivar services: for each running service to change, its index and the
        configuration to run from now on: the new values where they apply,
        the running ones where a restart is needed.
    :ivar applied: the JSON paths whose new values apply.
    :ivar restart: one log line per difference that needs a restart.
    """

    services: tuple[tuple[int, ServiceConfig], ...]
    applied: tuple[str, ...]
    restart: tuple[str, ...]


_Entry = TypeVar("_Entry", ServiceConfig, DefaultCredentialConfig, BalancerCredentialConfig, UserConfig)


def _json_key(name: str, old: object, new: object) -> str:
    """
    The configuration key that holds field ``name``: the field's own name,
    except for the listeners, which come from ``endpoint``, from ``listen``
    and ``listen_port``, or from ``tls``.
    """
    if name != "listeners":
        return name
    assert isinstance(old, tuple) and isinstance(new, tuple)
    listeners: tuple[Listener, ...] = (*old, *new)
    if any(isinstance(listener, EndpointListener) for listener in listeners):
        return "endpoint"
    if [(l.address, l.port) for l in old] == [(l.address, l.port) for l in new]:
        return "tls"
    return "listen"


def _changed_keys(name: str, old: object, new: object) -> list[str]:
    """
    The configuration keys behind a changed field: the field's own name,
    except for the connection bounds, which are several service keys held
    in one object (:obj:`ConnectionLimits`, whose fields are named as the keys).
    """
    if name != "connection_limits":
        return [name]
    assert isinstance(old, ConnectionLimits) and isinstance(new, ConnectionLimits)
    return [
        limit.name
        for limit in dataclasses.fields(old)
        if getattr(old, limit.name) != getattr(new, limit.name)
    ]


def _merge(running: _Entry, loaded: _Entry, table: Mapping[str, str], where: str, notes: _Notes) -> _Entry:
    """
    ``loaded``, with the running value of every field that needs a restart
    and differs; :obj:`ENTRIES` fields keep the running value, for the caller.
    """
    values = {}
    for model_field in dataclasses.fields(running):
        name = model_field.name
        old, new = getattr(running, name), getattr(loaded, name)
        policy = table[name]
        if policy == ENTRIES or (policy == RESTART and old != new):
            values[name] = old
            if policy == RESTART:
                notes.needs_restart(json_path(where, _json_key(name, old, new)))
            continue
        values[name] = new
        if policy == APPLY and old != new:
            notes.applied.extend(json_path(where, key) for key in _changed_keys(name, old, new))
    return dataclasses.replace(running, **values)


def _merge_credentials(
    running: ServiceConfig, loaded: ServiceConfig, notes: _Notes
) -> tuple[CredentialConfig, ...]:
    """
    The running ``credentials`` list, entry by entry, with what applies of
    the loaded one: entries are matched by tag; adding, removing or
    retyping one needs a restart.
    """
    path = json_path(loaded.where, "credentials")
    if running.multi_credential != loaded.multi_credential:
        notes.needs_restart(path, "switching between credential_path and a credentials list")
        return running.credentials
    running_tags = {c.tag for c in running.credentials}
    loaded_at = {c.tag: (json_path(path, i), c) for i, c in enumerate(loaded.credentials)}
    for tag, (at, _) in loaded_at.items():
        if tag not in running_tags:
            notes.needs_restart(at, f"new credential {tag}")
    running_defaults = {c.tag for c in running.credentials if isinstance(c, DefaultCredentialConfig)}
    merged: list[CredentialConfig] = []
    for old in running.credentials:
        if old.tag not in loaded_at:
            notes.needs_restart(path, f"credential {old.tag} removed")
            merged.append(old)
            continue
        at, new = loaded_at[old.tag]
        if isinstance(old, DefaultCredentialConfig) and isinstance(new, DefaultCredentialConfig):
            merged.append(_merge(old, new, DEFAULT_CREDENTIAL_FIELDS, at, notes))
        elif isinstance(old, BalancerCredentialConfig) and isinstance(new, BalancerCredentialConfig):
            missing = [tag for tag in new.credentials if tag not in running_defaults]
            if missing:
                notes.needs_restart(
                    json_path(at, "credentials"), f"credential {missing[0]} is not running"
                )
                new = dataclasses.replace(new, credentials=old.credentials)
            merged.append(_merge(old, new, BALANCER_FIELDS, at, notes))
        else:
            notes.needs_restart(json_path(at, "type"))
            merged.append(old)
    return tuple(merged)


def _merge_users(
    running: ServiceConfig,
    loaded: ServiceConfig,
    credentials: tuple[CredentialConfig, ...],
    notes: _Notes,
) -> tuple[UserConfig, ...]:
    """
    The loaded ``users``, matched with the running ones by name; a user's
    ``credential`` applies only when it names an entry of ``credentials``
    (what runs), as the pool behind a new entry does not exist yet.
    """
    path = json_path(loaded.where, "users")
    running_users = {u.name: u for u in running.users}
    pools = {c.tag for c in credentials}
    merged = []
    for index, user in enumerate(loaded.users):
        at = json_path(path, index)
        old = running_users.get(user.name)
        if credentials and user.credential not in pools:
            why = f"credential {user.credential} is not running"
            if old is None:
                notes.needs_restart(at, f"new user {user.name}: {why}")
                continue
            notes.needs_restart(json_path(at, "credential"), why)
            user = dataclasses.replace(user, credential=old.credential)
        if old is not None:
            # Per field only for what needs a restart: the summary below
            # says which users changed.
            fields_notes = _Notes(notes.source)
            user = _merge(old, user, USER_FIELDS, at, fields_notes)
            notes.restart.extend(fields_notes.restart)
        merged.append(user)
    result = tuple(merged)
    if result != running.users:
        kept = {u.name for u in result}
        added = [u.name for u in result if u.name not in running_users]
        removed = [name for name in running_users if name not in kept]
        changed = [u.name for u in result if u.name in running_users and u != running_users[u.name]]
        details = [
            f"{what} {', '.join(names)}"
            for what, names in (("added", added), ("removed", removed), ("changed", changed))
            if names
        ]
        notes.applied.append(f"{path} ({'; '.join(details) or 'reordered'})")
    return result


def plan_service(running: ServiceConfig, loaded: ServiceConfig, notes: _Notes) -> ServiceConfig:
    """
    The configuration one running service changes to: ``loaded`` where it
    applies in place, ``running`` where a restart is needed.
    """
    merged = _merge(running, loaded, SERVICE_FIELDS, loaded.where, notes)
    credentials = _merge_credentials(running, loaded, notes)
    users = _merge_users(running, loaded, credentials, notes)
    return dataclasses.replace(merged, credentials=credentials, users=users)


def _pair_services(
    running: Sequence[ServiceConfig], loaded: Config, notes: _Notes
) -> list[tuple[int, ServiceConfig]]:
    """
    Match each running service with its new version: by tag when every
    running service has a distinct one, else by position.  A service
    added or removed needs a restart.
    """
    tags = [s.tag for s in running]
    if all(tags) and len(set(tags)) == len(tags):
        loaded_by_tag = {s.tag: s for s in loaded.services}
        for service in loaded.services:
            if service.tag not in tags:
                notes.needs_restart(service.where or "services", f"new service {service.tag or '(no tag)'}")
        pairs = []
        for index, service in enumerate(running):
            if service.tag in loaded_by_tag:
                pairs.append((index, loaded_by_tag[service.tag]))
            else:
                notes.needs_restart("services", f"service {service.tag} removed")
        return pairs
    if len(running) != len(loaded.services):
        notes.needs_restart(
            "services",
            f"{len(running)} ccm service(s) running, {len(loaded.services)} in the file",
        )
        return []
    return list(enumerate(loaded.services))


def plan_reload(running: Sequence[ServiceConfig], loaded: Config) -> ReloadPlan:
    """
    Compare the running services' configurations with ``loaded``, the
    configuration file read again.
    """
    notes = _Notes(loaded.source)
    services = []
    for index, new in _pair_services(running, loaded, notes):
        merged = plan_service(running[index], new, notes)
        # A service that only moved in the file needs nothing.
        if dataclasses.replace(merged, where=running[index].where) != running[index]:
            services.append((index, merged))
    return ReloadPlan(tuple(services), tuple(notes.applied), tuple(notes.restart))
